"""The real-time loop: capture -> detect -> track -> embed -> match -> sinks.

:class:`Pipeline` is the library API behind ``facesense watch``: iterate it and get
one :class:`FrameResult` per frame (never a growing list), with the faces, their
track ids and voted names, the events of that frame and per-stage timings.

Threads:

* the **capture** thread decodes frames (:class:`facesense.capture.VideoSource`);
* the **consumer** (the thread iterating the pipeline) runs every stateful stage:
  detection, tracking, embedding, matching and the sinks' ``write``;
* sinks that encode (the video writer) do so on their own thread behind a bounded
  queue.

Detection runs every ``every`` frames; the tracker's constant-velocity prediction
places the faces on the frames in between. A track is embedded when it is
confirmed, then every ``reembed_every`` frames or when its face gets clearly better
(see :mod:`facesense.track`), and its name is a quality-weighted vote, so names do
not flicker.

Example:
    >>> from facesense.capture import open_source
    >>> pipeline = Pipeline(open_source("clip.mp4"), detector=MTCNNDetector())
    >>> for result in pipeline:
    ...     print(result.frame.index, result.faces.track_ids, result.timings.detect_ms)
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from facesense.capture import SourceStatus, VideoSource
from facesense.errors import ConfigError
from facesense.memory import release_free_memory
from facesense.track import SceneCutDetector, TrackEvent, Tracker, TrackerConfig, face_quality
from facesense.types import Faces, Frame

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.detect.base import Detector
    from facesense.embed.base import Embedder
    from facesense.sinks.base import Sink

logger = logging.getLogger(__name__)

__all__ = [
    "EmbeddingMatcher",
    "FrameResult",
    "MatchLike",
    "Pipeline",
    "PipelineConfig",
    "StageTimings",
    "WatchEvent",
    "WatchEventType",
    "default_tracker",
    "fps_or_default",
]

FPS_WINDOW_FRAMES = 30


class MatchLike(Protocol):
    """What a matcher returns for ``M`` embeddings (``facesense.match.MatchResult``)."""

    names: Sequence[str | None]
    distances: npt.NDArray[np.float32]
    confidences: npt.NDArray[np.float32]


@runtime_checkable
class EmbeddingMatcher(Protocol):
    """Names embeddings, or says unknown: any fitted :class:`facesense.match.Matcher`
    (for a gallery, ``facesense.recognize.Recognizer(gallery).matcher``)."""

    def match(self, embeddings: npt.NDArray[np.float32]) -> MatchLike:
        """Name each row of ``(M, D)`` L2-normalised embeddings (``None`` = unknown)."""
        ...


class WatchEventType(str, enum.Enum):
    """Kinds of :class:`WatchEvent`."""

    APPEARED = "appeared"
    RECOGNIZED = "recognized"
    LEFT = "left"
    STATUS = "status"


@dataclass(frozen=True, kw_only=True)
class WatchEvent:
    """Something that happened, with the time and frame it happened at.

    Attributes:
        type: appeared / recognized / left (a track) or status (a live source).
        time: the frame's timestamp (media seconds for files and folders, epoch
            seconds for live sources); wall-clock epoch seconds for status events.
        frame: the frame index (for status events: the next frame's index).
        track_id: the track, for track events.
        name: the track's voted name (``None`` = unknown).
        confidence: the vote's confidence in [0, 1].
        xyxy: the track's box in pixels.
        status: for status events, ``disconnected`` / ``reconnecting`` / ``reconnected``.
        message: for status events, a one-line description.
        source: the source id.
    """

    type: WatchEventType
    time: float
    frame: int
    track_id: int | None = None
    name: str | None = None
    confidence: float | None = None
    xyxy: tuple[float, float, float, float] | None = None
    status: str | None = None
    message: str | None = None
    source: str | None = None

    @classmethod
    def from_track(cls, event: TrackEvent, frame: Frame) -> WatchEvent:
        """A track event stamped with the frame it happened in."""
        return cls(
            type=WatchEventType(event.type.value),
            time=frame.timestamp,
            frame=frame.index,
            track_id=event.track_id,
            name=event.name,
            confidence=event.confidence,
            xyxy=tuple(float(v) for v in event.xyxy),  # type: ignore[arg-type]
            source=frame.source_id,
        )

    @classmethod
    def from_status(cls, status: SourceStatus) -> WatchEvent:
        """A live source's connection change."""
        return cls(
            type=WatchEventType.STATUS,
            time=status.time,
            frame=status.frame_index,
            status=status.kind.value,
            message=status.message,
            source=status.source_id,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"time", "frame", "type", "track_id", "name",
        "confidence", "box"}`` for track events, ``{"time", "frame", "type",
        "status", "message", "source"}`` for status events."""
        if self.type is WatchEventType.STATUS:
            return {
                "time": round(self.time, 3),
                "frame": self.frame,
                "type": self.type.value,
                "status": self.status,
                "message": self.message,
                "source": self.source,
            }
        return {
            "time": round(self.time, 3),
            "frame": self.frame,
            "type": self.type.value,
            "track_id": self.track_id,
            "name": self.name,
            "confidence": None if self.confidence is None else round(float(self.confidence), 4),
            "box": None if self.xyxy is None else [round(v, 1) for v in self.xyxy],
        }


@dataclass(frozen=True, kw_only=True)
class StageTimings:
    """Milliseconds spent on one frame, per stage (0 for stages that did not run).

    Attributes:
        wait_ms: waiting for the capture thread to hand over the frame.
        cut_ms: scene-cut check.
        detect_ms: face detection (0 on frames between detections).
        quality_ms: face quality (sharpness) of new detections.
        track_ms: tracking (matching, prediction, voting).
        embed_ms: crops and embeddings of the tracks that needed one.
        match_ms: naming the embeddings.
        sinks_ms: the sinks' ``write`` calls (encoding runs on its own thread).
        total_ms: from handing over the frame to the end of the sinks.
    """

    wait_ms: float = 0.0
    cut_ms: float = 0.0
    detect_ms: float = 0.0
    quality_ms: float = 0.0
    track_ms: float = 0.0
    embed_ms: float = 0.0
    match_ms: float = 0.0
    sinks_ms: float = 0.0
    total_ms: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """The timings as a plain dict."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True, kw_only=True, eq=False)
class FrameResult:
    """Everything the pipeline knows about one frame.

    Attributes:
        frame: the frame (BGR image, index, timestamp, source id).
        faces: the faces with ``track_ids``, ``names`` (``None`` = unknown) and
            ``distances`` (mean matcher distance of the samples behind the voted name;
            NaN before a track has any) filled; boxes are detections on detection
            frames and predictions between them.
        confidences: ``(N,)`` float32 vote confidence of each face's name, in [0, 1].
        quality: ``(N,)`` float32 :func:`facesense.track.face_quality` of detections,
            NaN on frames without detection.
        detected: whether detection ran on this frame.
        events: track events of this frame (appeared / recognized / left).
        timings: per-stage milliseconds.
        fps: frames per second the pipeline processed over the last ~30 frames.
    """

    frame: Frame
    faces: Faces
    confidences: npt.NDArray[np.float32]
    quality: npt.NDArray[np.float32]
    detected: bool
    events: tuple[WatchEvent, ...] = ()
    timings: StageTimings = field(default_factory=StageTimings)
    fps: float = 0.0


@dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    """Settings of the loop.

    Attributes:
        every: run detection on every ``every``-th frame (1 = every frame); the
            tracker predicts the boxes in between.
        max_frames: stop after this many frames (``None``: until the source ends).
        sharpness: include sharpness in face quality (a Laplacian per new face).
        scene_cuts: watch for cuts to another shot; on a cut, detection runs at once
            and no track continues across it.
        poll_s: how often the loop wakes up while a live source is down (to notice
            :meth:`Pipeline.stop`).
        trim_every: every this many frames, hand the allocator's free pages back to the
            OS (:func:`facesense.memory.release_free_memory`, ~2 ms; ~25 MiB less
            resident memory in long runs); ``0`` never.
    """

    every: int = 1
    max_frames: int | None = None
    sharpness: bool = True
    scene_cuts: bool = True
    poll_s: float = 0.5
    trim_every: int = 1000

    def __post_init__(self) -> None:
        if not isinstance(self.every, int) or self.every < 1:
            raise ConfigError(f"every must be a positive integer, got {self.every!r}")
        if self.max_frames is not None and (not isinstance(self.max_frames, int) or self.max_frames < 1):
            raise ConfigError(f"max_frames must be a positive integer or None, got {self.max_frames!r}")
        if not self.poll_s > 0:
            raise ConfigError(f"poll_s must be > 0, got {self.poll_s}")
        if not isinstance(self.trim_every, int) or self.trim_every < 0:
            raise ConfigError(f"trim_every must be an integer >= 0, got {self.trim_every!r}")


def default_tracker(every: int = 1) -> Tracker:
    """A tracker whose max age and re-embedding period suit detection every ``every`` frames."""
    return Tracker(TrackerConfig(max_age=max(30, 3 * every), reembed_every=max(15, every)))


class Pipeline:
    """Capture -> detect -> track -> embed -> match -> sinks, one frame at a time.

    Iterate once; the source is closed and the sinks are closed when the iteration
    ends, breaks or fails.

    Args:
        source: a :class:`~facesense.capture.VideoSource` (its connection changes come
            out as status events), or any iterable of :class:`~facesense.types.Frame`.
        detector: anything with ``detect(image) -> Faces``.
        embedder: anything with ``embed(image, faces) -> Faces``; needed with a matcher.
        matcher: anything with ``match(embeddings) -> names/distances/confidences``
            (a fitted :class:`facesense.match.Matcher`, e.g. ``Recognizer(gallery).matcher``);
            ``None``: every face stays unknown and nothing is embedded.
        tracker: a :class:`~facesense.track.Tracker`; one suited to ``every`` by default.
        sinks: where results go (video file, events, snapshots, window).
        config: loop settings.
        on_event: called with every event, including those that happen between frames
            (source status changes, tracks leaving when the stream ends).

    Raises:
        ConfigError: a matcher without an embedder, or bad settings.
    """

    def __init__(
        self,
        source: VideoSource | Iterable[Frame],
        *,
        detector: Detector,
        embedder: Embedder | None = None,
        matcher: EmbeddingMatcher | None = None,
        tracker: Tracker | None = None,
        sinks: Sequence[Sink] = (),
        config: PipelineConfig | None = None,
        on_event: Callable[[WatchEvent], None] | None = None,
    ) -> None:
        self.config = config or PipelineConfig()
        if matcher is not None and embedder is None:
            raise ConfigError("a matcher needs an embedder")
        self.source = source
        self.detector = detector
        self.embedder = embedder
        self.matcher = matcher
        self.tracker = tracker or default_tracker(self.config.every)
        if self.tracker.config.max_age < self.config.every:
            raise ConfigError(
                f"tracker max_age ({self.tracker.config.max_age}) must be >= every ({self.config.every}),"
                " or tracks die between detections"
            )
        self.sinks = tuple(sinks)
        self.on_event = on_event
        self._stop = threading.Event()
        self._started = False
        self._since_detect = 0
        self._cuts = SceneCutDetector() if self.config.scene_cuts else None
        self.frames_processed = 0

    def stop(self) -> None:
        """Ask the loop to end after the current frame (safe from any thread)."""
        self._stop.set()

    # -- the loop ------------------------------------------------------------------
    def __iter__(self) -> Iterator[FrameResult]:
        if self._started:
            raise RuntimeError("a Pipeline can be iterated only once")
        self._started = True
        return self._loop()

    def run(self) -> int:
        """Run to the end without looking at the results; returns the frames processed."""
        for _ in self:
            pass
        return self.frames_processed

    def _items(self) -> Iterator[Frame | SourceStatus | None]:
        if isinstance(self.source, VideoSource):
            yield from self.source.items(poll_s=self.config.poll_s)
        else:
            yield from self.source

    def _loop(self) -> Iterator[FrameResult]:
        cfg = self.config
        stamps: deque[float] = deque(maxlen=FPS_WINDOW_FRAMES)
        last_frame: Frame | None = None
        items = self._items()
        failed = False
        try:
            waited = time.perf_counter()
            for item in items:
                if self._stop.is_set():
                    break
                if item is None:
                    continue
                if isinstance(item, SourceStatus):
                    self._between([WatchEvent.from_status(item)])
                    waited = time.perf_counter()
                    continue
                start = time.perf_counter()
                wait_ms = (start - waited) * 1000.0
                result = self._process(item, wait_ms=wait_ms, start=start, stamps=stamps)
                last_frame = item
                t = time.perf_counter()
                for sink in self.sinks:
                    sink.write(item, result)
                end = time.perf_counter()
                result = replace(
                    result,
                    timings=replace(result.timings, sinks_ms=(end - t) * 1000.0, total_ms=(end - start) * 1000.0),
                )
                self.frames_processed += 1
                yield result
                if cfg.trim_every and self.frames_processed % cfg.trim_every == 0:
                    release_free_memory()
                waited = time.perf_counter()
                if cfg.max_frames is not None and self.frames_processed >= cfg.max_frames:
                    break
                if any(getattr(sink, "wants_stop", False) for sink in self.sinks):
                    logger.info("stopped by a sink (window closed)")
                    break
        except GeneratorExit:
            raise
        except BaseException:
            failed = True
            raise
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
            if isinstance(self.source, VideoSource):
                self.source.close()
            self._finish(last_frame, suppress=failed)

    def _process(self, frame: Frame, *, wait_ms: float, start: float, stamps: deque[float]) -> FrameResult:
        cfg = self.config
        tracker = self.tracker
        image = frame.image
        cut = self._cuts.update(image) if self._cuts is not None else False
        cut_ms = (time.perf_counter() - start) * 1000.0
        detect = cut or self.frames_processed == 0 or self._since_detect + 1 >= cfg.every
        self._since_detect = 0 if detect else self._since_detect + 1
        detect_ms = quality_ms = embed_ms = match_ms = 0.0
        if detect:
            t0 = time.perf_counter()
            faces = self.detector.detect(image)
            t1 = time.perf_counter()
            detect_ms = (t1 - t0) * 1000.0
            quality = face_quality(image if cfg.sharpness else None, faces)
            t2 = time.perf_counter()
            quality_ms = (t2 - t1) * 1000.0
            tracked = tracker.update(faces, quality=quality, new_scene=cut)
            track_ms = (time.perf_counter() - t2) * 1000.0
            if self.matcher is not None and self.embedder is not None:
                mask = tracker.embed_mask(tracked)
                if mask.any():
                    t3 = time.perf_counter()
                    sub = self.embedder.embed(image, tracked[mask])
                    t4 = time.perf_counter()
                    embed_ms = (t4 - t3) * 1000.0
                    matched = self.matcher.match(sub.embeddings)  # type: ignore[arg-type]
                    t5 = time.perf_counter()
                    match_ms = (t5 - t4) * 1000.0
                    names = list(matched.names)
                    # A matcher's confidence is about its candidate; for an unknown face the
                    # vote wants the confidence that it is nobody enrolled.
                    conf = np.asarray(matched.confidences, np.float32).reshape(-1)
                    unknown = np.array([n is None for n in names], bool)
                    conf = np.where(unknown, 1.0 - conf, conf)
                    new_ids = tracker.vote(sub.track_ids, names, conf, matched.distances, sub.embeddings)
                    if not np.array_equal(new_ids, sub.track_ids):  # a track split
                        ids = tracked.track_ids.copy()  # type: ignore[union-attr]
                        ids[mask] = new_ids
                        tracked = tracked.replace(track_ids=ids)
                    tracked = tracker.label(tracked)
                    track_ms += (time.perf_counter() - t5) * 1000.0
        else:
            t1 = time.perf_counter()
            tracked = tracker.predict()
            quality = np.full(len(tracked), np.nan, np.float32)
            track_ms = (time.perf_counter() - t1) * 1000.0
        events = tuple(WatchEvent.from_track(e, frame) for e in tracker.drain_events())
        if self.on_event is not None:
            for event in events:
                self.on_event(event)
        ids = tracked.track_ids if tracked.track_ids is not None else np.zeros(len(tracked), np.int64)
        now = time.perf_counter()
        stamps.append(now)
        fps = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else 0.0
        return FrameResult(
            frame=frame,
            faces=tracked,
            confidences=tracker.confidences(ids),
            quality=np.asarray(quality, np.float32),
            detected=detect,
            events=events,
            timings=StageTimings(
                wait_ms=wait_ms,
                cut_ms=cut_ms,
                detect_ms=detect_ms,
                quality_ms=quality_ms,
                track_ms=track_ms,
                embed_ms=embed_ms,
                match_ms=match_ms,
                total_ms=(now - start) * 1000.0,
            ),
            fps=fps,
        )

    def _between(self, events: Sequence[WatchEvent]) -> None:
        """Deliver events that happen outside any frame."""
        if not events:
            return
        if self.on_event is not None:
            for event in events:
                self.on_event(event)
        for sink in self.sinks:
            notify = getattr(sink, "notify", None)
            if notify is not None:
                notify(events)

    def _finish(self, last_frame: Frame | None, *, suppress: bool) -> None:
        """End of stream: the remaining tracks leave, then every sink is closed."""
        errors: list[BaseException] = []
        try:
            self.tracker.finish()
            if last_frame is not None:
                self._between([WatchEvent.from_track(e, last_frame) for e in self.tracker.drain_events()])
        except Exception as exc:  # noqa: BLE001 - sinks must still be closed
            errors.append(exc)
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001 - close the others first
                errors.append(exc)
        if errors and not suppress:
            raise errors[0]
        for exc in errors if suppress else errors[1:]:
            logger.error("while closing: %s", exc)


def fps_or_default(value: float | None, default: float = 25.0) -> float:
    """A usable frame rate: ``value`` when it is a positive finite number, else ``default``."""
    return float(value) if value is not None and math.isfinite(value) and value > 0 else default
