"""Hand the allocator's free pages back to the operating system now and then.

A watch loop allocates and frees frame-sized buffers from several threads (capture,
writer, MTCNN workers, ONNX Runtime's pool); glibc keeps much of what is freed mapped.
``malloc_trim(0)`` every 1,000 frames (about 2 ms a call) keeps ~25 MiB less resident
on a 30,250-frame run. :class:`facesense.pipeline.Pipeline` calls
:func:`release_free_memory` every ``PipelineConfig.trim_every`` frames.

Long runs with a video file used to grow (~+4 MiB per 30,000 frames, flat with no
sinks or only the JSONL event sink). Most of it was the MP4 muxer's per-frame index
inside ``cv2.VideoWriter`` (+9.6 MiB per 100,000 frames in ``benchmarks/bench_watch.py``),
held until the file is finished. :class:`facesense.sinks.video.VideoFileSink` now
writes fragmented MP4 through PyAV, which keeps no per-frame index: +0.4 MiB per
100,000 frames over a 200,000-frame run, inside the ±2.5 MiB the samples wander
(``python benchmarks/bench_watch.py memory``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import sys
from collections.abc import Callable

logger = logging.getLogger(__name__)

__all__ = ["release_free_memory"]


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        return None
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
        trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return the allocator's free pages to the operating system (glibc ``malloc_trim(0)``).

    Returns:
        Whether anything could be done (``False`` off glibc).
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
