"""Matchers: name a face from the gallery, or call it unknown (open-set identification).

Every matcher has the same two verbs::

    matcher = make_matcher("knn", model_id=analyzer.model_id).fit(gallery_embeddings, labels)
    result = matcher.match(probe_embeddings)   # MatchResult: names, distances, confidences

**Distances** are Euclidean distances between L2-normalised embeddings, in ``[0, 2]``
(``d**2 = 2 - 2 * cosine``). Each probe gets a *candidate* identity from the matcher's
rule and the distance to it:

* :class:`KNNMatcher` (default): the ``k`` nearest gallery samples vote, each with
  weight ``1 / d`` (``weighting="distance"``) or 1 (``"uniform"``); the distance is to
  the winner's nearest sample.
* :class:`SVMMatcher`: a one-vs-rest linear SVM (scikit-learn ``LinearSVC``) picks the
  identity; the distance is again to that identity's nearest sample. Fitting is slow
  for thousands of people; matching is one matrix product.
* :class:`MeanMatcher`: nearest class mean (the L2-normalised mean of each person's
  samples); the distance is to that mean.

**Open-set rejection.** The candidate is named only when its *score* is at most
``threshold``; otherwise the face is unknown (``None``). ``threshold=None`` turns
rejection off. Without normalisation the score is the distance. With a
:class:`ScoreNorm` (the default for models facesense has calibrated, see
:data:`facesense.models.registry.CALIBRATIONS`) the score is the distance corrected for how crowded the
neighbourhood is::

    score = d - r * (b * (probe_next - E_probe) + a * (person_next - E_person))

``probe_next`` is the mean distance from the face to the next ``probe_k`` nearest
*other* people, ``person_next`` the mean distance from the candidate to their
``gallery_k`` nearest other people in the gallery, and ``E_*`` what those means are
expected to be for a stranger in a gallery of this size (order statistics of the
model's measured impostor-distance distribution). A face that is only a little closer
to its best match than to several others, or a candidate who resembles many
people, needs a smaller distance to be named. For a typical face the corrections
cancel, so the score stays on the distance scale. ``r = min(1, (people - 1) / 300)``
(``ScoreNorm.full_at_people``) phases the correction in with the gallery's size: with
few people the neighbour means are noisy and crowding is no problem, so a small
gallery is scored close to raw distances (``facesense eval identify``, 5 of the LFW
people: 85.2 % named right at 0.01 % stranger FAR, against 74.5 % at 0.03 % with the
full correction; unchanged from 300 people up).

Defaults (``Calibration.threshold`` for normalised scores, ``Calibration.raw_threshold``
for raw distances) live in the model registry (:mod:`facesense.models.registry`), measured
by ``facesense eval identify`` on LFW, chosen for a stranger false-accept rate of 2 % with
~750 people enrolled from one photo each; see ``docs/recognition.md`` for the numbers, the
curve and how to repeat the measurement. ``threshold="auto"`` for a model without a
calibration is refused (:class:`~facesense.errors.ConfigError` naming the command that
measures one): another model's threshold would be meaningless for it.

**Confidence** is a fixed, monotone mapping of the score to ``[0, 1]``::

    confidence = 1 / (1 + exp((score - threshold) / CONFIDENCE_SCALE))

It is 0.5 at the threshold (named faces have confidence >= 0.5), about 0.88 at
``threshold - 0.1`` and 0.12 at ``threshold + 0.1``; with rejection off it is centred
on the default threshold. It is a readable margin, not a calibrated probability.

**Corrections** (``fit(..., negatives=N, negative_labels=L)``). A person's *negatives*
are faces somebody said were not them ("not X"; "this is Y" makes the face Y's
sample and X's negative). Two rules follow, and neither changes anything for a person
without negatives (no negatives at all: exactly the results above):

* *veto*: a face nearer to one of X's negatives than to X's nearest sample is not
  named X (the KNN vote then goes to the other neighbours; the other matchers leave
  the face unknown); and a face nearer to a negative than to *every* sample is named
  nobody: it looks most like a face the user said was not who it was taken for, a
  stranger who comes back (``eval corrections --returning``);
* *per-person threshold* (``per_person=True``; off by default, because on LFW it cost
  named-right faces and stopped no new stranger, see ``docs/recognition.md``): X is named only with a
  score below the lowest score one of X's negatives had as X, never stricter than the
  impostor distance only a share :data:`NEGATIVE_FLOOR_FAR` of impostor pairs reach::

      t_X = max(floor, min(T, min_n score_X(n) - NEGATIVE_MARGIN))

  ``T`` is the matcher's threshold (its calibrated default when rejection is off). It
  is applied as an offset ``T - t_X`` added to X's scores, so one threshold still
  decides and a threshold sweep still reads per-person thresholds. See
  ``docs/recognition.md`` ("Corrections") for what it was measured on.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from facesense.choices import parse_choice
from facesense.errors import ConfigError
from facesense.models.registry import (
    CALIBRATIONS,
    DEFAULT_MODEL_ID,
    EMBEDDERS,
    FUSION_MODEL_ID,
    Calibration,
    ScoreNorm,
    calibration,
    find_calibration,
)

logger = logging.getLogger(__name__)

__all__ = [
    "CALIBRATIONS",
    "CONFIDENCE_SCALE",
    "DEFAULT_K",
    "DEFAULT_MODEL_ID",
    "DEFAULT_THRESHOLD",
    "FUSION_MODEL_ID",
    "NEGATIVE_FLOOR_FAR",
    "NEGATIVE_MARGIN",
    "VETO_TIE_DISTANCE",
    "Calibration",
    "KNNMatcher",
    "MatchResult",
    "Matcher",
    "MatcherKind",
    "MeanMatcher",
    "SVMMatcher",
    "ScoreNorm",
    "calibration_for",
    "distance_to_confidence",
    "make_matcher",
    "pairwise_distances",
]

DEFAULT_THRESHOLD: float = calibration(EMBEDDERS["facenet"].model_id()).raw_threshold
"""Raw-distance threshold of the explicit matcher constructors, and the centre of
:func:`distance_to_confidence` without a threshold (FaceNet's calibration: 2 % stranger FAR
on LFW). :func:`make_matcher` takes each model's own calibration instead."""

CONFIDENCE_SCALE = 0.05
"""Width of the logistic score-to-confidence mapping, in distance units."""

DEFAULT_K = 3

NEGATIVE_FLOOR_FAR = 1e-6
"""A person's threshold is never lowered by their negatives below the impostor distance
that only this share of pairs of different people reach (the model's quantile table)."""

NEGATIVE_MARGIN = 1e-4
"""How far below its closest negative's score a person's threshold is put (score units):
just below, so that the negative itself would be refused."""

VETO_TIE_DISTANCE = 5e-3
"""A negative vetoes only when the face is nearer to it than to the sample by more than this.

Two embeddings of the same photo are at distance ~0, but float32 distances near 0 carry
rounding noise of up to ~1e-3 (``sqrt`` of a cancelled ``|a|² + |b|² - 2a·b``), so a face
named Y after "not X" (its embedding is then both Y's sample and X's negative) must not
lose to its own negative by that noise. Different photos of one person are >= ~0.1 apart.
"""

FloatArray = npt.NDArray[np.float32]


class MatcherKind(str, enum.Enum):
    """The matching rules facesense ships."""

    KNN = "knn"
    SVM = "svm"
    MEAN = "mean"


def calibration_for(model_id: str | None) -> Calibration | None:
    """The calibration of ``model_id``, or ``None`` if facesense has not measured it.

    Kept for compatibility: :func:`facesense.models.registry.find_calibration`, or
    :func:`facesense.models.registry.calibration` to refuse an uncalibrated model.
    """
    return find_calibration(model_id)


def distance_to_confidence(scores: npt.ArrayLike, threshold: float | None = None) -> FloatArray:
    """Map scores (distances) to ``[0, 1]`` confidences, 0.5 at ``threshold``.

    Args:
        scores: any shape.
        threshold: the centre of the mapping; :data:`DEFAULT_THRESHOLD` when ``None``.

    Returns:
        float32 array of the same shape.
    """
    centre = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    d = np.asarray(scores, dtype=np.float64)
    z = np.clip((d - centre) / CONFIDENCE_SCALE, -60.0, 60.0)
    return (1.0 / (1.0 + np.exp(z))).astype(np.float32)


def pairwise_distances(a: npt.ArrayLike, b: npt.ArrayLike, *, b_sq: FloatArray | None = None) -> FloatArray:
    """Euclidean distances between the rows of ``a`` ``(M, D)`` and ``b`` ``(N, D)``.

    Returns:
        ``(M, N)`` float32.
    """
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if b_sq is None:
        b_sq = np.einsum("ij,ij->i", b, b)
    a_sq = np.einsum("ij,ij->i", a, a)
    d2 = a_sq[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)
    np.maximum(d2, 0.0, out=d2)
    return np.asarray(np.sqrt(d2, out=d2), dtype=np.float32)


@dataclass(frozen=True, eq=False)
class MatchResult:
    """What a matcher says about ``M`` probe embeddings.

    Attributes:
        names: the identity of each probe, ``None`` for unknown (rejected or empty gallery).
        candidates: the best identity before rejection (``None`` only for an empty gallery).
        distances: ``(M,)`` float32 distance to the candidate (``inf`` for an empty gallery).
        scores: ``(M,)`` float32 what the threshold is applied to: the distance, or the
            normalised distance when the matcher has a :class:`ScoreNorm`.
        confidences: ``(M,)`` float32 in ``[0, 1]`` from :func:`distance_to_confidence` of the scores.
    """

    names: tuple[str | None, ...]
    candidates: tuple[str | None, ...]
    distances: FloatArray
    scores: FloatArray
    confidences: FloatArray

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def nobody(cls, m: int) -> MatchResult:
        """What a matcher says of ``m`` faces with no one to compare them to: unknown, at
        no finite distance, with zero confidence."""
        inf = np.full((m,), np.inf, np.float32)
        return cls(
            names=(None,) * m,
            candidates=(None,) * m,
            distances=inf,
            scores=inf.copy(),
            confidences=np.zeros((m,), np.float32),
        )


@runtime_checkable
class Matcher(Protocol):
    """Fits on gallery embeddings, then names probe embeddings (or says unknown)."""

    threshold: float | None

    def fit(self, embeddings: npt.ArrayLike, labels: Sequence[str]) -> Matcher:
        """Learn from ``(N, D)`` embeddings with one label each; returns ``self``."""
        ...

    def match(self, embeddings: npt.ArrayLike) -> MatchResult:
        """Name each row of ``(M, D)`` probe embeddings."""
        ...


def _check_threshold(threshold: float | None) -> float | None:
    if threshold is None:
        return None
    t = float(threshold)
    if math.isnan(t) or t < 0:
        raise ConfigError(f"threshold must be a distance >= 0 (or None to turn rejection off), got {threshold}")
    return None if math.isinf(t) else t


_CHUNK = 2048  # rows per block when computing gallery x gallery distances


class _GalleryMatcher:
    """Shared plumbing: label encoding, per-class distances, normalisation, rejection."""

    def __init__(self, *, threshold: float | None, norm: ScoreNorm | None) -> None:
        self.threshold = _check_threshold(threshold)
        self.norm = norm
        self.classes_: tuple[str, ...] = ()
        self._matrix = np.zeros((0, 0), np.float32)
        self._sq = np.zeros((0,), np.float32)
        self._y = np.zeros((0,), np.int64)
        self._starts = np.zeros((0,), np.int64)
        self._means = np.zeros((0, 0), np.float32)
        self._person_next = np.zeros((0,), np.float32)  # mean distance to the gallery_k nearest others
        # Corrections: negatives sorted by the class they are "not", and per-class score offsets.
        self._neg = np.zeros((0, 0), np.float32)
        self._neg_y = np.zeros((0,), np.int64)
        self._neg_starts = np.zeros((0,), np.int64)
        self._neg_classes = np.zeros((0,), np.int64)
        self._offset = np.zeros((0,), np.float32)

    def _norm_repr(self) -> str:
        return "" if self.norm is None else ", normalised"

    def _fit_common(self, embeddings: npt.ArrayLike, labels: Sequence[str]) -> None:
        x = np.asarray(embeddings, dtype=np.float32)
        labels = list(labels)
        if x.ndim != 2:
            raise ConfigError(f"embeddings: expected shape (N, D), got {x.shape}")
        if len(labels) != x.shape[0]:
            raise ConfigError(f"labels: expected {x.shape[0]} entries to match embeddings, got {len(labels)}")
        if x.shape[0] and not np.all(np.isfinite(x)):
            raise ConfigError("embeddings: contains NaN or infinity")
        if labels:
            classes, y = np.unique(np.asarray([str(v) for v in labels], dtype=object).astype(str), return_inverse=True)
        else:
            classes, y = np.zeros((0,), dtype=str), np.zeros((0,), np.int64)
        self.classes_ = tuple(str(c) for c in classes)
        # Samples are kept sorted by class, so per-class reductions are one reduceat.
        y = np.asarray(y, dtype=np.int64).reshape(-1)
        order = np.argsort(y, kind="stable")
        self._matrix = np.ascontiguousarray(x[order])
        self._sq = np.einsum("ij,ij->i", self._matrix, self._matrix) if x.size else np.zeros((x.shape[0],), np.float32)
        self._y = y[order]
        self._starts = np.searchsorted(self._y, np.arange(len(self.classes_)))
        if self.classes_:
            sums = np.add.reduceat(self._matrix, self._starts, axis=0)
            norms = np.linalg.norm(sums, axis=1, keepdims=True)
            self._means = (sums / np.maximum(norms, 1e-12)).astype(np.float32)
        else:
            self._means = np.zeros((0, x.shape[1] if x.ndim == 2 else 0), np.float32)
        self._person_next = self._fit_person_next()

    def _fit_person_next(self) -> FloatArray:
        """Mean distance from each person (class mean) to their ``gallery_k`` nearest other people."""
        c = len(self.classes_)
        if self.norm is None or c < 2:
            return np.zeros((c,), np.float32)
        k = min(self.norm.gallery_k, c - 1)
        out = np.empty((c,), np.float32)
        sq = np.einsum("ij,ij->i", self._means, self._means)
        for start in range(0, c, _CHUNK):
            block = pairwise_distances(self._means[start : start + _CHUNK], self._means, b_sq=sq)
            rows = np.arange(block.shape[0])
            block[rows, start + rows] = np.inf
            out[start : start + _CHUNK] = np.partition(block, k - 1, axis=1)[:, :k].mean(axis=1)
        return out

    def _fit_negatives(
        self, negatives: npt.ArrayLike | None, negative_labels: Sequence[str] | None, per_person: bool
    ) -> None:
        """Remember the negatives ("not X") of people in the gallery and derive per-person offsets."""
        c = len(self.classes_)
        self._neg = np.zeros((0, self._matrix.shape[1] if self._matrix.ndim == 2 else 0), np.float32)
        self._neg_y = np.zeros((0,), np.int64)
        self._neg_starts = np.zeros((0,), np.int64)
        self._neg_classes = np.zeros((0,), np.int64)
        self._offset = np.zeros((c,), np.float32)
        if negatives is None and negative_labels is None:
            return
        if negatives is None or negative_labels is None:
            raise ConfigError("give negatives and negative_labels together")
        x = np.asarray(negatives, dtype=np.float32)
        names = [str(v) for v in negative_labels]
        if x.ndim != 2 or x.shape[0] != len(names):
            raise ConfigError(f"negatives: expected shape (K, D) with one label each, got {x.shape} and {len(names)} labels")
        if x.shape[0] == 0:
            return
        if c and x.shape[1] != self._matrix.shape[1]:
            raise ConfigError(f"negatives: expected {self._matrix.shape[1]} columns like the gallery, got {x.shape[1]}")
        if not np.all(np.isfinite(x)):
            raise ConfigError("negatives: contains NaN or infinity")
        index = {name: i for i, name in enumerate(self.classes_)}
        known = np.array([n in index for n in names], bool)
        if not known.all():
            logger.debug("ignoring %d negative(s) of people not in the gallery", int((~known).sum()))
        if not known.any():
            return
        y = np.array([index[n] for n, k in zip(names, known.tolist(), strict=True) if k], np.int64)
        order = np.argsort(y, kind="stable")
        self._neg = np.ascontiguousarray(x[known][order])
        self._neg_y = y[order]
        self._neg_classes, self._neg_starts = np.unique(self._neg_y, return_index=True)
        if per_person:
            self._offset = self._negative_offsets()

    def _negative_offsets(self) -> FloatArray:
        """``T - t_X`` per class (see the module docstring), 0 for people without negatives."""
        c = len(self.classes_)
        offset = np.zeros((c,), np.float32)
        reference = self.threshold
        if reference is None:
            reference = _default_norm_threshold(self.norm) if self.norm is not None else DEFAULT_THRESHOLD
        floor = 0.0
        if self.norm is not None:
            floor = float(self.norm.impostor_distance(NEGATIVE_FLOOR_FAR))
        d = pairwise_distances(self._neg, self._matrix, b_sq=self._sq)
        class_d = self._class_min(d)
        rows = np.arange(len(self._neg_y))
        scores = self._scores(self._neg_y, class_d[rows, self._neg_y], class_d if self.norm is not None else None)
        lowest = np.minimum.reduceat(scores, self._neg_starts)
        t_person = np.maximum(floor, np.minimum(reference, lowest - NEGATIVE_MARGIN))
        offset[self._neg_classes] = np.maximum(0.0, reference - t_person)
        return offset

    def _veto(self, q: FloatArray, sample_d: FloatArray | None = None) -> npt.NDArray[np.bool_] | None:
        """``(M, C)``: the probe is nearer to one of the class's negatives than to its nearest sample."""
        if self._neg.shape[0] == 0:
            return None
        if sample_d is None:
            sample_d = pairwise_distances(q, self._matrix, b_sq=self._sq)
        pos = self._class_min(sample_d)
        neg_d = pairwise_distances(q, self._neg)
        neg_min = np.minimum.reduceat(neg_d, self._neg_starts, axis=1)
        veto = np.zeros(pos.shape, bool)
        veto[:, self._neg_classes] = neg_min < pos[:, self._neg_classes] - VETO_TIE_DISTANCE
        # A face nearer to a corrected face than to every sample looks like that face's
        # owner, whom nobody enrolled: it is nobody's. ("this is Y", or naming the face
        # later, also made it a sample, at distance 0 from the negative, so Y is still
        # named: equal distances, up to float rounding, are no veto.)
        veto[neg_d.min(axis=1) < pos.min(axis=1) - VETO_TIE_DISTANCE] = True
        return veto

    def _probe(self, embeddings: npt.ArrayLike) -> FloatArray:
        q = np.asarray(embeddings, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2:
            raise ConfigError(f"embeddings: expected shape (M, D), got {q.shape}")
        if len(self.classes_) and q.shape[1] != self._matrix.shape[1]:
            raise ConfigError(f"embeddings: expected {self._matrix.shape[1]} columns like the gallery, got {q.shape[1]}")
        return q

    def _class_min(self, d: FloatArray) -> FloatArray:
        """``(M, C)`` per-class minimum of sample distances ``(M, N)``."""
        return np.minimum.reduceat(d, self._starts, axis=1)

    def _scores(self, cls: npt.NDArray[np.int64], dist: FloatArray, class_d: FloatArray | None) -> FloatArray:
        """Apply the score normalisation (if any) to the candidates' distances."""
        c = len(self.classes_)
        if self.norm is None or c < 2 or class_d is None:
            return dist
        nrm = self.norm
        m = len(cls)
        rows = np.arange(m)
        kp = min(nrm.probe_k, c - 1)
        others = class_d.astype(np.float32, copy=True)
        others[rows, cls] = np.inf
        probe_next = np.partition(others, kp - 1, axis=1)[:, :kp].mean(axis=1)
        kg = min(nrm.gallery_k, c - 1)
        e_probe = nrm.expected_order_mean(c, 2, kp)
        e_person = nrm.expected_order_mean(c - 1, 1, kg)
        ramp = min(1.0, (c - 1) / nrm.full_at_people) if nrm.full_at_people > 0 else 1.0
        score = dist - ramp * (
            nrm.probe_weight * (probe_next - e_probe) + nrm.gallery_weight * (self._person_next[cls] - e_person)
        )
        return np.asarray(score, dtype=np.float32)

    def _result(
        self,
        cls: npt.NDArray[np.int64],
        dist: npt.NDArray[np.floating],
        class_d: FloatArray | None,
        veto: npt.NDArray[np.bool_] | None = None,
    ) -> MatchResult:
        dist = np.asarray(dist, dtype=np.float32)
        scores = self._scores(cls, dist, class_d)
        if self._offset.size and self._neg.shape[0]:
            scores = np.asarray(scores + self._offset[cls], dtype=np.float32)
        if veto is not None:
            scores = np.where(veto[np.arange(len(cls)), cls], np.float32(np.inf), scores).astype(np.float32)
        candidates = tuple(self.classes_[int(c)] for c in cls)
        # Rejection off names every candidate, except one a correction vetoed (score inf).
        accept = np.isfinite(scores) if self.threshold is None else scores <= self.threshold
        names = tuple(c if ok else None for c, ok in zip(candidates, accept.tolist(), strict=True))
        centre = self.threshold
        if centre is None and self.norm is not None:
            centre = _default_norm_threshold(self.norm)
        return MatchResult(
            names=names,
            candidates=candidates,
            distances=dist,
            scores=scores,
            confidences=distance_to_confidence(scores, centre),
        )

    def _empty(self, m: int) -> MatchResult:
        return MatchResult.nobody(m)


def _default_norm_threshold(norm: ScoreNorm) -> float:
    for cal in CALIBRATIONS.values():
        if cal.norm == norm:
            return cal.threshold
    return DEFAULT_THRESHOLD


class KNNMatcher(_GalleryMatcher):
    """k-nearest-neighbour vote over gallery samples, with open-set rejection.

    Args:
        k: how many nearest samples vote (capped at the gallery size).
        weighting: ``"distance"`` (weight ``1 / d``) or ``"uniform"``.
        threshold: reject candidates whose score is above this; ``None`` turns rejection off.
        norm: score normalisation, or ``None`` to threshold raw distances.

    Only neighbours within the threshold (:data:`DEFAULT_THRESHOLD` when rejection is
    off) vote: a sample that would itself be rejected as "not this person" should not
    outvote a close match, which matters when people have different numbers of
    samples. The winner is the identity with the largest total vote, ties going to the
    one with the nearer sample; its distance is that of its nearest sample among the
    ``k``. When no neighbour is within the threshold, the nearest sample's identity is
    the candidate (and, with rejection on, the face is unknown).
    """

    def __init__(
        self,
        *,
        k: int = DEFAULT_K,
        weighting: str = "distance",
        threshold: float | None = DEFAULT_THRESHOLD,
        norm: ScoreNorm | None = None,
    ) -> None:
        super().__init__(threshold=threshold, norm=norm)
        if int(k) < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        if weighting not in ("distance", "uniform"):
            raise ConfigError(f"weighting must be 'distance' or 'uniform', got {weighting!r}")
        self.k = int(k)
        self.weighting = weighting

    def __repr__(self) -> str:
        return f"KNNMatcher(k={self.k}, weighting={self.weighting!r}, threshold={self.threshold}{self._norm_repr()})"

    def fit(
        self,
        embeddings: npt.ArrayLike,
        labels: Sequence[str],
        *,
        negatives: npt.ArrayLike | None = None,
        negative_labels: Sequence[str] | None = None,
        per_person: bool = False,
    ) -> KNNMatcher:
        """Remember the gallery; returns ``self``.

        Args:
            embeddings, labels: the gallery's ``(N, D)`` samples and their people.
            negatives: ``(K, D)`` faces that are *not* ``negative_labels[i]`` (corrections,
                see the module docstring); negatives of people not in the gallery are ignored.
            negative_labels: whom each negative is not.
            per_person: also derive per-person thresholds from the negatives (off by
                default: measured on LFW, it cost named-right faces for no fewer new strangers).
        """
        self._fit_common(embeddings, labels)
        self._fit_negatives(negatives, negative_labels, per_person)
        return self

    def match(self, embeddings: npt.ArrayLike) -> MatchResult:
        """Name each row of ``(M, D)`` embeddings (see the class docstring)."""
        q = self._probe(embeddings)
        m, n = q.shape[0], self._matrix.shape[0]
        if n == 0 or m == 0:
            return self._empty(m)
        k = min(self.k, n)
        d = pairwise_distances(q, self._matrix, b_sq=self._sq)
        veto = self._veto(q, d)
        d_all = d
        if veto is not None:  # vetoed people's samples neither vote nor count as nearest
            d = np.where(veto[:, self._y], np.float32(np.inf), d).astype(np.float32)
        if k < n:
            idx = np.argpartition(d, k - 1, axis=1)[:, :k]
        else:
            idx = np.broadcast_to(np.arange(n), (m, n))
        nd = np.take_along_axis(d, idx, axis=1)
        order = np.argsort(nd, axis=1, kind="stable")
        idx = np.take_along_axis(idx, order, axis=1)
        nd = np.take_along_axis(nd, order, axis=1)
        cls = self._y[idx]  # (M, k), nearest first
        w = 1.0 / np.maximum(nd, 1e-6) if self.weighting == "distance" else np.ones_like(nd)
        radius = DEFAULT_THRESHOLD if self.threshold is None else self.threshold
        w = np.where(nd <= radius, w, 0.0)
        # votes[:, j]: total weight of the neighbours sharing neighbour j's class.
        same = cls[:, :, None] == cls[:, None, :]
        votes = np.einsum("mjl,ml->mj", same, w)
        # A tiny bonus for nearness: ties (and the no-vote case) go to the nearest neighbour.
        best = np.argmax(votes + 1e-9 * (k - np.arange(k)), axis=1)
        rows = np.arange(m)
        class_d = self._class_min(d_all) if self.norm is not None else None
        return self._result(cls[rows, best], nd[rows, best], class_d, veto)


class MeanMatcher(_GalleryMatcher):
    """Nearest class mean: each person is the L2-normalised mean of their samples.

    Args:
        threshold: reject candidates whose score is above this; ``None`` turns rejection off.
        norm: score normalisation, or ``None`` to threshold raw distances.
    """

    def __init__(self, *, threshold: float | None = DEFAULT_THRESHOLD, norm: ScoreNorm | None = None) -> None:
        super().__init__(threshold=threshold, norm=norm)

    def __repr__(self) -> str:
        return f"MeanMatcher(threshold={self.threshold}{self._norm_repr()})"

    def fit(
        self,
        embeddings: npt.ArrayLike,
        labels: Sequence[str],
        *,
        negatives: npt.ArrayLike | None = None,
        negative_labels: Sequence[str] | None = None,
        per_person: bool = False,
    ) -> MeanMatcher:
        """Compute the class means; returns ``self`` (corrections as :meth:`KNNMatcher.fit`)."""
        self._fit_common(embeddings, labels)
        self._fit_negatives(negatives, negative_labels, per_person)
        return self

    def match(self, embeddings: npt.ArrayLike) -> MatchResult:
        """Name each row of ``(M, D)`` embeddings by the nearest class mean."""
        q = self._probe(embeddings)
        if not self.classes_ or q.shape[0] == 0:
            return self._empty(q.shape[0])
        d = pairwise_distances(q, self._means)
        cls = np.argmin(d, axis=1)
        return self._result(cls, d[np.arange(q.shape[0]), cls], d, self._veto(q))


class SVMMatcher(_GalleryMatcher):
    """One-vs-rest linear SVM (scikit-learn ``LinearSVC``) with distance-based rejection.

    Args:
        c: the SVM's regularisation parameter ``C``.
        threshold: reject when the score of the predicted person (from the probe's
            distance to their nearest sample) is above this; ``None`` turns rejection off.
        norm: score normalisation, or ``None`` to threshold raw distances.
    """

    def __init__(self, *, c: float = 1.0, threshold: float | None = DEFAULT_THRESHOLD, norm: ScoreNorm | None = None) -> None:
        super().__init__(threshold=threshold, norm=norm)
        if not c > 0:
            raise ConfigError(f"SVM C must be > 0, got {c}")
        self.c = float(c)
        self._coef = np.zeros((0, 0), np.float32)
        self._intercept = np.zeros((0,), np.float32)

    def __repr__(self) -> str:
        return f"SVMMatcher(c={self.c}, threshold={self.threshold}{self._norm_repr()})"

    def fit(
        self,
        embeddings: npt.ArrayLike,
        labels: Sequence[str],
        *,
        negatives: npt.ArrayLike | None = None,
        negative_labels: Sequence[str] | None = None,
        per_person: bool = False,
    ) -> SVMMatcher:
        """Train the SVM; returns ``self`` (corrections as :meth:`KNNMatcher.fit`)."""
        self._fit_common(embeddings, labels)
        self._fit_negatives(negatives, negative_labels, per_person)
        n_classes = len(self.classes_)
        if n_classes < 2:
            return self  # one person: every face is them (subject to the threshold)
        from sklearn.svm import LinearSVC

        svm = LinearSVC(C=self.c, max_iter=10_000)
        svm.fit(self._matrix, self._y)
        coef = np.asarray(svm.coef_, dtype=np.float32)
        intercept = np.asarray(svm.intercept_, dtype=np.float32)
        if n_classes == 2:  # binary LinearSVC has one hyperplane for class 1
            coef = np.vstack([-coef, coef])
            intercept = np.concatenate([-intercept, intercept])
        self._coef, self._intercept = coef, intercept
        return self

    def match(self, embeddings: npt.ArrayLike) -> MatchResult:
        """Name each row of ``(M, D)`` embeddings by the SVM's decision."""
        q = self._probe(embeddings)
        m = q.shape[0]
        if not self.classes_ or m == 0:
            return self._empty(m)
        if len(self.classes_) == 1:
            cls = np.zeros((m,), np.int64)
        else:
            cls = np.argmax(q @ self._coef.T + self._intercept, axis=1)
        sample_d = pairwise_distances(q, self._matrix, b_sq=self._sq)
        class_d = self._class_min(sample_d)
        return self._result(cls, class_d[np.arange(m), cls], class_d, self._veto(q, sample_d))


def make_matcher(
    kind: MatcherKind | str = MatcherKind.KNN,
    *,
    model_id: str | None = None,
    threshold: float | str | None = "auto",
    normalize: bool = True,
    k: int = DEFAULT_K,
    weighting: str = "distance",
    c: float = 1.0,
) -> KNNMatcher | SVMMatcher | MeanMatcher:
    """Build a matcher by name (``knn``, ``svm`` or ``mean``) with facesense's defaults.

    Args:
        kind: the matching rule.
        model_id: the embedder's model id; when facesense has a :class:`Calibration`
            for it (:func:`facesense.models.registry.calibration`), its score
            normalisation and thresholds are the defaults.
        threshold: ``"auto"`` for the model's calibrated threshold, a number, or
            ``None`` for no rejection.
        normalize: use the model's score normalisation (if calibrated).
        k, weighting: KNN parameters.
        c: SVM parameter.

    Raises:
        ConfigError: unknown kind or bad parameter; ``threshold="auto"`` without a
            ``model_id`` or for a model facesense has not calibrated (the message names
            the command that calibrates it).
    """
    kind = parse_choice(MatcherKind, kind, "matcher")
    value: float | None
    if isinstance(threshold, str):
        if threshold != "auto":
            raise ConfigError(f"threshold must be a number, None or 'auto', got {threshold!r}")
        if model_id is None:
            raise ConfigError("threshold='auto' needs the embedder's model_id; pass model_id= or a numeric threshold")
        cal = calibration(model_id)
        norm = cal.norm if normalize else None
        value = cal.threshold if norm is not None else cal.raw_threshold
    else:
        found = find_calibration(model_id)
        norm = found.norm if (found is not None and normalize) else None
        value = threshold
    if kind is MatcherKind.KNN:
        return KNNMatcher(k=k, weighting=weighting, threshold=value, norm=norm)
    if kind is MatcherKind.SVM:
        return SVMMatcher(c=c, threshold=value, norm=norm)
    return MeanMatcher(threshold=value, norm=norm)
