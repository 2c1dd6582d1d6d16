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
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Self
from urllib.parse import urlsplit

import psycopg
from psycopg_pool import ConnectionPool

from facesense.errors import ConfigError, GalleryError
from facesense.gallery.location import display_postgres_url
from facesense.gallery.pg_schema import PgSchema
from facesense.gallery.unknowns import Tables, UnknownChange, check_revision, read_meta, read_state, write_change
from facesense.unknowns import ClustererState

logger = logging.getLogger(__name__)

__all__ = ["APPLICATION", "FORMAT_VERSION", "MIGRATIONS", "PostgresUnknownStore"]

APPLICATION = "facesense-unknowns"
POOL_MIN, POOL_MAX = 1, 2
CONNECT_TIMEOUT_S = 10
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


def _conninfo(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower().split("+", 1)[0] not in ("postgresql", "postgres"):
        raise ConfigError(f"{display_postgres_url(url)} is not a postgresql:// URL")
    return f"postgresql://{rest}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PostgresUnknownStore:
    """An :class:`~facesense.gallery.unknowns.UnknownStore` in a PostgreSQL database.

    Args:
        url: ``postgresql://user[:password]@host[:port]/database`` (the gallery's database).

    Raises:
        ConfigError: not a PostgreSQL URL.
        GalleryError: the server cannot be reached, the tables belong to something else,
            or a newer format version. Messages never show the password.
    """

    def __init__(self, url: str) -> None:
        self._display = display_postgres_url(url)
        self._password = urlsplit(url).password or ""
        conninfo = _conninfo(url)
        self._lock = threading.Lock()
        self._closed = False
        kwargs: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "facesense-unknowns"}
        try:
            first = psycopg.connect(conninfo, **kwargs)
        except psycopg.Error as exc:
            raise GalleryError(f"cannot connect to {self._display}: {self._clean(_first_line(exc))}") from exc
        try:
            SCHEMA.migrate(first, self._display)
        except psycopg.Error as exc:
            raise GalleryError(f"{self._display}: cannot open the unknowns store ({self._clean(_first_line(exc))})") from exc
        finally:
            first.close()
        try:
            self._pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = ConnectionPool(
                conninfo, kwargs=kwargs, min_size=POOL_MIN, max_size=POOL_MAX, open=True,
                check=ConnectionPool.check_connection, name="facesense-unknowns",
            )  # fmt: skip
            self._pool.wait(timeout=CONNECT_TIMEOUT_S)
        except Exception as exc:  # psycopg_pool.PoolTimeout or psycopg.Error
            raise GalleryError(f"cannot connect to {self._display}: {self._clean(_first_line(exc))}") from exc

    def _clean(self, text: str) -> str:
        return text.replace(self._password, "***") if self._password else text

    @contextmanager
    def _db(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """A pooled connection inside one transaction, errors translated into GalleryError."""
        if self._closed:
            raise GalleryError(f"{self._display}: the unknowns store is closed")
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield conn
        except psycopg.Error as exc:
            raise GalleryError(f"{self._display}: unknowns database error ({self._clean(_first_line(exc))})") from exc
        except Exception as exc:
            from psycopg_pool import PoolClosed, PoolTimeout

            if isinstance(exc, PoolTimeout | PoolClosed):
                raise GalleryError(f"{self._display}: no unknowns database connection ({_first_line(exc)})") from exc
            raise

    @property
    def location(self) -> str:
        """The URL, without its password."""
        return self._display

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Close the connection pool (idempotent)."""
        with self._lock:
            self._closed = True
        self._pool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
