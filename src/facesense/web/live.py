"""The sources ``facesense serve`` watches: one :class:`SourceRunner` thread per source.

Each runner drives its own :class:`~facesense.pipeline.Pipeline` (its own tracker;
the detector, embedder and matcher are the server's, shared) and keeps what the pages
show: the newest annotated frame (JPEG-encoded on demand, once per frame, for the
MJPEG stream), the current tracks, the FPS and the state (:class:`SourceState`).
:class:`WebSink` stores the events with a crop of the face and, once per track that
stays unknown, an ``UNKNOWN`` event with the embedding of its best face, so that it
can be named (enrolled) from the events page.

A track's name can be corrected while it is on screen ("not X", "this is Y"): the
runner remembers, per live track, the ``RECOGNIZED`` event its name came from (stored
with the face's embedding; :meth:`SourceRunner.correctable_event`), and after the
correction :meth:`SourceRunner.reidentify` has the sink drop the track's vote on the
pipeline's thread (:meth:`facesense.identity.IdentityStage.forget`): the track is
``PENDING`` until its next detection, which the corrected gallery names.

Files and folders are played at their own frame rate (a dashboard shows them like
a camera, not as fast as the CPU allows); live sources keep the newest frame. A
runner whose pipeline fails retries with backoff until the server stops.
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from facesense.errors import ConflictError, FacesenseError, NotFoundError
from facesense.gallery.events import EventRecord
from facesense.types import Event, EventType, IdentityState
from facesense.web.thumbnails import face_crop_jpeg

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.capture import VideoSource
    from facesense.detect.base import Detector
    from facesense.embed.base import Embedder
    from facesense.gallery.events import EventLog
    from facesense.identity import IdentityStage
    from facesense.multicam import InferenceBroker
    from facesense.recognize import LiveMatcher
    from facesense.types import Faces, Frame, FrameResult
    from facesense.web.models import WebModels

logger = logging.getLogger(__name__)

__all__ = ["SourceRunner", "SourceState", "WebSink", "public_source"]

JPEG_QUALITY = 80
STREAM_MAX_SIDE_PX = 1280  # larger frames are shrunk for the browser
RETRY_INITIAL_S = 1.0
RETRY_MAX_S = 30.0
CANDIDATE_MAX_IDLE_FRAMES = 120  # forget a track's best face when not seen for this long
LEFT_TRACKS_KEPT = 256  # named tracks that left, remembered for a clear answer to a late correction


class SourceState(str, enum.Enum):
    """What a watched source is doing (``GET /api/sources``' ``status``)."""

    STARTING = "starting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    ENDED = "ended"
    ERROR = "error"


def public_source(source_id: str) -> str:
    """A source id fit to show: a URL's user name and password are left out."""
    if "://" not in source_id:
        return source_id
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(source_id)
    except ValueError:
        return source_id.split("://", 1)[0] + "://…"
    if parts.username is None and parts.password is None:
        return source_id
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass
class _Candidate:
    """The best view so far of one track."""

    quality: float
    image: npt.NDArray[np.uint8]
    face: Faces  # one row, full-frame coordinates
    frame_index: int
    media_time: float
    last_seen: int


@dataclass
class _TrackName:
    """Where a live track's current name came from: its ``RECOGNIZED`` event."""

    name: str
    event_id: int | None  # None: the event could not be stored
    correctable: bool  # the event keeps the face's embedding


@dataclass
class _PendingUnknown:
    """A track voted unknown, waiting ``unknown_after_frames`` for a better face."""

    since: int
    event: Event | None = None  # the identity stage's UNKNOWN event, once it came


def _crop(image: npt.NDArray[np.uint8], xyxy: npt.ArrayLike) -> bytes | None:
    """A face crop JPEG, or ``None`` (logged) when the box cannot be cropped."""
    try:
        return face_crop_jpeg(image, xyxy)
    except FacesenseError as exc:
        logger.debug("no face crop: %s", exc)
        return None


class WebSink:
    """A pipeline sink that feeds a :class:`SourceRunner` and the events log.

    Args:
        runner: receives every frame's result (for the stream and the live page).
        embedder: embeds the best face of tracks that stay unknown.
        events: where events go (``None``: nowhere).
        unknown_after_frames: store an unknown track this many frames after it was
            first voted unknown (or when it leaves, if sooner).

    Attributes:
        identity: the pipeline's identity stage (set by the runner once the pipeline is
            built): before each frame is published, the tracks whose names were
            corrected (:meth:`SourceRunner.reidentify`) are forgotten by it, on the
            pipeline's thread, and shown pending.
    """

    def __init__(
        self,
        runner: SourceRunner,
        embedder: Embedder,
        events: EventLog | None,
        *,
        unknown_after_frames: int,
    ) -> None:
        self.runner = runner
        self.embedder = embedder
        self.events = events
        self.unknown_after_frames = unknown_after_frames
        self._best: dict[int, _Candidate] = {}
        self._unknown: dict[int, _PendingUnknown] = {}
        self._stored_unknown: set[int] = set()
        self.identity: IdentityStage | None = None  # the pipeline's, to re-identify corrected tracks
        # The live tracks' names and their corrections, for a serve source (a fleet worker's
        # camera view, facesense.fleet.worker, only publishes).
        self._live: SourceRunner | None = runner if isinstance(runner, SourceRunner) else None

    # -- sink interface ------------------------------------------------------------
    def write(self, result: FrameResult) -> None:
        """Publish the frame and store its events."""
        frame = result.frame
        corrected = self._live.take_reidentify() if self._live is not None else None
        if corrected:
            result = self._reidentify(result, corrected)
        self.runner.publish(result)
        self._track_candidates(result)
        self._check_unknowns(result)
        for event in result.events:
            self._store(event, frame, result.faces)
        if frame.index % 30 == 0:
            self._forget_idle(frame.index)

    def notify(self, events: Sequence[Event]) -> None:
        """Events between frames: source status changes and the last tracks leaving."""
        for event in events:
            if event.type is EventType.STATUS:
                self.runner.on_status(event)
            self._store(event, None)

    def close(self) -> None:
        """Forget every track."""
        self._best.clear()
        self._unknown.clear()
        self._stored_unknown.clear()
        if self._live is not None:
            self._live.tracks_ended()

    # -- internals -----------------------------------------------------------------
    def _reidentify(self, result: FrameResult, track_ids: Iterable[int]) -> FrameResult:
        """Drop the votes of corrected tracks; ``result`` with them pending (they are
        named again from their next detection, with the corrected gallery)."""
        ids = set(track_ids)
        identity = self.identity
        if identity is not None:
            for tid in ids:
                identity.forget(tid)
        faces = result.faces
        if faces.track_ids is None or faces.names is None or faces.states is None:
            return result
        rows = [i for i, tid in enumerate(faces.track_ids.tolist()) if tid in ids]
        if not rows:
            return result
        names = list(faces.names)
        states = list(faces.states)
        conf = None if faces.confidences is None else faces.confidences.copy()
        for i in rows:
            names[i], states[i] = None, IdentityState.PENDING
            if conf is not None:
                conf[i] = 0.0
        return replace(result, faces=faces.replace(names=tuple(names), states=tuple(states), confidences=conf))

    def _track_candidates(self, result: FrameResult) -> None:
        faces, frame = result.faces, result.frame
        if not result.detected or faces.track_ids is None or faces.quality is None:
            return
        for i, tid in enumerate(faces.track_ids.tolist()):
            q = float(faces.quality[i])
            if not math.isfinite(q):
                continue
            best = self._best.get(tid)
            if best is None or q > best.quality:
                self._best[tid] = _Candidate(q, frame.image, faces[[i]], frame.index, frame.timestamp, frame.index)
            else:
                best.last_seen = frame.index

    def _check_unknowns(self, result: FrameResult) -> None:
        faces, frame = result.faces, result.frame
        if faces.track_ids is None or faces.states is None:
            return
        for tid, state in zip(faces.track_ids.tolist(), faces.states, strict=True):
            if state is IdentityState.KNOWN:
                self._unknown.pop(tid, None)
                continue
            if state is not IdentityState.UNKNOWN or tid in self._stored_unknown:
                continue
            pending = self._unknown.setdefault(tid, _PendingUnknown(since=frame.index))
            if frame.index - pending.since >= self.unknown_after_frames:
                self._store_unknown(tid, pending, frame.source_id)

    def _forget_idle(self, index: int) -> None:
        for tid in [t for t, c in self._best.items() if index - c.last_seen > CANDIDATE_MAX_IDLE_FRAMES]:
            self._best.pop(tid, None)
            self._unknown.pop(tid, None)

    def _store(self, event: Event, frame: Frame | None, faces: Faces | None = None) -> None:
        tid = event.track_id
        crop: bytes | None = None
        embedding: npt.NDArray[np.float32] | None = None
        if event.type is EventType.UNKNOWN:
            # Stored once per track, with the best face and its embedding (see _store_unknown).
            if tid is not None and tid not in self._stored_unknown:
                    self._unknown.setdefault(tid, _PendingUnknown(since=event.frame)).event = event
            return
        if event.type in (EventType.APPEARED, EventType.RECOGNIZED) and frame is not None and event.xyxy is not None:
            crop = _crop(frame.image, event.xyxy)
            if event.type is EventType.RECOGNIZED and faces is not None:
                embedding = _track_embedding(faces, tid)  # so a wrong name can be corrected
        elif event.type is EventType.LEFT and tid is not None:
            pending = self._unknown.pop(tid, None)
            if event.name is None and pending is not None and tid not in self._stored_unknown:
                self._store_unknown(tid, pending, event.source or self.runner.source_id)
            best = self._best.pop(tid, None)
            if best is not None:
                crop = _crop(best.image, best.face.xyxy[0])
            self._stored_unknown.discard(tid)
            if self._live is not None:
                self._live.track_left(tid)
        event_id = self._add(
            EventRecord(
                event=_public(event, self.runner), seen_at=time.time(), crop_jpeg=crop, embedding=embedding,
                model_id=None if embedding is None else self.embedder.model_id,
            )
        )
        if self._live is not None and event.type is EventType.RECOGNIZED and tid is not None and event.name is not None:
            self._live.track_named(tid, event.name, event_id, correctable=embedding is not None)

    def _store_unknown(self, tid: int, pending: _PendingUnknown, source: str) -> None:
        self._stored_unknown.add(tid)
        self._unknown.pop(tid, None)
        best = self._best.get(tid)
        if best is None:
            return
        embedding = None
        model_id = None
        try:
            embedded = self.embedder.embed(best.image, best.face)
            if embedded.embeddings is not None and len(embedded.embeddings):
                embedding = embedded.embeddings[0]
                model_id = self.embedder.model_id
        except FacesenseError as exc:
            logger.warning("cannot embed unknown track %d: %s", tid, exc)
        box = best.face.xyxy[0]
        event = Event(
            type=EventType.UNKNOWN,
            time=best.media_time,
            frame=best.frame_index,
            source=source,
            track_id=tid,
            confidence=None if pending.event is None else pending.event.confidence,
            xyxy=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
        )
        self._add(
            EventRecord(
                event=_public(event, self.runner),
                seen_at=time.time(),
                crop_jpeg=_crop(best.image, box),
                embedding=embedding,
                model_id=model_id,
            )
        )

    def _add(self, record: EventRecord) -> int | None:
        """Store ``record``; its id, or ``None`` when it could not be stored (logged)."""
        events = self.events
        if events is None or events.closed:  # closed: the server stopped under a late source
            return None
        try:
            return events.add(record)
        except FacesenseError as exc:
            logger.error("cannot store an event: %s", exc)
            return None


def _track_embedding(faces: Faces, track_id: int | None) -> npt.NDArray[np.float32] | None:
    """The embedding of track ``track_id``'s face in this frame, or ``None``."""
    if track_id is None or faces.track_ids is None or faces.embeddings is None:
        return None
    rows = np.flatnonzero(np.asarray(faces.track_ids) == track_id)
    if len(rows) == 0:
        return None
    embedding = np.asarray(faces.embeddings[int(rows[0])], np.float32)
    return embedding if bool(np.all(np.isfinite(embedding))) else None  # a face not embedded this frame


def _public(event: Event, runner: SourceRunner) -> Event:
    """``event`` as the dashboard shows it: no URL credentials in its source or message."""
    return replace(event, source=public_source(event.source or runner.source_id), message=runner.scrub(event.message))


class SourceRunner:
    """One source, watched on its own thread.

    Args:
        index: the source's number in URLs (``/api/sources/{index}``).
        spec: what the user passed to ``--source``.
        models: the shared detector and embedder.
        matcher: names faces from the gallery (shared, refits when it changes).
        events: where events go.
        loop: play files and folders again and again.
        every: detect every N frames.
        unknown_after_frames: see :class:`WebSink`.
        name: the camera's name (in events and on the pages; default: the source id).
        detector: this source's own detector (default: the server's live detector).
        broker: run the model calls on this shared inference thread (several sources:
            one thread budget, embeddings batched across them; see
            :class:`facesense.multicam.InferenceBroker`).
    """

    def __init__(
        self,
        index: int,
        spec: str,
        models: WebModels,
        matcher: LiveMatcher,
        events: EventLog | None,
        *,
        loop: bool = False,
        every: int = 1,
        unknown_after_frames: int = 30,
        name: str | None = None,
        detector: Detector | None = None,
        broker: InferenceBroker | None = None,
    ) -> None:
        self.index = index
        self.spec = spec
        self.name = name
        self.detector = detector
        self.broker = broker
        self._source: VideoSource | None = None
        self.lag_ms = 0.0
        self.models = models
        self.matcher = matcher
        self.events = events
        self.loop = loop
        self.every = every
        self.unknown_after_frames = unknown_after_frames
        self.source_id = spec
        self.kind = ""
        self.state = SourceState.STARTING
        self.message = ""
        self.fps = 0.0
        self.frames = 0
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self._latest: FrameResult | None = None
        self._seq = 0
        self._jpeg: tuple[int, bytes] | None = None
        self._stop = threading.Event()
        self._pipeline: Any = None
        self._thread: threading.Thread | None = None
        self.extra_sinks: list[Any] = []  # more sinks for every run's pipeline (MQTT)
        # Corrections of live tracks (under _lock; track ids are those of the current run):
        self._named: dict[int, _TrackName] = {}  # live track -> the event its name came from
        self._left: OrderedDict[int, _TrackName | None] = OrderedDict()  # tracks that left (bounded)
        self._reidentify: set[int] = set()  # corrected tracks the sink has yet to re-identify
        self._max_track_id = 0  # the highest track id shown in this run
        self._run_ended = False  # the pipeline ended: no track of the newest frame is on screen any more

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """Start watching (returns at once)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"facesense-serve[{self.index}]", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the thread to stop after the current frame (returns at once)."""
        self._stop.set()
        pipeline = self._pipeline
        if pipeline is not None:
            pipeline.stop()

    def join(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the thread to end (after :meth:`request_stop`);
        returns whether it has."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout=max(0.0, timeout_s))
        return not self.alive

    @property
    def alive(self) -> bool:
        """Whether the runner's thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop watching and wait up to ``timeout_s`` for the thread."""
        self.request_stop()
        if not self.join(timeout_s):
            logger.warning("source %s did not stop within %g s", self.source_id, timeout_s)

    def _run(self) -> None:
        delay = RETRY_INITIAL_S
        while not self._stop.is_set():
            try:
                ended = self._watch_once()
            except FacesenseError as exc:
                self._set_state(SourceState.ERROR, str(exc))
                logger.error("source %s: %s (retrying in %.0f s)", self.source_id, self.scrub(str(exc)), delay)
            except Exception as exc:
                self._set_state(SourceState.ERROR, f"internal error: {type(exc).__name__}")
                logger.exception("source %s failed (retrying in %.0f s)", self.source_id, delay)
            else:
                if ended:
                    self._set_state(SourceState.ENDED, "end of the video")
                    logger.info("source %s: end of the video", self.source_id)
                    return
                delay = RETRY_INITIAL_S
                continue
            if self._stop.wait(delay):
                return
            delay = min(delay * 2.0, RETRY_MAX_S)

    def _watch_once(self) -> bool:
        """Open the source and run the pipeline until it ends or the runner stops.

        Returns:
            True when a file or folder ended (nothing more to watch).
        """
        from facesense.capture import CaptureConfig, VideoSource
        from facesense.pipeline import Pipeline, PipelineConfig, default_tracker

        # Files and folders play at their own frame rate, like a camera (late frames dropped).
        source = VideoSource(self.spec, CaptureConfig(loop=self.loop, realtime=True), name=self.name)
        try:
            source.open()
        except BaseException:
            source.close()
            raise
        self.source_id = source.source_id
        self.kind = source.kind.value
        self._source = source
        embedder: Any = self.models.embedder
        detector: Any = self.detector or self.models.live_detector
        matcher: Any = self.matcher
        if self.broker is not None:
            from facesense.multicam import SharedDetector, SharedEmbedder, SharedMatcher

            embedder = SharedEmbedder(embedder, self.broker)
            detector = SharedDetector(detector, self.broker)
            matcher = SharedMatcher(matcher, self.broker)
        from facesense.detect.landmarks import with_landmark_stage

        embedder = with_landmark_stage(detector, embedder)  # the sink embeds tracked faces too
        self._new_run()
        sink = WebSink(self, embedder, self.events, unknown_after_frames=self.unknown_after_frames)
        pipeline = Pipeline(
            source,
            detector=detector,
            embedder=embedder,
            matcher=matcher,
            tracker=default_tracker(self.every),
            sinks=[sink, *self.extra_sinks],
            config=PipelineConfig(every=self.every),
        )
        sink.identity = pipeline.identity
        self._pipeline = pipeline
        if self._stop.is_set():  # stop() ran before the pipeline existed
            source.close()
            return False
        try:
            for _ in pipeline:
                pass
        finally:
            self._pipeline = None
            source.close()
        return not self._stop.is_set() and not source.live

    def _set_state(self, state: SourceState, message: str) -> None:
        with self._lock:
            self.state = state
            self.message = self.scrub(message) or ""

    def scrub(self, text: str | None) -> str | None:
        """``text`` with the source's URL credentials left out."""
        if not text:
            return text
        for raw in {self.spec, self.source_id}:
            if raw and raw in text:
                text = text.replace(raw, public_source(raw))
        return text

    # -- state for the pages ---------------------------------------------------------
    @property
    def seq(self) -> int:
        """Increases with every processed frame."""
        return self._seq

    def publish(self, result: FrameResult) -> None:
        """Make ``result`` the newest frame (called by :class:`WebSink`)."""
        source = self._source
        lag = result.timings.total_ms + (source.stats().lag_ms if source is not None else 0.0)
        ids = result.faces.track_ids
        with self._lock:
            self._latest = result
            self._run_ended = False
            self._seq += 1
            if ids is not None and len(ids):
                self._max_track_id = max(self._max_track_id, int(ids.max()))
            self.frames += 1
            self.fps = float(result.fps)
            self.lag_ms = lag
            if self.state is not SourceState.LIVE:
                self.state = SourceState.LIVE
                self.message = ""

    def on_status(self, event: Event) -> None:
        """Follow a live source's connection change (a ``STATUS`` event)."""
        from facesense.capture import StatusKind

        try:
            kind: StatusKind | None = StatusKind(event.status)
        except ValueError:
            kind = None
        with self._lock:
            if kind in (StatusKind.DISCONNECTED, StatusKind.RECONNECTING):
                self.state = SourceState.RECONNECTING
            elif kind is StatusKind.RECONNECTED:
                self.state = SourceState.LIVE
            self.message = self.scrub(event.message) or ""

    def latest_jpeg(self) -> tuple[int, bytes] | None:
        """``(seq, JPEG)`` of the newest annotated frame; ``None`` before the first one.

        Raises:
            ImageError: the frame cannot be encoded.
        """
        with self._lock:
            result, seq = self._latest, self._seq
        if result is None:
            return None
        with self._encode_lock:
            if self._jpeg is not None and self._jpeg[0] == seq:
                return self._jpeg
            import cv2

            from facesense.errors import ImageError
            from facesense.sinks.draw import annotate

            image: Any = annotate(result)
            h, w = image.shape[:2]
            if max(h, w) > STREAM_MAX_SIDE_PX:
                scale = STREAM_MAX_SIDE_PX / max(h, w)
                image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise ImageError(f"source {self.index}: cannot encode frame {result.frame.index} as JPEG")
            self._jpeg = (seq, bytes(buf.tobytes()))
            return self._jpeg

    def tracks(self) -> list[dict[str, Any]]:
        """The faces on the newest frame: track id, name, confidence, box, identity state, and
        the event of the name (``event_id``, ``can_correct``); none once the pipeline ended."""
        with self._lock:
            result = None if self._run_ended else self._latest
            named = dict(self._named)
            corrected = set(self._reidentify)
        if result is None:
            return []
        out = []
        for face in result.faces:
            state = face.state or IdentityState.PENDING
            conf = face.confidence if face.confidence is not None and math.isfinite(face.confidence) else 0.0
            name = face.name
            if face.track_id in corrected:  # being identified again: the old name is wrong
                state, name, conf = IdentityState.PENDING, None, 0.0
            entry = named.get(face.track_id) if face.track_id is not None else None
            event_id = None
            if entry is not None and state is IdentityState.KNOWN and entry.name == name:
                event_id = entry.event_id
            out.append(
                {
                    "track_id": face.track_id,
                    "name": name,
                    "confidence": round(conf, 4),
                    "box": [round(float(v), 1) for v in face.xyxy],
                    "state": state.value,
                    "event_id": event_id,
                    "can_correct": event_id is not None and entry is not None and entry.correctable,
                }
            )
        return out

    # -- corrections of live tracks ----------------------------------------------------
    def _new_run(self) -> None:
        """A new pipeline: its track ids start again, so forget the old run's."""
        with self._lock:
            self._named.clear()
            self._left.clear()
            self._reidentify.clear()
            self._max_track_id = 0
            self._run_ended = False

    def track_named(self, track_id: int, name: str, event_id: int | None, *, correctable: bool) -> None:
        """Track ``track_id`` was (re)named ``name`` by event ``event_id`` (called by :class:`WebSink`)."""
        with self._lock:
            self._named[track_id] = _TrackName(name, event_id, correctable and event_id is not None)

    def track_left(self, track_id: int) -> None:
        """Track ``track_id`` left (called by :class:`WebSink`)."""
        with self._lock:
            self._remember_left(track_id)

    def tracks_ended(self) -> None:
        """Every track of the run left: the pipeline ended (called by :class:`WebSink`)."""
        with self._lock:
            for track_id in list(self._named):
                self._remember_left(track_id)
            self._reidentify.clear()
            self._run_ended = True

    def _remember_left(self, track_id: int) -> None:
        """Move a track to the ones that left (the caller holds the lock)."""
        self._left[track_id] = self._named.pop(track_id, None)
        self._left.move_to_end(track_id)
        while len(self._left) > LEFT_TRACKS_KEPT:
            self._left.popitem(last=False)
        self._reidentify.discard(track_id)

    def correctable_event(self, track_id: int, *, expected: int | None = None) -> int:
        """The id of the event live track ``track_id``'s current name came from, to correct it.

        Args:
            track_id: the track.
            expected: the event id the caller saw for the track (a page rendered a moment
                ago); when the track has been named anew since, a ConflictError says so.

        Raises:
            NotFoundError: the source never had this track (in its current run).
            ConflictError: the track left (or is out of view), is not named anybody, is
                being identified again after a correction, its name has no stored
                event with the face, or (``expected``) it was renamed since.
        """
        where = f"source {self.index}"
        with self._lock:
            result = self._latest if self.state is SourceState.LIVE and not self._run_ended else None
            face = None if result is None else next((f for f in result.faces if f.track_id == track_id), None)
            entry = self._named.get(track_id)
            left = self._left.get(track_id)
            seen = 0 < track_id <= self._max_track_id or track_id in self._left
            corrected = track_id in self._reidentify
        if face is None:
            if not seen:
                raise NotFoundError(f"{where} has no track {track_id}")
            gone = entry if entry is not None else left
            later = "" if gone is None or gone.event_id is None else (
                f"; its face can still be corrected from the events page (event {gone.event_id})"
            )
            raise ConflictError(f"track {track_id} is no longer in view on {where} (the face left){later}")
        if corrected:
            raise ConflictError(f"track {track_id} was corrected already; it is being identified again")
        if face.state is not IdentityState.KNOWN or face.name is None:
            what = "unknown" if face.state is IdentityState.UNKNOWN else "not identified yet"
            raise ConflictError(f"track {track_id} is not named anybody ({what}): there is no name to correct")
        if entry is None or entry.name != face.name or entry.event_id is None:
            raise ConflictError(f"track {track_id}: its name {face.name!r} has no stored event to correct (yet)")
        if expected is not None and expected != entry.event_id:
            raise ConflictError(
                f"track {track_id} has been named {entry.name!r} since (event {entry.event_id}); look again and retry"
            )
        if not entry.correctable:
            raise ConflictError(f"track {track_id}: the event of its name (event {entry.event_id}) keeps no face to correct")
        return entry.event_id

    def reidentify(self, track_id: int) -> None:
        """Have track ``track_id`` named afresh (its name was corrected): it is shown
        pending at once, and the pipeline drops its vote before the next frame."""
        with self._lock:
            self._named.pop(track_id, None)
            self._reidentify.add(track_id)

    def event_corrected(self, event_id: int) -> bool:
        """Event ``event_id`` was corrected (say from the events page): re-identify the live
        track whose current name it gave, if any. Returns whether there was one."""
        with self._lock:
            tracks = [tid for tid, entry in self._named.items() if entry.event_id == event_id]
        for tid in tracks:
            self.reidentify(tid)
        return bool(tracks)

    def take_reidentify(self) -> set[int]:
        """The tracks to re-identify, once (called by :class:`WebSink` on the pipeline's thread)."""
        with self._lock:
            taken, self._reidentify = self._reidentify, set()
        return taken

    def info(self) -> dict[str, Any]:
        """What ``GET /api/sources`` says about this source."""
        with self._lock:
            state, message, fps, frames, lag = self.state, self.message, self.fps, self.frames, self.lag_ms
        source = self._source
        stats = source.stats() if source is not None else None
        return {
            "id": self.index,
            "name": self.name,
            "source": public_source(self.spec if self.name is not None else self.source_id),
            "dropped": stats.dropped if stats is not None else 0,
            "lag_ms": round(lag, 1),
            "kind": self.kind or None,
            "status": state.value,
            "message": message or None,
            "fps": round(fps, 1),
            "frames": frames,
            "tracks": self.tracks() if state is SourceState.LIVE else [],
            "stream_url": f"/api/sources/{self.index}/stream",
            "snapshot_url": f"/api/sources/{self.index}/snapshot",
        }
