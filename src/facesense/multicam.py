"""Many cameras in one process: one copy of each model, one thread budget.

Each camera runs its own :class:`~facesense.pipeline.Pipeline`: a capture thread that
decodes, and a consumer thread for the light, stateful stages (scene cuts, tracking,
votes, events, sinks). Every model call of every camera goes through one
:class:`InferenceBroker`, a single thread that runs the detectors, the embedder and the
matcher for all cameras in turn:

* **one copy of each model**: the cameras share one detector per distinct setting (kind,
  minimum face size, rotations), one embedder and one matcher;
* **one thread budget**: only one model call runs at a time, with the ONNX Runtime
  sessions sized to the budget, so N cameras never start N x cores inference threads;
* **batched across cameras**: embedding requests that wait at the same time (faces from
  several cameras) run as one batch (``embed_many`` when the embedder offers it).

:class:`MultiCamera` starts, watches and stops the cameras; :meth:`MultiCamera.statuses`
reports per camera what ``/api/sources`` and the Live page show (state, fps, lag,
dropped frames, who is in view).

Example:
    >>> cams = MultiCamera([CameraSpec("door", "rtsp://..."), CameraSpec("hall", "clip.mp4")],
    ...                    embedder=make_embedder(), matcher=live_matcher)
    >>> with cams:
    ...     cams.wait()
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from facesense.detect.factory import DEFAULT_DETECTOR
from facesense.errors import ConfigError, FacesenseError
from facesense.types import EventType, IdentityState

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.capture import CaptureConfig, VideoSource
    from facesense.detect.base import Detector
    from facesense.embed.base import Embedder
    from facesense.identity import EmbeddingMatcher, MatchLike
    from facesense.sinks.base import Sink
    from facesense.types import Event, Faces, FrameResult

logger = logging.getLogger(__name__)

__all__ = [
    "BrokerStats",
    "CameraSpec",
    "CameraState",
    "CameraStatus",
    "InferenceBroker",
    "MultiCamera",
    "SharedDetector",
    "SharedEmbedder",
    "SharedMatcher",
]

T = TypeVar("T")

DEFAULT_MAX_BATCH_FACES = 32


class InferenceStopped(FacesenseError):
    """A model call was still waiting when the broker closed."""


@dataclass(frozen=True)
class BrokerStats:
    """What the broker has run so far.

    Attributes:
        calls: model calls (detections, matches, embedding batches).
        embed_batches: embedding batches run.
        embed_requests: embedding requests (one per camera frame that embedded faces).
        faces_embedded: faces embedded.
        busy_ms: milliseconds the broker thread spent running calls.
    """

    calls: int = 0
    embed_batches: int = 0
    embed_requests: int = 0
    faces_embedded: int = 0
    busy_ms: float = 0.0

    @property
    def requests_per_batch(self) -> float:
        """Mean embedding requests per batch (above 1 when cameras were batched together)."""
        return self.embed_requests / self.embed_batches if self.embed_batches else 0.0


@dataclass
class _Job:
    future: Future[Any]
    fn: Callable[..., Any] | None = None
    args: tuple[Any, ...] = ()
    embedder: Embedder | None = None
    image: npt.NDArray[np.uint8] | None = None
    faces: Faces | None = None


class InferenceBroker:
    """One thread that runs every model call of every camera, one at a time.

    Camera threads call :meth:`call` and :meth:`embed`, which block until their call
    has run. Embedding requests queued together for the same embedder run as one batch
    of at most ``max_batch_faces`` faces.

    Args:
        max_batch_faces: faces per embedding batch.
    """

    def __init__(self, *, max_batch_faces: int = DEFAULT_MAX_BATCH_FACES) -> None:
        if not isinstance(max_batch_faces, int) or max_batch_faces < 1:
            raise ConfigError(f"max_batch_faces must be a positive integer, got {max_batch_faces!r}")
        self.max_batch_faces = max_batch_faces
        self._jobs: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._stats = BrokerStats()

    def __repr__(self) -> str:
        return f"InferenceBroker(max_batch_faces={self.max_batch_faces})"

    def stats(self) -> BrokerStats:
        """A snapshot of the counters."""
        with self._cond:
            return self._stats

    @property
    def pending(self) -> int:
        """Calls waiting for the broker thread."""
        with self._cond:
            return len(self._jobs)

    # -- called from camera threads -------------------------------------------------
    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the broker thread and return its result (or raise its error)."""
        return self._submit(_Job(Future(), fn=fn, args=args)).result()  # type: ignore[no-any-return]

    def embed(self, embedder: Embedder, image: npt.NDArray[np.uint8], faces: Faces) -> Faces:
        """``embedder.embed(image, faces)``, batched with other cameras' waiting requests."""
        if len(faces) == 0:
            return embedder.embed(image, faces)
        return self._submit(_Job(Future(), embedder=embedder, image=image, faces=faces)).result()  # type: ignore[no-any-return]

    def _submit(self, job: _Job) -> Future[Any]:
        with self._cond:
            if self._closed:
                raise InferenceStopped("the cameras' inference thread has stopped")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="facesense-inference", daemon=True)
                self._thread.start()
            self._jobs.append(job)
            self._cond.notify_all()
        return job.future

    def close(self) -> None:
        """Stop the thread; calls still waiting fail with :class:`InferenceStopped`. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30.0)

    # -- the broker thread ----------------------------------------------------------
    def _take(self) -> list[_Job] | None:
        """The next job, or the next embedding batch; ``None`` when closed."""
        with self._cond:
            while not self._jobs and not self._closed:
                self._cond.wait()
            if self._closed:
                for job in self._jobs:
                    job.future.set_exception(InferenceStopped("the cameras' inference thread has stopped"))
                self._jobs.clear()
                return None
            first = self._jobs.popleft()
            if first.embedder is None:
                return [first]
            batch = [first]
            faces = len(first.faces) if first.faces is not None else 0
            rest: deque[_Job] = deque()
            while self._jobs:
                job = self._jobs.popleft()
                n = len(job.faces) if job.faces is not None else 0
                if job.embedder is first.embedder and faces + n <= self.max_batch_faces:
                    batch.append(job)
                    faces += n
                else:
                    rest.append(job)
            self._jobs = rest
            return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            started = time.perf_counter()
            if batch[0].embedder is None:
                job = batch[0]
                assert job.fn is not None
                try:
                    job.future.set_result(job.fn(*job.args))
                except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
                    job.future.set_exception(exc)
                self._count(started, calls=1)
                continue
            self._embed_batch(batch)
            faces = sum(len(j.faces) for j in batch if j.faces is not None)
            self._count(started, calls=1, batches=1, requests=len(batch), faces=faces)

    def _embed_batch(self, batch: list[_Job]) -> None:
        embedder = batch[0].embedder
        assert embedder is not None
        items = [(j.image, j.faces) for j in batch]
        try:
            many = getattr(embedder, "embed_many", None)
            if many is not None and len(batch) > 1:
                results = list(many(items))
            else:
                results = [embedder.embed(image, faces) for image, faces in items]  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - raised in every caller's thread
            for job in batch:
                job.future.set_exception(exc)
            return
        for job, result in zip(batch, results, strict=True):
            job.future.set_result(result)

    def _count(self, started: float, *, calls: int = 0, batches: int = 0, requests: int = 0, faces: int = 0) -> None:
        spent = (time.perf_counter() - started) * 1000.0
        with self._cond:
            s = self._stats
            self._stats = BrokerStats(
                calls=s.calls + calls,
                embed_batches=s.embed_batches + batches,
                embed_requests=s.embed_requests + requests,
                faces_embedded=s.faces_embedded + faces,
                busy_ms=s.busy_ms + spent,
            )


class SharedDetector:
    """A detector whose calls run on the broker's thread."""

    def __init__(self, detector: Detector, broker: InferenceBroker) -> None:
        self.detector = detector
        self.broker = broker

    def __repr__(self) -> str:
        return f"SharedDetector({self.detector!r})"

    def detect(self, image: npt.NDArray[np.uint8]) -> Faces:
        """The wrapped detector's faces, detected on the broker's thread."""
        return self.broker.call(self.detector.detect, image)


class SharedEmbedder:
    """An embedder whose calls run on the broker's thread, batched across cameras."""

    def __init__(self, embedder: Embedder, broker: InferenceBroker) -> None:
        self.embedder = embedder
        self.broker = broker

    def __repr__(self) -> str:
        return f"SharedEmbedder({self.embedder!r})"

    @property
    def model_id(self) -> str:
        """The wrapped embedder's model id."""
        return self.embedder.model_id

    @property
    def dim(self) -> int:
        """The wrapped embedder's embedding length."""
        return self.embedder.dim

    def embed(self, image: npt.NDArray[np.uint8], faces: Faces) -> Faces:
        """``faces`` with embeddings, computed on the broker's thread."""
        return self.broker.embed(self.embedder, image, faces)


class SharedMatcher:
    """A matcher whose calls run on the broker's thread (one gallery copy, no races)."""

    def __init__(self, matcher: EmbeddingMatcher, broker: InferenceBroker) -> None:
        self.matcher = matcher
        self.broker = broker

    def __repr__(self) -> str:
        return f"SharedMatcher({self.matcher!r})"

    def match(self, embeddings: npt.NDArray[np.float32]) -> MatchLike:
        """The wrapped matcher's answer, computed on the broker's thread."""
        return self.broker.call(self.matcher.match, embeddings)


# -- cameras ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CameraSpec:
    """One camera of a multi-camera process.

    Attributes:
        name: the camera's name in events, ``/api/sources`` and MQTT topics.
        url: what :func:`facesense.capture.open_source` opens (camera index, file,
            folder, ``rtsp://`` / ``http(s)://`` URL).
        every: detect every this many frames (track in between).
        min_face_px: smallest face to look for (``None``: the video default).
        detector: detector kind (``None``: the process's default).
        rotations: also search rotated copies for tilted faces.
    """

    name: str
    url: str
    every: int = 1
    min_face_px: float | None = None
    detector: str | None = None
    rotations: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"a camera needs a name, got {self.name!r}")
        if not isinstance(self.url, str) or not self.url.strip():
            raise ConfigError(f"camera {self.name!r}: url must not be empty")
        if not isinstance(self.every, int) or isinstance(self.every, bool) or self.every < 1:
            raise ConfigError(f"camera {self.name!r}: every must be a positive integer, got {self.every!r}")
        if self.min_face_px is not None and (not isinstance(self.min_face_px, int | float) or not self.min_face_px > 0):
            raise ConfigError(f"camera {self.name!r}: min_face_px must be a positive number, got {self.min_face_px!r}")


class CameraState(str, enum.Enum):
    """Where a camera is in its life."""

    STARTING = "starting"
    RUNNING = "running"
    RECONNECTING = "reconnecting"
    ENDED = "ended"  # a file or folder played to its end
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True)
class CameraStatus:
    """One camera's state and figures (a snapshot).

    Attributes:
        name, url: the camera.
        state: a :class:`CameraState`.
        frames: frames processed.
        received: frames the source delivered (processed + dropped + waiting).
        fps: frames processed per second, recently.
        source_fps: frames the source delivered per second, recently.
        dropped: frames dropped because processing was slower than the source.
        lag_ms: for the newest processed frame, milliseconds from its decoding to the
            end of its processing (waiting in the buffer + every stage).
        reconnects: reconnections of a live source.
        faces: faces in view in the newest frame.
        names: the people named in view.
        error: the one-line reason of a failed camera.
    """

    name: str
    url: str
    state: CameraState
    frames: int = 0
    received: int = 0
    fps: float = 0.0
    source_fps: float = 0.0
    dropped: int = 0
    lag_ms: float = 0.0
    reconnects: int = 0
    faces: int = 0
    names: tuple[str, ...] = ()
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (rounded figures)."""
        return {
            "name": self.name,
            "url": self.url,
            "state": self.state.value,
            "frames": self.frames,
            "received": self.received,
            "fps": round(self.fps, 2),
            "source_fps": round(self.source_fps, 2),
            "dropped": self.dropped,
            "lag_ms": round(self.lag_ms, 1),
            "reconnects": self.reconnects,
            "faces": self.faces,
            "names": list(self.names),
            "error": self.error,
        }


SinkFactory = Callable[[CameraSpec, "VideoSource"], Sequence["Sink"]]


@dataclass
class _Camera:
    spec: CameraSpec
    thread: threading.Thread | None = None
    source: VideoSource | None = None
    pipeline: Any = None
    state: CameraState = CameraState.STARTING
    frames: int = 0
    fps: float = 0.0
    lag_ms: float = 0.0
    faces: int = 0
    names: tuple[str, ...] = ()
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Set as the camera's thread ends (its sinks closed). Waited on instead of joining
    # the thread: on Python < 3.12 a KeyboardInterrupt raised inside Thread.join marks
    # that thread as stopped while it still runs, so after Ctrl-C `is_alive()` and
    # `join()` would report cameras ended whose last tracks are still being written.
    ended: threading.Event = field(default_factory=threading.Event)


class MultiCamera:
    """Runs several cameras in one process on shared models.

    Args:
        cameras: the cameras (names must be unique).
        embedder: the shared embedder (``None``: nobody is named).
        matcher: the shared matcher, e.g. a :class:`facesense.recognize.LiveMatcher`
            (``None``: faces stay pending).
        detector: default detector kind of cameras that do not name one.
        threads: the process's inference thread budget for detectors built here
            (``None``: ``$FACESENSE_THREADS`` or every core).
        capture: capture settings of every camera.
        sinks: builds each camera's sinks (video file, events, MQTT ...); called once
            per camera start.
        on_event: called with every event of every camera (from camera threads;
            ``event.source`` is the camera's name).
        detectors: an already built detector per kind, to share with others (e.g.
            the web server's); built with :func:`facesense.detect.make_detector`
            otherwise.
        max_batch_faces: faces per cross-camera embedding batch.

    Raises:
        ConfigError: no camera, or two cameras with one name.
    """

    def __init__(
        self,
        cameras: Sequence[CameraSpec],
        *,
        embedder: Embedder | None = None,
        matcher: EmbeddingMatcher | None = None,
        detector: str = DEFAULT_DETECTOR.value,
        threads: int | None = None,
        capture: CaptureConfig | None = None,
        sinks: SinkFactory | None = None,
        on_event: Callable[[Event], None] | None = None,
        max_batch_faces: int = DEFAULT_MAX_BATCH_FACES,
    ) -> None:
        names = [c.name for c in cameras]
        if not names:
            raise ConfigError("no camera to run")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"camera names must be unique: {', '.join(dupes)} appear(s) twice")
        self.broker = InferenceBroker(max_batch_faces=max_batch_faces)
        self.detector_kind = detector
        self.threads = threads
        self.capture = capture
        self.sinks = sinks
        self.on_event = on_event
        self.embedder = SharedEmbedder(embedder, self.broker) if embedder is not None and matcher is not None else None
        self.matcher = SharedMatcher(matcher, self.broker) if matcher is not None and embedder is not None else None
        self._detectors: dict[tuple[str, float | None, bool], Detector] = {}
        self._cameras: dict[str, _Camera] = {c.name: _Camera(c) for c in cameras}
        self._lock = threading.Lock()
        self._started = False
        self._closed = False

    def __repr__(self) -> str:
        return f"MultiCamera({', '.join(self._cameras)})"

    @property
    def names(self) -> tuple[str, ...]:
        """The cameras' names, in order."""
        with self._lock:
            return tuple(self._cameras)

    # -- lifecycle ------------------------------------------------------------------
    def __enter__(self) -> MultiCamera:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Open every camera and start its threads (a camera that cannot open fails alone)."""
        with self._lock:
            if self._closed:
                raise ConfigError("these cameras were closed")
            self._started = True
            cams = list(self._cameras.values())
        for cam in cams:
            self._start(cam)

    def add(self, spec: CameraSpec) -> None:
        """Add a camera (started at once if the others are running).

        Raises:
            ConfigError: a camera of that name exists.
        """
        with self._lock:
            if spec.name in self._cameras:
                raise ConfigError(f"a camera named {spec.name!r} already runs")
            cam = self._cameras[spec.name] = _Camera(spec)
            started = self._started
        if started:
            self._start(cam)

    def remove(self, name: str, *, timeout: float = 15.0) -> None:
        """Stop a camera and forget it.

        Raises:
            ConfigError: no camera of that name.
        """
        with self._lock:
            cam = self._cameras.pop(name, None)
        if cam is None:
            raise ConfigError(f"no camera named {name!r}")
        self._stop(cam, timeout=timeout)

    def stop(self) -> None:
        """Ask every camera to stop after its current frame (safe from any thread)."""
        with self._lock:
            cams = list(self._cameras.values())
        for cam in cams:
            if cam.pipeline is not None:
                cam.pipeline.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every camera has ended; True when they all have."""
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                running = [c.ended for c in self._cameras.values() if c.thread is not None and not c.ended.is_set()]
            if not running:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            running[0].wait(timeout=min(left, 0.5))

    def close(self, timeout: float = 15.0) -> None:
        """Stop every camera, wait for them, then stop the inference thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            cams = list(self._cameras.values())
        for cam in cams:
            if cam.pipeline is not None:
                cam.pipeline.stop()
        for cam in cams:
            self._stop(cam, timeout=timeout)
        self.broker.close()

    # -- status ---------------------------------------------------------------------
    def statuses(self) -> list[CameraStatus]:
        """Every camera's state and figures, in order."""
        with self._lock:
            cams = list(self._cameras.values())
        return [self._status(cam) for cam in cams]

    def status(self, name: str) -> CameraStatus:
        """One camera's state and figures.

        Raises:
            ConfigError: no camera of that name.
        """
        with self._lock:
            cam = self._cameras.get(name)
        if cam is None:
            raise ConfigError(f"no camera named {name!r}")
        return self._status(cam)

    @staticmethod
    def _status(cam: _Camera) -> CameraStatus:
        source = cam.source
        stats = source.stats() if source is not None else None
        with cam.lock:
            return CameraStatus(
                name=cam.spec.name,
                url=cam.spec.url,
                state=cam.state,
                frames=cam.frames,
                received=stats.frames if stats is not None else 0,
                fps=cam.fps,
                source_fps=stats.fps if stats is not None else 0.0,
                dropped=stats.dropped if stats is not None else 0,
                lag_ms=cam.lag_ms,
                reconnects=stats.reconnects if stats is not None else 0,
                faces=cam.faces,
                names=cam.names,
                error=cam.error,
            )

    # -- one camera -----------------------------------------------------------------
    def detector_for(self, spec: CameraSpec) -> SharedDetector:
        """``spec``'s detector: the models are built once per distinct setting and shared;
        each camera gets its own view of them (a detector's per-stream state, such as the
        non-face check's remembered verdicts or the rotation schedule, is one camera's)."""
        from facesense.detect import make_detector

        kind = spec.detector or self.detector_kind
        key = (kind, spec.min_face_px, spec.rotations)
        with self._lock:
            det = self._detectors.get(key)
            if det is None:
                det = make_detector(kind, use="video", min_face_px=spec.min_face_px, threads=self.threads, rotations=spec.rotations)
                self._detectors[key] = det
        stream = getattr(det, "stream", None)
        return SharedDetector(stream() if callable(stream) else det, self.broker)

    def _start(self, cam: _Camera) -> None:
        from facesense.capture import open_source
        from facesense.pipeline import Pipeline, PipelineConfig, default_tracker

        spec = cam.spec
        try:
            detector = self.detector_for(spec)
            source = open_source(spec.url, self.capture, name=spec.name)
            try:
                sinks = list(self.sinks(spec, source)) if self.sinks is not None else []
            except BaseException:
                source.close()
                raise
            cam.source = source
            cam.pipeline = Pipeline(
                source,
                detector=detector,
                embedder=self.embedder,
                matcher=self.matcher,
                tracker=default_tracker(spec.every),
                sinks=sinks,
                config=PipelineConfig(every=spec.every),
                on_event=lambda event: self._event(cam, event),
            )
        except FacesenseError as exc:
            logger.error("camera %s: %s", spec.name, exc)
            with cam.lock:
                cam.state = CameraState.FAILED
                cam.error = str(exc)
            return
        cam.thread = threading.Thread(target=self._run, args=(cam,), name=f"facesense-camera[{spec.name}]", daemon=True)
        cam.thread.start()

    def _run(self, cam: _Camera) -> None:
        assert cam.pipeline is not None
        state = CameraState.ENDED
        error: str | None = None
        results: Iterator[FrameResult] = iter(cam.pipeline)
        try:
            with cam.lock:
                cam.state = CameraState.RUNNING
            for result in results:
                self._frame(cam, result)
            if cam.pipeline.stop_requested:
                state = CameraState.STOPPED
        except FacesenseError as exc:
            state, error = CameraState.FAILED, str(exc)
            logger.error("camera %s: %s", cam.spec.name, exc)
        except Exception as exc:
            state, error = CameraState.FAILED, f"{type(exc).__name__}: {exc}"
            logger.exception("camera %s failed", cam.spec.name)
        finally:
            try:
                close = getattr(results, "close", None)
                if close is not None:
                    close()
                with cam.lock:
                    cam.state = state
                    cam.error = error
                logger.info("camera %s: %s after %d frame(s)", cam.spec.name, state.value, cam.frames)
            finally:
                cam.ended.set()

    def _frame(self, cam: _Camera, result: FrameResult) -> None:
        faces = result.faces
        named: tuple[str, ...] = ()
        if faces.names is not None and faces.states is not None:
            named = tuple(
                sorted({n for n, s in zip(faces.names, faces.states, strict=True) if n and s is IdentityState.KNOWN})
            )
        lag = result.timings.total_ms
        if cam.source is not None:
            lag += cam.source.stats().lag_ms
        with cam.lock:
            cam.frames += 1
            cam.fps = result.fps
            cam.lag_ms = lag
            cam.faces = len(faces)
            cam.names = named

    def _event(self, cam: _Camera, event: Event) -> None:
        if event.type is EventType.STATUS:
            from facesense.capture import StatusKind

            with cam.lock:
                if event.status in (StatusKind.DISCONNECTED, StatusKind.RECONNECTING):
                    cam.state = CameraState.RECONNECTING
                elif event.status == StatusKind.RECONNECTED:
                    cam.state = CameraState.RUNNING
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # a broken callback must not end the camera
                logger.exception("event callback failed")

    def _stop(self, cam: _Camera, *, timeout: float) -> None:
        if cam.pipeline is not None:
            cam.pipeline.stop()
        if cam.thread is not None:
            if cam.ended.wait(timeout=timeout):
                cam.thread.join(timeout=1.0)  # it is returning
            else:
                logger.warning("camera %s did not stop within %.0f s", cam.spec.name, timeout)
        elif cam.source is not None:
            cam.source.close()
