"""Recurring unknowns: group unknown-track records across tracks, cameras and days.

:class:`UnknownClusterer` takes :class:`~facesense.unknowns.record.UnknownRecord`\\ s one
at a time and keeps every record in exactly one *cluster*. A cluster of one record is
a face seen once (noise, in DBSCAN's words); it becomes a recurring unknown when a
second record joins it. Each :meth:`~UnknownClusterer.add` returns an
:class:`Assignment`: the record's id, its cluster, whether that cluster is recurring
and whether it is ignored (the caller then reports nothing).

**The rule** (incremental average linkage under a density radius, with local repair).
The linkage of a record ``x`` to a cluster ``C`` is the root-mean-square distance from
``x`` to ``C``'s records; between two groups, the RMS distance over all their cross
pairs. For unit embeddings both come from the groups' sums alone::

    rms(A, B)**2 = 2 - 2 * mean(A) . mean(B)        (mean(A): the unnormalised mean of A's rows)

so a cluster costs one ``D``-vector whatever its size, and
``rms(A, B)**2 = |mean(A) - mean(B)|**2 + spread(A)**2 + spread(B)**2``: a cluster's own
spread uses up its radius, so a loose cluster is hard to join. Two groups *may link* when

* their linkage is within a radius that depends on what is linked: ``eps`` for two
  records seen once (a pair), ``join_eps`` for one record and a cluster of several,
  ``merge_eps`` for two clusters of several; and
* (``separation``) unless both are single records, their means are no further apart than
  ``separation`` times what their pooled per-record spread explains
  (``|mean(A) - mean(B)|**2 <= separation * v * (1/|A| + 1/|B|)``, ``v`` the pooled
  variance, at least ``min_variance``): two tight groups whose RMS linkage is small only
  because both are tight stay apart (on LFW: two look-alike politicians).

A record the clusterer placed is *provisional* until its cluster holds ``settle`` records
newer than it; records a person touched (:meth:`~UnknownClusterer.merge`,
:meth:`~UnknownClusterer.ignore`) are settled at once. A new record whose linkage to no
cluster is within the widest radius starts its own. Otherwise the clusters within that
radius and the record are clustered again, as a batch average linkage would: each
cluster's settled records as one group, each provisional record on its own, the nearest
two groups that may link merged first until none may. A provisional record can so leave
a cluster it was wrongly put in (a wrong early pair is undone by the records that come
after it); settled records never part. Every cluster that came out of that then absorbs
any cluster that may link with it (repeated until none may). This is DBSCAN's radius with
average instead of single linkage: single linkage chains strangers into clusters (on
LFW, DBSCAN at the same recall reaches a pairwise precision of 0.56 against 0.98; see
``docs/recognition.md`` and ``facesense eval cluster``). The cost of an add is one
matrix-vector product over the cluster sums plus a batch over the few groups near the
record (at most ``settle`` + 1 per cluster nearby).

**eps** is the embedder's own distance scale: the impostor-distance quantile at
``ClusterConfig.link_far`` (:meth:`~facesense.models.registry.ScoreNorm.impostor_distance`
of the model's calibration), the distance that only that share of pairs of different
people come closer than; ``join_eps`` and ``merge_eps`` likewise at ``join_far`` and
``merge_far``. A model facesense has not calibrated is refused
(:class:`~facesense.errors.ConfigError`), unless ``eps`` is given explicitly (then it is
all three radii).

**What a person can do**: :meth:`~UnknownClusterer.name` (returns the cluster's records
to enroll and forgets them), :meth:`~UnknownClusterer.merge`,
:meth:`~UnknownClusterer.remove` (a wrong face; the rest of the cluster stays
together), :meth:`~UnknownClusterer.ignore` (later records that fall into the
cluster come back ``suppressed``), and :meth:`~UnknownClusterer.prune` by age and
count. The clusterer never undoes them: merged and ignored clusters' records are settled.
Every operation is deterministic: the same calls give the same ids and clusters.
:meth:`~UnknownClusterer.state` and :meth:`~UnknownClusterer.from_state` are what a
store saves and loads (:mod:`facesense.gallery.unknowns`; ``docs/unknowns.md`` for the
tables); :attr:`ClustererState.provisional` is the one part a store may leave out (its
records then load settled).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from facesense.errors import ConfigError, ModelMismatchError, NotFoundError
from facesense.unknowns.record import Crop, UnknownRecord

logger = logging.getLogger(__name__)

__all__ = [
    "Assignment",
    "ClusterConfig",
    "ClusterSummary",
    "ClustererState",
    "NamedCluster",
    "UnknownClusterer",
    "eps_for",
]

DAY_S = 86_400.0


@dataclass(frozen=True, kw_only=True)
class ClusterConfig:
    """How unknown records are grouped and how many are kept.

    Attributes:
        link_far: ``eps``, the radius for two records seen once to form a pair, is the
            model's impostor-distance quantile at this share of pairs of different people
            (see the module docstring).
        join_far: the same for one record joining a cluster of several (default: ``link_far``).
        merge_far: the same for merging two clusters of several records each (default:
            ``link_far``).
        eps: an explicit radius instead of all three (distance units of the model).
        separation: two groups of which at least one holds several records are also kept
            apart when their means differ by more than this many times what the groups'
            own spread explains (``None``: no such test; see the module docstring).
        min_variance: the pooled spread of that test is at least this (squared distance).
        settle: a record the clusterer placed stays *provisional* (it may move when a
            later record shows it fits elsewhere) until its cluster holds this many records
            newer than it.
        min_size: records that make a cluster *recurring* (reported as a visitor).
        keep_records: :meth:`UnknownClusterer.prune` keeps at most this many records.
        keep_days: ... and drops records last seen longer ago than this.
        keep_ignored: records kept per ignored cluster whatever their age, so that it
            still recognises what it stands for (a poster, a TV).
        summary_crops: crops a :class:`ClusterSummary` carries (the best of its records').
    """

    link_far: float = 3e-5
    join_far: float | None = 6e-5
    merge_far: float | None = 5e-5
    eps: float | None = None
    separation: float | None = 3.0
    min_variance: float = 0.02
    settle: int = 8
    min_size: int = 2
    keep_records: int = 5_000
    keep_days: float = 30.0
    keep_ignored: int = 5
    summary_crops: int = 6

    def __post_init__(self) -> None:
        for key in ("link_far", "join_far", "merge_far"):
            far = getattr(self, key)
            if far is not None and not 0 < far < 1:
                raise ConfigError(f"{key} must be in (0, 1), got {far}")
        if self.eps is not None and not (math.isfinite(self.eps) and 0 < self.eps < 2):
            raise ConfigError(f"eps must be a distance in (0, 2), got {self.eps}")
        if self.separation is not None and not (math.isfinite(self.separation) and self.separation > 0):
            raise ConfigError(f"separation must be > 0 or None, got {self.separation}")
        if not (math.isfinite(self.min_variance) and self.min_variance > 0):
            raise ConfigError(f"min_variance must be > 0, got {self.min_variance}")
        if self.settle < 0:
            raise ConfigError(f"settle must be >= 0, got {self.settle}")
        if self.min_size < 2:
            raise ConfigError(f"min_size must be >= 2, got {self.min_size}")
        if self.keep_records < 1:
            raise ConfigError(f"keep_records must be >= 1, got {self.keep_records}")
        if not self.keep_days > 0:
            raise ConfigError(f"keep_days must be > 0, got {self.keep_days}")
        if self.keep_ignored < 1:
            raise ConfigError(f"keep_ignored must be >= 1, got {self.keep_ignored}")
        if self.summary_crops < 0:
            raise ConfigError(f"summary_crops must be >= 0, got {self.summary_crops}")


def eps_for(model_id: str, config: ClusterConfig | None = None) -> float:
    """The linkage radius for ``model_id``: ``config.eps``, or the impostor quantile at ``config.link_far``.

    Raises:
        ConfigError: no explicit ``eps`` and facesense has not calibrated the model.
    """
    cfg = config or ClusterConfig()
    if cfg.eps is not None:
        return float(cfg.eps)
    from facesense.models.registry import calibration

    return float(calibration(model_id).norm.impostor_distance(cfg.link_far))


@dataclass(frozen=True)
class Assignment:
    """Where :meth:`UnknownClusterer.add` put a record.

    Attributes:
        record_id: the record's id (never reused).
        cluster_id: its cluster's id (never reused; a merged cluster keeps the older id
            of the two, or the one named by :meth:`UnknownClusterer.merge`).
        size: records in that cluster now.
        recurring: ``size >= min_size``: the unknown has come back.
        suppressed: the cluster is ignored; report nothing.
        linkage: RMS distance to the cluster joined, ``None`` when it started its own.
        merged: ids of clusters absorbed as a result of this record.
        moved: ids of other (provisional) records this record moved to another cluster.
    """

    record_id: int
    cluster_id: int
    size: int
    recurring: bool
    suppressed: bool
    linkage: float | None
    merged: tuple[int, ...] = ()
    moved: tuple[int, ...] = ()


@dataclass(frozen=True)
class ClusterSummary:
    """One cluster as a page shows it.

    Attributes:
        cluster_id: the id.
        record_ids: its records, oldest first.
        faces: embedded faces over all its records.
        first_seen, last_seen: over its records, seconds.
        sources: the sources (cameras) it was seen on, sorted.
        ignored: whether it is ignored.
        crops: the best crops of its records, best first.
        spread: RMS distance of its records to their mean (0 for one record).
    """

    cluster_id: int
    record_ids: tuple[int, ...]
    faces: int
    first_seen: float
    last_seen: float
    sources: tuple[str, ...]
    ignored: bool
    crops: tuple[Crop, ...]
    spread: float

    @property
    def size(self) -> int:
        """How many records (tracks) it holds."""
        return len(self.record_ids)

    def to_dict(self, min_size: int) -> dict[str, Any]:
        """What the CLI's ``--json`` and the API give of it (times ISO 8601; ``recurring``:
        at least ``min_size`` records, the clusterer's ``config.min_size``), without its id."""
        from facesense.gallery.events import iso_time

        return {
            "records": self.size,
            "faces": self.faces,
            "first_seen": iso_time(self.first_seen),
            "last_seen": iso_time(self.last_seen),
            "sources": list(self.sources),
            "ignored": self.ignored,
            "recurring": self.size >= min_size,
            "spread": round(self.spread, 4),
        }


@dataclass(frozen=True)
class NamedCluster:
    """What :meth:`UnknownClusterer.name` hands to enrollment.

    Attributes:
        cluster_id: the cluster that was named (now forgotten).
        name: the person's name.
        record_ids: its records.
        embeddings: ``(R, D)`` float32, one mean embedding per record.
        crops: every record's crops, best first.
        model_id: the embeddings' model id.
    """

    cluster_id: int
    name: str
    record_ids: tuple[int, ...]
    embeddings: npt.NDArray[np.float32]
    crops: tuple[Crop, ...]
    model_id: str


@dataclass(frozen=True)
class ClustererState:
    """Everything a store needs to save a clusterer and rebuild it exactly.

    Attributes:
        model_id: the records' model id.
        records: ``(record_id, cluster_id, record)``, by record id.
        ignored: ids of ignored clusters.
        next_record_id, next_cluster_id: the counters.
        provisional: ids of records the clusterer placed and may still move (see
            :attr:`ClusterConfig.settle`). A store that does not keep them loads every
            record as settled: the clusterer then never moves them, which is always safe.
    """

    model_id: str
    records: tuple[tuple[int, int, UnknownRecord], ...]
    ignored: frozenset[int]
    next_record_id: int
    next_cluster_id: int
    provisional: frozenset[int] = frozenset()


class _Slots:
    """Rows of a growing matrix reused through a free list (ids never reused, rows are)."""

    def __init__(self, dim: int, dtype: type[np.floating], capacity: int = 64) -> None:
        self.rows: npt.NDArray[np.floating] = np.zeros((capacity, dim), dtype)
        self.used = np.zeros((capacity,), bool)
        self.free: list[int] = []
        self.end = 0

    def take(self) -> int:
        if self.free:
            slot = self.free.pop()
        else:
            if self.end == len(self.used):
                grow = len(self.used)
                self.rows = np.concatenate([self.rows, np.zeros((grow, self.rows.shape[1]), self.rows.dtype)])
                self.used = np.concatenate([self.used, np.zeros((grow,), bool)])
            slot = self.end
            self.end += 1
        self.used[slot] = True
        return slot

    def release(self, slot: int) -> None:
        self.used[slot] = False
        self.rows[slot] = 0
        self.free.append(slot)


class UnknownClusterer:
    """Incremental clustering of unknown records (see the module docstring).

    Args:
        model_id: the embedder's model id; every record must carry it.
        config: the rule's parameters and the bounds.

    Raises:
        ConfigError: the model is not calibrated and ``config.eps`` is not given.
    """

    def __init__(self, model_id: str, config: ClusterConfig | None = None) -> None:
        self.model_id = model_id
        self.config = config or ClusterConfig()
        self.eps = eps_for(model_id, self.config)
        self.join_eps = self.merge_eps = self.eps
        if self.config.eps is None and self.config.join_far is not None:
            self.join_eps = eps_for(model_id, ClusterConfig(link_far=self.config.join_far))
        if self.config.eps is None and self.config.merge_far is not None:
            self.merge_eps = eps_for(model_id, ClusterConfig(link_far=self.config.merge_far))
        self._widest = max(self.eps, self.join_eps, self.merge_eps)
        self._dim: int | None = None
        self._records: dict[int, UnknownRecord] = {}
        self._record_cluster: dict[int, int] = {}
        self._members: dict[int, list[int]] = {}  # cluster id -> record ids, oldest first
        self._slot_of: dict[int, int] = {}  # cluster id -> row of _sums
        self._cluster_at: dict[int, int] = {}  # row -> cluster id
        self._sums: _Slots | None = None
        self._sizes = np.zeros((0,), np.int64)
        self._ignored: set[int] = set()
        self._provisional: set[int] = set()  # records the clusterer placed and may still move
        self._next_record = 1
        self._next_cluster = 1

    def __repr__(self) -> str:
        return (
            f"UnknownClusterer({self.model_id!r}, eps={self.eps:.4f}, records={len(self._records)}, "
            f"clusters={len(self._members)})"
        )

    def __len__(self) -> int:
        """How many records it holds."""
        return len(self._records)

    # ------------------------------------------------------------------ adding

    def _check(self, record: UnknownRecord) -> npt.NDArray[np.float64]:
        if not isinstance(record, UnknownRecord):
            raise ConfigError(f"expected an UnknownRecord, got {type(record).__name__}")
        if record.model_id != self.model_id:
            raise ModelMismatchError(
                f"record made by model {record.model_id!r}, but these unknowns are of {self.model_id!r}"
            )
        e = record.embedding.astype(np.float64)
        if self._dim is not None and e.shape[0] != self._dim:
            raise ConfigError(f"record embedding: expected {self._dim} values, got {e.shape[0]}")
        return e

    def _ensure_rows(self, dim: int) -> _Slots:
        if self._sums is None:
            self._dim = dim
            self._sums = _Slots(dim, np.float64)
        if len(self._sizes) < len(self._sums.used):
            self._sizes = np.concatenate([self._sizes, np.zeros((len(self._sums.used) - len(self._sizes),), np.int64)])
        return self._sums

    def _new_cluster(self, cluster_id: int | None = None) -> int:
        sums = self._sums
        if sums is None:  # pragma: no cover - _ensure_rows runs first
            raise ConfigError("no embedding dimension yet")
        slot = sums.take()
        self._ensure_rows(sums.rows.shape[1])
        cid = self._next_cluster if cluster_id is None else cluster_id
        self._next_cluster = max(self._next_cluster, cid + 1)
        self._slot_of[cid] = slot
        self._cluster_at[slot] = cid
        self._sizes[slot] = 0
        self._members[cid] = []
        return cid

    def _drop_cluster(self, cid: int) -> None:
        slot = self._slot_of.pop(cid)
        del self._cluster_at[slot]
        self._sizes[slot] = 0
        if self._sums is not None:
            self._sums.release(slot)
        del self._members[cid]
        self._ignored.discard(cid)

    def _linkages(self, vector: npt.NDArray[np.float64], weight: float, exclude: int | None = None) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Rows of every live cluster and the squared RMS linkage of ``vector / weight`` (a mean) to each."""
        sums = self._sums
        if sums is None or sums.end == 0:
            return np.zeros((0,), np.int64), np.zeros((0,), np.float64)
        end = sums.end
        # One product over the used prefix (no gathered copy of the rows), unused rows masked.
        sizes = self._sizes[:end].astype(np.float64) * weight
        live = sums.used[:end] & (sizes > 0)
        if exclude is not None:
            live[exclude] = False
        dots = (sums.rows[:end] @ vector) / np.where(live, sizes, 1.0)
        rows = np.flatnonzero(live).astype(np.int64)
        return rows, np.maximum(2.0 - 2.0 * dots[rows], 0.0)

    def _may_link(
        self,
        d2: npt.NDArray[np.float64],
        na: npt.NDArray[np.float64],
        nb: npt.NDArray[np.float64],
        qa: npt.NDArray[np.float64],
        qb: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.bool_]:
        """Which groups may link: squared linkage ``d2``, sizes ``na``, ``nb``, squared norms of their sums ``qa``, ``qb``."""
        one_a, one_b = na == 1, nb == 1
        radius = np.where(one_a & one_b, self.eps, np.where(one_a | one_b, self.join_eps, self.merge_eps))
        ok = np.asarray(d2 <= radius**2)
        sep = self.config.separation
        if sep is not None:
            # Two-sample test on the means: their squared distance against what the pooled
            # per-record spread explains; two records seen once have no spread to test.
            s2a = np.maximum(1.0 - qa / na**2, 0.0)
            s2b = np.maximum(1.0 - qb / nb**2, 0.0)
            df = na + nb - 2.0
            var = np.maximum((s2a * na + s2b * nb) / np.maximum(df, 1.0), self.config.min_variance)
            shift2 = np.maximum(d2 - s2a - s2b, 0.0)
            ok &= (df < 1) | (shift2 <= sep * var * (1.0 / na + 1.0 / nb))
        return ok

    def _agglomerate(self, sums: npt.NDArray[np.float64], sizes: npt.NDArray[np.float64]) -> list[int]:
        """Average (RMS) linkage of groups (``sums (m, D)``, ``sizes (m,)``) while :meth:`_may_link`; a label per group."""
        m = len(sizes)
        dots = sums @ sums.T
        n = sizes.astype(np.float64).copy()
        alive = np.ones(m, bool)
        labels = list(range(m))
        while True:
            q = np.diag(dots).copy()
            d2 = np.maximum(2.0 - 2.0 * dots / np.outer(n, n), 0.0)
            ok = self._may_link(d2, n[:, None], n[None, :], q[:, None], q[None, :])
            ok &= alive[:, None] & alive[None, :]
            np.fill_diagonal(ok, False)
            if not ok.any():
                return labels
            k = int(np.argmin(np.where(ok, d2, np.inf)))  # ties: the first pair in row order
            i, j = divmod(k, m)
            i, j = min(i, j), max(i, j)
            dots[i] += dots[j]
            dots[:, i] += dots[:, j]
            dots[j] = 0.0
            dots[:, j] = 0.0
            n[i] += n[j]
            n[j] = 1.0
            alive[j] = False
            labels = [i if v == j else v for v in labels]

    def add(self, record: UnknownRecord) -> Assignment:
        """Cluster one record (see the module docstring).

        Raises:
            ModelMismatchError: the record is of another model.
            ConfigError: not an :class:`UnknownRecord`, or another embedding length.
        """
        e = self._check(record)
        sums = self._ensure_rows(e.shape[0])
        rows, d2 = self._linkages(e, 1.0)
        near = rows[d2 <= self._widest**2]
        rid = self._next_record
        self._next_record += 1
        self._records[rid] = record
        self._provisional.add(rid)
        cid = self._new_cluster()
        self._record_cluster[rid] = cid
        self._members[cid].append(rid)
        slot = self._slot_of[cid]
        sums.rows[slot] += e
        self._sizes[slot] += 1
        before = {r: self._record_cluster[r] for c in near.tolist() for r in self._members[self._cluster_at[c]]}
        fresh = cid
        merged: list[int] = []
        if near.size:
            region = [*sorted(self._cluster_at[int(r)] for r in near), cid]
            out, gone = self._repair(region)
            merged.extend(gone)
            for c in out:
                if c in self._members:
                    merged.extend(self._absorb(c))
        cid = self._record_cluster[rid]
        self._settle(cid)
        members = self._members[cid]
        linkage: float | None = None
        if len(members) > 1:
            rest = sums.rows[self._slot_of[cid]] - e
            linkage = math.sqrt(max(0.0, 2.0 - 2.0 * float(rest @ e) / (len(members) - 1)))
        moved = tuple(sorted(r for r, c in before.items() if self._record_cluster.get(r, c) != c))
        size = len(members)
        return Assignment(
            record_id=rid,
            cluster_id=cid,
            size=size,
            recurring=size >= self.config.min_size,
            suppressed=cid in self._ignored,
            linkage=linkage,
            merged=tuple(sorted(set(merged) - set(self._members) - {fresh})),
            moved=moved,
        )

    def _repair(self, region: list[int]) -> tuple[list[int], list[int]]:
        """Cluster the region's groups again: each cluster's settled records as one, every provisional record alone.

        Returns the region's clusters after, and the ids of those that were emptied.
        """
        sums = self._sums
        if sums is None:  # pragma: no cover - add made the rows
            return [], []
        groups: list[list[int]] = []
        core_of: list[int | None] = []
        vectors: list[npt.NDArray[np.float64]] = []
        for cid in region:
            total = sums.rows[self._slot_of[cid]].copy()
            loose = [r for r in self._members[cid] if r in self._provisional]
            core = [r for r in self._members[cid] if r not in self._provisional]
            for r in loose:
                v = self._records[r].embedding.astype(np.float64)
                total -= v
                groups.append([r])
                core_of.append(None)
                vectors.append(v)
            if core:
                groups.append(core)
                core_of.append(cid)
                vectors.append(total)
        labels = self._agglomerate(np.stack(vectors), np.asarray([len(g) for g in groups], np.float64))
        parts: dict[int, list[int]] = {}
        for g, lab in enumerate(labels):
            parts.setdefault(lab, []).append(g)
        # Ids: a part with settled records keeps the oldest of their clusters' ids (a merge);
        # the others take the id of the region cluster they share most records with.
        old = {cid: set(self._members[cid]) for cid in region}
        name: dict[int, int] = {}
        for lab, gs in parts.items():
            cores = sorted(c for g in gs if (c := core_of[g]) is not None)
            if cores:
                name[lab] = cores[0]
        taken = set(name.values())
        held = {lab: {r for g in gs for r in groups[g]} for lab, gs in parts.items()}
        overlaps = sorted(
            (-len(held[lab] & old[cid]), cid, lab)
            for lab in parts
            if lab not in name
            for cid in region
            if held[lab] & old[cid]
        )
        for _, cid, lab in overlaps:
            if lab not in name and cid not in taken:
                name[lab] = cid
                taken.add(cid)
        ignored = {cid for cid in region if cid in self._ignored}
        for lab in parts:
            if lab not in name:
                name[lab] = self._new_cluster()
        for cid in region:  # empty the region's clusters, then fill them from the parts
            slot = self._slot_of[cid]
            sums.rows[slot] = 0.0
            self._sizes[slot] = 0
            self._members[cid] = []
        out: list[int] = []
        for lab, gs in sorted(parts.items(), key=lambda kv: name[kv[0]]):
            cid = name[lab]
            slot = self._slot_of[cid]
            records = sorted(r for g in gs for r in groups[g])
            for g in gs:
                sums.rows[slot] += vectors[g]
            self._sizes[slot] = len(records)
            self._members[cid] = records
            for r in records:
                self._record_cluster[r] = cid
            out.append(cid)
        gone = [cid for cid in region if not self._members[cid]]
        for cid in gone:
            if cid in ignored:  # an ignored cluster merged away: the one it went into is ignored
                for lab in parts:
                    if held[lab] & old[cid]:
                        self._ignored.add(name[lab])
            self._drop_cluster(cid)
        return out, gone

    def _settle(self, cid: int) -> None:
        """Settle the provisional records of ``cid`` that ``config.settle`` newer records have joined."""
        members = self._members[cid]  # oldest first
        cut = len(members) - self.config.settle
        for rid in members[: max(cut, 0)]:
            self._provisional.discard(rid)

    def _absorb(self, cid: int) -> tuple[int, ...]:
        """Merge every cluster that may link with ``cid`` into it (repeatedly, nearest first); returns their ids."""
        sums = self._sums
        if sums is None:  # pragma: no cover
            return ()
        absorbed: list[int] = []
        while True:
            slot = self._slot_of[cid]
            own = sums.rows[slot].copy()
            n = float(self._sizes[slot])
            rows, d2 = self._linkages(own, n, exclude=slot)
            close = d2 <= self._widest**2
            rows, d2 = rows[close], d2[close]
            if rows.size == 0:
                break
            nb = self._sizes[rows].astype(np.float64)
            qb = np.einsum("ij,ij->i", sums.rows[rows], sums.rows[rows])
            ok = self._may_link(d2, np.full(rows.shape, n), nb, np.full(rows.shape, float(own @ own)), qb)
            if not ok.any():
                break
            # The nearest first, ties to the older id; one at a time, since each merge moves the mean.
            near = int(np.argmin(np.where(ok, d2, np.inf)))
            other = self._cluster_at[int(rows[near])]
            keep, gone = (cid, other) if cid < other else (other, cid)
            self._merge_into(keep, gone)
            absorbed.append(gone)
            cid = keep
        return tuple(absorbed)

    def _merge_into(self, keep: int, gone: int) -> None:
        sums = self._sums
        if sums is None:  # pragma: no cover
            return
        ks, gs = self._slot_of[keep], self._slot_of[gone]
        sums.rows[ks] += sums.rows[gs]
        self._sizes[ks] += self._sizes[gs]
        moved = self._members[gone]
        for rid in moved:
            self._record_cluster[rid] = keep
        self._members[keep] = sorted(self._members[keep] + moved)
        if gone in self._ignored:
            self._ignored.add(keep)
        self._drop_cluster(gone)

    # ------------------------------------------------------------------ reading

    def _cluster(self, cluster_id: int) -> list[int]:
        try:
            return self._members[int(cluster_id)]
        except (KeyError, TypeError, ValueError):
            raise NotFoundError(f"no unknown cluster {cluster_id!r}") from None

    def record(self, record_id: int) -> UnknownRecord:
        """One record by id.

        Raises:
            NotFoundError: no such record.
        """
        try:
            return self._records[int(record_id)]
        except (KeyError, TypeError, ValueError):
            raise NotFoundError(f"no unknown record {record_id!r}") from None

    def cluster_of(self, record_id: int) -> int:
        """The cluster a record is in.

        Raises:
            NotFoundError: no such record.
        """
        self.record(record_id)
        return self._record_cluster[int(record_id)]

    def labels(self, record_ids: Sequence[int]) -> npt.NDArray[np.int64]:
        """``(R,)`` the cluster id of each record (``-1`` for a record no longer held)."""
        return np.asarray([self._record_cluster.get(int(r), -1) for r in record_ids], np.int64)

    def summary(self, cluster_id: int) -> ClusterSummary:
        """One cluster as a page shows it.

        Raises:
            NotFoundError: no such cluster.
        """
        members = self._cluster(cluster_id)
        recs = [self._records[r] for r in members]
        crops = sorted((c for r in recs for c in r.crops), key=lambda c: (-c.quality, c.seen_at))
        slot = self._slot_of[int(cluster_id)]
        spread = 0.0
        if self._sums is not None and len(recs) > 1:
            mean = self._sums.rows[slot] / len(recs)
            spread = math.sqrt(max(0.0, 1.0 - float(mean @ mean)))
        return ClusterSummary(
            cluster_id=int(cluster_id),
            record_ids=tuple(members),
            faces=sum(r.faces for r in recs),
            first_seen=min(r.first_seen for r in recs),
            last_seen=max(r.last_seen for r in recs),
            sources=tuple(sorted({r.source for r in recs})),
            ignored=int(cluster_id) in self._ignored,
            crops=tuple(crops[: self.config.summary_crops]),
            spread=spread,
        )

    def clusters(self, *, min_size: int | None = None, include_ignored: bool = False) -> list[ClusterSummary]:
        """Clusters with at least ``min_size`` records (default: the recurring ones), last seen first."""
        low = self.config.min_size if min_size is None else int(min_size)
        out = [
            self.summary(cid)
            for cid, members in self._members.items()
            if len(members) >= low and (include_ignored or cid not in self._ignored)
        ]
        out.sort(key=lambda s: (-s.last_seen, s.cluster_id))
        return out

    # ------------------------------------------------------------------ a person's corrections

    def name(self, cluster_id: int, name: str) -> NamedCluster:
        """Take a cluster out to be enrolled as ``name``; its records are forgotten.

        The caller enrolls ``embeddings`` (or re-embeds the crops) through the usual
        enrollment checks; a store does both in one transaction.

        Raises:
            NotFoundError: no such cluster.
            ConfigError: an empty name.
        """
        if not str(name).strip():
            raise ConfigError("a name is needed to name an unknown cluster")
        members = list(self._cluster(cluster_id))
        recs = [self._records[r] for r in members]
        crops = tuple(sorted((c for r in recs for c in r.crops), key=lambda c: (-c.quality, c.seen_at)))
        out = NamedCluster(
            cluster_id=int(cluster_id),
            name=str(name).strip(),
            record_ids=tuple(members),
            embeddings=np.stack([r.embedding for r in recs]).astype(np.float32),
            crops=crops,
            model_id=self.model_id,
        )
        for rid in members:
            self._forget(rid)
        return out

    def merge(self, into: int, other: int) -> int:
        """Merge cluster ``other`` into ``into`` (a person says they are one); returns ``into``.

        The merged cluster is ignored if either was.

        Raises:
            NotFoundError: no such cluster.
            ConfigError: the same cluster twice.
        """
        self._cluster(into)
        self._cluster(other)
        if int(into) == int(other):
            raise ConfigError(f"cannot merge cluster {into} with itself")
        self._provisional.difference_update(self._members[int(into)] + self._members[int(other)])
        self._merge_into(int(into), int(other))
        return int(into)

    def remove(self, record_id: int) -> int | None:
        """Take one record (a wrong face) out; returns its former cluster, ``None`` if that is now empty.

        The rest of the cluster stays together: removing a face never splits a cluster.

        Raises:
            NotFoundError: no such record.
        """
        cid = self.cluster_of(record_id)
        self._forget(int(record_id))
        return cid if cid in self._members else None

    def ignore(self, cluster_id: int, ignored: bool = True) -> None:
        """Ignore a cluster (a poster, a TV): later records that join it come back ``suppressed``.

        Raises:
            NotFoundError: no such cluster.
        """
        members = self._cluster(cluster_id)
        if ignored:
            self._provisional.difference_update(members)  # a person looked at these faces
            self._ignored.add(int(cluster_id))
        else:
            self._ignored.discard(int(cluster_id))

    def _forget(self, rid: int) -> None:
        record = self._records.pop(rid)
        self._provisional.discard(rid)
        cid = self._record_cluster.pop(rid)
        members = self._members[cid]
        members.remove(rid)
        if not members:
            self._drop_cluster(cid)
            return
        slot = self._slot_of[cid]
        if self._sums is not None:
            self._sums.rows[slot] -= record.embedding.astype(np.float64)
        self._sizes[slot] -= 1

    def prune(self, now: float, *, keep_days: float | None = None, keep_records: int | None = None) -> tuple[int, ...]:
        """Drop records last seen more than ``keep_days`` before ``now``, then the oldest beyond ``keep_records``.

        Over the count, records seen once (clusters of one) go before clustered ones.
        The newest ``config.keep_ignored`` records of each ignored cluster always stay.

        Args:
            now: the current time, seconds (the records' clock).
            keep_days, keep_records: instead of the config's.

        Returns:
            The ids of the records dropped (for a store to delete).
        """
        days = self.config.keep_days if keep_days is None else float(keep_days)
        count = self.config.keep_records if keep_records is None else int(keep_records)
        if not days > 0 or count < 0 or not math.isfinite(float(now)):
            raise ConfigError(f"prune needs a finite now, keep_days > 0 and keep_records >= 0, got {now}, {days}, {count}")
        protected: set[int] = set()
        for cid in self._ignored:
            newest = sorted(self._members[cid], key=lambda r: (self._records[r].last_seen, r))
            protected.update(newest[-self.config.keep_ignored :])
        cutoff = float(now) - days * DAY_S
        dropped = [r for r, rec in self._records.items() if rec.last_seen < cutoff and r not in protected]
        for rid in dropped:
            self._forget(rid)
        excess = len(self._records) - count
        if excess > 0:
            candidates = [r for r in self._records if r not in protected]
            candidates.sort(
                key=lambda r: (len(self._members[self._record_cluster[r]]) > 1, self._records[r].last_seen, r)
            )
            for rid in candidates[:excess]:
                self._forget(rid)
                dropped.append(rid)
        if dropped:
            logger.debug("pruned %d unknown record(s)", len(dropped))
        return tuple(sorted(dropped))

    # ------------------------------------------------------------------ storage

    def state(self) -> ClustererState:
        """Everything needed to rebuild this clusterer exactly (:meth:`from_state`)."""
        return ClustererState(
            model_id=self.model_id,
            records=tuple((rid, self._record_cluster[rid], self._records[rid]) for rid in sorted(self._records)),
            ignored=frozenset(self._ignored),
            next_record_id=self._next_record,
            next_cluster_id=self._next_cluster,
            provisional=frozenset(self._provisional),
        )

    @classmethod
    def from_state(cls, state: ClustererState, config: ClusterConfig | None = None) -> UnknownClusterer:
        """Rebuild a clusterer from what a store kept (clusters as stored, not re-clustered).

        Raises:
            ConfigError: duplicate record ids, ids beyond the counters, or an ignored
                cluster with no record.
            ModelMismatchError: a record of another model.
        """
        out = cls(state.model_id, config)
        seen: set[int] = set()
        for rid, cid, record in state.records:
            if rid in seen or rid >= state.next_record_id or cid >= state.next_cluster_id or rid < 1 or cid < 1:
                raise ConfigError(f"unknowns state: bad record id {rid} or cluster id {cid}")
            seen.add(rid)
            e = out._check(record)
            sums = out._ensure_rows(e.shape[0])
            if cid not in out._members:
                out._new_cluster(cid)
            out._records[rid] = record
            out._record_cluster[rid] = cid
            out._members[cid].append(rid)
            slot = out._slot_of[cid]
            sums.rows[slot] += e
            out._sizes[slot] += 1
        missing = set(state.ignored) - set(out._members)
        if missing:
            raise ConfigError(f"unknowns state: ignored cluster(s) {sorted(missing)} hold no record")
        out._ignored = set(state.ignored)
        out._provisional = set(state.provisional) & set(out._records)
        out._next_record = int(state.next_record_id)
        out._next_cluster = int(state.next_cluster_id)
        return out

    def extend(self, records: Iterable[UnknownRecord]) -> list[Assignment]:
        """:meth:`add` each record in order."""
        return [self.add(r) for r in records]
