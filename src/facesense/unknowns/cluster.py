"""Recurring unknowns: group unknown-track records across tracks, cameras and days.

:class:`UnknownClusterer` takes :class:`~facesense.unknowns.record.UnknownRecord`\\ s one
at a time and keeps every record in exactly one *cluster*. A cluster of one record is
a face seen once (noise, in DBSCAN's words); it becomes a recurring unknown when a
second record joins it. Each :meth:`~UnknownClusterer.add` returns an
:class:`Assignment`: the record's id, its cluster, whether that cluster is recurring
and whether it is ignored (the caller then reports nothing).

**The rule** (incremental average linkage under a density radius). The linkage of a
record ``x`` to a cluster ``C`` is the root-mean-square distance from ``x`` to ``C``'s
records; between two clusters, the RMS distance over all their cross pairs. For unit
embeddings both come from the clusters' sums alone::

    rms(A, B)**2 = 2 - 2 * mean(A) . mean(B)        (mean(A): the unnormalised mean of A's rows)

so a cluster costs one ``D``-vector whatever its size. A new record joins the cluster
of smallest linkage when that linkage is at most ``eps``, else it starts its own; after
a join, the grown cluster absorbs any cluster now within ``eps`` of it (repeated until
none is). ``rms(x, C)**2 = |x - mean(C)|**2 + spread(C)**2``: a cluster's own spread
uses up its radius, so a loose cluster is hard to join. This is DBSCAN's radius with
average instead of single linkage: single linkage chains strangers into clusters (on
LFW, DBSCAN at the same recall reaches a pairwise precision of 0.80 against 0.98; see
``docs/recognition.md`` and ``facesense eval cluster``).

**eps** is the embedder's own distance scale: the impostor-distance quantile at
``ClusterConfig.link_far`` (:meth:`~facesense.models.registry.ScoreNorm.impostor_distance`
of the model's calibration), the distance that only that share of pairs of different
people come closer than. A model facesense has not calibrated is refused
(:class:`~facesense.errors.ConfigError`), unless ``eps`` is given explicitly.

**What a person can do**: :meth:`~UnknownClusterer.name` (returns the cluster's records
to enroll and forgets them), :meth:`~UnknownClusterer.merge`,
:meth:`~UnknownClusterer.remove` (a wrong face; a cluster is never split behind the
user's back), :meth:`~UnknownClusterer.ignore` (later records that fall into the
cluster come back ``suppressed``), and :meth:`~UnknownClusterer.prune` by age and
count. Every operation is deterministic: the same calls give the same ids and clusters.
:meth:`~UnknownClusterer.state` and :meth:`~UnknownClusterer.from_state` are what a
store saves and loads (:mod:`facesense.gallery.unknowns`; ``docs/unknowns.md`` for the tables).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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
        link_far: ``eps`` is the model's impostor-distance quantile at this share of
            pairs of different people (see the module docstring).
        merge_far: the same for merging two clusters of several records each (default:
            ``link_far``); smaller is stricter, since such a merge joins many pairs at once.
        eps: an explicit linkage radius instead (distance units of the model; then also for merges).
        min_size: records that make a cluster *recurring* (reported as a visitor).
        keep_records: :meth:`UnknownClusterer.prune` keeps at most this many records.
        keep_days: ... and drops records last seen longer ago than this.
        keep_ignored: records kept per ignored cluster whatever their age, so that it
            still recognises what it stands for (a poster, a TV).
        summary_crops: crops a :class:`ClusterSummary` carries (the best of its records').
    """

    link_far: float = 4e-5
    merge_far: float | None = None
    eps: float | None = None
    min_size: int = 2
    keep_records: int = 5_000
    keep_days: float = 30.0
    keep_ignored: int = 5
    summary_crops: int = 6

    def __post_init__(self) -> None:
        if not 0 < self.link_far < 1:
            raise ConfigError(f"link_far must be in (0, 1), got {self.link_far}")
        if self.merge_far is not None and not 0 < self.merge_far < 1:
            raise ConfigError(f"merge_far must be in (0, 1), got {self.merge_far}")
        if self.eps is not None and not (math.isfinite(self.eps) and 0 < self.eps < 2):
            raise ConfigError(f"eps must be a distance in (0, 2), got {self.eps}")
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
    """

    record_id: int
    cluster_id: int
    size: int
    recurring: bool
    suppressed: bool
    linkage: float | None
    merged: tuple[int, ...] = ()


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
    """

    model_id: str
    records: tuple[tuple[int, int, UnknownRecord], ...]
    ignored: frozenset[int]
    next_record_id: int
    next_cluster_id: int


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
        self.merge_eps = self.eps
        if self.config.eps is None and self.config.merge_far is not None:
            self.merge_eps = eps_for(model_id, ClusterConfig(link_far=self.config.merge_far))
        self._dim: int | None = None
        self._records: dict[int, UnknownRecord] = {}
        self._record_cluster: dict[int, int] = {}
        self._members: dict[int, list[int]] = {}  # cluster id -> record ids, oldest first
        self._slot_of: dict[int, int] = {}  # cluster id -> row of _sums
        self._cluster_at: dict[int, int] = {}  # row -> cluster id
        self._sums: _Slots | None = None
        self._sizes = np.zeros((0,), np.int64)
        self._ignored: set[int] = set()
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

    def add(self, record: UnknownRecord) -> Assignment:
        """Cluster one record (see the module docstring).

        Raises:
            ModelMismatchError: the record is of another model.
            ConfigError: not an :class:`UnknownRecord`, or another embedding length.
        """
        e = self._check(record)
        sums = self._ensure_rows(e.shape[0])
        rows, d2 = self._linkages(e, 1.0)
        linkage: float | None = None
        if d2.size:
            best = int(np.argmin(d2))  # ties: the lowest row; rows are not ordered by age, ids are
            ties = rows[d2 <= d2[best]]
            row = min((int(r) for r in ties), key=lambda r: self._cluster_at[r])
            if d2[best] <= self.eps**2:
                linkage = math.sqrt(float(d2[best]))
                cid = self._cluster_at[row]
            else:
                cid = self._new_cluster()
        else:
            cid = self._new_cluster()
        rid = self._next_record
        self._next_record += 1
        self._records[rid] = record
        self._record_cluster[rid] = cid
        self._members[cid].append(rid)
        slot = self._slot_of[cid]
        sums.rows[slot] += e
        self._sizes[slot] += 1
        merged = self._absorb(cid) if linkage is not None else ()
        cid = self._record_cluster[rid]
        size = len(self._members[cid])
        return Assignment(
            record_id=rid,
            cluster_id=cid,
            size=size,
            recurring=size >= self.config.min_size,
            suppressed=cid in self._ignored,
            linkage=linkage,
            merged=merged,
        )

    def _absorb(self, cid: int) -> tuple[int, ...]:
        """Merge every cluster within ``eps`` of ``cid`` into it (repeatedly); returns their ids."""
        sums = self._sums
        if sums is None:  # pragma: no cover
            return ()
        absorbed: list[int] = []
        while True:
            slot = self._slot_of[cid]
            rows, d2 = self._linkages(sums.rows[slot].copy(), float(self._sizes[slot]), exclude=slot)
            if d2.size == 0:
                break
            # A single record joins within eps; clusters of several records each need merge_eps.
            several = self._sizes[rows] > 1 if self._sizes[slot] > 1 else np.zeros(rows.shape, bool)
            radius2 = np.where(several, self.merge_eps**2, self.eps**2)
            close = rows[d2 <= radius2]
            if close.size == 0:
                break
            # The nearest first, ties to the older id; one at a time, since each merge moves the mean.
            near = int(np.argmin(np.where(d2 <= radius2, d2, np.inf)))
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
        self._cluster(cluster_id)
        if ignored:
            self._ignored.add(int(cluster_id))
        else:
            self._ignored.discard(int(cluster_id))

    def _forget(self, rid: int) -> None:
        record = self._records.pop(rid)
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
        out._next_record = int(state.next_record_id)
        out._next_cluster = int(state.next_cluster_id)
        return out

    def extend(self, records: Iterable[UnknownRecord]) -> list[Assignment]:
        """:meth:`add` each record in order."""
        return [self.add(r) for r in records]
