"""Annotated video files, encoded with FFmpeg's libraries (PyAV) on their own thread.

:class:`VideoFileSink` draws each :class:`~facesense.types.FrameResult` and encodes it
on a writer thread behind a bounded queue. What it writes, by suffix:

============================  ==============  =========================================
suffix                        container       video
============================  ==============  =========================================
``.mp4``, ``.m4v``, ``.mov``  fragmented MP4  H.264 (libx264; MPEG-4 Part 2 without it)
``.mkv``                      Matroska        H.264 (libx264; MPEG-4 Part 2 without it)
``.avi``                      AVI             MJPEG
============================  ==============  =========================================

Why fragmented MP4: a plain MP4 keeps an index entry for every frame in memory until
the file is finished (~70 bytes a frame: +6.9 MiB per 100,000 frames measured for
libx264 into a plain MP4, the same as ``cv2.VideoWriter``'s mp4v), so a days-long run
grows without bound. A fragmented MP4 (``movflags=frag_keyframe+empty_moov+
default_base_moof``) writes each group of pictures out with its own small index and
keeps only ~40 bytes per fragment (one every :data:`KEYFRAME_INTERVAL_S` seconds), so
memory stays flat: +0.06 MiB per 100,000 frames for the encoder and muxer alone over
30,000 frames, +0.4 MiB per 100,000 frames for this sink over 200,000 frames with
drawing (inside the samples' ±2.5 MiB noise; ``benchmarks/bench_watch.py memory``).
The file also stays playable up to its last fragment if the process is killed.
Matroska is flat as well (its cues are per key frame). AVI keeps a 16-byte index
entry per frame until finished: cut long AVI runs into segments.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import queue
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from facesense.errors import ConfigError, FacesenseError
from facesense.sinks.draw import annotate

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from facesense.types import FrameResult

logger = logging.getLogger(__name__)

__all__ = ["FORMAT_BY_SUFFIX", "KEYFRAME_INTERVAL_S", "SinkStats", "VideoFileSink", "default_codec"]


@dataclass(frozen=True)
class _Format:
    container: str  # FFmpeg muxer name
    codec: str | None  # FFmpeg encoder name; None: H.264 if available (see default_codec)
    options: tuple[tuple[str, str], ...] = ()  # muxer options


_FRAGMENTED_MP4 = (("movflags", "frag_keyframe+empty_moov+default_base_moof"),)

FORMAT_BY_SUFFIX: dict[str, _Format] = {
    ".mp4": _Format("mp4", None, _FRAGMENTED_MP4),
    ".m4v": _Format("mp4", None, _FRAGMENTED_MP4),
    ".mov": _Format("mov", None, _FRAGMENTED_MP4),
    ".mkv": _Format("matroska", None),
    ".avi": _Format("avi", "mjpeg"),
}
"""What each output suffix writes: FFmpeg muxer, encoder and muxer options."""

KEYFRAME_INTERVAL_S = 5.0
"""Seconds between key frames: the MP4 fragment length (what a crash can lose) and the seek step."""

# H.264 "superfast" + "zerolatency" (no B-frames, no lookahead: frames leave the
# encoder at once and it holds ~9 MiB less at 640x360, ~58 MiB less at 1080p) costs
# ~2.1 ms of CPU a 640x360 frame and makes files 40% smaller than OpenCV's mp4v at a
# better PSNR (measurements in the VideoFileSink docstring). One encoder thread: the
# writer already runs beside the pipeline, and more threads would only compete with
# detection for the same cores.
_X264_OPTIONS = {"preset": "superfast", "tune": "zerolatency", "crf": "23"}
_BITS_PER_PIXEL = 0.12  # MPEG-4 Part 2 fallback: ~1 Mbit/s at 640x360, 30 fps

_STOP = object()


def default_codec() -> str:
    """The encoder ``.mp4`` / ``.mkv`` files use: ``libx264`` when FFmpeg has it, else ``mpeg4``."""
    return "libx264" if _has_encoder("libx264") else "mpeg4"


def _has_encoder(name: str) -> bool:
    import av

    try:
        codec = av.codec.Codec(name, "w")
    except (ValueError, av.FFmpegError):  # UnknownCodecError is a ValueError
        return False
    return bool(codec.type == "video")


def _one_line(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


@dataclass(frozen=True, kw_only=True)
class SinkStats:
    """What a :class:`VideoFileSink` has done so far (a snapshot).

    Attributes:
        frames: frames encoded and handed to the muxer.
        draw_ms_total: milliseconds spent drawing (and resizing) frames.
        encode_ms_total: milliseconds spent converting to YUV, encoding and muxing.
        last_encode_ms: the most recent frame's conversion + encode + mux time.
        queued: frames waiting in the queue for the writer thread.
        segments: files started so far (1 without segmenting).
    """

    frames: int = 0
    draw_ms_total: float = 0.0
    encode_ms_total: float = 0.0
    last_encode_ms: float = 0.0
    queued: int = 0
    segments: int = 0

    @property
    def mean_encode_ms(self) -> float:
        """Mean conversion + encode + mux milliseconds per frame (0 before the first)."""
        return self.encode_ms_total / self.frames if self.frames else 0.0

    @property
    def mean_draw_ms(self) -> float:
        """Mean drawing milliseconds per frame (0 before the first)."""
        return self.draw_ms_total / self.frames if self.frames else 0.0


class _Segment:
    """One output file: an FFmpeg container with one video stream."""

    def __init__(self, path: Path, fmt: _Format, codec: str, fps: float, size_wh: tuple[int, int]) -> None:
        import av

        self.path = path
        self.frames = 0
        w, h = size_wh
        try:
            self.container = av.open(str(path), "w", format=fmt.container, container_options=dict(fmt.options))
        except (OSError, ValueError, av.FFmpegError) as exc:
            raise ConfigError(f"{path}: cannot create video file ({_one_line(exc)})") from exc
        try:
            rate = Fraction(fps).limit_denominator(1001)
            options: dict[str, str] = {}
            if codec == "libx264":
                options.update(_X264_OPTIONS)
            stream = self.container.add_stream(codec, rate=rate, options=options)
            if not isinstance(stream, av.VideoStream):
                raise ValueError(f"{codec} is not a video encoder")
            stream.width, stream.height = w, h
            stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
            ctx = stream.codec_context
            ctx.thread_count = 1
            ctx.gop_size = max(1, round(KEYFRAME_INTERVAL_S * fps))
            if codec == "mpeg4":
                ctx.bit_rate = max(200_000, int(_BITS_PER_PIXEL * w * h * fps))
            elif codec == "mjpeg":
                ctx.bit_rate = max(1_000_000, int(4 * _BITS_PER_PIXEL * w * h * fps))
            self.container.start_encoding()  # open the encoder and the file now: errors here, not later
        except OSError as exc:  # av's file errors are OSErrors too
            self.abandon()
            raise ConfigError(f"{path}: cannot create video file ({_one_line(exc)})") from exc
        except (ValueError, av.FFmpegError) as exc:
            self.abandon()
            raise ConfigError(f"{path}: cannot write {codec} video at {w}x{h} ({_one_line(exc)})") from exc
        self.stream: av.VideoStream = stream
        self._yuv420 = stream.pix_fmt == "yuv420p"

    def write(self, image: npt.NDArray[np.uint8]) -> None:
        """Encode one BGR frame of the stream's size."""
        import av
        import cv2

        if self._yuv420:
            # OpenCV's BGR->I420 is faster than swscale's and matches what decoders expect.
            yuv = cast("npt.NDArray[np.uint8]", cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420))
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        else:
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")  # PyAV converts to the stream's format
        frame.pts = self.frames
        self.container.mux(self.stream.encode(frame))
        self.frames += 1

    def finish(self) -> None:
        """Flush the encoder and write the trailer (the file is complete after this)."""
        try:
            self.container.mux(self.stream.encode(None))
        finally:
            self.container.close()

    def abandon(self) -> None:
        """Close without finishing and delete the file."""
        try:
            self.container.close()
        except Exception:  # already failing: the first error is the one to report
            logger.debug("closing %s after an error failed", self.path, exc_info=True)
        if self.path.is_file():
            self.path.unlink()


class VideoFileSink:
    """Writes every frame, annotated, to a video file at the source's frame rate.

    Frames are drawn and encoded on a writer thread fed by a bounded queue: ``write``
    blocks when the queue is full, so no frame is ever dropped and memory stays
    bounded. Frames of another size (a folder of mixed images) are resized to the
    first frame's size; an odd width or height is padded by one pixel (H.264 and
    MJPEG need even sizes).

    Memory stays flat however long the run (see the module docstring for the
    muxers and measurements). Long runs can still be cut into files of a fixed
    length (``segment_frames``), each one finished and playable before the next one
    starts.

    Encoders measured on the example clip (640x360, 29.97 fps, 825 frames, one
    thread, 2-core AMD EPYC; CPU ms a frame including the BGR->YUV conversion,
    bitrate, PSNR against the source, memory the encoder added):

    =================================  ======  ==========  =========  =======
    encoder                            CPU ms  kbit/s      PSNR dB    MiB
    =================================  ======  ==========  =========  =======
    OpenCV mp4v (the old writer)       1.14    1,154       38.7       2.9
    mpeg4 at 1 Mbit/s                  0.98    830         39.7       12.1
    libx264 ultrafast                  1.44    1,120       39.9       13.8
    libx264 superfast                  2.66    690         40.4       23.5
    **libx264 superfast zerolatency**  2.13    690         40.9       14.4
    libx264 veryfast                   3.96    417         39.5       29.1
    =================================  ======  ==========  =========  =======

    Args:
        path: output file; the suffix picks container and codec (:data:`FORMAT_BY_SUFFIX`).
        fps: frame rate of the output (the source's).
        size_wh: frame size; the first frame's size when ``None``.
        annotate_frames: draw boxes, names, track ids and FPS (else the raw frames).
        queue_frames: frames buffered between the pipeline and the encoder.
        codec: an FFmpeg video encoder name (``libx264``, ``mpeg4``, ``mjpeg`` ...) to
            use instead of the suffix's.
        segment_frames: start a new file every this many frames, named
            ``<stem>-0000<suffix>``, ``<stem>-0001<suffix>``, ...; ``None``: one file, ``path``.

    Raises:
        ConfigError: unknown suffix or codec, bad fps or size, or the file cannot be created.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fps: float,
        size_wh: tuple[int, int] | None = None,
        annotate_frames: bool = True,
        queue_frames: int = 16,
        codec: str | None = None,
        segment_frames: int | None = None,
    ) -> None:
        self.path = Path(path)
        if segment_frames is not None and (
            isinstance(segment_frames, bool) or not isinstance(segment_frames, int) or segment_frames < 1
        ):
            raise ConfigError(f"segment_frames must be a positive integer or None, got {segment_frames!r}")
        suffix = self.path.suffix.lower()
        if suffix not in FORMAT_BY_SUFFIX:
            raise ConfigError(
                f"{self.path}: unsupported video suffix {suffix or '(none)'!r};"
                f" use one of {', '.join(sorted(FORMAT_BY_SUFFIX))}"
            )
        try:
            fps = float(fps)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"fps must be a positive number, got {fps!r}") from exc
        if not (math.isfinite(fps) and fps > 0):
            raise ConfigError(f"fps must be a positive number, got {fps}")
        self._format = FORMAT_BY_SUFFIX[suffix]
        if codec is not None:
            if not _has_encoder(codec):
                raise ConfigError(f"unknown video encoder {codec!r} (FFmpeg encoder names: libx264, mpeg4, mjpeg, ...)")
            self.codec = codec
        else:
            self.codec = self._format.codec or default_codec()
        if not self.path.parent.is_dir():
            raise ConfigError(f"{self.path}: folder {self.path.parent} does not exist")
        self.fps = float(fps)
        self.segment_frames = segment_frames
        self.annotate_frames = annotate_frames
        self.segments: list[Path] = []
        self._size_wh: tuple[int, int] | None = None  # frames are resized to this
        self._encoded_wh: tuple[int, int] | None = None  # ... then padded to this (even)
        self._segment: _Segment | None = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, queue_frames))
        self._error: BaseException | None = None
        self._error_reported = False  # raised once, by write() or close()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stats = SinkStats()
        if size_wh is not None:
            self._open(size_wh)
        else:
            self._check_writable(self._segment_path(0))

    # -- public ---------------------------------------------------------------
    @property
    def frames_written(self) -> int:
        """Frames encoded so far (all segments)."""
        return self._stats.frames

    def stats(self) -> SinkStats:
        """A snapshot of the sink's counters and timings; cheap and thread-safe."""
        with self._lock:
            return dataclasses.replace(self._stats, queued=self._queue.qsize())

    def write(self, result: FrameResult) -> None:
        """Queue one frame for drawing and encoding (blocks while the queue is full).

        Args:
            result: the frame (``result.frame.image``, BGR) and what to draw on it.

        Raises:
            ConfigError: the first frame has an unusable size, or the file cannot be created.
            FacesenseError: the sink is closed, or the writer thread failed earlier.
        """
        if self._closed:
            raise FacesenseError(f"{self.path}: video sink is closed")
        if self._thread is None:
            self._open(result.frame.size_wh)
        self._raise_pending()
        while True:
            try:
                self._queue.put(result, timeout=0.5)
                return
            except queue.Full:
                self._raise_pending()
                if self._thread is None or not self._thread.is_alive():
                    raise FacesenseError(f"{self.path}: video writer stopped") from self._error

    def close(self) -> None:
        """Encode what is queued, finish the file and join the writer thread. Idempotent.

        Raises:
            FacesenseError: encoding or finishing the file failed (and no ``write``
                has raised that error already).
        """
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            if self._thread.is_alive():
                self._queue.put(_STOP)
            self._thread.join()
        elif self.segments:  # nothing was ever written: leave no empty file behind
            self.segments[0].unlink(missing_ok=True)
            self.segments.clear()
        if self._segment is not None:  # the writer thread failed before finishing it
            segment, self._segment = self._segment, None
            try:
                segment.finish()
            except Exception as exc:  # noqa: BLE001 - report the writer's own error first
                self._error = self._error or exc
        self._raise_pending(again=False)  # write() may have reported it already
        if not self.segments:
            logger.warning("%s: no frames to write, no video file written", self.path)
        else:
            where = (
                self.path
                if self.segment_frames is None
                else f"{len(self.segments)} segment(s) {self.segments[0].name} ..."
            )
            logger.info("wrote %d frames to %s", self.frames_written, where)

    def __enter__(self) -> VideoFileSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------
    def _segment_path(self, number: int) -> Path:
        if self.segment_frames is None:
            return self.path
        return self.path.with_name(f"{self.path.stem}-{number:04d}{self.path.suffix}")

    def _check_writable(self, path: Path) -> None:
        # FFmpeg opens the file only when the first frame's size is known: try now, so an
        # unwritable path fails at once with one line instead of on the first frame.
        try:
            with path.open("wb"):
                pass
        except OSError as exc:
            raise ConfigError(f"{path}: cannot create video file ({_one_line(exc)})") from exc
        self.segments.append(path)

    def _open(self, size_wh: tuple[int, int]) -> None:
        w, h = int(size_wh[0]), int(size_wh[1])
        if w <= 0 or h <= 0:
            raise ConfigError(f"video size must be positive, got {w}x{h}")
        self._size_wh = (w, h)
        self._encoded_wh = (w + w % 2, h + h % 2)
        if self._encoded_wh != self._size_wh:
            logger.info(
                "%s: padding %dx%d frames to %dx%d (the codec needs even sizes)", self.path, w, h, *self._encoded_wh
            )
        self._segment = self._new_segment(0)
        self._thread = threading.Thread(target=self._run, name="facesense-video-writer", daemon=True)
        self._thread.start()

    def _new_segment(self, number: int) -> _Segment:
        if self._encoded_wh is None:  # pragma: no cover - set by _open
            raise FacesenseError(f"{self.path}: video size unknown")
        path = self._segment_path(number)
        segment = _Segment(path, self._format, self.codec, self.fps, self._encoded_wh)
        if path not in self.segments:
            self.segments.append(path)
        with self._lock:
            self._stats = dataclasses.replace(self._stats, segments=len(self.segments))
        logger.info("writing %s (%dx%d, %g fps, %s)", path, *self._encoded_wh, self.fps, self.codec)
        return segment

    def _prepare(self, result: FrameResult) -> npt.NDArray[np.uint8]:
        import cv2

        image: npt.NDArray[np.uint8] = annotate(result) if self.annotate_frames else result.frame.image
        if self._size_wh is not None and (image.shape[1], image.shape[0]) != self._size_wh:
            image = cast("npt.NDArray[np.uint8]", cv2.resize(image, self._size_wh, interpolation=cv2.INTER_AREA))
        if self._encoded_wh != self._size_wh and self._encoded_wh is not None and self._size_wh is not None:
            dw, dh = self._encoded_wh[0] - self._size_wh[0], self._encoded_wh[1] - self._size_wh[1]
            image = cast("npt.NDArray[np.uint8]", cv2.copyMakeBorder(image, 0, dh, 0, dw, cv2.BORDER_REPLICATE))
        return image

    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    break
                t0 = time.perf_counter()
                image = self._prepare(item)
                t1 = time.perf_counter()
                segment = self._segment
                if segment is None:  # pragma: no cover - set before the thread starts
                    raise FacesenseError("no open video segment")
                if self.segment_frames is not None and segment.frames >= self.segment_frames:
                    self._segment = None
                    segment.finish()  # finish this file before the next one starts
                    segment = self._segment = self._new_segment(len(self.segments))
                segment.write(image)
                t2 = time.perf_counter()
                with self._lock:
                    s = self._stats
                    self._stats = dataclasses.replace(
                        s,
                        frames=s.frames + 1,
                        draw_ms_total=s.draw_ms_total + (t1 - t0) * 1e3,
                        encode_ms_total=s.encode_ms_total + (t2 - t1) * 1e3,
                        last_encode_ms=(t2 - t1) * 1e3,
                    )
            if self._segment is not None:
                segment, self._segment = self._segment, None
                if segment.frames:
                    segment.finish()
                else:  # no frame at all: leave no empty file behind
                    segment.abandon()
                    self.segments.remove(segment.path)
        except BaseException as exc:  # noqa: BLE001 - handed over: raised by the next write / close
            self._error = exc
            # Keep draining so a blocked write() can notice and stop.
            while True:
                try:
                    if self._queue.get_nowait() is _STOP:
                        return
                except queue.Empty:
                    return

    def _raise_pending(self, *, again: bool = True) -> None:
        """Raise the writer thread's error (``again=False``: unless raised before)."""
        if self._error is not None and (again or not self._error_reported):
            self._error_reported = True
            raise FacesenseError(f"{self.path}: writing video failed: {_one_line(self._error)}") from self._error
