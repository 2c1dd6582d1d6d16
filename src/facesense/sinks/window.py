"""A live window (``cv2.imshow``) that closes on ``q`` or Esc.

OpenCV's headless builds (``opencv-python-headless``, what facesense depends on)
have no GUI, and a machine without a display cannot open a window either;
:func:`gui_available` tells which, so ``--display auto`` can fall back quietly and
``--display`` can fail with a clear message.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import TYPE_CHECKING

from facesense.errors import ConfigError
from facesense.sinks.draw import annotate

if TYPE_CHECKING:
    from facesense.types import FrameResult

logger = logging.getLogger(__name__)

__all__ = ["QUIT_KEYS", "WindowSink", "gui_available"]

QUIT_KEYS = frozenset({ord("q"), ord("Q"), 27})  # q, Q, Esc


def gui_available() -> tuple[bool, str]:
    """Whether a window can be shown here, and if not, why.

    Returns:
        ``(True, "")``, or ``(False, reason)`` with a one-line reason.
    """
    import cv2

    info = cv2.getBuildInformation()
    match = re.search(r"^\s*GUI:\s*(\S+)", info, re.MULTILINE)
    if match and match.group(1).upper() == "NONE":
        return False, (
            "this OpenCV build has no GUI support (opencv-python-headless);"
            " install opencv-python instead to show a window"
        )
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False, "no display (neither DISPLAY nor WAYLAND_DISPLAY is set)"
    return True, ""


class WindowSink:
    """Shows every annotated frame in a window; ``q`` or Esc asks the loop to stop.

    Args:
        title: the window title.

    Raises:
        ConfigError: no GUI or no display here (see :func:`gui_available`).
    """

    def __init__(self, title: str = "facesense") -> None:
        ok, reason = gui_available()
        if not ok:
            raise ConfigError(f"cannot open a window: {reason}")
        import cv2

        self.title = title
        self._wants_stop = False
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise ConfigError(f"cannot open a window: {' '.join(str(exc).split())}") from exc
        self._open = True

    @property
    def wants_stop(self) -> bool:
        """True once the user pressed ``q``/Esc or closed the window."""
        return self._wants_stop

    def write(self, result: FrameResult) -> None:
        """Show the frame and poll the keyboard."""
        import cv2

        if not self._open:
            return
        cv2.imshow(self.title, annotate(result))
        key = cv2.waitKey(1) & 0xFF
        if key in QUIT_KEYS:
            logger.info("window: quit key pressed")
            self._wants_stop = True
        elif cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            logger.info("window closed")
            self._wants_stop = True

    def close(self) -> None:
        """Close the window."""
        import cv2

        if self._open:
            self._open = False
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)
            except cv2.error:  # already gone with the display
                logger.debug("window already closed")
