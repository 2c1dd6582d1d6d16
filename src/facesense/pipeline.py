"""The real-time loop: capture -> detect -> track -> identify -> sinks.

:class:`Pipeline` is the library API behind ``facesense watch``: iterate it and get
one :class:`~facesense.types.FrameResult` per frame (never a growing list), with the
faces (track ids, quality, voted names and identity states), the events of that frame
and per-stage timings.

Per frame the consumer runs one stage after the other (:meth:`Pipeline._process`):

1. **scene cut** (:class:`~facesense.track.SceneCutDetector`): a cut forces detection
   and ends every track;
2. **detect** every ``every`` frames (a :class:`~facesense.detect.base.Detector`);
3. **quality** of the detections (:func:`facesense.quality.face_quality`);
4. **track**: :meth:`Tracker.update <facesense.track.Tracker.update>` on detection
   frames, :meth:`Tracker.predict <facesense.track.Tracker.predict>` between them;
5. **identify** (:class:`facesense.identity.IdentityStage`): embeds the few faces that
   need it, votes per track, names every face;
6. **events**: the tracker's (appeared / left) and the identity stage's (recognized /
   unknown), stamped with the frame;
7. **sinks**: ``sink.write(result)``.

Threads:

* the **capture** thread decodes frames (:class:`facesense.capture.VideoSource`);
* the **consumer** (the thread iterating the pipeline) runs every stateful stage;
* sinks that encode (the video writer) do so on their own thread behind a bounded
  queue.

Example:
    >>> from facesense.capture import open_source
    >>> pipeline = Pipeline(open_source("clip.mp4"), detector=make_detector("mtcnn"))
    >>> for result in pipeline:
    ...     print(result.frame.index, result.faces.track_ids, result.timings.detect_ms)
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from facesense.capture import SourceStatus, VideoSource
from facesense.errors import ConfigError
from facesense.identity import EmbeddingMatcher, IdentityConfig, IdentityStage
from facesense.memory import release_free_memory
from facesense.quality import face_quality
from facesense.sinks.base import EventSink, Sink, StopSink
from facesense.track import SceneCutDetector, Tracker, TrackerConfig
from facesense.types import Event, EventType, Frame, FrameResult, StageTimings

if TYPE_CHECKING:
    from facesense.detect.base import Detector
    from facesense.embed.base import Embedder

logger = logging.getLogger(__name__)

__all__ = [
    "Pipeline",
    "PipelineConfig",
    "default_identity_config",
    "default_tracker",
    "fps_or_default",
    "status_event",
]

FPS_WINDOW_FRAMES = 30


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
        stills: the frames are unrelated photos (a folder of pictures), not a video:
            every frame is its own scene, detection runs on each, and a face is
            confirmed, identified and reported on the frame it is in (the default
            tracker and identity settings then confirm after one detection and settle
            "unknown" after one sample). Needs ``every=1``.
    """

    every: int = 1
    max_frames: int | None = None
    sharpness: bool = True
    scene_cuts: bool = True
    poll_s: float = 0.5
    trim_every: int = 1000
    stills: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.every, int) or self.every < 1:
            raise ConfigError(f"every must be a positive integer, got {self.every!r}")
        if self.max_frames is not None and (not isinstance(self.max_frames, int) or self.max_frames < 1):
            raise ConfigError(f"max_frames must be a positive integer or None, got {self.max_frames!r}")
        if not self.poll_s > 0:
            raise ConfigError(f"poll_s must be > 0, got {self.poll_s}")
        if not isinstance(self.trim_every, int) or self.trim_every < 0:
            raise ConfigError(f"trim_every must be an integer >= 0, got {self.trim_every!r}")
        if self.stills and self.every != 1:
            raise ConfigError(f"stills: every photo is its own scene, so every must be 1, got {self.every}")


def default_tracker(every: int = 1, *, stills: bool = False) -> Tracker:
    """A tracker whose max age suits detection every ``every`` frames; for ``stills``
    (unrelated photos) one that confirms a face on its first detection."""
    return Tracker(TrackerConfig(max_age=max(30, 3 * every), min_hits=1 if stills else 2))


def default_identity_config(every: int = 1, *, stills: bool = False) -> IdentityConfig:
    """Identity settings whose re-embedding period suits detection every ``every`` frames;
    for ``stills`` one photo's face is one sample, so "unknown" settles after one."""
    if stills:
        return IdentityConfig(reembed_every=max(15, every), unknown_after_samples=1)
    return IdentityConfig(reembed_every=max(15, every))


def status_event(status: SourceStatus) -> Event:
    """A live source's connection change as an :class:`~facesense.types.Event`."""
    return Event(
        type=EventType.STATUS,
        time=status.time,
        frame=status.frame_index,
        source=status.source_id,
        status=status.kind.value,
        message=status.message,
    )


class _Laps:
    """Milliseconds between successive :meth:`lap` calls."""

    def __init__(self, start: float) -> None:
        self.start = self._last = start

    def lap(self) -> float:
        now = time.perf_counter()
        ms = (now - self._last) * 1000.0
        self._last = now
        return ms

    def total(self) -> float:
        return (time.perf_counter() - self.start) * 1000.0


class Pipeline:
    """Capture -> detect -> track -> identify -> sinks, one frame at a time.

    Iterate once; the source is closed and the sinks are closed when the iteration
    ends, breaks or fails.

    Args:
        source: a :class:`~facesense.capture.VideoSource` (its connection changes come
            out as status events), or any iterable of :class:`~facesense.types.Frame`.
        detector: anything with ``detect(image) -> Faces``.
        embedder: anything with ``embed(image, faces) -> Faces``; needed with a matcher.
        matcher: anything with ``match(embeddings) -> names/distances/confidences``
            (a fitted :class:`facesense.match.Matcher`, or a hot-reloading gallery
            matcher); ``None``: nothing is embedded and every face stays pending.
        tracker: a :class:`~facesense.track.Tracker`; one suited to ``every`` by default.
        sinks: where results go (video file, events, snapshots, window, web).
        config: loop settings.
        on_event: called with every event, including those that happen between frames
            (source status changes, tracks leaving when the stream ends).
        identity: the identity stage's settings; ones suited to ``every`` by default.

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
        on_event: Callable[[Event], None] | None = None,
        identity: IdentityConfig | None = None,
    ) -> None:
        self.config = config or PipelineConfig()
        self.source = source
        self.detector = detector
        if embedder is not None:
            from facesense.detect.landmarks import with_landmark_stage
            from facesense.detect.verify import share_embedder

            share_embedder(detector, embedder)  # the non-face check reuses the loaded FaceNet
            embedder = with_landmark_stage(detector, embedder)  # video: O-Net's points for embedded faces only
        self.tracker = tracker or default_tracker(self.config.every, stills=self.config.stills)
        if self.tracker.config.max_age < self.config.every:
            raise ConfigError(
                f"tracker max_age ({self.tracker.config.max_age}) must be >= every ({self.config.every}),"
                " or tracks die between detections"
            )
        self.identity = IdentityStage(
            self.tracker,
            embedder,
            matcher,
            identity or default_identity_config(self.config.every, stills=self.config.stills),
        )
        self.sinks = tuple(sinks)
        self._event_sinks = tuple(s for s in self.sinks if isinstance(s, EventSink))
        self._stop_sinks = tuple(s for s in self.sinks if isinstance(s, StopSink))
        self.on_event = on_event
        self._stop = threading.Event()
        self._started = False
        self._since_detect = 0
        self._cuts = SceneCutDetector() if self.config.scene_cuts else None
        self.frames_processed = 0

    @property
    def embedder(self) -> Embedder | None:
        """The identity stage's embedder."""
        return self.identity.embedder

    @property
    def matcher(self) -> EmbeddingMatcher | None:
        """The identity stage's matcher."""
        return self.identity.matcher

    def stop(self) -> None:
        """Ask the loop to end after the current frame (safe from any thread)."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

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

    def _items(self) -> Generator[Frame | SourceStatus | None, None, None]:
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
                    self._between([status_event(item)])
                    waited = time.perf_counter()
                    continue
                start = time.perf_counter()
                last_frame = item
                result = self._process(item, wait_ms=(start - waited) * 1000.0, start=start, stamps=stamps)
                self.frames_processed += 1
                yield result
                if cfg.trim_every and self.frames_processed % cfg.trim_every == 0:
                    release_free_memory()
                waited = time.perf_counter()
                if cfg.max_frames is not None and self.frames_processed >= cfg.max_frames:
                    break
                if any(sink.wants_stop for sink in self._stop_sinks):
                    logger.info("stopped by a sink (window closed)")
                    break
        except GeneratorExit:
            raise
        except BaseException:
            failed = True
            raise
        finally:
            items.close()
            if isinstance(self.source, VideoSource):
                self.source.close()
            self._finish(last_frame, suppress=failed)

    def _process(self, frame: Frame, *, wait_ms: float, start: float, stamps: deque[float]) -> FrameResult:
        """One frame through every stage, in order."""
        image = frame.image
        decode_ms = self._decode_ms()
        laps = _Laps(start)
        cut = self._cuts.update(image) if self._cuts is not None else False
        cut_ms = laps.lap()
        detect = self._detect_now(cut)
        detect_ms = quality_ms = 0.0
        if detect:
            faces = self.detector.detect(image)
            detect_ms = laps.lap()
            faces = faces.replace(quality=face_quality(image if self.config.sharpness else None, faces))
            quality_ms = laps.lap()
            tracked = self.tracker.update(faces, new_scene=cut or self.config.stills)
        else:
            tracked = self.tracker.predict()
        track_ms = laps.lap()
        named = self.identity.identify(image, tracked)
        identify_ms = laps.lap()
        events = (*self.tracker.drain_events(frame), *self.identity.drain_events(frame))
        self._deliver(events)
        stamps.append(time.perf_counter())
        spent = self.identity.last_timings
        result = FrameResult(
            frame=frame,
            faces=named,
            detected=detect,
            events=events,
            timings=StageTimings(
                wait_ms=wait_ms,
                decode_ms=decode_ms,
                cut_ms=cut_ms,
                detect_ms=detect_ms,
                quality_ms=quality_ms,
                track_ms=track_ms,
                embed_ms=spent.embed_ms,
                match_ms=spent.match_ms,
                identify_ms=max(0.0, identify_ms - spent.embed_ms - spent.match_ms),
                total_ms=laps.total(),
            ),
            fps=_fps(stamps),
        )
        laps.lap()
        for sink in self.sinks:
            sink.write(result)
        sinks_ms = laps.lap()
        return replace(result, timings=replace(result.timings, sinks_ms=sinks_ms, total_ms=laps.total()))

    def _detect_now(self, cut: bool) -> bool:
        """Whether detection runs on this frame: the first, every ``every``-th, and after a cut."""
        detect = cut or self.frames_processed == 0 or self._since_detect + 1 >= self.config.every or self.config.stills
        self._since_detect = 0 if detect else self._since_detect + 1
        return detect

    def _decode_ms(self) -> float:
        """The capture thread's decoding time of the frame just handed over (0 for plain iterables)."""
        if isinstance(self.source, VideoSource):
            return self.source.stats().last_decode_ms
        return 0.0

    def _deliver(self, events: Sequence[Event]) -> None:
        if self.on_event is not None:
            for event in events:
                self.on_event(event)

    def _between(self, events: Sequence[Event]) -> None:
        """Deliver events that happen outside any frame."""
        if not events:
            return
        self._deliver(events)
        for sink in self._event_sinks:
            sink.notify(events)

    def _finish(self, last_frame: Frame | None, *, suppress: bool) -> None:
        """End of stream: the remaining tracks leave, then every sink is closed."""
        errors: list[BaseException] = []
        try:
            self.tracker.finish()
            if last_frame is not None:
                self._between([*self.tracker.drain_events(last_frame), *self.identity.drain_events(last_frame)])
        except Exception as exc:  # noqa: BLE001 - sinks must still be closed
            errors.append(exc)
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001 - close the others first
                errors.append(exc)
        if errors and not suppress:
            raise errors[0]
        for error in errors if suppress else errors[1:]:
            logger.error("while closing: %s", error)


def _fps(stamps: deque[float]) -> float:
    """Frames per second over the stamped window."""
    if len(stamps) > 1 and stamps[-1] > stamps[0]:
        return (len(stamps) - 1) / (stamps[-1] - stamps[0])
    return 0.0


def fps_or_default(value: float | None, default: float = 25.0) -> float:
    """A usable frame rate: ``value`` when it is a positive finite number, else ``default``."""
    return float(value) if value is not None and math.isfinite(value) and value > 0 else default
