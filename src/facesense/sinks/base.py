"""The sink interfaces.

A sink receives every processed frame in order, on the pipeline's consumer thread::

    sink.write(result)          # once per frame (result.frame is the frame)
    sink.notify(events)         # optional: events between frames (status, final "left")
    sink.close()                # once, at the end (also after an error)

``write`` should return quickly: a sink with slow work (video encoding) hands it to
its own thread behind a bounded queue. A sink that wants the loop to end (a window
closed with ``q``) has ``wants_stop``.

This module imports only :mod:`facesense.types`, so a sink never depends on the
pipeline that drives it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from facesense.types import Event, FrameResult

__all__ = ["EventSink", "Sink", "StopSink"]


@runtime_checkable
class Sink(Protocol):
    """Receives every frame's result."""

    def write(self, result: FrameResult) -> None:
        """Handle one frame: ``result.frame`` with its faces, events and timings."""
        ...

    def close(self) -> None:
        """Flush and release; called once, also after an error."""
        ...


@runtime_checkable
class EventSink(Sink, Protocol):
    """A sink that also wants the events that happen between frames."""

    def notify(self, events: Sequence[Event]) -> None:
        """Handle events outside any frame: source status changes, tracks leaving at the end."""
        ...


@runtime_checkable
class StopSink(Sink, Protocol):
    """A sink that can ask the loop to stop (a window the user closed)."""

    @property
    def wants_stop(self) -> bool:
        """True once the sink wants the loop to end."""
        ...
