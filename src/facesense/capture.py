"""Video sources: cameras, video files, network streams and folders of images.

:func:`open_source` turns what a user typed (``0``, ``clip.mp4``, ``rtsp://...``,
``frames/``) into a :class:`VideoSource`. Opening is synchronous, so a source that
cannot be opened raises :class:`~facesense.errors.SourceError` at once, with a
one-line message. Iterating starts a capture thread that decodes frames into a
bounded buffer:

* **files and folders** never drop a frame: the capture thread waits while the
  buffer is full, so every frame reaches the consumer, in order;
* **live sources** (cameras, URLs) keep only the newest frame, so latency never
  builds up when the consumer is slower than the source. When a live source drops
  out, the thread reconnects with exponential backoff, logs each attempt and reports
  it as a :class:`SourceStatus`, and never gives up on its own.

Frames are :class:`facesense.types.Frame`: BGR ``uint8`` images with a dense 0-based
index, a timestamp (media seconds for files and folders, wall-clock epoch seconds
for live sources) and the source's id. :meth:`VideoSource.stats` tells how many
frames were decoded and dropped, how long decoding took, the rate and the lag
(cheap and thread-safe: a web page may poll it while the pipeline runs).

Images of a folder source are read with :func:`facesense.imageio.load_image`, which
refuses over-sized images (decompression bombs) before decoding them.

Example:
    >>> with open_source("clip.mp4") as source:
    ...     for frame in source:
    ...         ...
"""

from __future__ import annotations

import enum
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facesense.errors import ConfigError, ImageError, SourceError
from facesense.imageio import IMAGE_SUFFIXES, load_image
from facesense.types import Frame

if TYPE_CHECKING:
    import numpy.typing as npt

logger = logging.getLogger(__name__)

__all__ = [
    "CaptureConfig",
    "SourceKind",
    "SourceStats",
    "SourceStatus",
    "StatusKind",
    "VideoSource",
    "open_source",
    "parse_source",
]

STREAM_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt"})

# First bytes of common video containers: a file that starts like one of these but
# does not open is reported as damaged or truncated rather than "not a video".
_CONTAINER_MAGIC: tuple[tuple[int, bytes], ...] = (
    (4, b"ftyp"),  # MP4 / MOV / 3GP
    (4, b"moov"),
    (4, b"mdat"),
    (4, b"free"),
    (0, b"RIFF"),  # AVI
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM
    (0, b"FLV"),
    (0, b"OggS"),
    (0, b"\x00\x00\x01\xba"),  # MPEG-PS
    (0, b"\x47"),  # MPEG-TS sync byte
)

# A file that ends more than this far short of the frame count in its header is
# reported as truncated (headers of healthy files can be off by a frame or two).
TRUNCATION_TOLERANCE = 0.02
TRUNCATION_MIN_MISSING = 3

FPS_WINDOW_FRAMES = 30  # SourceStats.fps: the rate over the last this many frames


class SourceKind(str, enum.Enum):
    """What kind of source a :class:`VideoSource` reads."""

    CAMERA = "camera"
    FILE = "file"
    STREAM = "stream"
    FOLDER = "folder"

    @property
    def live(self) -> bool:
        """Live sources run on their own clock: newest frame wins, reconnect on loss."""
        return self in (SourceKind.CAMERA, SourceKind.STREAM)


class StatusKind(str, enum.Enum):
    """What happened to a live source."""

    DISCONNECTED = "disconnected"
    RECONNECTING = "reconnecting"
    RECONNECTED = "reconnected"


@dataclass(frozen=True, kw_only=True)
class SourceStatus:
    """A change in a live source's connection, reported between frames.

    Attributes:
        kind: disconnected, reconnecting (an attempt is about to be made) or reconnected.
        source_id: the source's id.
        time: wall-clock epoch seconds.
        message: a one-line human-readable description.
        attempt: reconnect attempt number (1-based; 0 for ``DISCONNECTED``).
        retry_in_s: for ``RECONNECTING``, the wait before this attempt.
        frame_index: index of the next frame the source will produce.
    """

    kind: StatusKind
    source_id: str
    time: float
    message: str
    attempt: int = 0
    retry_in_s: float = 0.0
    frame_index: int = 0


@dataclass(frozen=True, kw_only=True)
class SourceStats:
    """What a :class:`VideoSource` has done so far (a snapshot).

    Attributes:
        frames: frames decoded (and handed to the buffer).
        dropped: frames of a live source dropped because the consumer was slower
            (newest frame wins); always 0 for files and folders.
        decode_ms_total: milliseconds the capture thread spent reading and decoding
            those frames (for live sources this includes waiting for the source).
        last_decode_ms: decode time of the frame most recently handed to the
            consumer, so the consumer can read it right after receiving a frame.
        fps: frames decoded per second over the last :data:`FPS_WINDOW_FRAMES`
            frames (0 before two frames). For files this follows the consumer (the
            capture thread waits on a full buffer); for live sources it is the
            source's real rate.
        lag_ms: for the frame most recently handed to the consumer, milliseconds
            between the end of its decoding and the hand-over.
        buffered: decoded frames waiting for the consumer.
        reconnects: successful reconnections of a live source.
    """

    frames: int = 0
    dropped: int = 0
    decode_ms_total: float = 0.0
    last_decode_ms: float = 0.0
    fps: float = 0.0
    lag_ms: float = 0.0
    buffered: int = 0
    reconnects: int = 0

    @property
    def mean_decode_ms(self) -> float:
        """Mean decode milliseconds per frame (0 before the first)."""
        return self.decode_ms_total / self.frames if self.frames else 0.0


@dataclass(frozen=True, kw_only=True)
class CaptureConfig:
    """Settings of the capture stage.

    Attributes:
        loop: play files and folders again from the start when they end.
        buffer_frames: frames decoded ahead for files and folders (the capture thread
            waits when the buffer is full). Live sources always keep only the newest.
        open_timeout_s: give up opening a network stream after this long.
        read_timeout_s: a network stream that sends nothing for this long is lost.
        reconnect_initial_s: first wait before reconnecting a lost live source.
        reconnect_max_s: the wait doubles after each failed attempt up to this.
        folder_fps: frame rate reported for a folder of images.
        realtime: play files and folders at their own frame rate, as a camera would
            send them: the capture thread waits for each frame's time, and when the
            consumer is slower the newest frame wins (drops are counted), as for live
            sources. For simulating cameras (``bench capacity``, tests, demos).
    """

    loop: bool = False
    buffer_frames: int = 8
    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    folder_fps: float = 25.0
    realtime: bool = False

    def __post_init__(self) -> None:
        if self.buffer_frames < 1:
            raise ConfigError(f"buffer_frames must be >= 1, got {self.buffer_frames}")
        for name in ("open_timeout_s", "read_timeout_s", "reconnect_initial_s", "folder_fps"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a positive number, got {value}")
        if not self.reconnect_max_s >= self.reconnect_initial_s:
            raise ConfigError(
                f"reconnect_max_s must be >= reconnect_initial_s ({self.reconnect_initial_s}),"
                f" got {self.reconnect_max_s}"
            )


@dataclass(frozen=True)
class _SourceSpec:
    kind: SourceKind
    target: Any  # int camera index, URL string, or Path
    source_id: str


def parse_source(spec: str | int | os.PathLike[str]) -> _SourceSpec:
    """Classify a source string: camera index, stream URL, folder or file.

    Raises:
        SourceError: a path that does not exist, or a URL scheme facesense cannot read.
    """
    if isinstance(spec, bool):
        raise SourceError(f"not a video source: {spec!r}")
    if isinstance(spec, int):
        if spec < 0:
            raise SourceError(f"camera index must be >= 0, got {spec}")
        return _SourceSpec(SourceKind.CAMERA, spec, f"camera:{spec}")
    text = os.fspath(spec)
    if isinstance(text, bytes):  # pragma: no cover - os.PathLike[bytes]
        text = os.fsdecode(text)
    if text.strip().isdigit():
        index = int(text.strip())
        return _SourceSpec(SourceKind.CAMERA, index, f"camera:{index}")
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme == "file":
            text = text.split("://", 1)[1]
        elif scheme in STREAM_SCHEMES:
            return _SourceSpec(SourceKind.STREAM, text, text)
        else:
            raise SourceError(
                f"{text}: unsupported URL scheme {scheme!r} (expected one of {', '.join(sorted(STREAM_SCHEMES))})"
            )
    path = Path(text)
    if path.is_dir():
        return _SourceSpec(SourceKind.FOLDER, path, str(path))
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        # One image plays as a one-frame folder.
        return _SourceSpec(SourceKind.FOLDER, path, str(path))
    return _SourceSpec(SourceKind.FILE, path, str(path))


def _looks_like_video(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError:
        return False
    return any(head[off : off + len(magic)] == magic for off, magic in _CONTAINER_MAGIC)


def _sane(value: float, lo: float, hi: float) -> float | None:
    return float(value) if math.isfinite(value) and lo < value < hi else None


# --------------------------------------------------------------------------- readers
# A reader is the synchronous part: open, read one image, rewind, release. It runs on
# the capture thread after open() succeeded on the caller's thread.


class _CvReader:
    """cv2.VideoCapture over a file, a camera index or a URL."""

    def __init__(self, spec: _SourceSpec, config: CaptureConfig) -> None:
        self.spec = spec
        self.config = config
        self._cap: Any = None
        self.fps: float | None = None
        self.size_wh: tuple[int, int] | None = None
        self.frame_count: int | None = None

    def open(self) -> None:
        import cv2

        spec, cfg = self.spec, self.config
        started = time.monotonic()
        try:
            if spec.kind is SourceKind.STREAM:
                params = [
                    cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                    int(cfg.open_timeout_s * 1000),
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                    int(cfg.read_timeout_s * 1000),
                ]
                cap = cv2.VideoCapture(spec.target, cv2.CAP_FFMPEG, params)
            elif spec.kind is SourceKind.CAMERA:
                cap = cv2.VideoCapture(spec.target)
            else:
                cap = cv2.VideoCapture(str(spec.target), cv2.CAP_FFMPEG)
        except cv2.error as exc:
            raise SourceError(f"{spec.source_id}: cannot open ({_cv_message(exc)})") from exc
        if not cap.isOpened():
            cap.release()
            raise SourceError(self._open_failure(time.monotonic() - started))
        self._cap = cap
        self.fps = _sane(cap.get(cv2.CAP_PROP_FPS), 0.5, 1000.0)
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.size_wh = (w, h) if w > 0 and h > 0 else None
        if spec.kind is SourceKind.FILE:
            count = _sane(cap.get(cv2.CAP_PROP_FRAME_COUNT), 0, 1e9)
            self.frame_count = int(count) if count is not None else None

    def _open_failure(self, elapsed_s: float) -> str:
        spec = self.spec
        if spec.kind is SourceKind.CAMERA:
            return f"{spec.source_id}: cannot open camera {spec.target} (no such camera, or it is busy)"
        if spec.kind is SourceKind.STREAM:
            if elapsed_s >= 0.9 * self.config.open_timeout_s:
                return f"{spec.target}: no answer within {self.config.open_timeout_s:g} s"
            return f"{spec.target}: cannot open stream (refused, not found, or not a video stream)"
        path: Path = spec.target
        try:
            size = path.stat().st_size
        except OSError as exc:
            return f"{path}: cannot read ({exc.strerror or exc})"
        if size == 0:
            return f"{path}: empty file"
        if not os.access(path, os.R_OK):
            return f"{path}: permission denied"
        if _looks_like_video(path):
            return f"{path}: cannot open video (truncated or damaged file)"
        return f"{path}: not a video file (or an unsupported format)"

    def read(self) -> npt.NDArray[np.uint8] | None:
        import cv2

        try:
            ok, image = self._cap.read()
        except cv2.error as exc:
            logger.warning("%s: decode error: %s", self.spec.source_id, _cv_message(exc))
            return None
        if not ok or image is None:
            return None
        frame: npt.NDArray[np.uint8] = image  # cv2 returns BGR uint8
        return frame

    def position_s(self) -> float | None:
        import cv2

        msec = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        return msec / 1000.0 if math.isfinite(msec) and msec >= 0 else None

    def rewind(self) -> bool:
        """Back to the first frame (files only); reopens when seeking fails."""
        import cv2

        if self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
            return True
        self.release()
        try:
            self.open()
        except SourceError:
            return False
        return True

    def release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class _FolderReader:
    """Images in a folder (or one image file), in name order; bad files are skipped."""

    def __init__(self, spec: _SourceSpec, config: CaptureConfig) -> None:
        self.spec = spec
        self.config = config
        path: Path = spec.target
        if path.is_dir():
            try:
                self.paths = sorted(
                    (p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                    key=lambda p: p.name,
                )
            except OSError as exc:
                raise SourceError(f"{path}: cannot list folder ({exc.strerror or exc})") from exc
        else:
            self.paths = [path]
        self.fps: float | None = config.folder_fps
        self.size_wh: tuple[int, int] | None = None
        self.frame_count: int | None = len(self.paths)
        self.skipped = 0
        self._pos = 0
        self._first: npt.NDArray[np.uint8] | None = None

    def open(self) -> None:
        if not self.paths:
            raise SourceError(f"{self.spec.source_id}: no images in folder")
        # Decode up to the first good image now, so a folder of only bad files fails
        # here with one message rather than later on the capture thread.
        self._first = self._next_good()
        if self._first is None:
            raise SourceError(f"{self.spec.source_id}: none of its {len(self.paths)} images is readable")
        self.size_wh = (int(self._first.shape[1]), int(self._first.shape[0]))

    def _next_good(self) -> npt.NDArray[np.uint8] | None:
        while self._pos < len(self.paths):
            path = self.paths[self._pos]
            self._pos += 1
            try:
                return load_image(path)
            except ImageError as exc:
                self.skipped += 1
                logger.warning("skipping %s", exc)
        return None

    def read(self) -> npt.NDArray[np.uint8] | None:
        if self._first is not None:
            image, self._first = self._first, None
            return image
        return self._next_good()

    def position_s(self) -> float | None:
        return None

    def rewind(self) -> bool:
        self._pos = 0
        return True

    def release(self) -> None:
        self._first = None


def _cv_message(exc: Exception) -> str:
    msg = getattr(exc, "msg", None) or str(exc)
    return " ".join(str(msg).split())


# --------------------------------------------------------------------------- source

_END = object()


@dataclass(frozen=True)
class _Decoded:
    """A frame in the buffer, with when and how fast it was decoded."""

    frame: Frame
    decode_ms: float
    decoded_at: float  # time.perf_counter()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class VideoSource:
    """A camera, video file, network stream or image folder, read on its own thread.

    Use :func:`open_source` to build one from a string. The source is opened in the
    constructor's caller when :meth:`open` is called (or on ``with``); iterating
    starts the capture thread. Iterate once; :meth:`close` (or leaving the ``with``)
    stops and joins the thread and releases the device.

    Args:
        spec: a camera index, a path (video file, image, folder) or a stream URL.
        config: capture settings.
        on_status: called on the capture thread for every :class:`SourceStatus`
            (statuses also come through :meth:`items`).
        name: the source's id in frames and events (a camera's name); by default
            the path, URL or ``camera:N``.

    Attributes:
        kind: the :class:`SourceKind`.
        source_id: a name for the source (``name``, else path, URL or ``camera:N``).
    """

    def __init__(
        self,
        spec: str | int | os.PathLike[str],
        config: CaptureConfig | None = None,
        *,
        on_status: Callable[[SourceStatus], None] | None = None,
        name: str | None = None,
    ) -> None:
        self.config = config or CaptureConfig()
        parsed = parse_source(spec)
        if name is not None:
            if not name.strip():
                raise ConfigError("a source name must not be empty")
            parsed = replace(parsed, source_id=name)
        self.kind = parsed.kind
        self.source_id = parsed.source_id
        self._reader: _CvReader | _FolderReader
        if parsed.kind is SourceKind.FOLDER:
            self._reader = _FolderReader(parsed, self.config)
        else:
            self._reader = _CvReader(parsed, self.config)
        self._on_status = on_status
        self._opened = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._buffer: deque[Any] = deque()
        self._frames_in_buffer = 0
        self.frames_read = 0
        self.frames_dropped = 0
        self.reconnects = 0
        self._decode_ms_total = 0.0
        self._last_decode_ms = 0.0
        self._lag_ms = 0.0
        self._decoded_times: deque[float] = deque(maxlen=FPS_WINDOW_FRAMES)

    # -- properties ------------------------------------------------------------
    @property
    def live(self) -> bool:
        """True for cameras and streams."""
        return self.kind.live

    @property
    def fps(self) -> float | None:
        """Frames per second the source reports, or ``None`` when it does not say."""
        return self._reader.fps

    @property
    def size_wh(self) -> tuple[int, int] | None:
        """``(width, height)`` of the frames (of the first image, for a folder)."""
        return self._reader.size_wh

    @property
    def frame_count(self) -> int | None:
        """Number of frames in a file or folder (one pass), ``None`` for live sources."""
        return self._reader.frame_count

    @property
    def skipped_files(self) -> int:
        """Images of a folder source that could not be read and were skipped."""
        return getattr(self._reader, "skipped", 0)

    def stats(self) -> SourceStats:
        """A snapshot of the source's counters and timings; cheap and thread-safe."""
        with self._cond:
            times = self._decoded_times
            span = times[-1] - times[0] if len(times) >= 2 else 0.0
            return SourceStats(
                frames=self.frames_read,
                dropped=self.frames_dropped,
                decode_ms_total=self._decode_ms_total,
                last_decode_ms=self._last_decode_ms,
                fps=(len(times) - 1) / span if span > 0 else 0.0,
                lag_ms=self._lag_ms,
                buffered=self._frames_in_buffer,
                reconnects=self.reconnects,
            )

    # -- lifecycle ---------------------------------------------------------------
    def open(self) -> VideoSource:
        """Open the source now.

        Raises:
            SourceError: the source cannot be opened (one-line message).
        """
        if self._closed:
            raise SourceError(f"{self.source_id}: source is closed")
        if not self._opened:
            self._reader.open()
            self._opened = True
            logger.info(
                "opened %s %s (%s, %s fps%s)",
                self.kind.value,
                self.source_id,
                "x".join(map(str, self.size_wh)) if self.size_wh else "size unknown",
                f"{self.fps:g}" if self.fps else "?",
                f", {self.frame_count} frames" if self.frame_count is not None else "",
            )
        return self

    def close(self) -> None:
        """Stop the capture thread, wait for it and release the device. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        thread = self._thread
        if thread is not None:
            # A blocking read returns within the read timeout.
            thread.join(timeout=self.config.read_timeout_s + 5.0)
            if thread.is_alive():  # pragma: no cover - a driver that ignores timeouts
                logger.warning("%s: capture thread did not stop in time", self.source_id)
        else:
            self._reader.release()
        with self._cond:
            self._buffer.clear()
            self._frames_in_buffer = 0

    def __enter__(self) -> VideoSource:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - safety net
        try:
            if not self._closed:
                self.close()
        except Exception:  # noqa: BLE001 - never raise from __del__
            pass

    # -- consuming ---------------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        """Frames in order (files, folders) or newest-first-wins (live sources)."""
        for item in self.items():
            if isinstance(item, Frame):
                yield item

    def items(self, *, poll_s: float | None = None) -> Iterator[Frame | SourceStatus | None]:
        """Frames and :class:`SourceStatus` reports, in the order they happened.

        Args:
            poll_s: when set, yield ``None`` after this many seconds without news, so
                a consumer can refresh a status line while a live source is down.

        Raises:
            SourceError: the source could not be opened, or a file turned out to be
                truncated (raised after its last readable frame).
        """
        self.open()
        if self._thread is not None:
            raise SourceError(f"{self.source_id}: a source can be iterated only once")
        self._thread = threading.Thread(target=self._run, name=f"facesense-capture[{self.source_id}]", daemon=True)
        self._thread.start()
        try:
            while True:
                with self._cond:
                    deadline = time.monotonic() + poll_s if poll_s else math.inf
                    while not self._buffer and not self._closed:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._cond.wait(timeout=min(remaining, 0.5))
                    if self._closed:
                        return
                    item: Any = None
                    if self._buffer:
                        item = self._buffer.popleft()
                        if isinstance(item, _Decoded):
                            self._frames_in_buffer -= 1
                            self._last_decode_ms = item.decode_ms
                            self._lag_ms = (time.perf_counter() - item.decoded_at) * 1e3
                            item = item.frame
                        self._cond.notify_all()
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
        finally:
            self.close()

    # -- capture thread ----------------------------------------------------------
    @property
    def _newest_wins(self) -> bool:
        """Stale frames are dropped (live sources, and files played in real time)."""
        return self.live or self.config.realtime

    def _push(self, item: Any) -> bool:
        """Hand an item to the consumer; False when the source is stopping."""
        with self._cond:
            if isinstance(item, _Decoded):
                if self._newest_wins:
                    if self._frames_in_buffer:
                        # Newest wins: drop stale frames, keep status reports.
                        kept = deque(x for x in self._buffer if not isinstance(x, _Decoded))
                        self.frames_dropped += self._frames_in_buffer
                        self._buffer = kept
                        self._frames_in_buffer = 0
                else:
                    while self._frames_in_buffer >= self.config.buffer_frames:
                        if self._stop.is_set():
                            return False
                        self._cond.wait(timeout=0.1)
                self._frames_in_buffer += 1
                self.frames_read += 1
                self._decode_ms_total += item.decode_ms
                self._decoded_times.append(item.decoded_at)
            if self._stop.is_set():
                return False
            self._buffer.append(item)
            self._cond.notify_all()
        return True

    def _status(self, kind: StatusKind, message: str, **kw: Any) -> None:
        status = SourceStatus(kind=kind, source_id=self.source_id, time=time.time(), message=message, **kw)
        level = logging.INFO if kind is StatusKind.RECONNECTED else logging.WARNING
        logger.log(level, "%s", message)
        if self._on_status is not None:
            try:
                self._on_status(status)
            except Exception:  # a broken callback must not kill the capture thread
                logger.exception("status callback failed")
        self._push(status)

    def _run(self) -> None:
        reader = self._reader
        index = 0
        offset_s = 0.0  # timestamp offset of the current pass (looping)
        last_ts = 0.0
        pass_frames = 0
        paced = self.config.realtime and not self.live
        clock_start = time.perf_counter()
        try:
            while not self._stop.is_set():
                started = time.perf_counter()
                image = reader.read()
                if image is None:
                    if self._stop.is_set():
                        break
                    if self.live:
                        if not self._reconnect(index):
                            break
                        continue
                    self._check_truncated(pass_frames)
                    if self.config.loop and pass_frames > 0 and reader.rewind():
                        step = 1.0 / self.fps if self.fps else 0.0
                        offset_s = last_ts + step
                        pass_frames = 0
                        logger.debug("%s: looping at frame %d", self.source_id, index)
                        continue
                    break
                if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                    from facesense.imageio import to_bgr8

                    image = to_bgr8(image)
                if self.live:
                    ts = time.time()
                else:
                    pos = reader.position_s()
                    if pos is None or (pos == 0.0 and pass_frames > 0):
                        pos = pass_frames / self.fps if self.fps else float(pass_frames)
                    ts = offset_s + pos
                last_ts = ts
                decode_ms = (time.perf_counter() - started) * 1e3
                if paced and self._stop.wait(max(0.0, clock_start + ts - time.perf_counter())):
                    break
                frame = Frame(image=image, index=index, timestamp=ts, source_id=self.source_id)
                done = time.perf_counter()
                if not self._push(_Decoded(frame, decode_ms, done)):
                    break
                index += 1
                pass_frames += 1
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            with self._cond:
                self._buffer.append(_Failure(exc))
                self._cond.notify_all()
        finally:
            reader.release()
            with self._cond:
                self._buffer.append(_END)
                self._cond.notify_all()

    def _check_truncated(self, pass_frames: int) -> None:
        expected = self._reader.frame_count
        if self.kind is not SourceKind.FILE or not expected:
            return
        missing = expected - pass_frames
        if missing >= max(TRUNCATION_MIN_MISSING, TRUNCATION_TOLERANCE * expected):
            raise SourceError(
                f"{self.source_id}: video ends early: decoded {pass_frames} of {expected} frames"
                " (truncated or damaged file)"
            )

    def _reconnect(self, next_index: int) -> bool:
        """Reopen a lost live source with backoff; False only when stopping."""
        cfg = self.config
        self._reader.release()
        self._status(
            StatusKind.DISCONNECTED,
            f"{self.source_id}: lost the source, reconnecting",
            frame_index=next_index,
        )
        delay = cfg.reconnect_initial_s
        attempt = 0
        while not self._stop.is_set():
            attempt += 1
            self._status(
                StatusKind.RECONNECTING,
                f"{self.source_id}: reconnect attempt {attempt} in {delay:.1f} s",
                attempt=attempt,
                retry_in_s=delay,
                frame_index=next_index,
            )
            if self._stop.wait(delay):
                return False
            try:
                self._reader.open()
            except SourceError as exc:
                logger.info("reconnect attempt %d failed: %s", attempt, exc)
                delay = min(delay * 2.0, cfg.reconnect_max_s)
                continue
            self.reconnects += 1
            self._status(
                StatusKind.RECONNECTED,
                f"{self.source_id}: reconnected after {attempt} attempt{'s' if attempt > 1 else ''}",
                attempt=attempt,
                frame_index=next_index,
            )
            return True
        return False


def open_source(
    spec: str | int | os.PathLike[str],
    config: CaptureConfig | None = None,
    *,
    on_status: Callable[[SourceStatus], None] | None = None,
    name: str | None = None,
) -> VideoSource:
    """Build and open a :class:`VideoSource`.

    Args:
        spec: ``0`` (camera index), a video file, an image or folder of images, or an
            ``rtsp://`` / ``http(s)://`` URL (MJPEG over HTTP works).
        config: capture settings.
        on_status: callback for live-source connection changes.
        name: the source's id in frames and events (default: the path or URL).

    Raises:
        SourceError: the source does not exist or cannot be opened.
    """
    return VideoSource(spec, config, on_status=on_status, name=name).open()
