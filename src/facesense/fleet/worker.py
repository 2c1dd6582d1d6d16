"""The loop of ``facesense worker``: claim cameras through leases, run them, give them back.

A :class:`Worker` registers the cameras of a :class:`~facesense.config.FacesenseConfig`
in the lease table (:mod:`facesense.fleet.leases`), then every ``heartbeat_s``:

1. renews its leases, writing each camera's figures (fps, lag, dropped frames, state,
   the fencing token its pipeline runs under) into the camera's row;
2. stops at once every camera whose lease was lost (taken over, or not renewed in
   time by its own clock), and gives back cameras above its fair share while other
   workers are alive;
3. claims free cameras up to its share and starts them.

The cameras run in one :class:`~facesense.multicam.MultiCamera`: one detector per
setting, one embedder and one :class:`~facesense.recognize.LiveMatcher` for all of
them, model calls on one inference thread, so a worker holding N cameras does not
run N x cores threads. Each camera's pipeline also carries a :class:`LeaseGuard` sink
that ends it before the next frame once this process can no longer be sure it holds
the lease, whatever the heartbeat thread is stuck on. Events go to the PostgreSQL
event log (:class:`~facesense.gallery.postgres_events.PostgresEventStore`), so every
machine's events are in one place, with the camera's name as their source. Tracks that
stay unknown are recorded in the gallery's unknowns store (in the same database,
:mod:`facesense.gallery.postgres_unknowns`), as ``watch`` and ``serve`` do: one
:class:`~facesense.sinks.unknowns.UnknownsWriter` for the worker, a
:class:`~facesense.sinks.unknowns.SourceUnknownsSink` per camera run, the writer
flushed and closed after the last camera stopped.

A video file or image folder in the camera list stands in for a camera: it is played
at its own frame rate, again and again (``CaptureConfig(loop=True, realtime=True)``).

:meth:`Worker.stop` (SIGTERM in the CLI) stops every camera, then releases the leases
at once, so another worker takes them over on its next round.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from facesense.errors import ConfigError, FacesenseError, GalleryError

if TYPE_CHECKING:
    from facesense.capture import VideoSource
    from facesense.config import FacesenseConfig
    from facesense.fleet.leases import Lease, LeaseTable
    from facesense.gallery.base import GalleryStore
    from facesense.gallery.events import EventLog
    from facesense.multicam import CameraSpec, MultiCamera
    from facesense.recognize import LiveMatcher
    from facesense.sinks.base import Sink
    from facesense.sinks.unknowns import UnknownsWriter
    from facesense.types import Event, FrameResult

logger = logging.getLogger(__name__)

__all__ = ["LeaseGuard", "Worker"]

RETRY_FAILED_S = 15.0  # a camera that failed (cannot open) is tried again after this
UNKNOWN_AFTER_FRAMES = 30  # an unknown track's best face is stored after this many frames (as serve does)


class LeaseGuard:
    """A sink that ends its pipeline once the camera's lease may no longer be this worker's.

    Args:
        leases: the worker's lease table.
        camera, token: the camera and the fencing token its pipeline runs under.
        margin_s: stop this long before the lease would expire by this process's clock.
    """

    def __init__(self, leases: LeaseTable, camera: str, token: int, *, margin_s: float) -> None:
        self.leases, self.camera, self.token, self.margin_s = leases, camera, token, margin_s
        self._stopped = False

    def write(self, result: FrameResult) -> None:
        """Nothing to write; the check is :attr:`wants_stop`."""

    @property
    def wants_stop(self) -> bool:
        """True once the lease is lost or could not be renewed in time (and from then on)."""
        if not self._stopped and not self.leases.still_holds(self.camera, self.token, margin_s=self.margin_s):
            self._stopped = True
            logger.warning("camera %s: lease token %d is no longer sure: stopping now", self.camera, self.token)
        return self._stopped

    def close(self) -> None:
        """Nothing to release."""


class _CameraView:
    """What :class:`facesense.web.live.WebSink` needs of a source, for one worker camera
    (the events page's crops and nameable unknowns, as ``serve`` stores them): its name,
    and its URL shown without a password. Frames go to the video server through
    :class:`~facesense.fleet.stream.FrameSink`, so ``publish`` keeps nothing."""

    def __init__(self, name: str, url: str) -> None:
        self.source_id = name
        self._url = url

    def publish(self, result: FrameResult) -> None:
        """Nothing to keep (see the class)."""

    def on_status(self, event: Event) -> None:
        """Status changes are in the lease row's figures."""

    def scrub(self, text: str | None) -> str | None:
        """``text`` without the camera URL's password."""
        from facesense.fleet.leases import redact_url

        if text and self._url and self._url in text:
            return text.replace(self._url, redact_url(self._url))
        return text


class Worker:
    """Claims cameras from the lease table and runs them until :meth:`stop`.

    Args:
        config: the cameras, recognition settings, sinks and lease timings.
        db: the PostgreSQL database of the gallery, the events and the leases.
        worker_id: this worker's id in the lease table (default: ``host:pid:random``).
        threads: intra-op threads of the models (``None``: every core; they run one at a time).
        stream: serve the cameras' live video on this ``(host, port)``
            (:class:`~facesense.fleet.stream.StreamServer`; ``None``: no video), its
            address recorded in each camera's lease row for ``facesense serve`` to relay.
        token: the fleet's shared secret, required by the video server.
        advertise: the host name other machines reach the video server by.
        record_unknowns: record the tracks that stay unknown in the gallery's unknowns
            store (grouped into recurring visitors, see ``facesense unknowns``).

    Raises:
        ConfigError: no cameras, or ``db`` is not a PostgreSQL URL.
        GalleryError: the database cannot be reached, or the gallery is unusable.
    """

    def __init__(
        self,
        config: FacesenseConfig,
        db: str,
        *,
        worker_id: str | None = None,
        threads: int | None = None,
        stream: tuple[str, int] | None = None,
        token: str | None = None,
        advertise: str | None = None,
        record_unknowns: bool = True,
    ) -> None:
        from facesense.gallery.location import parse_location

        if not config.cameras:
            where = f"{config.source}: " if config.source is not None else ""
            raise ConfigError(f"{where}no [[cameras]] to run; add at least one")
        location = parse_location(db)
        if location.kind != "postgresql":
            raise ConfigError(
                f"a worker needs a PostgreSQL database shared by the fleet (--db postgresql://...), got {location.display}"
            )
        self.config = config
        self.db = db
        self.threads = threads
        self.margin_s = min(2.0, config.worker.lease_s / 4)
        self._stop = threading.Event()
        self._tokens: dict[str, int] = {}
        self._failed_at: dict[str, float] = {}
        self._cams: MultiCamera | None = None
        self._store: GalleryStore | None = None
        self._matcher: LiveMatcher | None = None
        self._events: EventLog | None = None
        self._embedder: Any = None
        self.record_unknowns = record_unknowns
        self._unknowns: UnknownsWriter | None = None
        self._mqtt: Any = None
        self._mqtt_settings: Any = None
        self._stream_at, self._token, self._advertise = stream, token, advertise
        self._video: Any = None
        from facesense.fleet.stream import LatestFrames

        self._frames = LatestFrames()
        from facesense.sinks.mqtt import settings_from_config

        self._mqtt_settings = settings_from_config(config)  # a bad [sinks.mqtt] fails now
        self.on_cycle: Callable[[], None] | None = None
        from facesense.fleet.leases import LeaseTable

        self.leases = LeaseTable(db, worker_id=worker_id, lease_s=config.worker.lease_s)
        self.worker_id = self.leases.worker_id

    def __repr__(self) -> str:
        return f"Worker({self.worker_id!r}, cameras={len(self.config.cameras)})"

    # --- life ----------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to stop every camera, release the leases and return (any thread, signal handlers)."""
        self._stop.set()

    def run(self) -> None:
        """Run until :meth:`stop`: heartbeat, stop lost cameras, rebalance, claim.

        Raises:
            GalleryError: the gallery is unusable (another model's embeddings ...).
            ModelError: the models cannot be loaded.
        """
        try:
            self._open()
            self.leases.register({c.name: str(c.url) for c in self.config.cameras})
            logger.info("worker %s: %d camera(s) in the fleet", self.worker_id, len(self.config.cameras))
            while not self._stop.is_set():
                started = time.monotonic()
                self._cycle()
                if self.on_cycle is not None:
                    self.on_cycle()
                self._stop.wait(max(0.0, self.config.worker.heartbeat_s - (time.monotonic() - started)))
        finally:
            self._shutdown()

    def _open(self) -> None:
        from facesense.embed import make_embedder
        from facesense.gallery import open_event_log, open_gallery
        from facesense.gallery.location import parse_location
        from facesense.recognize import LiveMatcher

        rec = self.config.recognition
        self._embedder = make_embedder(rec.embedder, threads=self.threads)
        self._store = open_gallery(self.db, create=True, read_only=None)
        self._matcher = LiveMatcher(self._store, self._embedder.model_id, threshold=rec.threshold)
        self._matcher.refresh()  # a gallery of another model fails here, not on the first face
        self._events = open_event_log(parse_location(self.db))
        if self.record_unknowns:
            from facesense.sinks.unknowns import make_writer

            self._unknowns = make_writer(parse_location(self.db), self._embedder.model_id)
        if self._mqtt_settings is not None:
            from facesense.sinks.mqtt import open_mqtt_sink

            self._mqtt = open_mqtt_sink(self._mqtt_settings, self._store)
        if self._stream_at is not None:
            from facesense.fleet.stream import StreamServer

            host, port = self._stream_at
            self._video = StreamServer(self._frames, host, port, token=self._token, advertise=self._advertise).start()

    def _shutdown(self) -> None:
        cams, self._cams = self._cams, None
        if cams is not None:
            cams.close()
        for name, token in sorted(self._tokens.items()):
            logger.info("worker %s: camera %s: stopped (lease token %d)", self.worker_id, name, token)
        self._tokens.clear()
        try:
            released = self.leases.release_all()
            if released:
                logger.info("worker %s: released %s", self.worker_id, ", ".join(released))
        except GalleryError as exc:
            logger.warning("worker %s: could not release the leases (they expire by themselves): %s", self.worker_id, exc)
        self.leases.close()
        unknowns, self._unknowns = self._unknowns, None
        if unknowns is not None:
            unknowns.close()  # after the cameras: what their last tracks queued is written
        for closing in (self._video, self._mqtt, self._matcher, self._events, self._store):
            if closing is not None:
                try:
                    closing.close()
                except FacesenseError as exc:
                    logger.debug("closing %r: %s", closing, exc)

    # --- one round -----------------------------------------------------------------

    def _cycle(self) -> None:
        try:
            result = self.leases.heartbeat(self._stats())
            self._stop_cameras(result.lost, why="lost")
        except GalleryError as exc:
            logger.warning("worker %s: heartbeat failed: %s", self.worker_id, exc)
        # Not renewed in time by our own clock (the database may be unreachable): stop
        # before anyone may take them over.
        late = self.leases.expired_locally(margin_s=self.margin_s)
        self._stop_cameras(late, why="not renewed in time")
        self.leases.forget(late)
        self._retry_failed()
        try:
            share = self.leases.share()
            held = sorted(self.leases.held)
            if len(held) > share:
                extra = held[share:]
                logger.info("worker %s: holding %d of a share of %d: giving back %s", self.worker_id, len(held), share, ", ".join(extra))
                self._stop_cameras(extra, why="rebalanced")
                self.leases.release(extra)
            for lease in self.leases.claim():
                self._start_camera(lease)
        except GalleryError as exc:
            logger.warning("worker %s: cannot claim cameras now: %s", self.worker_id, exc)

    def _stats(self) -> dict[str, dict[str, Any]]:
        from facesense.fleet.leases import LeaseState

        out: dict[str, dict[str, Any]] = {}
        cams = self._cams
        for name, token in self._tokens.items():
            figures: dict[str, Any] = {"token": token, "worker": self.worker_id}
            if self._video is not None:
                figures["stream"] = self._video.url_for(name)
            if cams is not None and name in cams.names:
                status = cams.status(name)
                state = {"running": LeaseState.RUNNING, "failed": LeaseState.FAILED}.get(status.state.value, status.state.value)
                figures.update(
                    state=state, frames=status.frames, fps=round(status.fps, 2), source_fps=round(status.source_fps, 2),
                    lag_ms=round(status.lag_ms, 1), dropped=status.dropped, reconnects=status.reconnects,
                    faces=status.faces, names=list(status.names), error=status.error,
                )  # fmt: skip
            out[name] = figures
        return out

    def _spec(self, name: str) -> CameraSpec:
        from facesense.multicam import CameraSpec

        cam = self.config.camera(name)
        return CameraSpec(
            name=name, url=str(cam.url), every=cam.every or 1, min_face_px=cam.min_face_px,
            detector=None if cam.detector is None else cam.detector.value,
        )  # fmt: skip

    def _multicam(self, first: CameraSpec) -> MultiCamera:
        from facesense.capture import CaptureConfig
        from facesense.multicam import MultiCamera

        cams = MultiCamera(
            [first],
            embedder=self._embedder,
            matcher=self._matcher,
            detector=self.config.recognition.detector.value,
            threads=self.threads,
            capture=CaptureConfig(loop=True, realtime=True),  # files stand in for cameras
            sinks=self._sinks,
        )
        self._cams = cams  # before start: the sinks use its shared embedder
        cams.start()
        return cams

    def _sinks(self, spec: CameraSpec, source: VideoSource) -> list[Sink]:
        sinks: list[Sink] = [LeaseGuard(self.leases, spec.name, self._tokens[spec.name], margin_s=self.margin_s)]
        if self._events is not None:
            from facesense.web.live import WebSink

            # Events with face crops, and each unknown track's best face with its
            # embedding, so it can be named from any server's events page.
            embedder = self._cams.embedder if self._cams is not None and self._cams.embedder is not None else self._embedder
            view: Any = _CameraView(spec.name, spec.url)
            sinks.append(WebSink(view, embedder, self._events, unknown_after_frames=UNKNOWN_AFTER_FRAMES))
        if self._unknowns is not None:
            from facesense.sinks.unknowns import SourceUnknownsSink

            sinks.append(SourceUnknownsSink(self._unknowns, self._embedder.model_id))  # one writer for every camera
        if self._mqtt is not None:
            sinks.append(self._mqtt.shared())  # one connection for every camera
        if self._video is not None:
            sinks.append(self._frames.sink(spec.name))
        from facesense.sinks.files import camera_file_sinks

        sinks.extend(camera_file_sinks(self.config, spec.name, source, append_events=True))
        return sinks

    def _start_camera(self, lease: Lease) -> None:
        spec = self._spec(lease.camera)
        self._tokens[lease.camera] = lease.token
        # Logged before the pipeline starts and "stopped" after it ended: the interval
        # an observer sees covers the pipeline's life.
        logger.info("worker %s: camera %s: running under lease token %d", self.worker_id, lease.camera, lease.token)
        if self._cams is None:
            self._cams = self._multicam(spec)
        else:
            self._cams.add(spec)
        if self._cams.status(lease.camera).state.value == "failed":
            self._failed_at[lease.camera] = time.monotonic()

    def _stop_cameras(self, names: Sequence[str], *, why: str) -> None:
        for name in names:
            token = self._tokens.pop(name, None)
            self._failed_at.pop(name, None)
            if self._cams is not None and name in self._cams.names:
                self._cams.remove(name, timeout=max(1.0, self.margin_s))
            if token is not None:
                logger.info("worker %s: camera %s: stopped (lease token %d, %s)", self.worker_id, name, token, why)

    def _retry_failed(self) -> None:
        cams = self._cams
        if cams is None:
            return
        now = time.monotonic()
        for name in list(self._tokens):
            if name not in cams.names or cams.status(name).state.value != "failed":
                continue
            since = self._failed_at.setdefault(name, now)
            if now - since >= RETRY_FAILED_S:
                logger.info("worker %s: camera %s: trying again", self.worker_id, name)
                cams.remove(name)
                self._failed_at[name] = now
                cams.add(self._spec(name))
