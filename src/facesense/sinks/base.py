"""The sink interfaces.

A sink receives every processed frame in order, on the pipeline's consumer thread::

    sink.write(frame, result)   # once per frame
    sink.notify(events)         # optional: events between frames (status, final "left")
    sink.close()                # once, at the end (also after an error)

``write`` should return quickly: a sink with slow work (video encoding) hands it to
its own thread behind a bounded queue. A sink that wants the loop to end (a window
closed with ``q``) sets ``wants_stop``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from facesense.pipeline import FrameResult, WatchEvent
    from facesense.types import Frame

__all__ = ["EventSink", "Sink", "StopSink"]


@runtime_checkable
class Sink(Protocol):
    """Receives every frame's result."""

    def write(self, frame: Frame, result: FrameResult) -> None:
        """Handle one frame (``result.frame is frame``)."""
        ...

    def close(self) -> None:
        """Flush and release; called once, also after an error."""
        ...


@runtime_checkable
class EventSink(Sink, Protocol):
    """A sink that also wants the events that happen between frames."""

    def notify(self, events: Sequence[WatchEvent]) -> None:
        """Handle events outside any frame: source status changes, tracks leaving at the end."""
        ...


@runtime_checkable
class StopSink(Sink, Protocol):
    """A sink that can ask the loop to stop (a window the user closed)."""

    @property
    def wants_stop(self) -> bool:
        """True once the sink wants the loop to end."""
        ...
