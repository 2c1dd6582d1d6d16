"""The file sinks of a camera from ``facesense.toml``: its events file and annotated video.

``watch --config`` and ``facesense worker`` both build them here from ``[sinks.events]``
and ``[sinks.video]`` (``{camera}`` in a path is the camera's name).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from facesense.capture import VideoSource
    from facesense.config import FacesenseConfig
    from facesense.sinks.base import Sink

__all__ = ["camera_file_sinks", "segment_frames"]


def segment_frames(minutes: float | None, fps: float) -> int | None:
    """Frames per video segment of ``minutes`` at ``fps`` (``None``: one file)."""
    return None if minutes is None else max(1, round(minutes * 60 * fps))


def camera_file_sinks(config: FacesenseConfig, camera: str, source: VideoSource, *, append_events: bool = False) -> list[Sink]:
    """The events file and annotated video ``config`` names for ``camera``.

    Args:
        append_events: add to an existing events file (a worker taking a camera over)
            instead of starting it again.

    Raises:
        ConfigError: a bad output path or setting (sinks already opened are closed).
    """
    from facesense.pipeline import fps_or_default

    sinks: list[Sink] = []
    events = config.sinks.events.path_for(camera)
    if events is not None:
        from facesense.sinks.events import JsonlEventSink

        sinks.append(JsonlEventSink(events, append=append_events))
    output = config.sinks.video.output_for(camera)
    if output is not None:
        from facesense.sinks.video import VideoFileSink

        fps = fps_or_default(source.fps)
        segment = segment_frames(config.sinks.video.segment_minutes, fps)
        try:
            sinks.append(VideoFileSink(Path(output), fps=fps, size_wh=source.size_wh, segment_frames=segment))
        except BaseException:
            for sink in sinks:
                sink.close()
            raise
    return sinks
