"""Events as JSON Lines: one object per line, flushed as they happen.

Track events::

    {"time": 3.47, "frame": 104, "type": "recognized", "source": "clip.mp4",
     "track_id": 3, "name": "lin", "confidence": 0.93, "box": [212.4, 61.0, 301.7, 172.2]}

``type`` is ``appeared`` (a track is confirmed), ``recognized`` (its voted name
became a person), ``unknown`` (its vote settled on nobody enrolled; once per track)
or ``left`` (it was not seen for the tracker's max age, was split, or the shot or
stream ended); ``name`` is ``null`` for faces not named. ``time`` is the frame's
timestamp: media seconds for files and folders, epoch seconds for live sources. The
lines are :meth:`facesense.types.Event.to_dict`.

Live sources also log their connection::

    {"time": 1718000000.0, "frame": 250, "type": "status", "status": "disconnected",
     "message": "...", "source": "http://..."}
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from facesense.errors import ConfigError, FacesenseError

if TYPE_CHECKING:
    from facesense.types import Event, FrameResult

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
        self._fh: IO[str]
        if not isinstance(target, (str, os.PathLike)):
            self._fh = target
            self.name = str(getattr(target, "name", "<stream>"))
        elif os.fspath(target) == "-":
            self._fh = sys.stdout
            self.name = "<stdout>"
        else:
            path = Path(target)
            try:
                self._fh = path.open("a" if append else "w", encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"{path}: cannot write events ({exc.strerror or exc})") from exc
            self._own = True
            self.name = str(path)

    def _emit(self, events: Sequence[Event]) -> None:
        if not events:
            return
        try:
            for event in events:
                self._fh.write(json.dumps(event.to_dict(), separators=(",", ":"), allow_nan=False) + "\n")
            self._fh.flush()
        except (OSError, ValueError) as exc:
            raise FacesenseError(f"{self.name}: cannot write events ({exc})") from exc
        self.events_written += len(events)

    def write(self, result: FrameResult) -> None:
        """Write the frame's track events."""
        self._emit(result.events)

    def notify(self, events: Sequence[Event]) -> None:
        """Write events from between frames (status changes, the final ``left``s)."""
        self._emit(events)

    def close(self) -> None:
        """Flush, and close the file if the sink opened it."""
        if self._own and not self._fh.closed:
            self._fh.close()
        elif not self._own:
            with contextlib.suppress(OSError, ValueError):  # a stream closed by its owner
                self._fh.flush()
