"""Recurring unknowns on LFW: do a person's faces end up in one cluster, and strangers in none?

Protocol (``facesense eval cluster --images LFW_DIR``):

* every person with ``min_images`` (3) or more images is a **recurring visitor**,
  everybody else a **one-off stranger** (their one or two images);
* every image is one record (a one-face track), embedded like ``facesense eval
  identify`` embeds it (the same ``.npz`` cache serves both);
* the records arrive in a seeded random order, one a minute, and are clustered
  incrementally by :class:`facesense.unknowns.UnknownClusterer`.

Reported (a record left alone is a cluster of one):

* **pairwise** precision and recall: of the pairs of records put in one cluster, the
  share that show one person; of the pairs that show one person, the share put together;
* **BCubed** precision, recall and F (per record, then averaged: less dominated by the
  largest people than pairwise);
* **strangers merged**: one-off strangers' records put in a cluster with someone else;
* **visitors found**: recurring people with a recurring cluster in which they are the majority;
* for reference, batch clusterings of the same embeddings at the same ``eps`` with
  scikit-learn (``DBSCAN``: single linkage; ``AgglomerativeClustering``: average linkage).
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facesense.errors import ConfigError

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.enroll import FaceAnalyzerLike
    from facesense.unknowns import ClusterConfig

logger = logging.getLogger(__name__)

__all__ = [
    "MIN_IMAGES",
    "ClusterMetrics",
    "ClusterReport",
    "cluster_metrics",
    "evaluate_cluster",
    "evaluate_clustering",
]

MIN_IMAGES = 3
"""People with at least this many images are the recurring visitors."""

ARRIVAL_INTERVAL_S = 60.0


@dataclass(frozen=True)
class ClusterMetrics:
    """How a clustering compares with the truth (see the module docstring)."""

    pairwise_precision: float
    pairwise_recall: float
    bcubed_precision: float
    bcubed_recall: float
    strangers_merged: int
    visitors_found: int
    clusters: int

    @property
    def pairwise_f(self) -> float:
        p, r = self.pairwise_precision, self.pairwise_recall
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)

    @property
    def bcubed_f(self) -> float:
        p, r = self.bcubed_precision, self.bcubed_recall
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pairwise": {
                "precision": round(self.pairwise_precision, 4),
                "recall": round(self.pairwise_recall, 4),
                "f": round(self.pairwise_f, 4),
            },
            "bcubed": {
                "precision": round(self.bcubed_precision, 4),
                "recall": round(self.bcubed_recall, 4),
                "f": round(self.bcubed_f, 4),
            },
            "strangers_merged": self.strangers_merged,
            "visitors_found": self.visitors_found,
            "clusters": self.clusters,
        }


def cluster_metrics(
    truth: Sequence[str], predicted: npt.ArrayLike, recurring: npt.ArrayLike, *, min_size: int = 2
) -> ClusterMetrics:
    """Compare cluster ids with true identities.

    Args:
        truth: ``(N,)`` the person of each record.
        predicted: ``(N,)`` int cluster ids; a negative id is a record left alone.
        recurring: ``(N,)`` bool, whether the record's person is a recurring visitor.
        min_size: records that make a cluster recurring (for ``visitors_found`` and ``clusters``).

    Raises:
        ConfigError: the arrays differ in length or are empty.
    """
    from sklearn.metrics.cluster import contingency_matrix

    pred = np.asarray(predicted, np.int64).copy()
    rec = np.asarray(recurring, bool)
    t = np.asarray(list(truth), dtype=object).astype(str)
    n = len(t)
    if n == 0 or pred.shape != (n,) or rec.shape != (n,):
        raise ConfigError(f"cluster_metrics: expected {n} (> 0) cluster ids and flags, got {pred.shape} and {rec.shape}")
    alone = pred < 0
    pred[alone] = (pred.max() + 1 if (~alone).any() else 0) + np.arange(int(alone.sum()))
    _, t_idx = np.unique(t, return_inverse=True)
    _, p_idx = np.unique(pred, return_inverse=True)
    table = contingency_matrix(t_idx, p_idx, sparse=True).tocoo()
    nij = table.data.astype(np.float64)
    a = np.bincount(table.col, weights=nij)  # records per cluster
    b = np.bincount(table.row, weights=nij)  # records per person
    together = float((nij * (nij - 1) / 2).sum())
    put = float((a * (a - 1) / 2).sum())
    same = float((b * (b - 1) / 2).sum())
    bp = float((nij**2 / a[table.col]).sum() / n)
    br = float((nij**2 / b[table.row]).sum() / n)
    # A one-off stranger is merged wrongly when their cluster holds anybody else.
    people_in = np.bincount(table.col)  # distinct people per cluster
    mixed = people_in[p_idx] > 1
    strangers_merged = int(np.sum(mixed & ~rec))
    best: dict[int, tuple[float, int]] = {}  # cluster -> (records, person) of its largest person
    for i, j, v in zip(table.row.tolist(), table.col.tolist(), nij.tolist(), strict=True):
        if a[j] >= min_size and v > best.get(j, (0.0, -1))[0]:
            best[j] = (v, i)
    found = {i for j, (v, i) in best.items() if 2 * v > a[j]}
    recurring_people = set(np.unique(t_idx[rec]).tolist())
    visitors = len(found & recurring_people)
    return ClusterMetrics(
        pairwise_precision=together / put if put else 1.0,
        pairwise_recall=together / same if same else 1.0,
        bcubed_precision=bp,
        bcubed_recall=br,
        strangers_merged=strangers_merged,
        visitors_found=visitors,
        clusters=int(np.sum(a >= min_size)),
    )


@dataclass(frozen=True)
class ClusterReport:
    """The result of :func:`evaluate_clustering`."""

    model_id: str
    eps: float
    link_far: float | None
    records: int
    recurring_people: int
    recurring_records: int
    stranger_records: int
    seed: int
    metrics: ClusterMetrics
    add_ms: float
    no_face: int = 0
    add_ms_p99: float = 0.0
    add_ms_max: float = 0.0
    baselines: dict[str, ClusterMetrics] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        return {
            "model_id": self.model_id,
            "eps": round(self.eps, 4),
            "link_far": self.link_far,
            "records": self.records,
            "recurring_people": self.recurring_people,
            "recurring_records": self.recurring_records,
            "stranger_records": self.stranger_records,
            "no_face": self.no_face,
            "seed": self.seed,
            "incremental": self.metrics.to_dict(),
            "add_ms": round(self.add_ms, 3),
            "add_ms_p99": round(self.add_ms_p99, 3),
            "add_ms_max": round(self.add_ms_max, 3),
            "baselines": {k: v.to_dict() for k, v in self.baselines.items()},
        }

    def lines(self) -> list[str]:
        """A human-readable report."""
        m = self.metrics
        far = "" if self.link_far is None else f" (impostor quantile at {self.link_far:g})"
        out = [
            (f"recurring unknowns: {self.records} records arriving in random order (seed {self.seed}): "
             f"{self.recurring_records} of {self.recurring_people} recurring people, {self.stranger_records} one-off strangers"),
            f"model {self.model_id}, eps {self.eps:.4f}{far}",
            "  clustering                  pairwise P / R      BCubed P / R / F     strangers merged  visitors found  clusters",
        ]
        rows = [("incremental (facesense)", m), *self.baselines.items()]
        for name, r in rows:
            out.append(
                f"  {name:<26}  {r.pairwise_precision:.3f} / {r.pairwise_recall:.3f}    "
                f"{r.bcubed_precision:.3f} / {r.bcubed_recall:.3f} / {r.bcubed_f:.3f}   "
                f"{r.strangers_merged:>10d}        {r.visitors_found:>6d}      {r.clusters:>6d}"
            )
        out.append(
            f"  {self.add_ms:.2f} ms per record added (mean; 99th percentile {self.add_ms_p99:.2f}, max {self.add_ms_max:.2f})"
        )
        return out


def evaluate_clustering(
    embeddings: npt.ArrayLike,
    labels: Sequence[str],
    *,
    model_id: str,
    config: ClusterConfig | None = None,
    min_images: int = MIN_IMAGES,
    seed: int = 0,
    baselines: bool = True,
    no_face: int = 0,
) -> ClusterReport:
    """Cluster one record per embedding, arriving in a seeded random order (see the module docstring).

    Args:
        embeddings: ``(N, D)`` float32, one face per row.
        labels: ``(N,)`` the person of each row.
        model_id: the embeddings' model id (``eps`` comes from its calibration unless
            ``config.eps`` is given).
        config: the clusterer's settings.
        min_images: people with this many rows or more are recurring visitors.
        seed: the arrival order's seed.
        baselines: also run scikit-learn's batch DBSCAN and average-linkage clustering.

    Raises:
        ConfigError: mismatched or empty inputs, or an uncalibrated model without ``eps``.
    """
    from facesense.unknowns import ClusterConfig, UnknownClusterer, UnknownRecord

    x = np.asarray(embeddings, np.float32)
    lab = [str(v) for v in labels]
    if x.ndim != 2 or x.shape[0] != len(lab) or x.shape[0] == 0:
        raise ConfigError(f"expected (N, D) embeddings with one label each, got {x.shape} and {len(lab)} labels")
    if min_images < 2:
        raise ConfigError(f"min_images must be >= 2, got {min_images}")
    cfg = config or ClusterConfig()
    counts = Counter(lab)
    recurring = np.array([counts[v] >= min_images for v in lab], bool)
    order = np.random.default_rng(seed).permutation(len(lab))
    clusterer = UnknownClusterer(model_id, cfg)
    record_ids = np.zeros(len(lab), np.int64)
    took = np.zeros(len(lab), np.float64)
    for step, i in enumerate(order.tolist()):
        at = step * ARRIVAL_INTERVAL_S
        rec = UnknownRecord(embedding=x[i], model_id=model_id, first_seen=at, last_seen=at, source="lfw")
        t0 = time.perf_counter()
        record_ids[i] = clusterer.add(rec).record_id
        took[step] = time.perf_counter() - t0
    add_ms = 1000.0 * float(took.mean())
    pred = clusterer.labels(record_ids.tolist())
    metrics = cluster_metrics(lab, pred, recurring, min_size=cfg.min_size)
    extra: dict[str, ClusterMetrics] = {}
    if baselines:
        from sklearn.cluster import DBSCAN, AgglomerativeClustering

        xo, lo, ro = x[order], [lab[i] for i in order], recurring[order]
        db = DBSCAN(eps=clusterer.eps, min_samples=cfg.min_size).fit_predict(xo)
        extra["DBSCAN (batch, sklearn)"] = cluster_metrics(lo, db, ro, min_size=cfg.min_size)
        if len(lo) >= 2:
            avg = AgglomerativeClustering(n_clusters=None, distance_threshold=clusterer.eps, linkage="average").fit_predict(xo)
            extra["average linkage (batch)"] = cluster_metrics(lo, avg, ro, min_size=cfg.min_size)
    people = {v for v, r in zip(lab, recurring.tolist(), strict=True) if r}
    return ClusterReport(
        model_id=model_id,
        eps=clusterer.eps,
        link_far=None if cfg.eps is not None else cfg.link_far,
        records=len(lab),
        recurring_people=len(people),
        recurring_records=int(recurring.sum()),
        stranger_records=int((~recurring).sum()),
        seed=seed,
        metrics=metrics,
        add_ms=add_ms,
        add_ms_p99=1000.0 * float(np.percentile(took, 99)),
        add_ms_max=1000.0 * float(took.max()),
        no_face=no_face,
        baselines=extra,
    )


def evaluate_cluster(
    analyzer: FaceAnalyzerLike,
    images: str | os.PathLike[str],
    *,
    config: ClusterConfig | None = None,
    cache: Path | None = None,
    seed: int = 0,
    baselines: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> ClusterReport:
    """Run the whole protocol on an LFW folder (see the module docstring).

    The images are embedded in ``facesense eval identify``'s order, so one ``cache``
    file serves both commands.
    """
    from facesense.eval.identify import embed_central_faces, lfw_open_set
    from facesense.unknowns import eps_for

    eps_for(analyzer.model_id, config)  # an uncalibrated model is refused before the long embedding
    protocol = lfw_open_set(images)
    paths = protocol.all_paths
    embeddings, no_face = embed_central_faces(analyzer, protocol.root, paths, cache=cache, on_progress=on_progress)
    labels = [p.split("/", 1)[0] for p in paths]
    return evaluate_clustering(
        embeddings, labels, model_id=analyzer.model_id, config=config, seed=seed, baselines=baselines, no_face=no_face
    )
