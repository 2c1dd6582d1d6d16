"""Face tracking between frames and a per-track identity vote.

:class:`Tracker` gives every face a track id that it keeps while it stays visible:

* **Matching**: each detection pass, track boxes predicted for this frame are matched
  to the new detections by IoU, with the Hungarian algorithm
  (``scipy.optimize.linear_sum_assignment``) or, when SciPy is missing or
  ``matching=GREEDY``, greedily by descending IoU. Pairs under ``iou_threshold`` never
  match.
* **Motion**: a constant-velocity model per track (box centre and size per frame,
  exponentially smoothed), so a moving face still overlaps its prediction when
  detection runs only every N frames, and :meth:`Tracker.predict` can place boxes on
  the frames in between.
* **Birth and death**: an unmatched detection starts a track; it is *confirmed* after
  ``min_hits`` matched detections (which is when it "appears"), and dies after
  ``max_age`` frames without a matched detection (when it "leaves").
* **Identity**: each track keeps an :class:`IdentityVote` over its recent recognition
  samples, weighted by face quality (:func:`face_quality`: size, sharpness, detector
  score), with hysteresis, so a name does not flicker from frame to frame.
  :meth:`Tracker.embed_mask` says which faces need an embedding now: newly confirmed
  tracks, tracks not embedded for ``reembed_every`` frames, and tracks whose face is
  clearly better than the best one embedded so far.
* **No name passes between people**: a cut to another shot
  (:class:`SceneCutDetector`, ``update(new_scene=True)``) ends every track, and a track
  whose new embedding is far from its earlier ones (two faces crossed) is split into a
  new track (``split_distance``), at most ``reembed_every`` frames after the swap.

A tracker is stateful and not thread-safe: one consumer thread drives it. Frames are
counted by calls: each :meth:`Tracker.update` or :meth:`Tracker.predict` is one frame.
"""

from __future__ import annotations

import enum
import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from facesense.errors import ConfigError
from facesense.geometry import iou_matrix
from facesense.types import Faces

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy.typing as npt

logger = logging.getLogger(__name__)

__all__ = [
    "EventType",
    "IdentityVote",
    "Matching",
    "SceneCutDetector",
    "TrackEvent",
    "Tracker",
    "TrackerConfig",
    "assign",
    "centre_gain",
    "face_quality",
    "match_boxes",
]

# face_quality: a face this many pixels on its shorter side counts as full size.
QUALITY_REF_SIZE_PX = 80.0
# Variance of the Laplacian of a 64x64 grey face crop that counts as fully sharp.
QUALITY_REF_SHARPNESS = 150.0
# A fully blurred face still keeps this share of its weight.
QUALITY_SHARPNESS_FLOOR = 0.25
_SHARPNESS_CROP_PX = 64


class Matching(str, enum.Enum):
    """How tracks are assigned to detections."""

    AUTO = "auto"  # Hungarian when SciPy is installed, greedy otherwise
    HUNGARIAN = "hungarian"
    GREEDY = "greedy"


class EventType(str, enum.Enum):
    """What happened to a track."""

    APPEARED = "appeared"
    RECOGNIZED = "recognized"
    LEFT = "left"


@dataclass(frozen=True, kw_only=True)
class TrackEvent:
    """A change in a track's life, reported by :meth:`Tracker.drain_events`.

    Attributes:
        type: appeared (confirmed), recognized (voted name became a name) or left.
        track_id: the track.
        name: the voted name at that moment (``None`` = unknown).
        confidence: the vote's confidence in [0, 1] (0 when there are no samples).
        xyxy: ``(4,)`` float32 last box of the track.
    """

    type: EventType
    track_id: int
    name: str | None
    confidence: float
    xyxy: npt.NDArray[np.float32]


@dataclass(frozen=True, kw_only=True)
class TrackerConfig:
    """Settings of the tracker and identity vote.

    Attributes:
        iou_threshold: minimum IoU between a predicted track box and a detection to match.
        max_centre_shift: second matching pass, for tracks and detections the IoU pass
            left over: a detection whose centre lies within this many box sides of a
            track's predicted centre (and of similar size) continues it. Catches fast
            faces with sparse detection; 0 turns the pass off.
        max_age: frames a track survives without a matched detection.
        min_hits: matched detections before a track is confirmed (appears, is embedded).
        velocity_smoothing: weight of the newest motion measurement, in (0, 1].
        max_extrapolate: frames the constant-velocity prediction runs before it stops.
        matching: Hungarian or greedy assignment.
        reembed_every: frames between two embeddings of the same track.
        warmup_samples: a track with fewer recognition samples than this is embedded
            three times as often, so its name settles quickly.
        reembed_quality_gain: re-embed early when the face quality exceeds the best
            embedded quality by this fraction.
        vote_window: recognition samples a track's vote remembers.
        switch_ratio: a challenger name needs this many times the current name's
            weight to take over (hysteresis).
        split_distance: when a track's new embedding is farther than this (L2, on
            normalised embeddings) from the mean of its earlier ones, the track has
            jumped to another person (two faces crossed): it ends and a new track takes
            over, so a name never passes from one person to another. 0 turns it off.
            Measured on the Hamilton clip with FaceNet: a face against its own track's
            mean stays under 1.08 (a profile turning frontal), different people's means
            are 1.0-1.5 apart.
    """

    iou_threshold: float = 0.3
    max_centre_shift: float = 1.0
    max_age: int = 30
    min_hits: int = 2
    velocity_smoothing: float = 0.5
    max_extrapolate: int = 15
    matching: Matching = Matching.AUTO
    reembed_every: int = 15
    warmup_samples: int = 3
    reembed_quality_gain: float = 0.25
    vote_window: int = 16
    switch_ratio: float = 1.5
    split_distance: float = 1.2

    def __post_init__(self) -> None:
        object.__setattr__(self, "matching", Matching(self.matching))
        if not 0.0 < self.iou_threshold < 1.0:
            raise ConfigError(f"iou_threshold must be in (0, 1), got {self.iou_threshold}")
        if self.warmup_samples < 0:
            raise ConfigError(f"warmup_samples must be >= 0, got {self.warmup_samples}")
        for name in ("max_age", "min_hits", "reembed_every", "vote_window"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_centre_shift < 0:
            raise ConfigError(f"max_centre_shift must be >= 0, got {self.max_centre_shift}")
        if self.max_extrapolate < 0:
            raise ConfigError(f"max_extrapolate must be >= 0, got {self.max_extrapolate}")
        if not 0.0 < self.velocity_smoothing <= 1.0:
            raise ConfigError(f"velocity_smoothing must be in (0, 1], got {self.velocity_smoothing}")
        if self.reembed_quality_gain < 0:
            raise ConfigError(f"reembed_quality_gain must be >= 0, got {self.reembed_quality_gain}")
        if self.split_distance < 0:
            raise ConfigError(f"split_distance must be >= 0, got {self.split_distance}")
        if self.switch_ratio < 1.0:
            raise ConfigError(f"switch_ratio must be >= 1, got {self.switch_ratio}")


# --------------------------------------------------------------------------- quality


def face_quality(
    image: npt.NDArray[np.uint8] | None,
    faces: Faces,
    *,
    ref_size_px: float = QUALITY_REF_SIZE_PX,
    ref_sharpness: float = QUALITY_REF_SHARPNESS,
) -> npt.NDArray[np.float32]:
    """How much a face is worth as a recognition sample, in [0, 1].

    ``score * size * sharpness`` where ``size`` is the shorter box side over
    ``ref_size_px`` (capped at 1) and ``sharpness`` maps the variance of the Laplacian
    of a 64x64 grey crop onto [``QUALITY_SHARPNESS_FLOOR``, 1]. Without an image the
    sharpness term is 1.

    Args:
        image: ``(H, W, 3)`` uint8 BGR, or ``None``.
        faces: the faces (boxes and scores are used).

    Returns:
        ``(N,)`` float32.
    """
    n = len(faces)
    if n == 0:
        return np.zeros((0,), np.float32)
    size = np.clip(faces.size_px / ref_size_px, 0.0, 1.0)
    score = np.clip(faces.scores, 0.0, 1.0)
    sharp = np.ones(n, np.float32)
    if image is not None:
        import cv2

        h, w = image.shape[:2]
        for i, (x1, y1, x2, y2) in enumerate(faces.xyxy):
            xa, ya = int(np.clip(np.floor(x1), 0, w - 1)), int(np.clip(np.floor(y1), 0, h - 1))
            xb, yb = int(np.clip(np.ceil(x2), xa + 1, w)), int(np.clip(np.ceil(y2), ya + 1, h))
            patch = image[ya:yb, xa:xb]
            grey = cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY) if patch.ndim == 3 else patch
            grey = cv2.resize(grey, (_SHARPNESS_CROP_PX, _SHARPNESS_CROP_PX), interpolation=cv2.INTER_AREA)
            var = float(cv2.Laplacian(grey, cv2.CV_32F).var())
            sharp[i] = QUALITY_SHARPNESS_FLOOR + (1 - QUALITY_SHARPNESS_FLOOR) * min(var / ref_sharpness, 1.0)
    return (score * size * sharp).astype(np.float32)


# --------------------------------------------------------------------------- matching


def _has_scipy() -> bool:
    try:
        import scipy.optimize  # noqa: F401
    except ImportError:
        return False
    return True


def assign(
    gain: npt.ArrayLike, *, min_gain: float, matching: Matching | str = Matching.AUTO
) -> npt.NDArray[np.int64]:
    """One-to-one assignment of rows to columns maximising a gain matrix.

    Args:
        gain: ``(N, M)`` pair scores, higher is better.
        min_gain: pairs scoring lower never match.
        matching: Hungarian (maximum total gain) or greedy (highest gain first).

    Returns:
        ``(K, 2)`` int64 pairs ``(i, j)``, sorted by ``i``.
    """
    g = np.asarray(gain, np.float64)
    if g.size == 0:
        return np.zeros((0, 2), np.int64)
    mode = Matching(matching)
    if mode is Matching.AUTO:
        mode = Matching.HUNGARIAN if _has_scipy() else Matching.GREEDY
    pairs: list[tuple[int, int]] = []
    if mode is Matching.HUNGARIAN:
        from scipy.optimize import linear_sum_assignment

        # Pairs under the threshold get no credit so they never displace a real match.
        masked = np.where(g >= min_gain, g, 0.0)
        rows, cols = linear_sum_assignment(masked, maximize=True)
        pairs = [(int(i), int(j)) for i, j in zip(rows, cols, strict=True) if g[i, j] >= min_gain]
    else:
        order = np.argsort(-g, axis=None, kind="stable")
        used_a: set[int] = set()
        used_b: set[int] = set()
        for flat in order:
            i, j = divmod(int(flat), g.shape[1])
            if g[i, j] < min_gain:
                break
            if i in used_a or j in used_b:
                continue
            used_a.add(i)
            used_b.add(j)
            pairs.append((i, j))
    pairs.sort()
    return np.array(pairs, np.int64).reshape(-1, 2)


def match_boxes(
    a_xyxy: npt.ArrayLike,
    b_xyxy: npt.ArrayLike,
    *,
    iou_threshold: float,
    matching: Matching | str = Matching.AUTO,
) -> npt.NDArray[np.int64]:
    """Assign boxes of ``a`` to boxes of ``b`` one-to-one by IoU.

    Args:
        a_xyxy: ``(N, 4)`` boxes (tracks).
        b_xyxy: ``(M, 4)`` boxes (detections).
        iou_threshold: pairs with a lower IoU never match.
        matching: Hungarian (maximum total IoU) or greedy (highest IoU first).

    Returns:
        ``(K, 2)`` int64 pairs ``(i, j)`` of matched rows, sorted by ``i``.
    """
    return assign(iou_matrix(a_xyxy, b_xyxy), min_gain=iou_threshold, matching=matching)


def centre_gain(a_xyxy: npt.ArrayLike, b_xyxy: npt.ArrayLike, *, max_shift: float) -> npt.NDArray[np.float64]:
    """Closeness of box centres for boxes of similar size, in [0, 1].

    ``1 - d / (max_shift * s)`` where ``d`` is the centre distance and ``s`` the
    geometric mean of the two boxes' longer sides; 0 beyond that, and 0 for pairs whose
    sizes differ by more than 1.5x.

    Returns:
        ``(N, M)`` float64.
    """
    a = _to_cxcywh(np.asarray(a_xyxy, np.float64))
    b = _to_cxcywh(np.asarray(b_xyxy, np.float64))
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    side_a = np.maximum(a[:, 2], a[:, 3])[:, None]
    side_b = np.maximum(b[:, 2], b[:, 3])[None, :]
    scale = np.sqrt(side_a * side_b)
    dist = np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])
    gain = 1.0 - dist / (max_shift * scale)
    ratio = np.maximum(side_a, side_b) / np.maximum(np.minimum(side_a, side_b), 1e-6)
    return np.where((gain > 0) & (ratio <= 1.5), gain, 0.0)


# --------------------------------------------------------------------------- identity vote


class IdentityVote:
    """A quality-weighted vote over a track's recent recognition samples.

    Every sample adds its quality as weight to the name it was matched to (``None``
    for unknown). The decided name is the heaviest; a different name takes over only
    when its weight reaches ``switch_ratio`` times the current name's, so one odd
    sample never flips a settled name. Only the last ``window`` samples count, so the
    memory is bounded and an early mistake can be outvoted.

    Args:
        window: samples remembered.
        switch_ratio: hysteresis factor (>= 1).
    """

    def __init__(self, *, window: int = 16, switch_ratio: float = 1.5) -> None:
        self._samples: deque[tuple[str | None, float, float, float]] = deque(maxlen=window)
        self._switch_ratio = switch_ratio
        self._name: str | None = None
        self._decided = False

    def add(self, name: str | None, *, quality: float, confidence: float, distance: float = math.nan) -> None:
        """Record one sample.

        Args:
            name: the matched identity, ``None`` for unknown.
            quality: the face's :func:`face_quality` (its weight; floored at 1e-3).
            confidence: the matcher's confidence in [0, 1].
            distance: the matcher's distance to ``name`` (NaN when unknown).
        """
        self._samples.append((name, max(float(quality), 1e-3), float(np.clip(confidence, 0.0, 1.0)), float(distance)))
        totals = self.totals()
        # Ties go to unknown: a name must win outright.
        best = max(totals, key=lambda k: (totals[k], k is None))
        if not self._decided:
            self._name, self._decided = best, True
        elif best != self._name and totals[best] >= self._switch_ratio * totals.get(self._name, 0.0):
            self._name = best

    def totals(self) -> dict[str | None, float]:
        """Summed weight per name over the window."""
        out: dict[str | None, float] = {}
        for name, weight, _, _ in self._samples:
            out[name] = out.get(name, 0.0) + weight
        return out

    @property
    def samples(self) -> int:
        """Samples in the window."""
        return len(self._samples)

    @property
    def name(self) -> str | None:
        """The decided name (``None``: unknown or no samples yet)."""
        return self._name

    @property
    def confidence(self) -> float:
        """Weighted share of the window that supports the decided name, times the
        matcher's confidence in those samples; 0 without samples."""
        total = sum(w for _, w, _, _ in self._samples)
        if total <= 0:
            return 0.0
        support = sum(w * c for n, w, c, _ in self._samples if n == self._name)
        return float(support / total)

    @property
    def distance(self) -> float:
        """Mean distance of the samples supporting the decided name (NaN if none)."""
        values = [d for n, _, _, d in self._samples if n == self._name and not math.isnan(d)]
        return float(np.mean(values)) if values else math.nan


# --------------------------------------------------------------------------- scene cuts

# A cut changes both the colour distribution and the layout of the picture; camera
# motion or lighting flicker changes one of them a little. Measured on the Hamilton
# clip: its three cuts give a Bhattacharyya distance of 0.41-0.52 and a mean
# absolute difference of 26-30 grey levels; ordinary frames stay under 0.16 and 13.
SCENE_CUT_HIST_DISTANCE = 0.3
SCENE_CUT_MEAN_ABS_DIFF = 18.0
_SCENE_THUMB_WH = (32, 18)


class SceneCutDetector:
    """Tells when a video cuts to another shot, so tracks never jump across the cut.

    Compares each frame with the previous one: a hue/saturation histogram
    (Bhattacharyya distance) and a 32x18 grey thumbnail (mean absolute difference).
    Both must exceed their thresholds.

    Args:
        hist_distance: Bhattacharyya distance threshold, in [0, 1].
        mean_abs_diff: grey-level difference threshold, in [0, 255].
    """

    def __init__(
        self, *, hist_distance: float = SCENE_CUT_HIST_DISTANCE, mean_abs_diff: float = SCENE_CUT_MEAN_ABS_DIFF
    ) -> None:
        self.hist_distance = hist_distance
        self.mean_abs_diff = mean_abs_diff
        self._prev: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None = None

    def update(self, image: npt.NDArray[np.uint8]) -> bool:
        """Whether ``image`` (BGR) starts a new shot; False for the first frame."""
        import cv2

        small = cv2.resize(image, (160, 90), interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
        hist = cv2.calcHist([hsv], [0, 1], None, [16, 16], [0, 180, 0, 256])
        cv2.normalize(hist, hist, 1.0, 0.0, cv2.NORM_L1)
        grey = cv2.resize(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), _SCENE_THUMB_WH, interpolation=cv2.INTER_AREA)
        thumb = grey.astype(np.float32)
        prev, self._prev = self._prev, (hist, thumb)
        if prev is None:
            return False
        dist = float(cv2.compareHist(prev[0], hist, cv2.HISTCMP_BHATTACHARYYA))
        mad = float(np.abs(prev[1] - thumb).mean())
        return dist > self.hist_distance and mad > self.mean_abs_diff


# --------------------------------------------------------------------------- tracker


@dataclass(eq=False)
class _Track:
    track_id: int
    box: npt.NDArray[np.float64]  # cx, cy, w, h of the last matched detection
    landmarks: npt.NDArray[np.float32]  # (5, 2) of the last matched detection
    score: float
    quality: float
    vote: IdentityVote
    velocity: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(4))
    hits: int = 1
    since_update: int = 0  # frames since the last matched detection
    missed_passes: int = 0  # detection passes in a row without a match
    confirmed: bool = False
    last_embed_age: int | None = None  # frames since the last embedding (None: never)
    best_embedded_quality: float = 0.0
    announced_name: str | None = None
    embedding_sum: npt.NDArray[np.float64] | None = None  # of the embeddings seen so far

    def predicted_box(self, max_extrapolate: int) -> npt.NDArray[np.float64]:
        steps = min(self.since_update, max_extrapolate)
        box = self.box + self.velocity * steps
        box[2:] = np.maximum(box[2:], 1.0)
        return box


def _to_cxcywh(xyxy: npt.NDArray) -> npt.NDArray[np.float64]:
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def _to_xyxy(cxcywh: npt.NDArray) -> npt.NDArray[np.float64]:
    b = np.asarray(cxcywh, np.float64).reshape(-1, 4)
    half = b[:, 2:] / 2
    return np.concatenate([b[:, :2] - half, b[:, :2] + half], axis=1)


class Tracker:
    """IoU tracker with constant-velocity prediction and per-track identity votes.

    Args:
        config: tracker settings; defaults when ``None``.

    Example:
        >>> tracker = Tracker()
        >>> tracked = tracker.update(detector.detect(image))   # a detection frame
        >>> between = tracker.predict()                        # a frame without one
        >>> tracked.track_ids
        array([1, 2])
    """

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._events: list[TrackEvent] = []

    @property
    def active_count(self) -> int:
        """Tracks alive now (confirmed or not)."""
        return len(self._tracks)

    # -- per frame ---------------------------------------------------------------
    def update(self, faces: Faces, *, quality: npt.ArrayLike | None = None, new_scene: bool = False) -> Faces:
        """Match a frame's detections to the tracks; one call per detection frame.

        Args:
            faces: this frame's detections.
            quality: ``(N,)`` :func:`face_quality` of the faces (score times size when
                ``None``).
            new_scene: the video cut to another shot since the last call: every existing
                track leaves now and no detection continues one.

        Returns:
            ``faces`` with ``track_ids`` filled for every face (new tracks for
            unmatched ones) and ``names``/``distances`` from the tracks' votes.
        """
        cfg = self.config
        n = len(faces)
        q = face_quality(None, faces) if quality is None else np.asarray(quality, np.float32).reshape(-1)
        if q.shape != (n,):
            raise ValueError(f"quality: expected shape ({n},), got {q.shape}")
        if new_scene:
            self.finish()
        for t in self._tracks:
            t.since_update += 1
            if t.last_embed_age is not None:
                t.last_embed_age += 1
        predicted = (
            _to_xyxy(np.stack([t.predicted_box(cfg.max_extrapolate) for t in self._tracks]))
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
        det_box = _to_cxcywh(faces.xyxy)
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
            t.quality = float(q[di])
            t.hits += 1
            t.since_update = 0
            t.missed_passes = 0
            ids[di] = t.track_id
            matched_tracks.add(ti)
            self._maybe_confirm(t)
        for ti, t in enumerate(self._tracks):
            if ti not in matched_tracks:
                t.missed_passes += 1
                t.velocity *= 0.5  # an unseen face is more likely to have stopped
        matched_dets = {int(d) for d in pairs[:, 1]}
        for di in range(n):
            if di in matched_dets:
                continue
            t = _Track(
                track_id=self._next_id,
                box=det_box[di].copy(),
                landmarks=faces.landmarks[di].copy(),
                score=float(faces.scores[di]),
                quality=float(q[di]),
                vote=IdentityVote(window=cfg.vote_window, switch_ratio=cfg.switch_ratio),
            )
            self._next_id += 1
            self._tracks.append(t)
            ids[di] = t.track_id
            self._maybe_confirm(t)
        self._reap()
        return self.label(faces.replace(track_ids=ids))

    def predict(self) -> Faces:
        """Advance one frame without detection and return the tracks' predicted faces.

        Only tracks matched in the latest detection pass are returned (a face that
        the last detection missed is not drawn where it might no longer be).

        Returns:
            Faces with ``track_ids``, ``names`` and ``distances`` filled; landmarks
            moved with the box; scores are those of the last detection.
        """
        cfg = self.config
        for t in self._tracks:
            t.since_update += 1
            if t.last_embed_age is not None:
                t.last_embed_age += 1
        self._reap()
        shown = [t for t in self._tracks if t.missed_passes == 0]
        if not shown:
            return self.label(Faces.empty().replace(track_ids=np.zeros(0, np.int64)))
        boxes = np.stack([t.predicted_box(cfg.max_extrapolate) for t in shown])
        landmarks = np.stack(
            [(t.landmarks - t.box[:2]) * (b[2:] / t.box[2:]) + b[:2] for t, b in zip(shown, boxes, strict=True)]
        )
        faces = Faces(
            xyxy=_to_xyxy(boxes),
            scores=np.array([t.score for t in shown], np.float32),
            landmarks=landmarks,
            track_ids=np.array([t.track_id for t in shown], np.int64),
        )
        return self.label(faces)

    def finish(self) -> None:
        """End of stream (or a cut): every confirmed track leaves (see :meth:`drain_events`)."""
        for t in self._tracks:
            if t.confirmed:
                self._emit(EventType.LEFT, t)
        self._tracks.clear()

    # -- identity ----------------------------------------------------------------
    def embed_mask(self, faces: Faces) -> npt.NDArray[np.bool_]:
        """Which of the faces :meth:`update` just returned need an embedding now.

        A face needs one when its track is confirmed and has never been embedded, was
        last embedded ``reembed_every`` frames ago or more (a third of that while the
        track has fewer than ``warmup_samples`` samples), or shows a face whose quality
        beats the best embedded one by ``reembed_quality_gain``.

        Returns:
            ``(N,)`` bool.
        """
        cfg = self.config
        by_id = self._by_id()
        mask = np.zeros(len(faces), bool)
        if faces.track_ids is None:
            return mask
        for i, tid in enumerate(faces.track_ids):
            t = by_id.get(int(tid))
            if t is None or not t.confirmed or t.since_update != 0:
                continue
            period = cfg.reembed_every if t.vote.samples >= cfg.warmup_samples else max(1, cfg.reembed_every // 3)
            mask[i] = (
                t.last_embed_age is None
                or t.last_embed_age >= period
                or t.quality > t.best_embedded_quality * (1.0 + cfg.reembed_quality_gain)
            )
        return mask

    def vote(
        self,
        track_ids: npt.ArrayLike,
        names: Sequence[str | None],
        confidences: npt.ArrayLike,
        distances: npt.ArrayLike | None = None,
        embeddings: npt.ArrayLike | None = None,
    ) -> npt.NDArray[np.int64]:
        """Record recognition results for tracks just embedded.

        Each sample is weighted by the quality of the track's current face. With
        ``embeddings``, a track whose new embedding is farther than ``split_distance``
        from its earlier ones is split: it leaves, and a new track (new id) carries on
        from the same box with this sample as its first.

        Args:
            track_ids: ``(K,)`` track ids.
            names: ``K`` matched names (``None`` = unknown).
            confidences: ``(K,)`` matcher confidences in [0, 1].
            distances: ``(K,)`` distances to the matched names, or ``None``.
            embeddings: ``(K, D)`` the L2-normalised embeddings, or ``None``.

        Returns:
            ``(K,)`` the track ids after splits (equal to ``track_ids`` without any).
        """
        cfg = self.config
        ids = np.asarray(track_ids, np.int64).reshape(-1).copy()
        conf = np.asarray(confidences, np.float64).reshape(-1)
        dist = np.full(len(ids), np.nan) if distances is None else np.asarray(distances, np.float64).reshape(-1)
        emb = None if embeddings is None else np.asarray(embeddings, np.float64).reshape(len(ids), -1)
        if not (len(names) == len(ids) == len(conf) == len(dist)):
            raise ValueError(
                f"vote: expected equal lengths, got {len(ids)} ids, {len(names)} names,"
                f" {len(conf)} confidences, {len(dist)} distances"
            )
        by_id = self._by_id()
        for k, (tid, name, c, d) in enumerate(zip(ids, names, conf, dist, strict=True)):
            t = by_id.get(int(tid))
            if t is None:
                continue
            if emb is not None:
                if t.embedding_sum is not None and cfg.split_distance > 0:
                    ref = t.embedding_sum / max(np.linalg.norm(t.embedding_sum), 1e-12)
                    jump = float(np.linalg.norm(emb[k] - ref))
                    if jump > cfg.split_distance:
                        logger.debug("track %d: embedding jumped %.2f: split", t.track_id, jump)
                        t = self._split(t)
                        ids[k] = t.track_id
                t.embedding_sum = emb[k].copy() if t.embedding_sum is None else t.embedding_sum + emb[k]
            t.vote.add(name, quality=t.quality, confidence=float(c), distance=float(d))
            t.last_embed_age = 0
            t.best_embedded_quality = max(t.best_embedded_quality, t.quality)
            if t.confirmed and t.vote.name is not None and t.vote.name != t.announced_name:
                t.announced_name = t.vote.name
                self._emit(EventType.RECOGNIZED, t)
        return ids

    def _split(self, old: _Track) -> _Track:
        """End ``old`` and start a new track in its place (same box and motion)."""
        new = _Track(
            track_id=self._next_id,
            box=old.box.copy(),
            landmarks=old.landmarks.copy(),
            score=old.score,
            quality=old.quality,
            vote=IdentityVote(window=self.config.vote_window, switch_ratio=self.config.switch_ratio),
            velocity=old.velocity.copy(),
            hits=old.hits,
            confirmed=old.confirmed,
        )
        self._next_id += 1
        if old.confirmed:
            self._emit(EventType.LEFT, old)
            self._emit(EventType.APPEARED, new)
        self._tracks[self._tracks.index(old)] = new
        return new

    def label(self, faces: Faces) -> Faces:
        """``faces`` (with track ids) with ``names`` and ``distances`` from the votes."""
        if faces.track_ids is None:
            raise ValueError("label: faces have no track_ids")
        by_id = self._by_id()
        names: list[str | None] = []
        dist = np.full(len(faces), np.nan, np.float32)
        for i, tid in enumerate(faces.track_ids):
            t = by_id.get(int(tid))
            if t is not None and t.confirmed:
                names.append(t.vote.name)
                dist[i] = t.vote.distance
            else:
                names.append(None)
        return faces.replace(names=tuple(names), distances=dist)

    def confidences(self, track_ids: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """``(N,)`` vote confidence of each track (0 for unknown ids)."""
        by_id = self._by_id()
        return np.array(
            [by_id[int(t)].vote.confidence if int(t) in by_id else 0.0 for t in np.asarray(track_ids).reshape(-1)],
            np.float32,
        )

    def confirmed(self, track_ids: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """``(N,)`` whether each track is confirmed (False for unknown ids)."""
        by_id = self._by_id()
        return np.array(
            [bool(by_id.get(int(t)) and by_id[int(t)].confirmed) for t in np.asarray(track_ids).reshape(-1)], bool
        )

    def drain_events(self) -> list[TrackEvent]:
        """The events since the last call (appeared / recognized / left), oldest first."""
        events, self._events = self._events, []
        return events

    # -- internals ---------------------------------------------------------------
    def _by_id(self) -> dict[int, _Track]:
        return {t.track_id: t for t in self._tracks}

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
        self._events.append(
            TrackEvent(
                type=kind,
                track_id=t.track_id,
                name=t.vote.name,
                confidence=t.vote.confidence,
                xyxy=_to_xyxy(t.box)[0].astype(np.float32),
            )
        )
