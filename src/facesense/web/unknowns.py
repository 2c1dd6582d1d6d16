"""Recurring unknowns in the web server: the Unknowns page's service and the sources' recorder.

* :class:`UnknownsService` owns the gallery's unknowns store for the app's life
  (``/api/unknowns``, the ``/unknowns`` page): it lists clusters and their records,
  serves their face crops, and makes a person's corrections (name, merge, ignore,
  remove a wrong record). The sources' recorder writes to the same store from its own
  thread (another connection), so every listing and every correction first reloads the
  store (:meth:`facesense.gallery.unknowns.StoredUnknowns.reload`): the page never acts
  on a cluster that changed meanwhile, and a write that races the recorder anyway is
  retried on the fresh state by :class:`~facesense.gallery.unknowns.StoredUnknowns`.
  One lock serialises the service's own requests. Naming enrolls through
  :func:`facesense.unknowns.enroll.enroll_named` with the server's loaded analyzer.

The sources' recorder (:class:`facesense.sinks.unknowns.SourceUnknownsSink`, one per
watched source, all handing records to the app's one writer from
:func:`facesense.sinks.unknowns.make_writer`) is the one ``watch --config`` and the
worker use too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from facesense.errors import GalleryError, ModelMismatchError, NotFoundError

if TYPE_CHECKING:
    from facesense.gallery.base import GalleryStore, Person
    from facesense.gallery.location import GalleryLocation
    from facesense.gallery.unknowns import StoredUnknowns, UnknownStore
    from facesense.unknowns import ClusterSummary, UnknownClusterer
    from facesense.web.models import WebModels

logger = logging.getLogger(__name__)

__all__ = ["CROPS_SHOWN", "NamedOutcome", "UnknownsService"]

CROPS_SHOWN = 4  # best crops listed per cluster (the page shows them side by side)


@dataclass(frozen=True)
class NamedOutcome:
    """A cluster named from the page.

    Attributes:
        cluster_id: the cluster (now forgotten).
        person: the person it was enrolled as (new or existing).
        added: samples enrolled.
    """

    cluster_id: int
    person: Person
    added: int


@dataclass(frozen=True)
class CropRef:
    """Where one crop of a cluster is: its record and its rank in that record."""

    record_id: int
    rank: int


class UnknownsService:
    """The unknowns store of the served gallery, for the API and the page.

    The store is opened on first use and kept open; an SQLite gallery's
    ``<stem>.unknowns.db`` is not created by looking (no file yet: no clusters). A store
    that failed (unreadable, closed under it) is reopened by the next request.

    Args:
        location: the served gallery (its unknowns store is beside or inside it).
        gallery: the open gallery named clusters are enrolled into.
        models: the server's models (the analyzer re-embeds the crops when naming).
        on_enrolled: called after a cluster was enrolled (the live matcher refits).
        open_store: opens the store (default: :func:`facesense.gallery.unknowns.open_unknown_store`).
    """

    def __init__(
        self,
        location: GalleryLocation,
        gallery: GalleryStore,
        models: WebModels,
        *,
        on_enrolled: Callable[[], None] | None = None,
        open_store: Callable[[], UnknownStore] | None = None,
    ) -> None:
        self.location = location
        self.gallery = gallery
        self.models = models
        self.on_enrolled = on_enrolled
        self._open_store = open_store
        self._lock = threading.Lock()
        self._store: UnknownStore | None = None
        self._book: StoredUnknowns | None = None
        self._closed = False

    # -- the store -----------------------------------------------------------------
    def _exists(self) -> bool:
        """Whether there is a store to open (an SQLite gallery's file may not exist yet)."""
        if self._open_store is not None or self.location.kind != "sqlite":
            return True
        return self.location.path.with_name(self.location.path.stem + ".unknowns.db").exists()

    def _ready(self, *, fresh: bool) -> StoredUnknowns | None:
        """The stored unknowns (reloaded when ``fresh``), ``None`` when nothing was recorded yet.

        Call with the lock held.

        Raises:
            GalleryError: the store cannot be opened or read (it is reopened next time).
        """
        from facesense.gallery.unknowns import StoredUnknowns, open_unknown_store

        if self._closed:
            raise GalleryError("the server is shutting down")
        if self._store is not None and self._store.closed:
            logger.info("unknowns: the store was closed; reopening it")
            self._drop()
        if self._book is None:
            if not self._exists():
                return None
            store = self._open_store() if self._open_store is not None else open_unknown_store(self.location)
            try:
                state, _ = store.load()
                # The model the records were made with (the crops are re-embedded to name a cluster).
                model_id = state.model_id if state is not None else self.models.model_id
                self._book = StoredUnknowns(store, model_id)
            except BaseException:
                store.close()
                raise
            self._store = store
            return self._book
        if fresh:
            self._book.reload()
        return self._book

    def _drop(self) -> None:
        store, self._store, self._book = self._store, None, None
        if store is not None:
            try:
                store.close()
            except GalleryError as exc:
                logger.debug("unknowns: closing the store: %s", exc)

    @contextmanager
    def _using(self, *, fresh: bool = True) -> Iterator[StoredUnknowns | None]:
        """The book under the lock; a store error drops it so the next request reopens."""
        with self._lock:
            try:
                yield self._ready(fresh=fresh)
            except ModelMismatchError:
                raise
            except GalleryError:
                self._drop()
                raise

    def _book_or_empty(self, book: StoredUnknowns | None, what: str) -> StoredUnknowns:
        if book is None:
            raise NotFoundError(f"no {what} (nothing was recorded yet)")
        return book

    def close(self) -> None:
        """Close the store (idempotent); later requests fail with 503."""
        with self._lock:
            self._closed = True
            self._drop()

    # -- reading ----------------------------------------------------------------------
    def clusters(self, *, show_all: bool = False, records: bool = False) -> tuple[list[dict[str, Any]], int, int]:
        """The clusters, last seen first: recurring ones, or (``show_all``) also those
        seen once and ignored ones; with the records held in all and the recurring size.

        Args:
            show_all: also clusters of one record, and ignored ones.
            records: add each cluster's ``record_list`` (the page), from the same reload.
        """
        from facesense.unknowns import ClusterConfig

        with self._using() as book:
            if book is None:
                return [], 0, ClusterConfig().min_size
            clusterer = book.clusterer
            min_size = clusterer.config.min_size
            rows = clusterer.clusters(min_size=1 if show_all else None, include_ignored=show_all)
            out = []
            for s in rows:
                item = cluster_dict(clusterer, s)
                if records:
                    item["record_list"] = [record_dict(rid, clusterer.record(rid)) for rid in s.record_ids]
                out.append(item)
            return out, len(clusterer), min_size

    def cluster(self, cluster_id: int) -> dict[str, Any]:
        """One cluster with its records.

        Raises:
            NotFoundError: no such cluster.
        """
        with self._using() as found:
            book = self._book_or_empty(found, f"unknown cluster {cluster_id}")
            clusterer = book.clusterer
            summary = clusterer.summary(cluster_id)
            out = cluster_dict(clusterer, summary)
            out["record_list"] = [record_dict(rid, clusterer.record(rid)) for rid in summary.record_ids]
            return out

    def crop(self, record_id: int, rank: int) -> bytes:
        """The JPEG of one crop of a record.

        A record's crops never change (ids are not reused), so the state loaded last is
        asked first; the store is reloaded only for a record it does not hold.

        Raises:
            NotFoundError: no such record, or it has no crop ``rank``.
        """
        with self._using(fresh=False) as found:
            book = self._book_or_empty(found, f"unknown record {record_id}")
            try:
                record = book.clusterer.record(record_id)
            except NotFoundError:
                record = book.reload().record(record_id)
        if not 0 <= rank < len(record.crops):
            raise NotFoundError(f"unknown record {record_id} has no crop {rank} (it has {len(record.crops)})")
        return record.crops[rank].jpeg

    # -- a person's corrections ---------------------------------------------------------
    def name(self, cluster_id: int, name: str) -> NamedOutcome:
        """Enroll a cluster's crops as ``name`` (the checks of ``facesense enroll``), then forget it.

        Raises:
            ConfigError: not a valid person name.
            NotFoundError: no such cluster.
            EnrollmentError: no crop passed the checks (the cluster stays).
            ModelMismatchError: the gallery holds another model's embeddings (the cluster stays).
        """
        from facesense.gallery.base import validate_name
        from facesense.unknowns.enroll import enroll_named

        person = validate_name(name)
        with self._using() as found:
            book = self._book_or_empty(found, f"unknown cluster {cluster_id}")
            book.clusterer.summary(cluster_id)  # an unknown id fails before any model runs
            analyzer = self.models.analyzer
            with self.models.analysis():
                added = book.name(cluster_id, person, lambda named: enroll_named(self.gallery, analyzer, named))
        if self.on_enrolled is not None:
            self.on_enrolled()
        logger.info("unknowns: cluster %d named %r (%d sample(s))", cluster_id, person, added)
        return NamedOutcome(cluster_id=int(cluster_id), person=self.gallery.person(person), added=added)

    def merge(self, into: int, other: int) -> dict[str, Any]:
        """Merge cluster ``other`` into ``into``; the merged cluster.

        Raises:
            NotFoundError: no such cluster.
            ConfigError: the same cluster twice.
        """
        with self._using() as found:
            book = self._book_or_empty(found, f"unknown cluster {into}")
            book.merge(into, other)
            return cluster_dict(book.clusterer, book.clusterer.summary(into))

    def ignore(self, cluster_id: int, ignored: bool) -> dict[str, Any]:
        """Ignore a cluster (or stop ignoring it); the cluster.

        Raises:
            NotFoundError: no such cluster.
        """
        with self._using() as found:
            book = self._book_or_empty(found, f"unknown cluster {cluster_id}")
            book.ignore(cluster_id, ignored)
            return cluster_dict(book.clusterer, book.clusterer.summary(cluster_id))

    def remove(self, record_id: int) -> dict[str, Any] | None:
        """Take a wrong record out of its cluster; what is left of the cluster, ``None`` if nothing.

        Raises:
            NotFoundError: no such record.
        """
        with self._using() as found:
            book = self._book_or_empty(found, f"unknown record {record_id}")
            cluster_id = book.remove(record_id)
            if cluster_id is None:
                return None
            return cluster_dict(book.clusterer, book.clusterer.summary(cluster_id))


# --- what the API and the page show -------------------------------------------------------------


def best_crops(clusterer: UnknownClusterer, record_ids: Sequence[int], limit: int = CROPS_SHOWN) -> list[CropRef]:
    """The best crops of some records (best quality first, then earliest), at most ``limit``."""
    ranked = []
    for rid in record_ids:
        for rank, crop in enumerate(clusterer.record(rid).crops):
            ranked.append((-crop.quality, crop.seen_at, rid, rank))
    ranked.sort()
    return [CropRef(rid, rank) for _, _, rid, rank in ranked[:limit]]


def crop_url(ref: CropRef) -> str:
    """Where the API serves one crop."""
    return f"/api/unknowns/records/{ref.record_id}/crops/{ref.rank}"


def cluster_dict(clusterer: UnknownClusterer, s: ClusterSummary) -> dict[str, Any]:
    """One cluster as the API answers it (``ClusterOut``)."""
    return {
        "id": s.cluster_id,
        **s.to_dict(clusterer.config.min_size),
        "crop_urls": [crop_url(ref) for ref in best_crops(clusterer, s.record_ids)],
    }


def record_dict(record_id: int, r: Any) -> dict[str, Any]:
    """One record (one unknown track) as the API answers it (``RecordOut``)."""
    from facesense.gallery.events import iso_time

    return {
        "id": record_id,
        "faces": r.faces,
        "first_seen": iso_time(r.first_seen),
        "last_seen": iso_time(r.last_seen),
        "source": r.source,
        "track_id": r.track_id,
        "crop_urls": [crop_url(CropRef(record_id, k)) for k in range(len(r.crops))],
    }
