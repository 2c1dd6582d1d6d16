"""Recurring unknowns in an SQLite file of their own (:class:`SQLiteUnknownStore`).

It implements :class:`facesense.gallery.unknowns.UnknownStore`; the file sits beside
the gallery (``<gallery stem>.unknowns.db``, as the events log's ``.events.db``), so the
gallery's own schema is untouched. Schema (format version 1)::

    meta             (key TEXT PRIMARY KEY, value TEXT)   application, format_version, created,
                                                          model_id, next_record_id, next_cluster_id, revision
    unknown_clusters (id INTEGER PRIMARY KEY, ignored INTEGER, created REAL)
    unknown_records  (id INTEGER PRIMARY KEY, cluster_id -> unknown_clusters, model_id, dim,
                      embedding BLOB (little-endian float32), faces, first_seen, last_seen,
                      source, track_id)                   indexed on cluster_id, last_seen, model_id
    unknown_crops    (record_id -> unknown_records, rank, quality, seen_at, jpeg BLOB)

Every write is one ``BEGIN IMMEDIATE`` transaction that first checks the revision (see
:meth:`SQLiteUnknownStore.apply`). One instance may be shared between threads (a lock
serialises the connection); several processes may open the file (WAL, busy timeout).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Sequence
from typing import Any

from facesense.errors import GalleryError
from facesense.gallery.sqlite_file import SideFile
from facesense.gallery.unknowns import Tables, UnknownChange, check_revision, read_meta, read_state, write_change
from facesense.unknowns import ClustererState

logger = logging.getLogger(__name__)

__all__ = ["APPLICATION", "FORMAT_VERSION", "SQLiteUnknownStore"]

APPLICATION = "facesense-unknowns"
APPLICATION_ID = 0x4653554E  # "FSUN"
FORMAT_VERSION = 1

_SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE unknown_clusters (
    id      INTEGER PRIMARY KEY,
    ignored INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE unknown_records (
    id         INTEGER PRIMARY KEY,
    cluster_id INTEGER NOT NULL REFERENCES unknown_clusters(id),
    model_id   TEXT NOT NULL,
    dim        INTEGER NOT NULL,
    embedding  BLOB NOT NULL,
    faces      INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    last_seen  REAL NOT NULL,
    source     TEXT NOT NULL,
    track_id   INTEGER
);
CREATE INDEX unknown_records_cluster ON unknown_records(cluster_id);
CREATE INDEX unknown_records_last_seen ON unknown_records(last_seen);
CREATE INDEX unknown_records_model ON unknown_records(model_id);
CREATE TABLE unknown_crops (
    record_id INTEGER NOT NULL REFERENCES unknown_records(id),
    rank      INTEGER NOT NULL,
    quality   REAL NOT NULL,
    seen_at   REAL NOT NULL,
    jpeg      BLOB NOT NULL,
    PRIMARY KEY (record_id, rank)
);
"""

TABLES = Tables(meta="meta", clusters="unknown_clusters", records="unknown_records", crops="unknown_crops", param="?")


class SQLiteUnknownStore(SideFile):
    """An :class:`~facesense.gallery.unknowns.UnknownStore` in one SQLite file.

    Args:
        path: the file (created with its folder when missing).

    Raises:
        GalleryError: the file cannot be created or opened, is something else, or was
            written by a newer facesense.
    """

    kind = "unknowns"
    application = APPLICATION
    application_id = APPLICATION_ID
    format_version = FORMAT_VERSION
    schema = _SCHEMA
    main_table = "unknown_records"
    initial_meta = (("revision", "0"),)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._connect(path)

    def _execute(self, sql: str, args: Sequence[Any]) -> sqlite3.Cursor:
        return self._conn.execute(sql, tuple(args))

    @property
    def location(self) -> str:
        """The file's path."""
        return str(self.path)

    def __repr__(self) -> str:
        return f"SQLiteUnknownStore({str(self.path)!r})"

    def _check_open(self) -> None:
        if self._closed:
            raise GalleryError(f"{self.path}: the unknowns store is closed")

    def load(self) -> tuple[ClustererState | None, int]:
        """The stored state and its revision (one read transaction)."""
        with self._lock, self._errors():
            self._check_open()
            self._conn.execute("BEGIN")
            try:
                return read_state(self._execute, TABLES)
            finally:
                self._conn.execute("COMMIT")

    def apply(self, change: UnknownChange, *, revision: int) -> int:
        """Write ``change`` in one transaction if the store is still at ``revision``; the new revision.

        Raises:
            ConflictError: another writer got there first (nothing written).
            ModelMismatchError: the store holds another model's records.
            GalleryError: the write failed (nothing written).
        """
        with self._lock, self._errors():
            self._check_open()
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                check_revision(read_meta(self._execute, TABLES), change, revision, self.location)
                new = write_change(self._execute, TABLES, change, revision=revision)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return new
