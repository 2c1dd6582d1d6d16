"""Matchers: name a face from the gallery, or call it unknown (open-set identification).

Every matcher has the same two verbs::

    matcher = KNNMatcher(threshold=DEFAULT_THRESHOLD).fit(gallery_embeddings, labels)
    result = matcher.match(probe_embeddings)   # MatchResult: names, distances, confidences

Distances are Euclidean distances between L2-normalised embeddings, in ``[0, 2]``
(``d**2 = 2 - 2 * cosine``). Each probe gets a *candidate* identity from the matcher's
rule and a *distance* to that identity:

* :class:`KNNMatcher` (default): the ``k`` nearest gallery samples vote, each with
  weight ``1 / d`` (``weighting="distance"``) or 1 (``"uniform"``); the distance is
  the probe's distance to the winner's nearest sample.
* :class:`SVMMatcher`: a one-vs-rest linear SVM (scikit-learn ``LinearSVC``) picks the
  identity; the distance is again to that identity's nearest sample. Fitting is
  slow for thousands of identities; matching is one matrix product.
* :class:`MeanMatcher`: nearest class mean (the L2-normalised mean of each person's
  samples); the distance is to that mean.

**Open-set rejection.** A candidate is named only when its distance is at most
``threshold``; otherwise the face is unknown (``None``). ``threshold=None`` turns
rejection off. :data:`DEFAULT_THRESHOLD` was chosen on LFW for a stranger
false-accept rate of about 2 % with ~750 enrolled people; see
:mod:`facesense.eval.identify` and ``docs/recognition.md`` for the measurement and how
to repeat it (``facesense eval identify --images ../shared/data/lfw``).

**Confidence** is a fixed, monotone mapping of the distance to ``[0, 1]``::

    confidence = 1 / (1 + exp((distance - threshold) / CONFIDENCE_SCALE))

It is 0.5 at the threshold, about 0.88 at ``threshold - 0.1`` and 0.12 at
``threshold + 0.1``; with rejection off it is centred on :data:`DEFAULT_THRESHOLD`.
It is a readable score, not a calibrated probability.
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

from facesense.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = [
    "CONFIDENCE_SCALE",
    "DEFAULT_K",
    "DEFAULT_THRESHOLD",
    "KNNMatcher",
    "MatchResult",
    "Matcher",
    "MatcherKind",
    "MeanMatcher",
    "SVMMatcher",
    "distance_to_confidence",
    "make_matcher",
    "pairwise_distances",
]

DEFAULT_THRESHOLD = 1.0
"""Distance above which a face is unknown (see the module docstring for its origin)."""

CONFIDENCE_SCALE = 0.05
"""Width of the logistic distance-to-confidence mapping, in distance units."""

DEFAULT_K = 3

FloatArray = npt.NDArray[np.float32]


class MatcherKind(str, enum.Enum):
    """The matching rules facesense ships."""

    KNN = "knn"
    SVM = "svm"
    MEAN = "mean"


def distance_to_confidence(distances: npt.ArrayLike, threshold: float | None = None) -> FloatArray:
    """Map distances to ``[0, 1]`` confidences (0.5 at ``threshold``; see the module docstring).

    Args:
        distances: any shape of distances.
        threshold: the centre of the mapping; :data:`DEFAULT_THRESHOLD` when ``None``.

    Returns:
        float32 array of the same shape.
    """
    centre = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    d = np.asarray(distances, dtype=np.float64)
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
    return np.sqrt(d2, out=d2)


@dataclass(frozen=True, eq=False)
class MatchResult:
    """What a matcher says about ``M`` probe embeddings.

    Attributes:
        names: the identity of each probe, ``None`` for unknown (rejected or empty gallery).
        candidates: the best identity before rejection (``None`` only for an empty gallery).
        distances: ``(M,)`` float32 distance to the candidate (``inf`` for an empty gallery).
        confidences: ``(M,)`` float32 in ``[0, 1]`` from :func:`distance_to_confidence`.
    """

    names: tuple[str | None, ...]
    candidates: tuple[str | None, ...]
    distances: FloatArray
    confidences: FloatArray

    def __len__(self) -> int:
        return len(self.names)


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


class _GalleryMatcher:
    """Shared plumbing: label encoding, per-class nearest-sample distances, rejection."""

    def __init__(self, *, threshold: float | None) -> None:
        self.threshold = _check_threshold(threshold)
        self.classes_: tuple[str, ...] = ()
        self._matrix = np.zeros((0, 0), np.float32)
        self._sq = np.zeros((0,), np.float32)
        self._y = np.zeros((0,), np.int64)
        # Samples sorted by class, for per-class reductions with reduceat.
        self._order = np.zeros((0,), np.int64)
        self._starts = np.zeros((0,), np.int64)

    def _fit_common(self, embeddings: npt.ArrayLike, labels: Sequence[str]) -> None:
        x = np.asarray(embeddings, dtype=np.float32)
        labels = list(labels)
        if x.ndim != 2:
            raise ValueError(f"embeddings: expected shape (N, D), got {x.shape}")
        if len(labels) != x.shape[0]:
            raise ValueError(f"labels: expected {x.shape[0]} entries to match embeddings, got {len(labels)}")
        if x.shape[0] and not np.all(np.isfinite(x)):
            raise ValueError("embeddings: contains NaN or infinity")
        classes, y = np.unique(np.asarray(labels, dtype=object).astype(str), return_inverse=True) if labels else (
            np.zeros((0,), dtype=str),
            np.zeros((0,), np.int64),
        )
        self.classes_ = tuple(str(c) for c in classes)
        self._matrix = np.ascontiguousarray(x)
        self._sq = np.einsum("ij,ij->i", x, x) if x.size else np.zeros((x.shape[0],), np.float32)
        self._y = np.asarray(y, dtype=np.int64).reshape(-1)
        self._order = np.argsort(self._y, kind="stable")
        self._starts = np.searchsorted(self._y[self._order], np.arange(len(self.classes_)))

    def _probe(self, embeddings: npt.ArrayLike) -> FloatArray:
        q = np.asarray(embeddings, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2:
            raise ValueError(f"embeddings: expected shape (M, D), got {q.shape}")
        if len(self.classes_) and q.shape[1] != self._matrix.shape[1]:
            raise ValueError(f"embeddings: expected {self._matrix.shape[1]} columns like the gallery, got {q.shape[1]}")
        return q

    def _class_min_distances(self, q: FloatArray) -> FloatArray:
        """``(M, C)`` distance from each probe to each class's nearest sample."""
        d = pairwise_distances(q, self._matrix, b_sq=self._sq)
        return np.minimum.reduceat(d[:, self._order], self._starts, axis=1)

    def _result(self, cls: npt.NDArray[np.int64], dist: npt.NDArray[np.floating]) -> MatchResult:
        dist = np.asarray(dist, dtype=np.float32)
        candidates = tuple(self.classes_[int(c)] for c in cls)
        accept = np.ones(dist.shape, bool) if self.threshold is None else dist <= self.threshold
        names = tuple(c if ok else None for c, ok in zip(candidates, accept.tolist(), strict=True))
        return MatchResult(
            names=names,
            candidates=candidates,
            distances=dist,
            confidences=distance_to_confidence(dist, self.threshold),
        )

    def _empty(self, m: int) -> MatchResult:
        inf = np.full((m,), np.inf, np.float32)
        return MatchResult(
            names=(None,) * m, candidates=(None,) * m, distances=inf, confidences=np.zeros((m,), np.float32)
        )


class KNNMatcher(_GalleryMatcher):
    """k-nearest-neighbour vote over gallery samples, with open-set rejection.

    Args:
        k: how many nearest samples vote (capped at the gallery size).
        weighting: ``"distance"`` (weight ``1 / d``) or ``"uniform"``.
        threshold: reject candidates farther than this; ``None`` turns rejection off.

    Only neighbours within the threshold (:data:`DEFAULT_THRESHOLD` when rejection is
    off) vote: a sample that would itself be rejected as "not this person" should not
    outvote a close match, which matters when people have different numbers of
    samples. The winner is the identity with the largest total vote, ties going to the
    one with the nearer sample; its distance is that of its nearest sample among the
    ``k``. When no neighbour is within the threshold, the nearest sample's identity is
    the candidate (and, with rejection on, the face is unknown).
    """

    def __init__(self, *, k: int = DEFAULT_K, weighting: str = "distance", threshold: float | None = DEFAULT_THRESHOLD) -> None:
        super().__init__(threshold=threshold)
        if int(k) < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        if weighting not in ("distance", "uniform"):
            raise ConfigError(f"weighting must be 'distance' or 'uniform', got {weighting!r}")
        self.k = int(k)
        self.weighting = weighting

    def __repr__(self) -> str:
        return f"KNNMatcher(k={self.k}, weighting={self.weighting!r}, threshold={self.threshold})"

    def fit(self, embeddings: npt.ArrayLike, labels: Sequence[str]) -> KNNMatcher:
        """Remember the gallery; returns ``self``."""
        self._fit_common(embeddings, labels)
        return self

    def match(self, embeddings: npt.ArrayLike) -> MatchResult:
        """Name each row of ``(M, D)`` embeddings (see the class docstring)."""
        q = self._probe(embeddings)
        m, n = q.shape[0], self._matrix.shape[0]
        if n == 0 or m == 0:
            return self._empty(m)
        k = min(self.k, n)
        d = pairwise_distances(q, self._matrix, b_sq=self._sq)
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
        return self._result(cls[rows, best], nd[rows, best])


class MeanMatcher(_GalleryMatcher):
    """Nearest class mean: each person is the L2-normalised mean of their samples.

    Args:
        threshold: reject candidates farther than this from the mean; ``None`` turns rejection off.
    """

    def __init__(self, *, threshold: float | None = DEFAULT_THRESHOLD) -> None:
        super().__init__(threshold=threshold)
        self._means = np.zeros((0, 0), np.float32)

    def __repr__(self) -> str:
        return f"MeanMatcher(threshold={self.threshold})"

    def fit(self, embeddings: npt.ArrayLike, labels: Sequence[str]) -> MeanMatcher:
        """Compute the class means; returns ``self``."""
        self._fit_common(embeddings, labels)
        if not self.classes_:
            self._means = np.zeros((0, self._matrix.shape[1] if self._matrix.ndim == 2 else 0), np.float32)
            return self
        sums = np.add.reduceat(self._matrix[self._order], self._starts, axis=0)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        self._means = (sums / np.maximum(norms, 1e-12)).astype(np.float32)
        return self

    def match(self, embeddings: npt.ArrayLike) -> MatchResult:
        """Name each row of ``(M, D)`` embeddings by the nearest class mean."""
        q = self._probe(embeddings)
        if not self.classes_ or q.shape[0] == 0:
            return self._empty(q.shape[0])
        d = pairwise_distances(q, self._means)
        cls = np.argmin(d, axis=1)
        return self._result(cls, d[np.arange(q.shape[0]), cls])


class SVMMatcher(_GalleryMatcher):
    """One-vs-rest linear SVM (scikit-learn ``LinearSVC``) with distance-based rejection.

    Args:
        c: the SVM's regularisation parameter ``C``.
        threshold: reject when the probe is farther than this from every sample of the
            predicted person; ``None`` turns rejection off.
    """

    def __init__(self, *, c: float = 1.0, threshold: float | None = DEFAULT_THRESHOLD) -> None:
        super().__init__(threshold=threshold)
        if not c > 0:
            raise ConfigError(f"SVM C must be > 0, got {c}")
        self.c = float(c)
        self._coef = np.zeros((0, 0), np.float32)
        self._intercept = np.zeros((0,), np.float32)

    def __repr__(self) -> str:
        return f"SVMMatcher(c={self.c}, threshold={self.threshold})"

    def fit(self, embeddings: npt.ArrayLike, labels: Sequence[str]) -> SVMMatcher:
        """Train the SVM; returns ``self``."""
        self._fit_common(embeddings, labels)
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
        dist = self._class_min_distances(q)[np.arange(m), cls]
        return self._result(cls, dist)


def make_matcher(
    kind: MatcherKind | str = MatcherKind.KNN,
    *,
    threshold: float | None = DEFAULT_THRESHOLD,
    k: int = DEFAULT_K,
    weighting: str = "distance",
    c: float = 1.0,
) -> KNNMatcher | SVMMatcher | MeanMatcher:
    """Build a matcher by name (``knn``, ``svm`` or ``mean``).

    Raises:
        ConfigError: unknown kind or bad parameter.
    """
    try:
        kind = MatcherKind(kind)
    except ValueError:
        raise ConfigError(f"unknown matcher {kind!r}; choose one of {', '.join(k.value for k in MatcherKind)}") from None
    if kind is MatcherKind.KNN:
        return KNNMatcher(k=k, weighting=weighting, threshold=threshold)
    if kind is MatcherKind.SVM:
        return SVMMatcher(c=c, threshold=threshold)
    return MeanMatcher(threshold=threshold)
