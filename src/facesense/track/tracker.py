"""Face tracking between frames: every face keeps a track id while it stays visible.

* **Matching**: each detection pass, track boxes predicted for this frame are matched
  to the new detections by IoU (:func:`~facesense.track.assignment.match_boxes`), then
  the leftovers by centre distance (:func:`~facesense.track.assignment.centre_gain`).
* **Motion**: a constant-velocity model per track (box centre and size per frame,
  exponentially smoothed), so a moving face still overlaps its prediction when
  detection runs only every N frames, and :meth:`Tracker.predict` can place boxes on
  the frames in between.
* **Birth and death**: an unmatched detection starts a track; it is *confirmed* after
  ``min_hits`` matched detections (it **appears**), and dies after ``max_age`` frames
  without a matched detection (it **leaves**). A cut to another shot
  (``update(new_scene=True)``) ends every track.

Who a track is, is not the tracker's business: the identity stage
(:class:`facesense.identity.IdentityStage`) names tracks, tells the tracker the name
its events should carry (:meth:`Tracker.set_name`) and splits a track that jumped to
another person (:meth:`Tracker.split`).

A tracker is stateful and not thread-safe: one consumer thread drives it. Frames are
counted by calls: each :meth:`Tracker.update` or :meth:`Tracker.predict` is one frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from facesense.errors import ConfigError
from facesense.track.assignment import Matching, assign, centre_gain, match_boxes, to_cxcywh, to_xyxy
from facesense.types import Event, EventType, Faces, PendingEvent

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.types import Frame

logger = logging.getLogger(__name__)

__all__ = ["TrackInfo", "Tracker", "TrackerConfig"]

UNSEEN_VELOCITY_DECAY = 0.5
"""A track missed by a detection pass keeps this share of its velocity: an unseen face
is more likely to have stopped than to keep going."""


@dataclass(frozen=True, kw_only=True)
class TrackerConfig:
    """Settings of the tracker.

    Attributes:
        iou_threshold: minimum IoU between a predicted track box and a detection to match.
        max_centre_shift: second matching pass, for tracks and detections the IoU pass
            left over: a detection whose centre lies within this many box sides of a
            track's predicted centre (and of similar size) continues it. Catches fast
            faces with sparse detection; 0 turns the pass off.
        max_age: frames a track survives without a matched detection.
        min_hits: matched detections before a track is confirmed (appears, can be named).
        velocity_smoothing: weight of the newest motion measurement, in (0, 1].
        max_extrapolate: frames the constant-velocity prediction runs before it stops.
        matching: Hungarian or greedy assignment.
    """

    iou_threshold: float = 0.3
    max_centre_shift: float = 1.0
    max_age: int = 30
    min_hits: int = 2
    velocity_smoothing: float = 0.5
    max_extrapolate: int = 15
    matching: Matching = Matching.AUTO

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "matching", Matching(self.matching))
        except ValueError as exc:
            choices = ", ".join(m.value for m in Matching)
            raise ConfigError(f"matching must be one of {choices}, got {self.matching!r}") from exc
        if not 0.0 < self.iou_threshold < 1.0:
            raise ConfigError(f"iou_threshold must be in (0, 1), got {self.iou_threshold}")
        for name in ("max_age", "min_hits"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_centre_shift < 0:
            raise ConfigError(f"max_centre_shift must be >= 0, got {self.max_centre_shift}")
        if self.max_extrapolate < 0:
            raise ConfigError(f"max_extrapolate must be >= 0, got {self.max_extrapolate}")
        if not 0.0 < self.velocity_smoothing <= 1.0:
            raise ConfigError(f"velocity_smoothing must be in (0, 1], got {self.velocity_smoothing}")


@dataclass(frozen=True, kw_only=True)
class TrackInfo:
    """A read-only view of one track, from :meth:`Tracker.track`.

    Attributes:
        track_id: the track.
        confirmed: it has had ``min_hits`` matched detections (it has appeared).
        since_update: frames since its last matched detection (0: matched in the latest
            :meth:`Tracker.update`).
        hits: matched detections so far.
        xyxy: ``(4,)`` float32 box of its last matched detection.
    """

    track_id: int
    confirmed: bool
    since_update: int
    hits: int
    xyxy: npt.NDArray[np.float32]




@dataclass(eq=False)
class _Track:
    track_id: int
    box: npt.NDArray[np.float64]  # cx, cy, w, h of the last matched detection
    landmarks: npt.NDArray[np.float32]  # (5, 2) of the last matched detection
    score: float
    velocity: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(4))
    hits: int = 1
    since_update: int = 0  # frames since the last matched detection
    missed_passes: int = 0  # detection passes in a row without a match
    confirmed: bool = False
    name: str | None = None  # what its events say (set by the identity stage)
    confidence: float = 0.0

    def predicted_box(self, max_extrapolate: int) -> npt.NDArray[np.float64]:
        steps = min(self.since_update, max_extrapolate)
        box = self.box + self.velocity * steps
        box[2:] = np.maximum(box[2:], 1.0)
        return box

    def xyxy(self) -> tuple[float, float, float, float]:
        x1, y1, x2, y2 = (float(v) for v in to_xyxy(self.box)[0])
        return x1, y1, x2, y2


class Tracker:
    """IoU tracker with constant-velocity prediction.

    Args:
        config: tracker settings; defaults when ``None``.

    Example:
        >>> tracker = Tracker()
        >>> tracked = tracker.update(detector.detect(image))   # a detection frame
        >>> between = tracker.predict()                        # a frame without one
        >>> tracked.track_ids
        array([1, 2])
        >>> tracker.drain_events(frame)                        # appeared / left
    """

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._frames = 0
        self._events: list[PendingEvent] = []

    @property
    def active_count(self) -> int:
        """Tracks alive now (confirmed or not)."""
        return len(self._tracks)

    @property
    def frames(self) -> int:
        """Frames seen so far (calls of :meth:`update` and :meth:`predict`)."""
        return self._frames

    # -- per frame ---------------------------------------------------------------
    def update(self, faces: Faces, *, new_scene: bool = False) -> Faces:
        """Match a frame's detections to the tracks; one call per detection frame.

        Args:
            faces: this frame's detections (every field is passed through).
            new_scene: the video cut to another shot since the last call: every existing
                track leaves now and no detection continues one.

        Returns:
            ``faces`` with ``track_ids`` filled for every face (new tracks for
            unmatched ones).
        """
        cfg = self.config
        n = len(faces)
        if new_scene:
            self.finish()
        self._advance()
        predicted = (
            to_xyxy(np.stack([t.predicted_box(cfg.max_extrapolate) for t in self._tracks]))
            if self._tracks
            else np.zeros((0, 4))
        )
        pairs = match_boxes(predicted, faces.xyxy, iou_threshold=cfg.iou_threshold, matching=cfg.matching)
        if cfg.max_centre_shift > 0 and len(pairs) < min(len(self._tracks), n):
            # Second pass over the leftovers, by centre distance.
            left_t = np.setdiff1d(np.arange(len(self._tracks)), pairs[:, 0])
            left_d = np.setdiff1d(np.arange(n), pairs[:, 1])
            gain = centre_gain(predicted[left_t], faces.xyxy[left_d], max_shift=cfg.max_centre_shift)
            extra = assign(gain, min_gain=1e-6, matching=cfg.matching)
            if len(extra):
                extra = np.stack([left_t[extra[:, 0]], left_d[extra[:, 1]]], axis=1)
                pairs = np.concatenate([pairs, extra])
        det_box = to_cxcywh(faces.xyxy)
        ids = np.zeros(n, np.int64)
        matched_tracks: set[int] = set()
        for ti, di in pairs:
            t = self._tracks[ti]
            dt = max(t.since_update, 1)
            step = (det_box[di] - t.box) / dt
            a = cfg.velocity_smoothing if t.hits > 1 else 1.0
            t.velocity = a * step + (1 - a) * t.velocity
            t.box = det_box[di].copy()
            t.landmarks = faces.landmarks[di].copy()
            t.score = float(faces.scores[di])
            t.hits += 1
            t.since_update = 0
            t.missed_passes = 0
            ids[di] = t.track_id
            matched_tracks.add(int(ti))
            self._maybe_confirm(t)
        for ti, t in enumerate(self._tracks):
            if ti not in matched_tracks:
                t.missed_passes += 1
                t.velocity *= UNSEEN_VELOCITY_DECAY
        matched_dets = {int(d) for d in pairs[:, 1]}
        for di in range(n):
            if di in matched_dets:
                continue
            t = _Track(
                track_id=self._new_id(),
                box=det_box[di].copy(),
                landmarks=faces.landmarks[di].copy(),
                score=float(faces.scores[di]),
            )
            self._tracks.append(t)
            ids[di] = t.track_id
            self._maybe_confirm(t)
        self._reap()
        return faces.replace(track_ids=ids)

    def predict(self) -> Faces:
        """Advance one frame without detection and return the tracks' predicted faces.

        Only tracks matched in the latest detection pass are returned (a face that
        the last detection missed is not drawn where it might no longer be).

        Returns:
            Faces with ``track_ids``; landmarks moved with the box; scores are those of
            the last detection; ``quality`` NaN (not measured).
        """
        cfg = self.config
        self._advance()
        self._reap()
        shown = [t for t in self._tracks if t.missed_passes == 0]
        if not shown:
            return Faces.empty().replace(track_ids=np.zeros(0, np.int64), quality=np.zeros(0, np.float32))
        boxes = np.stack([t.predicted_box(cfg.max_extrapolate) for t in shown])
        landmarks = np.stack(
            [(t.landmarks - t.box[:2]) * (b[2:] / t.box[2:]) + b[:2] for t, b in zip(shown, boxes, strict=True)]
        )
        return Faces(
            xyxy=to_xyxy(boxes).astype(np.float32),
            scores=np.array([t.score for t in shown], np.float32),
            landmarks=landmarks,
            track_ids=np.array([t.track_id for t in shown], np.int64),
            quality=np.full(len(shown), np.nan, np.float32),
        )

    def finish(self) -> None:
        """End of stream (or a cut): every confirmed track leaves (see :meth:`drain_events`)."""
        for t in self._tracks:
            if t.confirmed:
                self._emit(EventType.LEFT, t)
        self._tracks.clear()

    def drain_events(self, frame: Frame) -> list[Event]:
        """The events since the last call, oldest first, stamped with ``frame``.

        ``APPEARED`` (a track was confirmed) and ``LEFT`` (it was not seen for
        ``max_age`` frames, was split, or the shot or stream ended), with the name and
        confidence last given to :meth:`set_name`.

        Args:
            frame: the frame they happened in (its timestamp, index and source id).
        """
        pending, self._events = self._events, []
        return [p.stamp(frame) for p in pending]

    # -- for the identity stage ----------------------------------------------------
    def track(self, track_id: int) -> TrackInfo | None:
        """The live track ``track_id``, or ``None`` when it has left (or never was)."""
        t = self._find(track_id)
        if t is None:
            return None
        return TrackInfo(
            track_id=t.track_id,
            confirmed=t.confirmed,
            since_update=t.since_update,
            hits=t.hits,
            xyxy=np.array(t.xyxy(), np.float32),
        )

    def set_name(self, track_id: int, name: str | None, confidence: float) -> None:
        """The name and confidence the track's ``LEFT`` event will carry (its voted name).

        Raises:
            ConfigError: no live track has this id.
        """
        t = self._require(track_id)
        t.name, t.confidence = name, float(confidence)

    def split(self, track_id: int) -> int:
        """End a track and start a new one in its place (same box, motion and hits).

        For a track that turned out to follow another person (two faces crossed): the
        old track leaves and, if it was confirmed, the new one appears at once, without
        a name.

        Returns:
            The new track's id.

        Raises:
            ConfigError: no live track has this id.
        """
        old = self._require(track_id)
        new = _Track(
            track_id=self._new_id(),
            box=old.box.copy(),
            landmarks=old.landmarks.copy(),
            score=old.score,
            velocity=old.velocity.copy(),
            hits=old.hits,
            since_update=old.since_update,
            missed_passes=old.missed_passes,
            confirmed=old.confirmed,
        )
        if old.confirmed:
            self._emit(EventType.LEFT, old)
            self._emit(EventType.APPEARED, new)
        self._tracks[self._tracks.index(old)] = new
        logger.debug("track %d split: now track %d", old.track_id, new.track_id)
        return new.track_id

    # -- internals ---------------------------------------------------------------
    def _advance(self) -> None:
        self._frames += 1
        for t in self._tracks:
            t.since_update += 1

    def _new_id(self) -> int:
        tid = self._next_id
        self._next_id += 1
        return tid

    def _find(self, track_id: int) -> _Track | None:
        for t in self._tracks:
            if t.track_id == track_id:
                return t
        return None

    def _require(self, track_id: int) -> _Track:
        t = self._find(track_id)
        if t is None:
            raise ConfigError(f"no live track {track_id}")
        return t

    def _maybe_confirm(self, t: _Track) -> None:
        if not t.confirmed and t.hits >= self.config.min_hits:
            t.confirmed = True
            self._emit(EventType.APPEARED, t)

    def _reap(self) -> None:
        alive: list[_Track] = []
        for t in self._tracks:
            if t.since_update > self.config.max_age:
                if t.confirmed:
                    self._emit(EventType.LEFT, t)
            else:
                alive.append(t)
        self._tracks = alive

    def _emit(self, kind: EventType, t: _Track) -> None:
        self._events.append(PendingEvent(kind, t.track_id, t.name, t.confidence, t.xyxy()))
