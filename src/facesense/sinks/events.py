"""Events as JSON Lines: one object per line, flushed as they happen.

Track events::

    {"time": 3.47, "frame": 104, "type": "recognized", "track_id": 3,
     "name": "lin", "confidence": 0.93, "box": [212.4, 61.0, 301.7, 172.2]}

``type`` is ``appeared`` (a track is confirmed), ``recognized`` (its voted name
became a name) or ``left`` (it was not seen for the tracker's max age, or the stream
ended); ``name`` is ``null`` for unknown faces. ``time`` is the frame's timestamp:
media seconds for files and folders, epoch seconds for live sources.

Live sources also log their connection::

    {"time": 1718000000.0, "frame": 250, "type": "status", "status": "disconnected",
     "message": "...", "source": "http://..."}
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from facesense.errors import ConfigError, FacesenseError

if TYPE_CHECKING:
    from facesense.pipeline import FrameResult, WatchEvent
    from facesense.types import Frame

logger = logging.getLogger(__name__)

__all__ = ["JsonlEventSink"]


class JsonlEventSink:
    """Appends events to a JSON Lines file (or a text stream such as stdout).

    Args:
        target: a path (created or truncated), ``"-"`` for stdout, or an open text stream
            (not closed by the sink).
        append: append to an existing file instead of truncating it.

    Raises:
        ConfigError: the file cannot be created.
    """

    def __init__(self, target: str | os.PathLike[str] | IO[str], *, append: bool = False) -> None:
        self._own = False
        self.events_written = 0
        if hasattr(target, "write"):
            self._fh: IO[str] = target  # type: ignore[assignment]
            self.name = getattr(target, "name", "<stream>")
        elif os.fspath(target) == "-":  # type: ignore[arg-type]
            self._fh = sys.stdout
            self.name = "<stdout>"
        else:
            path = Path(target)  # type: ignore[arg-type]
            try:
                self._fh = path.open("a" if append else "w", encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"{path}: cannot write events ({exc.strerror or exc})") from exc
            self._own = True
            self.name = str(path)

    def _emit(self, events: Sequence[WatchEvent]) -> None:
        if not events:
            return
        try:
            for event in events:
                self._fh.write(json.dumps(event.to_dict(), separators=(",", ":"), allow_nan=False) + "\n")
            self._fh.flush()
        except (OSError, ValueError) as exc:
            raise FacesenseError(f"{self.name}: cannot write events ({exc})") from exc
        self.events_written += len(events)

    def write(self, frame: Frame, result: FrameResult) -> None:
        """Write the frame's track events."""
        self._emit(result.events)

    def notify(self, events: Sequence[WatchEvent]) -> None:
        """Write events from between frames (status changes, the final ``left``s)."""
        self._emit(events)

    def close(self) -> None:
        """Flush, and close the file if the sink opened it."""
        if self._own and not self._fh.closed:
            self._fh.close()
        elif not self._own:
            try:
                self._fh.flush()
            except (OSError, ValueError):
                pass
