"""The sources ``facesense serve`` watches: one :class:`SourceRunner` thread per source.

Each runner drives its own :class:`~facesense.pipeline.Pipeline` (its own tracker;
the detector and embedder are the engine's, shared) and keeps what the pages show:
the newest annotated frame (JPEG-encoded on demand, once per frame, for the MJPEG
stream), the current tracks, the FPS and the status (``starting``, ``live``,
``reconnecting``, ``ended``, ``error``). :class:`WebSink` stores the events with a
crop of the face, and once per track that stays unknown an ``unknown`` event with
the embedding of its best face, so it can be named (enrolled) from the events page.

Files and folders are played at their own frame rate (a dashboard shows them like
a camera, not as fast as the CPU allows); live sources keep the newest frame. A
runner whose pipeline fails retries with backoff until the server stops.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from facesense.errors import FacesenseError
from facesense.web.engine import GalleryMatcher
from facesense.web.events import NewEvent

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.capture import VideoSource
    from facesense.pipeline import FrameResult, WatchEvent
    from facesense.types import Faces, Frame
    from facesense.web.engine import Engine
    from facesense.web.events import EventStore

logger = logging.getLogger(__name__)

__all__ = ["SourceRunner", "WebSink", "face_crop_jpeg", "public_source"]

CROP_PX = 128
CROP_MARGIN_RATIO = 0.25
JPEG_QUALITY = 80
STREAM_MAX_SIDE_PX = 1280  # larger frames are shrunk for the browser
RETRY_INITIAL_S = 1.0
RETRY_MAX_S = 30.0
CANDIDATE_MAX_IDLE_FRAMES = 120  # forget a track's best face when not seen for this long
PACE_MAX_LAG_S = 1.0  # a file source further behind than this stops trying to catch up


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


def face_crop_jpeg(image: npt.NDArray[np.uint8], xyxy: npt.ArrayLike, *, size_px: int = CROP_PX) -> bytes:
    """A square JPEG of one face (box grown to a square plus 25 % margin per side).

    Args:
        image: ``(H, W, 3)`` uint8 BGR.
        xyxy: ``(4,)`` the face box, pixels.
        size_px: side of the crop.
    """
    import cv2

    from facesense.align import CropConfig, crop_faces
    from facesense.types import Faces

    box = np.asarray(xyxy, np.float32).reshape(1, 4)
    if not np.all(np.isfinite(box)) or box[0, 2] <= box[0, 0] or box[0, 3] <= box[0, 1]:
        return b""
    faces = Faces(xyxy=box, scores=np.ones(1, np.float32), landmarks=np.zeros((1, 5, 2), np.float32))
    crop = crop_faces(image, faces, CropConfig(size_px=size_px, margin_ratio=CROP_MARGIN_RATIO, margin_px=0.0, square=True))
    ok, buf = cv2.imencode(".jpg", crop[0], [cv2.IMWRITE_JPEG_QUALITY, 88])
    return buf.tobytes() if ok else b""


@dataclass
class _Candidate:
    """The best view so far of one track."""

    quality: float
    image: npt.NDArray[np.uint8]
    face: Faces  # one row, full-frame coordinates
    frame_index: int
    media_time: float
    last_seen: int


class WebSink:
    """A pipeline sink that feeds a :class:`SourceRunner` and the events store.

    Args:
        runner: receives every frame's result (for the stream and the live page).
        engine: embeds the best face of tracks that stay unknown.
        events: where events go (``None``: nowhere).
        unknown_after_frames: store an unknown track this many frames after it was
            first voted unknown (or when it leaves, if sooner).
    """

    def __init__(self, runner: SourceRunner, engine: Engine, events: EventStore | None, *, unknown_after_frames: int) -> None:
        self.runner = runner
        self.engine = engine
        self.events = events
        self.unknown_after_frames = unknown_after_frames
        self._best: dict[int, _Candidate] = {}
        self._unknown_since: dict[int, int] = {}
        self._stored_unknown: set[int] = set()

    # -- sink interface ------------------------------------------------------------
    def write(self, frame: Frame, result: FrameResult) -> None:
        """Publish the frame and store its events."""
        self.runner._publish(result)
        self._track_candidates(frame, result)
        for event in result.events:
            self._store(event, frame)
        self._check_unknowns(frame, result)
        if frame.index % 30 == 0:
            self._forget_idle(frame.index)

    def notify(self, events: Sequence[WatchEvent]) -> None:
        """Events between frames: source status changes and the last tracks leaving."""
        for event in events:
            if event.type.value == "status":
                self.runner._set_status_from_event(event)
            self._store(event, None)

    def close(self) -> None:
        """Forget every track."""
        self._best.clear()
        self._unknown_since.clear()

    # -- internals -----------------------------------------------------------------
    def _track_candidates(self, frame: Frame, result: FrameResult) -> None:
        faces = result.faces
        if not result.detected or faces.track_ids is None:
            return
        for i, tid in enumerate(faces.track_ids.tolist()):
            q = float(result.quality[i]) if i < len(result.quality) else math.nan
            if not math.isfinite(q):
                continue
            best = self._best.get(tid)
            if best is None or q > best.quality:
                self._best[tid] = _Candidate(q, frame.image, faces[[i]], frame.index, frame.timestamp, frame.index)
            else:
                best.last_seen = frame.index

    def _check_unknowns(self, frame: Frame, result: FrameResult) -> None:
        faces = result.faces
        if faces.track_ids is None or faces.names is None:
            return
        for i, tid in enumerate(faces.track_ids.tolist()):
            if faces.names[i] is not None:
                self._unknown_since.pop(tid, None)
                continue
            voted_unknown = i < len(result.confidences) and float(result.confidences[i]) > 0
            if not voted_unknown or tid in self._stored_unknown:
                continue
            since = self._unknown_since.setdefault(tid, frame.index)
            if frame.index - since >= self.unknown_after_frames:
                self._store_unknown(tid, frame.source_id)

    def _forget_idle(self, index: int) -> None:
        for tid in [t for t, c in self._best.items() if index - c.last_seen > CANDIDATE_MAX_IDLE_FRAMES]:
            self._best.pop(tid, None)
            self._unknown_since.pop(tid, None)

    def _store(self, event: WatchEvent, frame: Frame | None) -> None:
        kind = event.type.value
        crop = b""
        tid = event.track_id
        if kind in ("appeared", "recognized") and frame is not None and event.xyxy is not None:
            crop = face_crop_jpeg(frame.image, event.xyxy)
        elif kind == "left" and tid is not None:
            if event.name is None and tid in self._unknown_since and tid not in self._stored_unknown:
                self._store_unknown(tid, event.source or self.runner.source_id)
            best = self._best.pop(tid, None)
            if best is not None:
                crop = face_crop_jpeg(best.image, best.face.xyxy[0])
            self._unknown_since.pop(tid, None)
            self._stored_unknown.discard(tid)
        self._add(
            NewEvent(
                time=time.time(),
                source=public_source(event.source or self.runner.source_id),
                type=kind,
                track_id=tid,
                name=event.name,
                confidence=event.confidence,
                xyxy=event.xyxy,
                frame=event.frame,
                media_time=event.time if kind != "status" else None,
                status=event.status,
                message=self.runner.scrub(event.message),
                crop_jpeg=crop,
            )
        )

    def _store_unknown(self, tid: int, source: str) -> None:
        self._stored_unknown.add(tid)
        best = self._best.get(tid)
        if best is None:
            return
        embedding = None
        model_id = None
        try:
            embedded = self.engine.analyzer.embedder.embed(best.image, best.face)
            if embedded.embeddings is not None and len(embedded.embeddings):
                embedding = embedded.embeddings[0]
                model_id = self.engine.model_id
        except FacesenseError as exc:
            logger.warning("cannot embed unknown track %d: %s", tid, exc)
        self._add(
            NewEvent(
                time=time.time(),
                source=public_source(source),
                type="unknown",
                track_id=tid,
                confidence=None,
                xyxy=tuple(float(v) for v in best.face.xyxy[0]),  # type: ignore[arg-type]
                frame=best.frame_index,
                media_time=best.media_time,
                crop_jpeg=face_crop_jpeg(best.image, best.face.xyxy[0]),
                embedding=embedding,
                model_id=model_id,
            )
        )

    def _add(self, event: NewEvent) -> None:
        if self.events is None:
            return
        try:
            self.events.add(event)
        except FacesenseError as exc:
            logger.error("cannot store an event: %s", exc)


class SourceRunner:
    """One source, watched on its own thread.

    Args:
        index: the source's number in URLs (``/api/sources/{index}``).
        spec: what the user passed to ``--source``.
        engine: models and matcher.
        events: where events go.
        loop: play files and folders again and again.
        every: detect every N frames.
        unknown_after_frames: see :class:`WebSink`.
    """

    def __init__(
        self,
        index: int,
        spec: str,
        engine: Engine,
        events: EventStore | None,
        *,
        loop: bool = False,
        every: int = 1,
        unknown_after_frames: int = 30,
    ) -> None:
        self.index = index
        self.spec = spec
        self.engine = engine
        self.events = events
        self.loop = loop
        self.every = every
        self.unknown_after_frames = unknown_after_frames
        self.source_id = spec
        self.kind = ""
        self.status = "starting"
        self.message = ""
        self.fps = 0.0
        self.frames = 0
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self._latest: FrameResult | None = None
        self._seq = 0
        self._jpeg: tuple[int, bytes] = (0, b"")
        self._stop = threading.Event()
        self._pipeline: Any = None
        self._thread: threading.Thread | None = None

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

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop watching and wait for the thread."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            if self._thread.is_alive():  # pragma: no cover - a driver that ignores timeouts
                logger.warning("source %s did not stop in time", self.source_id)

    def _run(self) -> None:
        delay = RETRY_INITIAL_S
        while not self._stop.is_set():
            try:
                ended = self._watch_once()
            except FacesenseError as exc:
                self._set_status("error", str(exc))
                logger.error("source %s: %s (retrying in %.0f s)", self.source_id, exc, delay)
            except Exception as exc:
                self._set_status("error", f"internal error: {type(exc).__name__}")
                logger.exception("source %s failed (retrying in %.0f s)", self.source_id, delay)
            else:
                if ended:
                    self._set_status("ended", "end of the video")
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

        source = VideoSource(self.spec, CaptureConfig(loop=self.loop))
        try:
            source.open()
        except BaseException:
            source.close()
            raise
        self.source_id = source.source_id
        self.kind = source.kind.value
        sink = WebSink(self, self.engine, self.events, unknown_after_frames=self.unknown_after_frames)
        frames: Any = source if source.live else _paced(source, self._stop)
        pipeline = Pipeline(
            frames,
            detector=self.engine.live_detector,
            embedder=self.engine.analyzer.embedder,
            matcher=GalleryMatcher(self.engine),
            tracker=default_tracker(self.every),
            sinks=[sink],
            config=PipelineConfig(every=self.every),
        )
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

    def _set_status(self, status: str, message: str) -> None:
        with self._lock:
            self.status = status
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

    def _publish(self, result: FrameResult) -> None:
        with self._lock:
            self._latest = result
            self._seq += 1
            self.frames += 1
            self.fps = float(result.fps)
            if self.status != "live":
                self.status = "live"
                self.message = ""

    def _set_status_from_event(self, event: WatchEvent) -> None:
        with self._lock:
            if event.status in ("disconnected", "reconnecting"):
                self.status = "reconnecting"
            elif event.status == "reconnected":
                self.status = "live"
            self.message = self.scrub(event.message) or ""

    def latest_jpeg(self) -> tuple[int, bytes]:
        """``(seq, JPEG)`` of the newest annotated frame; ``(0, b"")`` before the first."""
        with self._lock:
            result, seq = self._latest, self._seq
        if result is None:
            return 0, b""
        with self._encode_lock:
            if self._jpeg[0] == seq:
                return self._jpeg
            import cv2

            from facesense.sinks.draw import annotate

            image = annotate(result)
            h, w = image.shape[:2]
            if max(h, w) > STREAM_MAX_SIDE_PX:
                scale = STREAM_MAX_SIDE_PX / max(h, w)
                image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if ok:
                self._jpeg = (seq, buf.tobytes())
            return self._jpeg

    def tracks(self) -> list[dict[str, Any]]:
        """The faces on the newest frame: track id, name, confidence, box, state."""
        with self._lock:
            result = self._latest
        if result is None:
            return []
        faces = result.faces
        out = []
        for i, face in enumerate(faces):
            conf = float(result.confidences[i]) if i < len(result.confidences) else 0.0
            state = "known" if face.name is not None else ("unknown" if conf > 0 else "pending")
            out.append(
                {
                    "track_id": face.track_id,
                    "name": face.name,
                    "confidence": round(conf, 4),
                    "box": [round(float(v), 1) for v in face.xyxy],
                    "state": state,
                }
            )
        return out

    def info(self) -> dict[str, Any]:
        """What ``GET /api/sources`` says about this source."""
        with self._lock:
            status, message, fps, frames = self.status, self.message, self.fps, self.frames
        return {
            "id": self.index,
            "source": public_source(self.source_id),
            "kind": self.kind or None,
            "status": status,
            "message": message or None,
            "fps": round(fps, 1),
            "frames": frames,
            "tracks": self.tracks() if status == "live" else [],
            "stream_url": f"/api/sources/{self.index}/stream",
            "snapshot_url": f"/api/sources/{self.index}/snapshot",
        }


def _paced(source: VideoSource, stop: threading.Event) -> Iterator[Frame]:
    """Frames of a file or folder, released no faster than their timestamps say."""
    start_wall = start_media = last_media = None
    try:
        for frame in source:
            if stop.is_set():
                return
            now = time.monotonic()
            ts = float(frame.timestamp)
            if start_wall is None or last_media is None or ts < last_media:
                start_wall, start_media = now, ts
            else:
                due = start_wall + (ts - start_media)  # type: ignore[operator]
                if due > now:
                    if stop.wait(min(due - now, PACE_MAX_LAG_S)):
                        return
                elif now - due > PACE_MAX_LAG_S:
                    start_wall, start_media = now, ts  # behind: do not rush to catch up
            last_media = ts
            yield frame
    finally:
        source.close()
