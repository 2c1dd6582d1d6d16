"""The PostgreSQL + pgvector gallery: one list of people shared by many machines.

Schema (format version 2), in the database the URL names::

    facesense_meta      (key TEXT PRIMARY KEY, value TEXT)   application, format_version, created, revision
    facesense_people    (id, name UNIQUE, created)
    facesense_samples   (id, person_id -> facesense_people ON DELETE CASCADE, model_id, dim,
                         embedding vector (pgvector, dim float4), source_path, source_sha256,
                         x1, y1, x2, y2, thumbnail BYTEA (JPEG), added,
                         UNIQUE (person_id, model_id, source_sha256))
    facesense_negatives (id, person_id -> facesense_people ON DELETE CASCADE, model_id, dim,   version 2
                         embedding vector, source (e.g. "event 12"), source_sha256 (nullable),
                         x1, y1, x2, y2, thumbnail BYTEA (JPEG), added,
                         UNIQUE (person_id, model_id, source_sha256))

The tables carry a ``facesense_`` prefix so a gallery can live in a database shared
with other applications. ``embedding`` is a ``vector`` column without a fixed length
(a gallery changes model, and so ``D``, through ``facesense reembed``); the HNSW index
is a partial expression index ``((embedding::vector(D)) vector_l2_ops) WHERE model_id = ...``
per model, the form pgvector documents for mixed lengths.

Migrations: :data:`MIGRATIONS` lists the statements of each format version; opening
a gallery applies the missing ones in order, in one transaction, under an advisory
lock (two processes opening a fresh database at once do not race). A database stamped
with a newer format version than this facesense knows is refused.

Transactions: every write method is one transaction that first bumps
``facesense_meta.revision``. That row lock serialises writers (so the model-id guard
cannot race) and makes :meth:`PostgresGallery.revision` one cheap primary-key read. A
process killed mid-write (even with ``kill -9``) leaves the transaction uncommitted:
whole people and samples, or nothing. Each write also sends ``NOTIFY facesense_gallery,
'<revision>'``, delivered at commit; :meth:`PostgresGallery.watch_changes` listens for
it, so watchers on other machines refit at once instead of waiting for a poll.

Search: below :data:`DB_SEARCH_FROM_SAMPLES` samples of a model, :meth:`PostgresGallery.search`
is exact, in memory, over a matrix cached per revision (as the SQLite store does);
above it the database answers with its HNSW index. That index is built the first time
a model crosses the threshold, in a background thread with ``CREATE INDEX CONCURRENTLY``
(writers are not blocked; about 20 s for 20,000 512-d samples on 2 cores), and searches
stay exact and in memory until it is valid (:meth:`PostgresGallery.build_search_index`
builds it on demand).

psycopg is imported only when this module is, and ``facesense.gallery`` imports this
module only when a PostgreSQL gallery is opened.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt
import psycopg
from pgvector import Vector
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg_pool import ConnectionPool

from facesense.errors import ConfigError, EnrollmentError, GalleryError, ModelMismatchError, ReadOnlyGalleryError
from facesense.gallery.base import (
    ExportData,
    GalleryEmbeddings,
    GalleryNegatives,
    ImportSummary,
    Negative,
    NewSample,
    Person,
    Sample,
    SearchResult,
    check_correction,
    negative_embedding,
    plan_import,
    samples_model,
    validate_name,
    validate_negative_source,
    write_export,
)
from facesense.gallery.location import display_postgres_url as display_url
from facesense.gallery.pg_pool import connection_error, first_line
from facesense.gallery.pg_schema import PgSchema

if TYPE_CHECKING:
    from facesense.fleet.listen import ChangeListener

logger = logging.getLogger(__name__)

__all__ = [
    "APPLICATION",
    "DB_SEARCH_FROM_SAMPLES",
    "FORMAT_VERSION",
    "HNSW_EF_CONSTRUCTION",
    "HNSW_EF_SEARCH",
    "HNSW_M",
    "MIGRATIONS",
    "NOTIFY_CHANNEL",
    "PostgresGallery",
    "display_url",
]

APPLICATION = "facesense-gallery"
DB_SEARCH_FROM_SAMPLES = 50_000  # a model with more samples than this is searched in the database
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
HNSW_EF_SEARCH = 100  # at least k is used
POOL_MIN, POOL_MAX = 1, 4
CONNECT_TIMEOUT_S = 10
SEARCH_BLOCK_CELLS = 1 << 23
_MIGRATION_LOCK = 0x46534E47  # "FSNG": the advisory lock held while migrating
NOTIFY_CHANNEL = "facesense_gallery"  # every write transaction NOTIFYs its new revision here

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            "CREATE EXTENSION IF NOT EXISTS vector",
            "CREATE TABLE facesense_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE TABLE facesense_people ("
            " id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
            " name TEXT NOT NULL UNIQUE,"
            " created TEXT NOT NULL)",
            "CREATE TABLE facesense_samples ("
            " id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
            " person_id BIGINT NOT NULL REFERENCES facesense_people(id) ON DELETE CASCADE,"
            " model_id TEXT NOT NULL,"
            " dim INTEGER NOT NULL CHECK (dim > 0),"
            " embedding vector NOT NULL CHECK (vector_dims(embedding) = dim),"
            " source_path TEXT,"
            " source_sha256 TEXT NOT NULL,"
            " x1 DOUBLE PRECISION NOT NULL, y1 DOUBLE PRECISION NOT NULL,"
            " x2 DOUBLE PRECISION NOT NULL, y2 DOUBLE PRECISION NOT NULL,"
            " thumbnail BYTEA NOT NULL,"
            " added TEXT NOT NULL,"
            " UNIQUE (person_id, model_id, source_sha256))",
            "CREATE INDEX facesense_samples_person ON facesense_samples (person_id)",
            "CREATE INDEX facesense_samples_model ON facesense_samples (model_id)",
        ),
    ),
    (
        2,
        (
            "CREATE TABLE facesense_negatives ("
            " id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
            " person_id BIGINT NOT NULL REFERENCES facesense_people(id) ON DELETE CASCADE,"
            " model_id TEXT NOT NULL,"
            " dim INTEGER NOT NULL CHECK (dim > 0),"
            " embedding vector NOT NULL CHECK (vector_dims(embedding) = dim),"
            " source TEXT NOT NULL,"
            " source_sha256 TEXT,"
            " x1 DOUBLE PRECISION NOT NULL, y1 DOUBLE PRECISION NOT NULL,"
            " x2 DOUBLE PRECISION NOT NULL, y2 DOUBLE PRECISION NOT NULL,"
            " thumbnail BYTEA NOT NULL,"
            " added TEXT NOT NULL,"
            " UNIQUE (person_id, model_id, source_sha256))",
            "CREATE INDEX facesense_negatives_person ON facesense_negatives (person_id)",
            "CREATE INDEX facesense_negatives_model ON facesense_negatives (model_id)",
        ),
    ),
)
FORMAT_VERSION = MIGRATIONS[-1][0]
SCHEMA = PgSchema(
    what="gallery", application=APPLICATION, meta_table="facesense_meta",
    lock_key=_MIGRATION_LOCK, migrations=MIGRATIONS, initial={"revision": "0"},
)  # fmt: skip


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _conninfo(url: str) -> str:
    """The URL libpq understands (``postgres+psycopg://`` and friends become ``postgresql://``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(f"{display_url(url)} is not a postgresql:// URL")
    if scheme.lower().split("+", 1)[0] not in ("postgresql", "postgres"):
        raise ConfigError(f"{display_url(url)} is not a postgresql:// URL")
    return f"postgresql://{rest}"


def _configure(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
    """A new pooled connection: the pgvector adapter, and back to idle."""
    register_vector(conn)
    conn.commit()


@dataclass(frozen=True, eq=False)
class _Index:
    """The cached search matrix of one model at one revision."""

    revision: int
    model_id: str
    labels: tuple[str, ...]
    matrix: npt.NDArray[np.float32]
    sq: npt.NDArray[np.float32]
    sample_ids: npt.NDArray[np.int64]


@dataclass(frozen=True)
class _Plan:
    """How one model is searched at one revision."""

    revision: int
    model_id: str
    n: int
    dim: int


def _rows_of(conn: Any, query: str, name: str | None) -> list[Any]:
    """``query``'s rows, ``{where}`` filled in to keep only person ``name``'s (everybody's when ``None``)."""
    if name is None:
        return list(conn.execute(query.format(where="")).fetchall())
    return list(conn.execute(query.format(where="WHERE p.name = %s"), (name,)).fetchall())


class PostgresGallery:
    """A :class:`~facesense.gallery.base.GalleryStore` in a PostgreSQL database with pgvector.

    Args:
        url: ``postgresql://user[:password]@host[:port]/database[?options]``.
        create: create the gallery tables when the database has none (the database
            itself must exist); with ``False`` such a database raises GalleryError.
        read_only: ``True`` opens read-only (every write raises ReadOnlyGalleryError);
            ``False`` requires write access; ``None`` opens read-only exactly when the
            database user may not write the gallery (or the server is a standby).

    Raises:
        GalleryError: the server cannot be reached, the database holds no gallery (and
            ``create`` is false), a newer format version, or is read-only when
            ``read_only=False``. Messages never show the password.

    It may be shared by threads (a small connection pool serves them).
    """

    def __init__(self, url: str, *, create: bool = True, read_only: bool | None = None) -> None:
        self._url = url
        self._display = display_url(url)
        self._password = urlsplit(url).password or ""
        conninfo = _conninfo(url)
        self._lock = threading.RLock()
        self._index: _Index | None = None
        self._plan: _Plan | None = None
        self._hnsw_done: set[tuple[str, int]] = set()  # (model, dim) whose HNSW index is valid
        self._hnsw_building: set[tuple[str, int]] = set()
        self._hnsw_threads: list[threading.Thread] = []
        self._read_only_reason: str | None = "it was opened read-only" if read_only else None
        kwargs: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "facesense"}
        try:
            first = psycopg.connect(conninfo, **kwargs)
        except psycopg.Error as exc:
            raise GalleryError(f"cannot connect to {self._display}: {self._clean(first_line(exc))}") from exc
        try:
            self._migrate(first, create=create and not read_only)
            reason = self._write_blocker(first)
        except psycopg.Error as exc:
            raise GalleryError(f"{self._display}: cannot open gallery ({self._clean(first_line(exc))})") from exc
        finally:
            first.close()
        if reason is not None:
            if read_only is False:
                raise ReadOnlyGalleryError(self._read_only_message(reason, "open it for writing"))
            self._read_only_reason = self._read_only_reason or reason
        if self._read_only_reason is not None:
            kwargs["options"] = "-c default_transaction_read_only=on"
        try:
            self._pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = ConnectionPool(
                conninfo,
                kwargs=kwargs,
                min_size=POOL_MIN,
                max_size=POOL_MAX,
                open=True,
                configure=_configure,
                check=ConnectionPool.check_connection,
                name="facesense-gallery",
            )
            self._pool.wait(timeout=CONNECT_TIMEOUT_S)
        except Exception as exc:  # psycopg_pool.PoolTimeout or psycopg.Error
            raise GalleryError(f"cannot connect to {self._display}: {self._clean(first_line(exc))}") from exc

    # --- opening -------------------------------------------------------------------

    def _clean(self, text: str) -> str:
        return text.replace(self._password, "***") if self._password else text

    def _migrate(self, conn: psycopg.Connection[tuple[Any, ...]], *, create: bool) -> None:
        """Check the stamp and bring the schema to :data:`FORMAT_VERSION` (one transaction)."""
        with conn.transaction():
            if create:
                SCHEMA.lock(conn)
            version = SCHEMA.version(conn, self._display)
            if version == FORMAT_VERSION:
                return
            if version == 0 and not create:
                raise GalleryError(f"{self._display}: no gallery here (enroll someone first, or create it)")
            if not create:
                raise GalleryError(
                    f"{self._display}: the gallery is at format version {version} and needs upgrading to "
                    f"{FORMAT_VERSION}; open it once with write access"
                )
            SCHEMA.apply(conn, self._display, after=version)

    def _write_blocker(self, conn: psycopg.Connection[tuple[Any, ...]]) -> str | None:
        """Why this database user cannot write the gallery, or ``None``."""
        row = conn.execute(
            "SELECT pg_is_in_recovery(), current_user, "
            "has_table_privilege('facesense_samples', 'INSERT, UPDATE, DELETE'), "
            "has_table_privilege('facesense_people', 'INSERT, UPDATE, DELETE'), "
            "has_table_privilege('facesense_negatives', 'INSERT, DELETE'), "
            "has_table_privilege('facesense_meta', 'UPDATE')"
        ).fetchone()
        conn.rollback()
        if row is None:
            return None
        standby, user, *privileges = row
        if standby:
            return "the server is a read-only standby"
        if not all(privileges):
            return f"the database user {user!r} may not write the gallery tables"
        return None

    def _read_only_message(self, reason: str, action: str) -> str:
        return (
            f"gallery {self._display} is read-only: {reason}; cannot {action} "
            "(ask its owner for write access, or export it and import it into a gallery of your own)"
        )

    # --- plumbing ------------------------------------------------------------------

    @property
    def location(self) -> str:
        """The URL, without its password."""
        return self._display

    @property
    def read_only(self) -> bool:
        """Whether this gallery was opened read-only (every write raises GalleryError)."""
        return self._read_only_reason is not None

    def close(self) -> None:
        """Close the connection pool and stop every :meth:`watch_changes` listener (idempotent)."""
        with self._lock:
            self._index = None
            self._pool.close()
        for listener in getattr(self, "_listeners", ()):
            listener.close()

    def watch_changes(self, callback: Callable[[int | None], None]) -> ChangeListener:
        """Call ``callback(revision)`` from a thread of its own each time a write commits, on any machine.

        Every write transaction sends ``NOTIFY facesense_gallery, '<revision>'``; the
        listener holds its own connection and reconnects when the database goes away,
        then calls ``callback(None)`` once (changes made meanwhile were not heard).
        While :attr:`~facesense.fleet.listen.ChangeListener.connected` is false the
        caller should poll :meth:`revision`. The listener stops with :meth:`close`,
        or when the gallery is closed.
        """
        from facesense.fleet.listen import ChangeListener

        def relay(payload: str | None) -> None:
            callback(int(payload) if payload and payload.isdigit() else None)

        listener = ChangeListener(_conninfo(self._url), NOTIFY_CHANNEL, relay, display=self._display)
        self._listeners = [*getattr(self, "_listeners", ()), listener]
        return listener

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        ro = ", read_only=True" if self.read_only else ""
        return f"PostgresGallery({self._display!r}{ro})"

    @contextmanager
    def _db(self, *, snapshot: bool = False) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """A pooled connection inside one transaction, psycopg errors translated into GalleryError.

        ``snapshot`` makes it a REPEATABLE READ transaction (several reads, one snapshot).
        """
        try:
            with self._pool.connection() as conn:
                if snapshot:
                    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                try:
                    with conn.transaction():
                        yield conn
                finally:
                    if snapshot:
                        conn.isolation_level = None
        except psycopg.errors.ReadOnlySqlTransaction as exc:
            raise ReadOnlyGalleryError(self._read_only_message(self._read_only_reason or str(exc), "change it")) from exc
        except psycopg.errors.InsufficientPrivilege as exc:
            raise ReadOnlyGalleryError(self._read_only_message(self._clean(first_line(exc)), "change it")) from exc
        except Exception as exc:
            error = connection_error(exc, self._display, "gallery", self._clean)
            if error is None:
                raise
            raise error from exc

    def _require_writable(self, action: str) -> None:
        if self._read_only_reason is not None:
            raise ReadOnlyGalleryError(self._read_only_message(self._read_only_reason, action))

    @contextmanager
    def _transaction(self, action: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """One write transaction; it first bumps the revision (and so holds the writers' lock)."""
        self._require_writable(action)
        with self._db() as conn:
            row = conn.execute(
                "UPDATE facesense_meta SET value = (value::bigint + 1)::text WHERE key = 'revision' RETURNING value"
            ).fetchone()
            # Delivered at commit to every watch_changes listener, on any machine.
            conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, "" if row is None else str(row[0])))
            yield conn

    def _person_id(self, conn: psycopg.Connection[tuple[Any, ...]], name: str) -> int | None:
        row = conn.execute("SELECT id FROM facesense_people WHERE name = %s", (name,)).fetchone()
        return None if row is None else int(row[0])

    def _require_person(self, conn: psycopg.Connection[tuple[Any, ...]], name: str) -> int:
        pid = self._person_id(conn, name)
        if pid is None:
            raise EnrollmentError(f"no person named {name!r} in the gallery {self._display}")
        return pid

    def _model_ids(self, conn: psycopg.Connection[tuple[Any, ...]]) -> list[tuple[str, int]]:
        rows = conn.execute("SELECT DISTINCT model_id, dim FROM facesense_samples").fetchall()
        return [(str(m), int(d)) for m, d in rows]

    def _check_model(self, conn: psycopg.Connection[tuple[Any, ...]], model_id: str, dim: int | None) -> None:
        for stored, stored_dim in self._model_ids(conn):
            if stored != model_id:
                raise ModelMismatchError(
                    f"{self._display}: the gallery holds embeddings from model {stored!r}, not {model_id!r}; "
                    f"run `facesense reembed --db {self._display}` to recompute them with the current model"
                )
            if dim is not None and stored_dim != dim:
                raise ModelMismatchError(
                    f"{self._display}: model {model_id!r} embeddings are {stored_dim}-d in the gallery, got {dim}-d"
                )

    # --- reads ---------------------------------------------------------------------

    @property
    def model_id(self) -> str | None:
        """The model id of the stored embeddings, or ``None`` while the gallery is empty."""
        with self._db() as conn:
            models = self._model_ids(conn)
        if len({m for m, _ in models}) > 1:
            raise GalleryError(f"{self._display}: corrupt gallery (embeddings of several models: {models})")
        return models[0][0] if models else None

    def revision(self) -> int:
        """The gallery's change counter (one primary-key read); compare it for equality only."""
        with self._db() as conn:
            row = conn.execute("SELECT value FROM facesense_meta WHERE key = 'revision'").fetchone()
        return 0 if row is None else int(row[0])

    def has_source(self, name: str, source_sha256: str, model_id: str) -> bool:
        """Whether ``name`` already has a sample of ``model_id`` from this source."""
        with self._db() as conn:
            row = conn.execute(
                "SELECT 1 FROM facesense_samples s JOIN facesense_people p ON p.id = s.person_id "
                "WHERE p.name = %s AND s.model_id = %s AND s.source_sha256 = %s",
                (name, model_id, source_sha256),
            ).fetchone()
        return row is not None

    _PEOPLE_SQL = (
        "SELECT p.id, p.name, p.created, count(s.id) FROM facesense_people p "
        "LEFT JOIN facesense_samples s ON s.person_id = p.id {where} GROUP BY p.id ORDER BY p.name COLLATE \"C\""
    )

    @staticmethod
    def _person_row(r: tuple[Any, ...]) -> Person:
        return Person(id=int(r[0]), name=str(r[1]), created=str(r[2]), n_samples=int(r[3]))

    def people(self) -> list[Person]:
        """Every person, sorted by name."""
        with self._db() as conn:
            rows = conn.execute(self._PEOPLE_SQL.format(where="")).fetchall()
        return [self._person_row(r) for r in rows]

    def person(self, name: str) -> Person:
        """One person by name (raises EnrollmentError when unknown)."""
        with self._db() as conn:
            row = conn.execute(self._PEOPLE_SQL.format(where="WHERE p.name = %s"), (name,)).fetchone()
        if row is None:
            raise EnrollmentError(f"no person named {name!r} in the gallery {self._display}")
        return self._person_row(row)

    def person_by_id(self, person_id: int) -> Person:
        """One person by store id (raises EnrollmentError when unknown)."""
        with self._db() as conn:
            row = conn.execute(self._PEOPLE_SQL.format(where="WHERE p.id = %s"), (int(person_id),)).fetchone()
        if row is None:
            raise EnrollmentError(f"no person with id {person_id} in the gallery {self._display}")
        return self._person_row(row)

    def samples(self, name: str | None = None) -> list[Sample]:
        """The samples of one person (everybody's when ``name`` is ``None``), oldest first."""
        query = (
            "SELECT s.id, p.name, s.model_id, s.dim, s.source_path, s.source_sha256, "
            "s.x1, s.y1, s.x2, s.y2, s.thumbnail, s.added FROM facesense_samples s "
            "JOIN facesense_people p ON p.id = s.person_id {where} ORDER BY s.id"
        )
        with self._db() as conn:
            if name is not None:
                self._require_person(conn, name)
            rows = _rows_of(conn, query, name)
        return [
            Sample(
                id=int(r[0]), person=str(r[1]), model_id=str(r[2]), dim=int(r[3]), source_path=r[4],
                source_sha256=str(r[5]), xyxy=(float(r[6]), float(r[7]), float(r[8]), float(r[9])),
                thumbnail_jpeg=bytes(r[10]), added=str(r[11]),
            )
            for r in rows
        ]

    # --- negatives (corrections) -------------------------------------------------------

    def negatives(self, model_id: str) -> GalleryNegatives:
        """Every negative of ``model_id``, by id (one snapshot with the model check).

        Raises:
            ModelMismatchError: the gallery holds another model's embeddings.
        """
        with self._db(snapshot=True) as conn:
            self._check_model(conn, model_id, None)
            rows = conn.execute(
                "SELECT n.id, p.name, n.dim, n.embedding FROM facesense_negatives n "
                "JOIN facesense_people p ON p.id = n.person_id WHERE n.model_id = %s ORDER BY n.id",
                (model_id,),
                binary=True,
            ).fetchall()
        if not rows:
            return GalleryNegatives.empty(model_id)
        emb = self._embedding_rows(rows, model_id)
        return GalleryNegatives(labels=emb.labels, matrix=emb.matrix, negative_ids=emb.sample_ids, model_id=model_id)

    def negative_records(self, name: str | None = None) -> list[Negative]:
        """The negatives of one person (everybody's when ``name`` is ``None``), oldest first (EnrollmentError: unknown)."""
        query = (
            "SELECT n.id, p.name, n.model_id, n.dim, n.source, n.source_sha256, n.thumbnail, n.added "
            "FROM facesense_negatives n JOIN facesense_people p ON p.id = n.person_id {where} ORDER BY n.id"
        )
        with self._db() as conn:
            if name is not None:
                self._require_person(conn, name)
            rows = _rows_of(conn, query, name)
        return [
            Negative(
                id=int(r[0]), person=str(r[1]), model_id=str(r[2]), dim=int(r[3]), source=str(r[4]),
                source_sha256=None if r[5] is None else str(r[5]), thumbnail_jpeg=bytes(r[6]), added=str(r[7]),
            )
            for r in rows
        ]

    def _insert_negative(
        self, conn: psycopg.Connection[tuple[Any, ...]], person_id: int, name: str, s: NewSample, source: str
    ) -> int:
        row = conn.execute(
            "INSERT INTO facesense_negatives (person_id, model_id, dim, embedding, source, source_sha256, "
            "x1, y1, x2, y2, thumbnail, added) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (person_id, model_id, source_sha256) DO NOTHING RETURNING id",
            (
                person_id, s.model_id, int(s.embedding.shape[0]), s.embedding, source, s.source_sha256,
                *s.xyxy, s.thumbnail_jpeg, _now(),
            ),
        ).fetchone()
        if row is None:
            raise GalleryError(f"this face (sha256 {s.source_sha256[:12]}...) is already a negative of {name!r}")
        return int(row[0])

    def add_negative(self, name: str, sample: NewSample, *, source: str) -> int:
        """Store a face that is not ``name``; returns the negative's id (see the SQLite store)."""
        action = f"add a negative of {name!r}"
        self._require_writable(action)
        clean = validate_negative_source(source)
        with self._transaction(action) as conn:
            self._check_model(conn, sample.model_id, int(sample.embedding.shape[0]))
            pid = self._require_person(conn, name)
            nid = self._insert_negative(conn, pid, name, sample, clean)
        return nid

    def correct(self, wrong: str, right: str, sample: NewSample, *, source: str) -> tuple[int, int]:
        """``sample`` becomes a sample of ``right`` and a negative of ``wrong``, in one transaction."""
        action = f"correct {wrong!r} to {right!r}"
        self._require_writable(action)
        check_correction(wrong, right)
        clean = validate_negative_source(source)
        with self._transaction(action) as conn:
            self._check_model(conn, sample.model_id, int(sample.embedding.shape[0]))
            wrong_id = self._require_person(conn, wrong)
            right_id = self._require_person(conn, right)
            sid = self._insert(conn, right_id, sample, _now())
            if sid is None:
                raise GalleryError(
                    f"{right!r} already has a sample from this image (sha256 {sample.source_sha256[:12]}...)"
                )
            nid = self._insert_negative(conn, wrong_id, wrong, sample, clean)
        return sid, nid

    def remove_negative(self, negative_id: int) -> None:
        """Remove one negative (EnrollmentError: no such negative)."""
        with self._transaction(f"remove negative {negative_id}") as conn:
            row = conn.execute("DELETE FROM facesense_negatives WHERE id = %s RETURNING id", (int(negative_id),)).fetchone()
            if row is None:
                raise EnrollmentError(f"no negative with id {negative_id} in the gallery {self._display}")

    _EMBEDDINGS_SQL = (
        "SELECT s.id, p.name, s.dim, s.embedding FROM facesense_samples s "
        "JOIN facesense_people p ON p.id = s.person_id "
        "WHERE s.model_id = %s AND s.id > %s ORDER BY s.id LIMIT %s"
    )

    def _embedding_rows(self, rows: list[tuple[Any, ...]], model_id: str) -> GalleryEmbeddings:
        dims = {int(r[2]) for r in rows}
        if len(dims) != 1:
            raise GalleryError(f"{self._display}: corrupt gallery (embeddings of several lengths {sorted(dims)})")
        dim = dims.pop()
        matrix = np.empty((len(rows), dim), np.float32)
        for i, r in enumerate(rows):
            vec = r[3]
            matrix[i] = vec.to_numpy() if isinstance(vec, Vector) else np.asarray(vec, np.float32)
        return GalleryEmbeddings(
            labels=tuple(str(r[1]) for r in rows),
            matrix=matrix,
            sample_ids=np.array([int(r[0]) for r in rows], dtype=np.int64),
            model_id=model_id,
        )

    def embeddings(self, model_id: str) -> GalleryEmbeddings:
        """Every embedding made by ``model_id``, ordered by sample id (one consistent read).

        Raises:
            ModelMismatchError: the gallery holds another model's embeddings.
        """
        return self._embeddings_at_revision(model_id)[0]

    def _embeddings_at_revision(self, model_id: str) -> tuple[GalleryEmbeddings, int]:
        with self._db(snapshot=True) as conn:
            row = conn.execute("SELECT value FROM facesense_meta WHERE key = 'revision'").fetchone()
            revision = 0 if row is None else int(row[0])
            self._check_model(conn, model_id, None)
            rows = conn.execute(self._EMBEDDINGS_SQL, (model_id, -1, None), binary=True).fetchall()
        if not rows:
            empty = GalleryEmbeddings((), np.zeros((0, 0), np.float32), np.zeros((0,), np.int64), model_id)
            return empty, revision
        return self._embedding_rows(rows, model_id), revision

    def iter_embeddings(self, model_id: str, *, batch_size: int = 10_000) -> Iterator[GalleryEmbeddings]:
        """Every embedding of ``model_id`` in batches of at most ``batch_size`` rows, by sample id."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        with self._db() as conn:
            self._check_model(conn, model_id, None)
        last = -1
        while True:
            with self._db() as conn:
                rows = conn.execute(self._EMBEDDINGS_SQL, (model_id, last, batch_size), binary=True).fetchall()
            if not rows:
                return
            last = int(rows[-1][0])
            yield self._embedding_rows(rows, model_id)

    # --- search --------------------------------------------------------------------

    hnsw_ef_search: int = HNSW_EF_SEARCH
    """``hnsw.ef_search`` of searches in the database (at least ``k`` is used); set it per instance."""

    def search(self, embeddings: npt.ArrayLike, k: int, *, model_id: str) -> SearchResult:
        """The ``k`` nearest samples of ``model_id`` to each probe, nearest first.

        Exact and in memory up to :data:`DB_SEARCH_FROM_SAMPLES` samples of the model
        (ties go to the older sample); above that, approximate, in the database, with
        the model's HNSW index.

        Raises:
            ConfigError: ``k < 1`` or probes that are not ``(M, D)`` finite numbers.
            ModelMismatchError: the gallery holds another model, or ``D`` differs.
        """
        if int(k) < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        q = np.asarray(embeddings, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2:
            raise ConfigError(f"embeddings: expected shape (M, D), got {q.shape}")
        if not np.all(np.isfinite(q)):
            raise ConfigError("embeddings: contains NaN or infinity")
        plan = self._search_plan(model_id)
        if plan.n and q.shape[1] != plan.dim:
            raise ModelMismatchError(
                f"{self._display}: model {model_id!r} embeddings are {plan.dim}-d in the gallery, got {q.shape[1]}-d"
            )
        if plan.n > DB_SEARCH_FROM_SAMPLES and self._hnsw_ready(plan.model_id, plan.dim):
            return self._search_in_db(q, int(k), plan)
        return self._search_in_memory(q, int(k), plan)

    def _search_plan(self, model_id: str) -> _Plan:
        with self._lock:
            revision = self.revision()
            plan = self._plan
            if plan is not None and plan.model_id == model_id and plan.revision == revision:
                return plan
            with self._db(snapshot=True) as conn:
                row = conn.execute("SELECT value FROM facesense_meta WHERE key = 'revision'").fetchone()
                revision = 0 if row is None else int(row[0])
                self._check_model(conn, model_id, None)
                counted = conn.execute(
                    "SELECT count(*), max(dim) FROM facesense_samples WHERE model_id = %s", (model_id,)
                ).fetchone()
            n, dim = (int(counted[0]), int(counted[1] or 0)) if counted is not None else (0, 0)
            self._plan = _Plan(revision, model_id, n, dim)
            return self._plan

    def _search_in_memory(self, q: npt.NDArray[np.float32], k: int, plan: _Plan) -> SearchResult:
        from facesense.match import pairwise_distances

        model_id = plan.model_id
        index = self._search_index(plan)
        n = len(index.labels)
        kk = min(k, n)
        m = q.shape[0]
        if n and q.shape[1] != index.matrix.shape[1]:
            raise ModelMismatchError(
                f"{self._display}: model {model_id!r} embeddings are {index.matrix.shape[1]}-d in the gallery, got {q.shape[1]}-d"
            )
        idx = np.zeros((m, kk), np.int64)
        dist = np.zeros((m, kk), np.float32)
        if kk:
            rows_per_block = max(1, SEARCH_BLOCK_CELLS // n)
            for start in range(0, m, rows_per_block):
                d = pairwise_distances(q[start : start + rows_per_block], index.matrix, b_sq=index.sq)
                if kk < n:
                    part = np.argpartition(d, kk - 1, axis=1)[:, :kk]
                else:
                    part = np.broadcast_to(np.arange(n), d.shape)
                part = np.sort(part, axis=1)
                pd = np.take_along_axis(d, part, axis=1)
                order = np.argsort(pd, axis=1, kind="stable")
                idx[start : start + len(d)] = np.take_along_axis(part, order, axis=1)
                dist[start : start + len(d)] = np.take_along_axis(pd, order, axis=1)
        labels = tuple(tuple(index.labels[j] for j in row) for row in idx.tolist())
        return SearchResult(labels=labels, distances=dist, sample_ids=index.sample_ids[idx], model_id=model_id)

    def _search_index(self, plan: _Plan) -> _Index:
        with self._lock:
            index = self._index
            if index is not None and index.model_id == plan.model_id and index.revision == plan.revision:
                return index  # the plan was made at the current revision a moment ago
            model_id = plan.model_id
            emb, revision = self._embeddings_at_revision(model_id)
            matrix = np.ascontiguousarray(emb.matrix)
            sq = np.einsum("ij,ij->i", matrix, matrix) if matrix.size else np.zeros((len(emb),), np.float32)
            self._index = _Index(revision, model_id, emb.labels, matrix, sq, emb.sample_ids)
            return self._index

    @staticmethod
    def _hnsw_name(model_id: str, dim: int) -> str:
        digest = hashlib.sha256(f"{model_id}\x00{dim}".encode()).hexdigest()[:16]
        return f"facesense_samples_hnsw_{digest}"

    def _hnsw_valid(self, name: str) -> bool | None:
        """Whether the index ``name`` is built (``None``: no such index; ``False``: half-built)."""
        with self._db() as conn:
            row = conn.execute(
                "SELECT i.indisvalid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid WHERE c.relname = %s",
                (name,),
            ).fetchone()
        return None if row is None else bool(row[0])

    def _hnsw_ready(self, model_id: str, dim: int) -> bool:
        """Whether the model's HNSW index can answer searches; starts building it in the background if not."""
        key = (model_id, dim)
        if key in self._hnsw_done:
            return True
        if self._hnsw_valid(self._hnsw_name(model_id, dim)):
            self._hnsw_done.add(key)
            return True
        with self._lock:
            if self._read_only_reason is None and key not in self._hnsw_building:
                self._hnsw_building.add(key)
                thread = threading.Thread(
                    target=self._build_hnsw_in_background, args=key, name="facesense-hnsw-build", daemon=True
                )
                self._hnsw_threads.append(thread)
                thread.start()
        return False

    def _build_hnsw_in_background(self, model_id: str, dim: int) -> None:
        try:
            self.build_search_index(model_id, dim)
        except (GalleryError, psycopg.Error) as exc:
            logger.warning("%s: cannot build the HNSW index of %r: %s", self._display, model_id, exc)
        finally:
            self._hnsw_building.discard((model_id, dim))

    def build_search_index(self, model_id: str, dim: int) -> None:
        """Build the HNSW index of one model now (``CREATE INDEX CONCURRENTLY``: writers go on).

        :meth:`search` starts this in a background thread the first time a model has
        more than :data:`DB_SEARCH_FROM_SAMPLES` samples, and searches exactly in memory
        until the index is valid. Another process building it at the same time is waited
        for (an advisory lock); a half-built index left by a killed build is rebuilt.

        Raises:
            ReadOnlyGalleryError: a read-only gallery.
            GalleryError: the database refused (no privilege to create indexes, say).
        """
        self._require_writable(f"build the search index of {model_id!r}")
        name = self._hnsw_name(model_id, dim)
        lock = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        create = sql.SQL(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON facesense_samples "
            "USING hnsw ((embedding::vector({dim})) vector_l2_ops) "
            "WITH (m = {m}, ef_construction = {ef}) WHERE model_id = {model}"
        ).format(
            name=sql.Identifier(name), dim=sql.Literal(dim), m=sql.Literal(HNSW_M),
            ef=sql.Literal(HNSW_EF_CONSTRUCTION), model=sql.Literal(model_id),
        )
        started = time.monotonic()
        try:
            with self._pool.connection() as conn:
                conn.autocommit = True  # CONCURRENTLY runs outside a transaction
                try:
                    # Poll: a statement waiting on the lock would hold a snapshot, and the
                    # other builder's CREATE INDEX CONCURRENTLY waits for every snapshot.
                    while not (conn.execute("SELECT pg_try_advisory_lock(%s)", (lock,)).fetchone() or (False,))[0]:
                        time.sleep(0.2)
                    try:
                        row = conn.execute(
                            "SELECT i.indisvalid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
                            "WHERE c.relname = %s",
                            (name,),
                        ).fetchone()
                        if row is not None and row[0]:
                            self._hnsw_done.add((model_id, dim))
                            return
                        if row is not None:  # left half-built by a build that was killed
                            conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {name}").format(name=sql.Identifier(name)))
                        logger.info("%s: building the HNSW index of model %r (%d-d)", self._display, model_id, dim)
                        conn.execute(create)
                        conn.execute("ANALYZE facesense_samples")  # so the planner knows the index pays
                    finally:
                        conn.execute("SELECT pg_advisory_unlock(%s)", (lock,))
                finally:
                    conn.autocommit = False
        except psycopg.errors.InsufficientPrivilege as exc:
            raise GalleryError(f"{self._display}: may not create the search index ({self._clean(first_line(exc))})") from exc
        except psycopg.Error as exc:
            raise GalleryError(f"{self._display}: cannot build the search index ({self._clean(first_line(exc))})") from exc
        self._hnsw_done.add((model_id, dim))
        logger.info("%s: HNSW index of %r built in %.1f s", self._display, model_id, time.monotonic() - started)

    def _search_in_db(self, q: npt.NDArray[np.float32], k: int, plan: _Plan) -> SearchResult:
        kk = min(k, plan.n)
        # Literals, not parameters: the partial index matches only a constant model id.
        vec = sql.SQL("embedding::vector({dim})").format(dim=sql.Literal(plan.dim))
        query = sql.SQL(
            "SELECT x.id, p.name, x.d FROM (SELECT id, person_id, {vec} <-> %(q)s::vector({dim}) AS d "
            "FROM facesense_samples WHERE model_id = {model} ORDER BY {vec} <-> %(q)s::vector({dim}) LIMIT {k}) x "
            "JOIN facesense_people p ON p.id = x.person_id ORDER BY x.d, x.id"
        ).format(vec=vec, dim=sql.Literal(plan.dim), model=sql.Literal(plan.model_id), k=sql.Literal(kk))
        found: list[list[tuple[Any, ...]]] = []
        with self._db() as conn:
            conn.execute(sql.SQL("SET LOCAL hnsw.ef_search = {ef}").format(ef=sql.Literal(max(int(self.hnsw_ef_search), kk))))
            for probe in q:
                found.append(conn.execute(query, {"q": probe}).fetchall())
        # The index may return fewer rows than asked (samples removed since the count).
        kk = min([kk, *(len(rows) for rows in found)])
        ids = np.array([[int(r[0]) for r in rows[:kk]] for rows in found], np.int64).reshape(len(q), kk)
        dist = np.array([[float(r[2]) for r in rows[:kk]] for rows in found], np.float32).reshape(len(q), kk)
        labels = [tuple(str(r[1]) for r in rows[:kk]) for rows in found]
        return SearchResult(labels=tuple(labels), distances=dist, sample_ids=ids, model_id=plan.model_id)

    # --- writes --------------------------------------------------------------------

    _INSERT_SQL = (
        "INSERT INTO facesense_samples (person_id, model_id, dim, embedding, source_path, source_sha256, "
        "x1, y1, x2, y2, thumbnail, added) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    )

    def _insert(self, conn: psycopg.Connection[tuple[Any, ...]], person_id: int, s: NewSample, added: str) -> int | None:
        row = conn.execute(
            self._INSERT_SQL + " ON CONFLICT (person_id, model_id, source_sha256) DO NOTHING RETURNING id",
            (
                person_id, s.model_id, int(s.embedding.shape[0]), s.embedding, s.source_path,
                s.source_sha256, *s.xyxy, s.thumbnail_jpeg, added,
            ),
        ).fetchone()
        return None if row is None else int(row[0])

    def add_samples(self, name: str, samples: Sequence[NewSample], *, create: bool = True) -> tuple[int, ...]:
        """Add samples to ``name`` in one transaction (creating the person if ``create``).

        Raises:
            EnrollmentError: unknown person and not ``create``, or no samples.
            ModelMismatchError: the samples' model differs from the gallery's.
            GalleryError: a duplicate source for this person, a read-only gallery, or a database error.
        """
        self._require_writable(f"add samples to {name!r}")
        model_id, dim = samples_model(name, samples)
        with self._transaction(f"add samples to {name!r}") as conn:
            self._check_model(conn, model_id, dim)
            pid = self._person_id(conn, name)
            if pid is None:
                if not create:
                    raise EnrollmentError(f"no person named {name!r} in the gallery {self._display}")
                clean = validate_name(name)
                if clean != name:
                    raise EnrollmentError(f"person names must not start or end with spaces: {name!r}")
                row = conn.execute(
                    "INSERT INTO facesense_people (name, created) VALUES (%s, %s) RETURNING id", (name, _now())
                ).fetchone()
                if row is None:
                    raise GalleryError(f"{self._display}: could not create {name!r}")
                pid = int(row[0])
            ids = []
            now = _now()
            for s in samples:
                sid = self._insert(conn, pid, s, now)
                if sid is None:
                    raise GalleryError(f"{name!r} already has a sample from this image (sha256 {s.source_sha256[:12]}...)")
                ids.append(sid)
        return tuple(ids)

    def rename_person(self, old: str, new: str) -> Person:
        """Rename ``old`` to ``new`` (EnrollmentError if ``old`` is unknown or ``new`` is taken)."""
        self._require_writable(f"rename {old!r}")
        clean = validate_name(new)
        with self._transaction(f"rename {old!r}") as conn:
            pid = self._require_person(conn, old)
            other = self._person_id(conn, clean)
            if other is not None and other != pid:
                raise EnrollmentError(f"there is already a person named {clean!r}")
            conn.execute("UPDATE facesense_people SET name = %s WHERE id = %s", (clean, pid))
        return self.person(clean)

    def remove_person(self, name: str) -> int:
        """Remove ``name`` and their samples; returns the number of samples removed."""
        with self._transaction(f"remove {name!r}") as conn:
            pid = self._require_person(conn, name)
            n = conn.execute("DELETE FROM facesense_samples WHERE person_id = %s", (pid,)).rowcount
            conn.execute("DELETE FROM facesense_people WHERE id = %s", (pid,))
        return int(n)

    def remove_sample(self, sample_id: int) -> None:
        """Remove one sample, and its person if it was their last (EnrollmentError: no such sample)."""
        with self._transaction(f"remove sample {sample_id}") as conn:
            row = conn.execute(
                "DELETE FROM facesense_samples WHERE id = %s RETURNING person_id", (int(sample_id),)
            ).fetchone()
            if row is None:
                raise EnrollmentError(f"no sample with id {sample_id} in the gallery {self._display}")
            conn.execute(
                "DELETE FROM facesense_people WHERE id = %s "
                "AND NOT EXISTS (SELECT 1 FROM facesense_samples WHERE person_id = %s)",
                (row[0], row[0]),
            )

    def replace_samples(
        self, replacements: Mapping[int, NewSample], negatives: Mapping[int, npt.NDArray[np.float32]] | None = None
    ) -> int:
        """Atomically replace every sample's embedding, model id, box and thumbnail.

        Samples not in ``replacements`` are removed, then people without samples; the
        ``negatives`` given get their new embedding, and other negatives of another
        model than the replacements' are dropped (with a logged warning).

        Returns:
            The number of samples removed.
        """
        self._require_writable("re-embed its samples")
        models = {(s.model_id, int(s.embedding.shape[0])) for s in replacements.values()}
        if len(models) > 1:
            raise ModelMismatchError(f"replacement samples mix models or lengths: {sorted(models)}")
        with self._transaction("re-embed its samples") as conn:
            existing = {int(r[0]) for r in conn.execute("SELECT id FROM facesense_samples").fetchall()}
            unknown = set(replacements) - existing
            if unknown:
                raise EnrollmentError(f"no samples with ids {sorted(unknown)[:10]} in the gallery {self._display}")
            with conn.cursor() as cur:
                cur.executemany(
                    "UPDATE facesense_samples SET model_id = %s, dim = %s, embedding = %s, "
                    "x1 = %s, y1 = %s, x2 = %s, y2 = %s, thumbnail = %s WHERE id = %s",
                    [
                        (s.model_id, int(s.embedding.shape[0]), s.embedding, *s.xyxy, s.thumbnail_jpeg, int(sid))
                        for sid, s in replacements.items()
                    ],
                )
            gone = sorted(existing - set(replacements))
            conn.execute("DELETE FROM facesense_samples WHERE id = ANY(%s)", (gone,))
            conn.execute(
                "DELETE FROM facesense_people p WHERE NOT EXISTS "
                "(SELECT 1 FROM facesense_samples s WHERE s.person_id = p.id)"
            )
            if models:
                model, dim = next(iter(models))
                if negatives:
                    with conn.cursor() as cur:
                        cur.executemany(
                            "UPDATE facesense_negatives SET model_id = %s, dim = %s, embedding = %s WHERE id = %s",
                            [(model, dim, negative_embedding(e, dim), int(nid)) for nid, e in negatives.items()],
                        )
                dropped = conn.execute("DELETE FROM facesense_negatives WHERE model_id != %s", (model,)).rowcount
                if dropped:
                    logger.warning(
                        "%s: dropped %d negative(s) of another model that were not re-embedded; "
                        "correct those faces again", self._display, dropped,
                    )
        return len(gone)

    # --- export / import -----------------------------------------------------------

    def export_file(self, path: str | os.PathLike[str]) -> int:
        """Write the whole gallery to a portable ``.npz``; returns the number of samples written."""
        with self._db(snapshot=True) as conn:
            people = tuple(
                (str(r[0]), str(r[1]))
                for r in conn.execute("SELECT name, created FROM facesense_people ORDER BY name COLLATE \"C\"").fetchall()
            )
            rows = conn.execute(
                "SELECT p.name, s.model_id, s.dim, s.embedding, s.source_path, s.source_sha256, "
                "s.x1, s.y1, s.x2, s.y2, s.thumbnail, s.added FROM facesense_samples s "
                "JOIN facesense_people p ON p.id = s.person_id ORDER BY s.id",
                binary=True,
            ).fetchall()
        dims = {int(r[2]) for r in rows}
        if len(dims) > 1:
            raise GalleryError(f"{self._display}: corrupt gallery (embeddings of several lengths {sorted(dims)})")
        dim = dims.pop() if dims else 0
        matrix = np.zeros((len(rows), dim), np.float32)
        for i, r in enumerate(rows):
            matrix[i] = r[3].to_numpy() if isinstance(r[3], Vector) else np.asarray(r[3], np.float32)
        samples = tuple(
            {
                "person": r[0], "model_id": r[1], "source_path": r[4], "source_sha256": r[5],
                "xyxy": [float(r[6]), float(r[7]), float(r[8]), float(r[9])], "added": r[11],
            }
            for r in rows
        )
        thumbs = tuple(bytes(r[10]) for r in rows)
        write_export(path, ExportData(people=people, samples=samples, matrix=matrix, thumbnails=thumbs))
        return len(rows)

    def import_file(self, path: str | os.PathLike[str]) -> ImportSummary:
        """Merge an export into this gallery in one transaction (see the SQLite store)."""
        self._require_writable(f"import {path}")
        model, rows = plan_import(path)
        added_people: list[str] = []
        n_added = n_skipped = 0
        with self._transaction(f"import {path}") as conn:
            if model is not None:
                self._check_model(conn, *model)
            person_ids: dict[str, int] = {}
            for row in rows:
                pid = person_ids.get(row.person)
                if pid is None:
                    pid = self._person_id(conn, row.person)
                    if pid is None:
                        created = conn.execute(
                            "INSERT INTO facesense_people (name, created) VALUES (%s, %s) RETURNING id",
                            (row.person, row.created),
                        ).fetchone()
                        if created is None:
                            raise GalleryError(f"{self._display}: could not create {row.person!r}")
                        pid = int(created[0])
                        added_people.append(row.person)
                    person_ids[row.person] = pid
                if self._insert(conn, pid, row.sample, row.added or _now()) is None:
                    n_skipped += 1
                else:
                    n_added += 1
        return ImportSummary(people_added=tuple(added_people), samples_added=n_added, samples_skipped=n_skipped)
