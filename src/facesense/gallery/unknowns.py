"""Where recurring unknowns are kept: the :class:`UnknownStore` interface and :class:`StoredUnknowns`.

An :class:`UnknownStore` keeps one :class:`~facesense.unknowns.UnknownClusterer` exactly
as it is (clusters as stored, never re-clustered on load, so a person's merges and
removals stay): :meth:`UnknownStore.load` returns its
:class:`~facesense.unknowns.ClustererState` and a *revision*, and
:meth:`UnknownStore.apply` writes one :class:`UnknownChange` (records added, moved to
another cluster, removed; clusters created, flagged ignored, emptied) in one
transaction, only if nobody else wrote since that revision. Implementations:
:class:`~facesense.gallery.sqlite_unknowns.SQLiteUnknownStore` (a file beside an SQLite
gallery, ``<gallery stem>.unknowns.db``) and
:class:`~facesense.gallery.postgres_unknowns.PostgresUnknownStore` (tables in a
PostgreSQL gallery's own database); :func:`open_unknown_store` picks the one a gallery
location calls for.

:class:`StoredUnknowns` is what callers use: a clusterer kept in step with a store.
Each operation (:meth:`~StoredUnknowns.add`, :meth:`~StoredUnknowns.name`,
:meth:`~StoredUnknowns.merge`, :meth:`~StoredUnknowns.ignore`,
:meth:`~StoredUnknowns.remove`, :meth:`~StoredUnknowns.prune`) runs on the clusterer,
then the difference of its state before and after (:func:`diff_states`) is written as one
transaction: a record and its cluster, with the merges it caused and the records pruned
with it. When the store moved on meanwhile (another process named a cluster), the
clusterer is reloaded and the operation run again; when a write fails, the clusterer is
reloaded before the next one, so the database stays the truth.

Tables (both stores; PostgreSQL's carry a ``facesense_`` prefix)::

    meta             (key, value)   application, format_version, created, model_id,
                                    next_record_id, next_cluster_id, revision
    unknown_clusters (id, ignored, created)
    unknown_records  (id, cluster_id -> unknown_clusters, model_id, dim, embedding
                      (little-endian float32), faces, first_seen, last_seen, source, track_id)
    unknown_crops    (record_id -> unknown_records, rank, quality, seen_at, jpeg)

Every record carries its model id; a store holds one model's records
(:class:`~facesense.errors.ModelMismatchError` otherwise).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from facesense.errors import ConfigError, ConflictError, GalleryError, ModelMismatchError
from facesense.unknowns import ClusterConfig, ClustererState, Crop, UnknownClusterer, UnknownRecord

if TYPE_CHECKING:
    from facesense.gallery.location import GalleryLocation
    from facesense.unknowns import Assignment, NamedCluster

logger = logging.getLogger(__name__)

__all__ = [
    "PRUNE_EVERY",
    "StoredUnknowns",
    "Tables",
    "UnknownChange",
    "UnknownStore",
    "diff_states",
    "open_unknown_store",
    "read_state",
    "write_change",
]

PRUNE_EVERY = 50  # StoredUnknowns.add prunes by age every this many records (and at once when over the count)
_RETRIES = 3  # conflicts (another process wrote meanwhile) before giving up

T = TypeVar("T")


@dataclass(frozen=True)
class UnknownChange:
    """What one operation changed, as a store writes it.

    Attributes:
        model_id: the clusterer's model id.
        clusters: ``cluster id -> ignored`` for every cluster created or whose flag changed.
        added: ``(record_id, cluster_id, record)`` of new records.
        moved: ``(record_id, cluster_id)`` of records now in another cluster (merges).
        removed: ids of records gone (named, removed, pruned).
        emptied: ids of clusters that hold no record any more (merged away, named, pruned).
        next_record_id, next_cluster_id: the clusterer's counters (ids are never reused).
    """

    model_id: str
    clusters: Mapping[int, bool] = field(default_factory=dict)
    added: tuple[tuple[int, int, UnknownRecord], ...] = ()
    moved: tuple[tuple[int, int], ...] = ()
    removed: tuple[int, ...] = ()
    emptied: tuple[int, ...] = ()
    next_record_id: int = 1
    next_cluster_id: int = 1

    @property
    def empty(self) -> bool:
        """Nothing but (maybe) the counters changed."""
        return not (self.clusters or self.added or self.moved or self.removed or self.emptied)


def _clusters_of(state: ClustererState) -> dict[int, bool]:
    ignored = state.ignored
    return {cid: cid in ignored for _, cid, _ in state.records}


def diff_states(before: ClustererState | None, after: ClustererState) -> UnknownChange:
    """The change that turns ``before`` (``None``: an empty store) into ``after``.

    Linear in the records held (states list records by id, so nothing is sorted but the changes).
    """
    old = {rid: cid for rid, cid, _ in before.records} if before is not None else {}
    old_clusters = _clusters_of(before) if before is not None else {}
    new_clusters = _clusters_of(after)
    added: list[tuple[int, int, UnknownRecord]] = []
    moved: list[tuple[int, int]] = []
    kept = 0
    for rid, cid, rec in after.records:
        was = old.get(rid)
        if was is None:
            added.append((rid, cid, rec))
            continue
        kept += 1
        if was != cid:
            moved.append((rid, cid))
    removed: tuple[int, ...] = ()
    if kept != len(old):
        now = {rid for rid, _, _ in after.records}
        removed = tuple(sorted(rid for rid in old if rid not in now))
    return UnknownChange(
        model_id=after.model_id,
        clusters={c: ig for c, ig in sorted(new_clusters.items()) if old_clusters.get(c) != ig},
        added=tuple(added),
        moved=tuple(moved),
        removed=removed,
        emptied=tuple(sorted(c for c in old_clusters if c not in new_clusters)),
        next_record_id=after.next_record_id,
        next_cluster_id=after.next_cluster_id,
    )


@runtime_checkable
class UnknownStore(Protocol):
    """Keeps one clusterer's state; see the module docstring."""

    @property
    def location(self) -> str:
        """Where it is, for messages (a path, or a URL without its password)."""
        ...

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        ...

    def load(self) -> tuple[ClustererState | None, int]:
        """The stored state (``None`` when nothing was ever stored) and its revision.

        Raises:
            GalleryError: the store cannot be read.
        """
        ...

    def apply(self, change: UnknownChange, *, revision: int) -> int:
        """Write ``change`` in one transaction if the store is still at ``revision``; the new revision.

        Raises:
            ConflictError: the store is at another revision (nothing written).
            ModelMismatchError: the store holds another model's records.
            GalleryError: the write failed (nothing written).
        """
        ...

    def close(self) -> None:
        """Release the store (idempotent)."""
        ...


# --- SQL shared by the SQLite and PostgreSQL stores ------------------------------------


@dataclass(frozen=True)
class Tables:
    """The table names and the driver's placeholder, for :func:`read_state` and :func:`write_change`."""

    meta: str
    clusters: str
    records: str
    crops: str
    param: str


Execute = Callable[[str, Sequence[Any]], Any]


def _f32(embedding: np.ndarray) -> bytes:
    return np.ascontiguousarray(np.asarray(embedding, np.float32).reshape(-1), dtype="<f4").tobytes()


def read_meta(execute: Execute, t: Tables) -> dict[str, str]:
    """The stamp table as a dict."""
    return {str(k): str(v) for k, v in execute(f"SELECT key, value FROM {t.meta}", ()).fetchall()}


def read_state(execute: Execute, t: Tables) -> tuple[ClustererState | None, int]:
    """The state the tables hold and the revision (see :meth:`UnknownStore.load`).

    Raises:
        GalleryError: a corrupt row (bad embedding length, mixed models).
    """
    meta = read_meta(execute, t)
    revision = int(meta.get("revision", "0") or 0)
    model_id = meta.get("model_id") or ""
    if not model_id:
        return None, revision
    crops: dict[int, list[Crop]] = {}
    for rid, _rank, quality, seen_at, jpeg in execute(
        f"SELECT record_id, rank, quality, seen_at, jpeg FROM {t.crops} ORDER BY record_id, rank", ()
    ).fetchall():
        crops.setdefault(int(rid), []).append(Crop(jpeg=bytes(jpeg), quality=float(quality), seen_at=float(seen_at)))
    ignored = {int(cid) for cid, flag in execute(f"SELECT id, ignored FROM {t.clusters}", ()).fetchall() if int(flag)}
    records: list[tuple[int, int, UnknownRecord]] = []
    rows = execute(
        f"SELECT id, cluster_id, model_id, dim, embedding, faces, first_seen, last_seen, source, track_id"
        f" FROM {t.records} ORDER BY id",
        (),
    ).fetchall()
    for rid, cid, mid, dim, blob, faces, first, last, source, track in rows:
        emb = np.frombuffer(bytes(blob), dtype="<f4").astype(np.float32)
        if mid != model_id or emb.shape[0] != int(dim):
            raise GalleryError(f"unknowns: record {rid} is corrupt (model {mid!r}, {emb.shape[0]} of {dim} values)")
        record = UnknownRecord(
            embedding=emb, model_id=str(mid), first_seen=float(first), last_seen=float(last), source=str(source),
            faces=int(faces), crops=tuple(crops.get(int(rid), ())), track_id=None if track is None else int(track),
        )  # fmt: skip
        records.append((int(rid), int(cid), record))
    live = {cid for _, cid, _ in records}
    state = ClustererState(
        model_id=model_id,
        records=tuple(records),
        ignored=frozenset(ignored & live),
        next_record_id=int(meta.get("next_record_id", "1")),
        next_cluster_id=int(meta.get("next_cluster_id", "1")),
    )
    return state, revision


def check_revision(meta: Mapping[str, str], change: UnknownChange, revision: int, where: str) -> None:
    """Refuse a stale write or another model's records (inside the write's transaction).

    Raises:
        ConflictError: the store is not at ``revision``.
        ModelMismatchError: it holds another model's records.
    """
    stored = int(meta.get("revision", "0") or 0)
    if stored != revision:
        raise ConflictError(f"{where}: the unknowns changed meanwhile (revision {stored}, expected {revision})")
    model = meta.get("model_id") or ""
    if model and model != change.model_id:
        raise ModelMismatchError(
            f"{where}: the unknowns were recorded with model {model!r}, not {change.model_id!r}"
        )


def write_change(execute: Execute, t: Tables, change: UnknownChange, *, revision: int) -> int:
    """Write ``change`` inside the caller's transaction (after :func:`check_revision`); the new revision."""
    p = t.param
    now = time.time()
    for cid, ignored in change.clusters.items():
        execute(
            f"INSERT INTO {t.clusters} (id, ignored, created) VALUES ({p}, {p}, {p})"
            " ON CONFLICT (id) DO UPDATE SET ignored = excluded.ignored",
            (int(cid), int(bool(ignored)), now),
        )
    for rid in change.removed:
        execute(f"DELETE FROM {t.crops} WHERE record_id = {p}", (int(rid),))
        execute(f"DELETE FROM {t.records} WHERE id = {p}", (int(rid),))
    for rid, cid in change.moved:
        execute(f"UPDATE {t.records} SET cluster_id = {p} WHERE id = {p}", (int(cid), int(rid)))
    for rid, cid, rec in change.added:
        execute(
            f"INSERT INTO {t.records} (id, cluster_id, model_id, dim, embedding, faces, first_seen, last_seen,"
            f" source, track_id) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})",
            (int(rid), int(cid), rec.model_id, int(rec.embedding.shape[0]), _f32(rec.embedding), int(rec.faces),
             float(rec.first_seen), float(rec.last_seen), rec.source, rec.track_id),
        )  # fmt: skip
        for rank, crop in enumerate(rec.crops):
            execute(
                f"INSERT INTO {t.crops} (record_id, rank, quality, seen_at, jpeg) VALUES ({p}, {p}, {p}, {p}, {p})",
                (int(rid), rank, float(crop.quality), float(crop.seen_at), crop.jpeg),
            )
    for cid in change.emptied:
        execute(f"DELETE FROM {t.clusters} WHERE id = {p}", (int(cid),))
    values = {
        "model_id": change.model_id,
        "next_record_id": str(change.next_record_id),
        "next_cluster_id": str(change.next_cluster_id),
        "revision": str(revision + 1),
    }
    for key, value in values.items():
        execute(
            f"INSERT INTO {t.meta} (key, value) VALUES ({p}, {p}) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
    return revision + 1


# --- a clusterer kept in step with a store -----------------------------------------------


class StoredUnknowns:
    """An :class:`~facesense.unknowns.UnknownClusterer` whose every change is written to a store.

    Not thread-safe: one thread uses it (the recorder's writer thread, or a command).

    Args:
        store: where the state lives (not closed by this object).
        model_id: the embedder's model id; a store of another model's records is refused.
        config: the clusterer's rule and bounds (``keep_days``, ``keep_records`` prune).
        prune_every: prune by age every this many :meth:`add` calls (0: only when over the count).

    Raises:
        ModelMismatchError: the store holds another model's records.
        GalleryError: the store cannot be read.
        ConfigError: the model is not calibrated (no ``eps``).
    """

    def __init__(
        self,
        store: UnknownStore,
        model_id: str,
        config: ClusterConfig | None = None,
        *,
        prune_every: int = PRUNE_EVERY,
    ) -> None:
        if prune_every < 0:
            raise ConfigError(f"prune_every must be >= 0, got {prune_every}")
        self.store = store
        self.model_id = model_id
        self.config = config or ClusterConfig()
        self.prune_every = int(prune_every)
        self._adds = 0
        self._clusterer: UnknownClusterer | None = None
        self._state: ClustererState | None = None
        self._revision = 0
        self.reload()

    def reload(self) -> UnknownClusterer:
        """Read the store again (after another process wrote, or a failed write).

        Raises:
            ModelMismatchError: the store holds another model's records.
            GalleryError: the store cannot be read.
        """
        self._clusterer = None
        state, revision = self.store.load()
        if state is not None and state.model_id != self.model_id:
            raise ModelMismatchError(
                f"{self.store.location}: the unknowns were recorded with model {state.model_id!r}, "
                f"not {self.model_id!r}"
            )
        if state is None:
            clusterer = UnknownClusterer(self.model_id, self.config)
        else:
            try:
                clusterer = UnknownClusterer.from_state(state, self.config)
            except ConfigError as exc:
                raise GalleryError(f"{self.store.location}: corrupt unknowns ({exc})") from exc
        self._clusterer, self._state, self._revision = clusterer, state, revision
        return clusterer

    @property
    def clusterer(self) -> UnknownClusterer:
        """The clusterer as stored (read it; change it only through this object's methods)."""
        return self._clusterer if self._clusterer is not None else self.reload()

    @property
    def revision(self) -> int:
        """The store's revision this clusterer reflects."""
        return self._revision

    def _commit(self, op: Callable[[UnknownClusterer], T], *, check: Callable[[T], None] | None = None) -> T:
        """Run ``op`` on the clusterer and write what it changed; reload and rerun on a conflict."""
        for attempt in range(_RETRIES):
            clusterer = self.clusterer
            before = self._state
            try:
                result = op(clusterer)
                if check is not None:
                    check(result)
            except BaseException:
                self._clusterer = None  # the op may have half-changed it
                raise
            after = clusterer.state()
            change = diff_states(before, after)
            if change.empty and before is not None:
                self._state = after
                return result
            try:
                self._revision = self.store.apply(change, revision=self._revision)
            except ConflictError:
                self._clusterer = None
                if attempt + 1 == _RETRIES:
                    raise
                logger.debug("unknowns changed meanwhile; reloading")
                continue
            except BaseException:
                self._clusterer = None
                raise
            self._state = after
            return result
        raise ConflictError(f"{self.store.location}: the unknowns keep changing")  # pragma: no cover

    def add(self, record: UnknownRecord, *, now: float | None = None) -> Assignment:
        """Cluster one record and store it with its cluster (and any merge or prune it causes), in one transaction.

        Args:
            record: an unknown track's record.
            now: the records' clock for pruning by age (default: the wall clock).

        Raises:
            ModelMismatchError: a record of another model.
            GalleryError: the write failed (nothing stored; the next call reloads).
        """
        self._adds += 1
        due = self.prune_every > 0 and self._adds % self.prune_every == 0

        def op(c: UnknownClusterer) -> Assignment:
            assignment = c.add(record)
            if due or len(c) > self.config.keep_records:
                c.prune(time.time() if now is None else now)
            return assignment

        return self._commit(op)

    def prune(
        self, now: float | None = None, *, keep_days: float | None = None, keep_records: int | None = None
    ) -> tuple[int, ...]:
        """Drop records past the age and count limits (:meth:`UnknownClusterer.prune`); the ids dropped.

        Args:
            now: the records' clock (default: the wall clock).
            keep_days, keep_records: instead of the config's.
        """
        at = time.time() if now is None else now
        return self._commit(lambda c: c.prune(at, keep_days=keep_days, keep_records=keep_records))

    def name(self, cluster_id: int, name: str, enroll: Callable[[NamedCluster], T]) -> T:
        """Take a cluster out as ``name``: ``enroll`` it, then forget it in the store.

        ``enroll`` runs before anything is written; when it raises, the cluster stays.

        Raises:
            NotFoundError: no such cluster.
            ConfigError: an empty name.
        """
        out: list[T] = []

        def op(c: UnknownClusterer) -> NamedCluster:
            return c.name(cluster_id, name)

        def check(named: NamedCluster) -> None:
            if not out:
                out.append(enroll(named))

        self._commit(op, check=check)
        return out[0]

    def merge(self, into: int, other: int) -> int:
        """Merge cluster ``other`` into ``into``; returns ``into``."""
        return self._commit(lambda c: c.merge(into, other))

    def ignore(self, cluster_id: int, ignored: bool = True) -> None:
        """Ignore a cluster (or stop ignoring it)."""
        self._commit(lambda c: c.ignore(cluster_id, ignored))

    def remove(self, record_id: int) -> int | None:
        """Take one record out; its former cluster, ``None`` if that is now empty."""
        return self._commit(lambda c: c.remove(record_id))

    def extend(self, records: Iterable[UnknownRecord]) -> list[Assignment]:
        """:meth:`add` each record (one transaction each)."""
        return [self.add(r) for r in records]


def open_unknown_store(location: GalleryLocation, *, path: str | os.PathLike[str] | None = None) -> UnknownStore:
    """Open the unknowns store that belongs to a gallery (created when missing).

    Args:
        location: the gallery's location (:func:`facesense.gallery.parse_location`).
        path: an SQLite file instead of the default place: for an SQLite gallery
            ``<gallery stem>.unknowns.db`` beside the gallery file (as the events log);
            for a PostgreSQL gallery its own database.

    Raises:
        GalleryError: the store cannot be created or opened, or is something else.
    """
    from facesense.gallery.sqlite_unknowns import SQLiteUnknownStore

    if path is None:
        if location.kind == "postgresql":
            from facesense.gallery.postgres_unknowns import PostgresUnknownStore  # psycopg is imported only here

            return PostgresUnknownStore(location.url)
        path = location.path.with_name(location.path.stem + ".unknowns.db")
    return SQLiteUnknownStore(path)
