"""Where pipeline results go: an annotated video file, JSON Lines events, snapshots
of unknown faces, a live window.

Every sink has ``write(result)`` and ``close()`` (:class:`~facesense.sinks.base.Sink`,
``result`` a :class:`~facesense.types.FrameResult`); sinks that care about events
between frames also have ``notify(events)``. Sinks depend on :mod:`facesense.types`,
never on the pipeline. Importing this package is cheap: each sink imports OpenCV only
when it is built.
"""

from __future__ import annotations

from facesense.sinks.base import EventSink, Sink, StopSink
from facesense.sinks.events import JsonlEventSink
from facesense.sinks.snapshots import SnapshotSink
from facesense.sinks.video import VideoFileSink
from facesense.sinks.window import WindowSink, gui_available

__all__ = [
    "EventSink",
    "JsonlEventSink",
    "Sink",
    "SnapshotSink",
    "StopSink",
    "VideoFileSink",
    "WindowSink",
    "gui_available",
]
