"""Recurring unknowns in PostgreSQL (:class:`PostgresUnknownStore`), beside a PostgreSQL gallery.

It implements :class:`facesense.gallery.unknowns.UnknownStore` with the semantics of
:class:`~facesense.gallery.sqlite_unknowns.SQLiteUnknownStore`, in the database the
gallery URL names, so every machine's unknowns are in one place. Schema (format version 1)::

    facesense_unknowns_meta    (key TEXT PRIMARY KEY, value TEXT)   application, format_version,
                               created, model_id, next_record_id, next_cluster_id, revision
    facesense_unknown_clusters (id BIGINT PRIMARY KEY, ignored INTEGER, created DOUBLE PRECISION)
    facesense_unknown_records  (id BIGINT PRIMARY KEY, cluster_id -> clusters, model_id, dim,
                                embedding BYTEA (little-endian float32), faces, first_seen,
                                last_seen, source, track_id)   indexed on cluster_id, last_seen, model_id
    facesense_unknown_crops    (record_id -> records, rank, quality, seen_at, jpeg BYTEA)

Embeddings are bytes, not pgvector columns: the clusterer holds them in memory and the
database is never searched. The tables are versioned by
:class:`~facesense.gallery.pg_schema.PgSchema` (migrations under an advisory lock of their
own; a newer format is refused). A write locks the ``revision`` row (``SELECT ... FOR
UPDATE``) so that two writers are serialised and the later one sees the conflict.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from facesense.gallery.pg_pool import PooledStore
from facesense.gallery.pg_schema import PgSchema
from facesense.gallery.unknowns import Tables, UnknownChange, check_revision, read_meta, read_state, write_change
from facesense.unknowns import ClustererState

logger = logging.getLogger(__name__)

__all__ = ["APPLICATION", "FORMAT_VERSION", "MIGRATIONS", "PostgresUnknownStore"]

APPLICATION = "facesense-unknowns"
_MIGRATION_LOCK = 0x4653554E  # "FSUN"

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            "CREATE TABLE facesense_unknowns_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE TABLE facesense_unknown_clusters ("
            " id BIGINT PRIMARY KEY,"
            " ignored INTEGER NOT NULL DEFAULT 0,"
            " created DOUBLE PRECISION NOT NULL)",
            "CREATE TABLE facesense_unknown_records ("
            " id BIGINT PRIMARY KEY,"
            " cluster_id BIGINT NOT NULL REFERENCES facesense_unknown_clusters(id),"
            " model_id TEXT NOT NULL,"
            " dim INTEGER NOT NULL,"
            " embedding BYTEA NOT NULL,"
            " faces INTEGER NOT NULL,"
            " first_seen DOUBLE PRECISION NOT NULL,"
            " last_seen DOUBLE PRECISION NOT NULL,"
            " source TEXT NOT NULL,"
            " track_id BIGINT)",
            "CREATE INDEX facesense_unknown_records_cluster ON facesense_unknown_records (cluster_id)",
            "CREATE INDEX facesense_unknown_records_last_seen ON facesense_unknown_records (last_seen)",
            "CREATE INDEX facesense_unknown_records_model ON facesense_unknown_records (model_id)",
            "CREATE TABLE facesense_unknown_crops ("
            " record_id BIGINT NOT NULL REFERENCES facesense_unknown_records(id),"
            " rank INTEGER NOT NULL,"
            " quality DOUBLE PRECISION NOT NULL,"
            " seen_at DOUBLE PRECISION NOT NULL,"
            " jpeg BYTEA NOT NULL,"
            " PRIMARY KEY (record_id, rank))",
        ),
    ),
)
FORMAT_VERSION = MIGRATIONS[-1][0]
SCHEMA = PgSchema(
    what="unknowns store", application=APPLICATION, meta_table="facesense_unknowns_meta",
    lock_key=_MIGRATION_LOCK, migrations=MIGRATIONS, initial={"revision": "0"},
)  # fmt: skip

TABLES = Tables(
    meta="facesense_unknowns_meta", clusters="facesense_unknown_clusters", records="facesense_unknown_records",
    crops="facesense_unknown_crops", param="%s",
)  # fmt: skip


class PostgresUnknownStore(PooledStore):
    """An :class:`~facesense.gallery.unknowns.UnknownStore` in a PostgreSQL database.

    Args:
        url: ``postgresql://user[:password]@host[:port]/database`` (the gallery's database).

    Raises:
        ConfigError: not a PostgreSQL URL.
        GalleryError: the server cannot be reached, the tables belong to something else,
            or a newer format version. Messages never show the password.
    """

    what = "unknowns store"
    kind = "unknowns"

    def __init__(self, url: str) -> None:
        self._open(url, lambda conn: SCHEMA.migrate(conn, self._display))

    def __repr__(self) -> str:
        return f"PostgresUnknownStore({self._display!r})"

    def load(self) -> tuple[ClustererState | None, int]:
        """The stored state and its revision (one transaction)."""
        with self._db() as conn:

            def execute(sql: str, args: Sequence[Any]) -> Any:
                return conn.execute(sql, tuple(args))

            return read_state(execute, TABLES)

    def apply(self, change: UnknownChange, *, revision: int) -> int:
        """Write ``change`` in one transaction if the store is still at ``revision``; the new revision.

        Raises:
            ConflictError: another writer got there first (nothing written).
            ModelMismatchError: the store holds another model's records.
            GalleryError: the write failed (nothing written).
        """
        with self._db() as conn:

            def execute(sql: str, args: Sequence[Any]) -> Any:
                return conn.execute(sql, tuple(args))

            conn.execute(f"SELECT value FROM {TABLES.meta} WHERE key = 'revision' FOR UPDATE")
            check_revision(read_meta(execute, TABLES), change, revision, self._display)
            return write_change(execute, TABLES, change, revision=revision)
