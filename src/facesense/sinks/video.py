"""Annotated video files, encoded on their own thread."""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facesense.errors import ConfigError, FacesenseError
from facesense.sinks.draw import annotate

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from facesense.pipeline import FrameResult
    from facesense.types import Frame

logger = logging.getLogger(__name__)

__all__ = ["FOURCC_BY_SUFFIX", "VideoFileSink"]

# Codecs every OpenCV FFmpeg build can write.
FOURCC_BY_SUFFIX = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}

_STOP = object()


class VideoFileSink:
    """Writes every frame, annotated, to a video file at the source's frame rate.

    Frames are drawn and encoded on a writer thread fed by a bounded queue: ``write``
    blocks when the queue is full, so no frame is ever dropped and memory stays
    bounded. Frames of another size (a folder of mixed images) are resized to the
    first frame's size.

    A sink that runs for hours or days should cut its output into segments
    (``segment_frames``): each file is finished (playable, its index written and
    freed) before the next one starts, so a crash loses at most one segment, and the
    MP4 muxer's per-frame index (~75 bytes a frame, held until the file is finished:
    +2.0 MiB over 27,000 frames with one cv2.VideoWriter, flat with 3,000-frame
    segments) stops growing.

    Args:
        path: output file; the suffix picks the codec (``.mp4``/``.m4v``/``.mov``:
            MPEG-4 Part 2, ``.avi``/``.mkv``: MJPEG).
        fps: frame rate of the output (the source's).
        size_wh: frame size; the first frame's size when ``None``.
        annotate_frames: draw boxes, names, track ids and FPS (else the raw frames).
        queue_frames: frames buffered between the pipeline and the encoder.
        fourcc: override the codec (four characters).
        segment_frames: start a new file every this many frames, named
            ``<stem>-0000<suffix>``, ``<stem>-0001<suffix>``, ...; ``None``: one file, ``path``.

    Raises:
        ConfigError: unknown suffix, bad fps, or the file cannot be created.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fps: float,
        size_wh: tuple[int, int] | None = None,
        annotate_frames: bool = True,
        queue_frames: int = 16,
        fourcc: str | None = None,
        segment_frames: int | None = None,
    ) -> None:
        self.path = Path(path)
        if segment_frames is not None and (not isinstance(segment_frames, int) or segment_frames < 1):
            raise ConfigError(f"segment_frames must be a positive integer or None, got {segment_frames!r}")
        self.segment_frames = segment_frames
        self.segments: list[Path] = []
        suffix = self.path.suffix.lower()
        if fourcc is None:
            if suffix not in FOURCC_BY_SUFFIX:
                raise ConfigError(
                    f"{self.path}: unsupported video suffix {suffix or '(none)'!r};"
                    f" use one of {', '.join(sorted(FOURCC_BY_SUFFIX))}"
                )
            fourcc = FOURCC_BY_SUFFIX[suffix]
        if len(fourcc) != 4:
            raise ConfigError(f"fourcc must be 4 characters, got {fourcc!r}")
        if not (math.isfinite(fps) and fps > 0):
            raise ConfigError(f"fps must be a positive number, got {fps}")
        if not self.path.parent.is_dir():
            raise ConfigError(f"{self.path}: folder {self.path.parent} does not exist")
        self.fps = float(fps)
        self.fourcc = fourcc
        self.annotate_frames = annotate_frames
        self.frames_written = 0
        self._size_wh = size_wh
        self._writer: Any = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, queue_frames))
        self._error: BaseException | None = None
        self._closed = False
        self._thread: threading.Thread | None = None
        if size_wh is not None:
            self._open(size_wh)

    def _segment_path(self) -> Path:
        if self.segment_frames is None:
            return self.path
        return self.path.with_name(f"{self.path.stem}-{len(self.segments):04d}{self.path.suffix}")

    def _new_writer(self) -> Any:
        import cv2

        w, h = self._size_wh or (0, 0)
        path = self._segment_path()
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h))
        if not writer.isOpened():
            writer.release()
            raise ConfigError(f"{path}: cannot create video file ({self.fourcc} at {w}x{h})")
        self.segments.append(path)
        logger.info("writing %s (%dx%d, %g fps, %s)", path, w, h, self.fps, self.fourcc)
        return writer

    def _open(self, size_wh: tuple[int, int]) -> None:
        w, h = int(size_wh[0]), int(size_wh[1])
        if w <= 0 or h <= 0:
            raise ConfigError(f"video size must be positive, got {w}x{h}")
        self._size_wh = (w, h)
        self._writer = self._new_writer()
        self._thread = threading.Thread(target=self._run, name="facesense-video-writer", daemon=True)
        self._thread.start()

    def write(self, frame: Frame, result: FrameResult) -> None:
        """Queue one frame for drawing and encoding (blocks while the queue is full).

        Raises:
            FacesenseError: the writer thread failed earlier.
        """
        if self._closed:
            raise FacesenseError(f"{self.path}: video sink is closed")
        if self._writer is None:
            self._open(frame.size_wh)
        self._raise_pending()
        while True:
            try:
                self._queue.put(result, timeout=0.5)
                return
            except queue.Full:
                self._raise_pending()
                if self._thread is None or not self._thread.is_alive():
                    raise FacesenseError(f"{self.path}: video writer stopped") from self._error

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise FacesenseError(f"{self.path}: writing video failed: {self._error}") from self._error

    def _run(self) -> None:
        import cv2

        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                image: npt.NDArray[np.uint8] = annotate(item) if self.annotate_frames else item.frame.image
                if (image.shape[1], image.shape[0]) != self._size_wh:
                    image = cv2.resize(image, self._size_wh, interpolation=cv2.INTER_AREA)
                if self.segment_frames and self.frames_written and self.frames_written % self.segment_frames == 0:
                    self._writer.release()  # finish this segment before the next
                    self._writer = self._new_writer()
                self._writer.write(image)
                self.frames_written += 1
        except BaseException as exc:  # reported on the next write / close
            self._error = exc
            # Keep draining so a blocked write() can notice and stop.
            while True:
                try:
                    if self._queue.get_nowait() is _STOP:
                        return
                except queue.Empty:
                    return

    def close(self) -> None:
        """Encode what is queued, finish the file and join the writer thread.

        Raises:
            FacesenseError: encoding failed on the writer thread.
        """
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            if self._thread.is_alive():
                self._queue.put(_STOP)
            self._thread.join()
        if self._writer is not None:
            self._writer.release()
            where = self.path if self.segment_frames is None else f"{len(self.segments)} segment(s) {self.segments[0].name} ..."
            logger.info("wrote %d frames to %s", self.frames_written, where)
        self._raise_pending()
