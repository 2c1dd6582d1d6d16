"""The SQLite gallery: one file, safe to keep for years.

Schema (format version 2)::

    meta      (key TEXT PRIMARY KEY, value TEXT)       application, format_version, created
    people    (id, name UNIQUE, created)
    samples   (id, person_id -> people ON DELETE CASCADE, model_id, dim,
               embedding BLOB (dim little-endian float32), source_path, source_sha256,
               x1, y1, x2, y2, thumbnail BLOB (JPEG), added,
               UNIQUE (person_id, model_id, source_sha256))
    negatives (id, person_id -> people ON DELETE CASCADE, model_id, dim,        since version 2
               embedding BLOB, source (e.g. "event 12"), source_sha256 (nullable),
               x1, y1, x2, y2, thumbnail BLOB (JPEG), added,
               UNIQUE (person_id, model_id, source_sha256))

Versions: a file is created at :data:`FORMAT_VERSION`; an older file is migrated when it
is opened with write access (:data:`MIGRATIONS`, in one ``BEGIN IMMEDIATE``
transaction; a process that finds it migrated meanwhile does nothing). A read-only
older file is read as it is (it has no negatives).

The file is also stamped with ``PRAGMA application_id`` (``0x46534e47``, "FSNG") and
``PRAGMA user_version`` (the format version), so ``file(1)``-style tools can tell it
apart. Opening a file checks both the stamp and the ``meta`` rows *before* anything is
written, so pointing facesense at some other SQLite file (or a JPEG) raises
:class:`~facesense.errors.GalleryError` and leaves the file untouched; a gallery
written by a newer format version is refused with a message to upgrade.

Durability: WAL journal, ``synchronous=FULL``, and every write method is one
``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction. A person row is inserted in the same
transaction as their first samples, so a process killed mid-enrollment (even with
``kill -9``) leaves either the whole image's sample or nothing.

Change counter: every write transaction also bumps ``meta.revision``. :meth:`SQLiteGallery.revision`
reads ``PRAGMA data_version`` (which changes when *another* connection commits) and
re-reads the counter only then, so polling it per frame costs one pragma.

Read-only galleries: a file the user cannot write, or one in a folder they cannot
write (SQLite keeps the write-ahead log ``NAME-wal`` and its index ``NAME-shm`` beside the
file), is opened read-only: ``mode=ro``, or ``immutable=1`` when the folder is not
writable and no write-ahead log exists (so SQLite cannot even create the index; the
file and its log are then watched for changes by :meth:`SQLiteGallery.revision`, which
reopens the connection). Every read works; every write raises
:class:`~facesense.errors.GalleryError` saying the gallery is read-only.

Threads: one :class:`SQLiteGallery` may be shared by threads (a request thread and a
camera thread, say); its calls are serialised by a lock.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from facesense.errors import ConfigError, EnrollmentError, GalleryError, ModelMismatchError, ReadOnlyGalleryError
from facesense.gallery.ann import ANN_FROM_SAMPLES, AnnIndex
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
from facesense.gallery.sqlite_file import read_header, use_wal

logger = logging.getLogger(__name__)

__all__ = [
    "APPLICATION",
    "APPLICATION_ID",
    "FORMAT_VERSION",
    "MIGRATIONS",
    "SQLiteGallery",
    "default_db_path",
    "read_only_reason",
]

APPLICATION = "facesense-gallery"
APPLICATION_ID = 0x46534E47  # "FSNG"
FORMAT_VERSION = 2
DB_ENV = "FACESENSE_DB"
BUSY_TIMEOUT_S = 10.0
SEARCH_BLOCK_CELLS = 1 << 23  # probe x sample distances computed at once by search() (32 MiB)

_SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE people (
    id      INTEGER PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL
);
CREATE TABLE samples (
    id            INTEGER PRIMARY KEY,
    person_id     INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    model_id      TEXT NOT NULL,
    dim           INTEGER NOT NULL CHECK (dim > 0),
    embedding     BLOB NOT NULL CHECK (length(embedding) = 4 * dim),
    source_path   TEXT,
    source_sha256 TEXT NOT NULL,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
    thumbnail     BLOB NOT NULL,
    added         TEXT NOT NULL,
    UNIQUE (person_id, model_id, source_sha256)
);
CREATE INDEX samples_person ON samples(person_id);
CREATE INDEX samples_model ON samples(model_id);
"""

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        2,
        (
            "CREATE TABLE negatives ("
            " id INTEGER PRIMARY KEY,"
            " person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,"
            " model_id TEXT NOT NULL,"
            " dim INTEGER NOT NULL CHECK (dim > 0),"
            " embedding BLOB NOT NULL CHECK (length(embedding) = 4 * dim),"
            " source TEXT NOT NULL,"
            " source_sha256 TEXT,"
            " x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,"
            " thumbnail BLOB NOT NULL,"
            " added TEXT NOT NULL,"
            " UNIQUE (person_id, model_id, source_sha256))",
            "CREATE INDEX negatives_person ON negatives(person_id)",
            "CREATE INDEX negatives_model ON negatives(model_id)",
        ),
    ),
)
"""The statements that bring a file from the previous format version to each version (after ``_SCHEMA``, version 1)."""


def default_db_path() -> Path:
    """``$FACESENSE_DB`` if set, else ``gallery.db`` in the user data directory."""
    env = os.environ.get(DB_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("facesense")) / "gallery.db"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _blob(embedding: npt.NDArray[np.float32]) -> bytes:
    return np.ascontiguousarray(embedding, dtype="<f4").tobytes()


def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def read_only_reason(path: Path) -> str | None:
    """Why the existing gallery file ``path`` cannot be written by this process, or ``None``.

    The file itself must be writable, and so must its folder unless the write-ahead
    log and its index (``NAME-wal``, ``NAME-shm``) already exist and are writable.
    """
    if not os.access(path, os.W_OK):
        return "the file is not writable by this user"
    sidecars = (_sidecar(path, "-wal"), _sidecar(path, "-shm"))
    for f in sidecars:
        if f.exists() and not os.access(f, os.W_OK):
            return f"its write-ahead log file {f.name} is not writable by this user"
    folder = path.parent
    if not os.access(folder, os.W_OK | os.X_OK) and not all(f.exists() for f in sidecars):
        return f"its folder {folder} is not writable by this user (SQLite keeps {path.name}-wal and -shm beside it)"
    return None


def _is_read_only_error(exc: sqlite3.Error) -> bool:
    name = str(getattr(exc, "sqlite_errorname", ""))
    return name.startswith("SQLITE_READONLY")


def _cannot_open_sidecars(exc: sqlite3.Error) -> bool:
    """SQLite could not create or open the write-ahead log's index (``-shm``) for reading."""
    name = str(getattr(exc, "sqlite_errorname", ""))
    return name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN"))


@dataclass(frozen=True, eq=False)
class _Index:
    """The cached search matrix of one model at one revision."""

    revision: int
    model_id: str
    labels: tuple[str, ...]
    matrix: npt.NDArray[np.float32]
    sq: npt.NDArray[np.float32]
    sample_ids: npt.NDArray[np.int64]


def _rows_of(conn: sqlite3.Connection, sql: str, name: str | None) -> list[tuple[Any, ...]]:
    """``sql``'s rows, ``{where}`` filled in to keep only person ``name``'s (everybody's when ``None``)."""
    if name is None:
        return conn.execute(sql.format(where="")).fetchall()
    return conn.execute(sql.format(where="WHERE p.name = ?"), (name,)).fetchall()


class SQLiteGallery:
    """A :class:`~facesense.gallery.base.GalleryStore` in one SQLite file.

    Args:
        path: the database file; ``None`` means :func:`default_db_path`.
        create: create the file (and its folder) when missing. When false, a missing
            file raises :class:`~facesense.errors.GalleryError` and nothing is created.
        read_only: ``True`` opens the file read-only (it must exist); ``False`` requires
            write access (a read-only file raises GalleryError); ``None`` (default)
            opens read-only exactly when the file or its folder is not writable.
        ann_from_samples: a model with more samples than this is searched through an
            HNSW index (:class:`~facesense.gallery.ann.AnnIndex`, built in the background
            per revision; exact until it is built); default
            :data:`~facesense.gallery.ann.ANN_FROM_SAMPLES`.

    Raises:
        GalleryError: the file is missing (and ``create`` is false or ``read_only``),
            is not a facesense gallery, was written by a newer version, cannot be
            opened, or is read-only while ``read_only=False``.

    Use it as a context manager, or call :meth:`close`. It may be shared by threads.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        create: bool = True,
        read_only: bool | None = None,
        ann_from_samples: int = ANN_FROM_SAMPLES,
    ) -> None:
        self._path = Path(path).expanduser() if path is not None else default_db_path()
        self._lock = threading.RLock()
        self._immutable = False
        self._index: _Index | None = None
        if int(ann_from_samples) < 1:
            raise ConfigError(f"ann_from_samples must be >= 1, got {ann_from_samples}")
        self._ann_from_samples = int(ann_from_samples)
        self._ann: tuple[_Index, AnnIndex] | None = None  # the ANN index of one cached matrix
        self._ann_building: tuple[_Index, threading.Thread] | None = None  # a background build and its matrix
        self._ann_failed: _Index | None = None
        self._counter = 0  # meta.revision as last read (or written) by this connection
        self._data_version: int | None = None  # PRAGMA data_version at that read
        self._external = 0  # changes by writers that did not bump meta.revision
        self._file_signature: tuple[object, ...] = ()
        self._format_version = FORMAT_VERSION  # of the open file (older only when read-only)
        p = self._path
        if p.is_dir():
            raise GalleryError(f"{p}: is a directory, not a gallery file")
        exists = p.exists()
        if not exists and (not create or read_only):
            raise GalleryError(f"{p}: no gallery here (enroll someone first, or pass --db PATH)")
        self._read_only_reason: str | None = None
        if exists:
            reason = read_only_reason(p)
            if reason is not None and read_only is False:
                raise ReadOnlyGalleryError(_read_only_message(p, reason, "open it for writing"))
            if reason is None and read_only:
                reason = "it was opened read-only"
            self._read_only_reason = reason
        else:
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise GalleryError(f"{p}: cannot create the gallery folder ({exc.strerror or exc})") from exc
        self._conn = self._connect(create=create and not exists)
        try:
            self._open(create=create and self._read_only_reason is None)
        except GalleryError as exc:
            self._conn.close()
            cause = exc.__cause__
            if not (exists and read_only is None and self._read_only_reason is None):
                raise
            if not (isinstance(cause, sqlite3.Error) and _is_read_only_error(cause)):
                raise
            # Permissions said writable, SQLite says otherwise (a read-only mount, say).
            self._read_only_reason = f"SQLite cannot write it ({cause})"
            self._conn = self._connect(create=False)
            try:
                self._open(create=False)
            except BaseException:
                self._conn.close()
                raise
        except BaseException:
            self._conn.close()
            raise

    # --- opening -------------------------------------------------------------------

    def _connect(self, *, create: bool) -> sqlite3.Connection:
        """A connection: read-write, or ``mode=ro`` / ``immutable=1`` for a read-only gallery."""
        p = self._path
        uri = p.resolve().as_uri()

        def connect(query: str) -> sqlite3.Connection:
            try:
                return sqlite3.connect(
                    f"{uri}?{query}", uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_S, check_same_thread=False
                )
            except sqlite3.Error as exc:
                raise GalleryError(f"{p}: cannot open gallery ({exc})") from exc

        self._immutable = False
        if self._read_only_reason is None:
            return connect("mode=rwc" if create else "mode=rw")
        conn = connect("mode=ro")
        try:
            conn.execute("PRAGMA application_id").fetchone()
            return conn
        except sqlite3.DatabaseError as exc:
            conn.close()
            if not _cannot_open_sidecars(exc):
                return connect("mode=ro")  # let _open() say what kind of file this is
            wal = _sidecar(p, "-wal")
            if wal.exists() and wal.stat().st_size > 0:
                # immutable=1 would ignore the log's committed transactions.
                raise GalleryError(
                    f"{p}: cannot read the gallery: {self._read_only_reason}, and its write-ahead log {wal.name} "
                    f"holds changes SQLite cannot read without creating {p.name}-shm; open it once with write access"
                ) from exc
        self._immutable = True
        self._file_signature = self._stat_signature()
        logger.info("%s: opened as immutable (%s, no write-ahead log)", p, self._read_only_reason)
        return connect("mode=ro&immutable=1")

    def _stat_signature(self) -> tuple[object, ...]:
        parts: list[object] = []
        for f in (self._path, _sidecar(self._path, "-wal")):
            try:
                st = f.stat()
            except OSError:
                parts.append(None)
                continue
            parts.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(parts)

    def _open(self, *, create: bool) -> None:
        conn = self._conn
        try:
            app_id, tables = read_header(conn)
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"{self._path}: not a facesense gallery (not an SQLite database: {exc})") from exc
        if not tables and app_id == 0:
            if not create:
                raise GalleryError(f"{self._path}: not a facesense gallery (empty database)")
            self._initialise()
        else:
            version = self._check_meta(app_id, tables)
            if version < FORMAT_VERSION and self._read_only_reason is None:
                self._migrate()
            else:
                self._format_version = version
        try:
            if self._read_only_reason is None:
                mode = use_wal(conn)
                if mode.lower() != "wal":
                    logger.warning("%s: journal mode is %s, not WAL", self._path, mode)
                conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise GalleryError(f"{self._path}: cannot open gallery ({exc})") from exc

    def _check_meta(self, app_id: int, tables: set[str]) -> int:
        if app_id != APPLICATION_ID or "meta" not in tables:
            raise GalleryError(f"{self._path}: not a facesense gallery (some other SQLite database)")
        try:
            meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.Error as exc:
            raise GalleryError(f"{self._path}: not a facesense gallery ({exc})") from exc
        if meta.get("application") != APPLICATION:
            raise GalleryError(f"{self._path}: not a facesense gallery (meta.application is {meta.get('application')!r})")
        try:
            version = int(meta.get("format_version", ""))
        except ValueError:
            raise GalleryError(f"{self._path}: corrupt gallery (bad format_version {meta.get('format_version')!r})") from None
        if version > FORMAT_VERSION:
            raise GalleryError(
                f"{self._path}: gallery format version {version} was written by a newer facesense "
                f"(this one reads up to {FORMAT_VERSION}); upgrade facesense"
            )
        if not {"people", "samples"} <= tables:
            raise GalleryError(f"{self._path}: corrupt gallery (tables missing)")
        return version

    def _migrate(self) -> None:
        """Bring an older file to :data:`FORMAT_VERSION` in one write transaction."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
                version = int(row[0]) if row is not None else FORMAT_VERSION
                self._apply_migrations(conn, after=version)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except (sqlite3.Error, ValueError) as exc:
            raise GalleryError(f"{self._path}: cannot upgrade the gallery to format version {FORMAT_VERSION} ({exc})") from exc
        self._format_version = FORMAT_VERSION

    def _apply_migrations(self, conn: sqlite3.Connection, *, after: int) -> None:
        """Run the migrations numbered above ``after`` and stamp the file (caller's transaction)."""
        if after >= FORMAT_VERSION:
            return
        for number, statements in MIGRATIONS:
            if number > after:
                for stmt in statements:
                    conn.execute(stmt)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'format_version'", (str(FORMAT_VERSION),))
        conn.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
        logger.info("%s: gallery migrated from format version %d to %d", self._path, after, FORMAT_VERSION)

    def _initialise(self) -> None:
        conn = self._conn
        try:
            use_wal(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Another process may have initialised the file while we waited for the lock.
                if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                    conn.execute("ROLLBACK")
                    self._check_meta(
                        conn.execute("PRAGMA application_id").fetchone()[0],
                        {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")},
                    )
                    return
                # Statement by statement: executescript() would COMMIT the transaction.
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                for _, statements in MIGRATIONS:
                    for stmt in statements:
                        conn.execute(stmt)
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [
                        ("application", APPLICATION),
                        ("format_version", str(FORMAT_VERSION)),
                        ("created", _now()),
                        ("revision", "0"),
                    ],
                )
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise GalleryError(f"{self._path}: cannot create gallery ({exc})") from exc
        logger.info("created gallery %s", self._path)

    # --- plumbing ------------------------------------------------------------------

    @property
    def location(self) -> str:
        """The database file's path."""
        return str(self._path)

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @property
    def read_only(self) -> bool:
        """Whether this gallery was opened read-only (every write raises GalleryError)."""
        return self._read_only_reason is not None

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._index = None
            self._ann = None
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        ro = ", read_only=True" if self.read_only else ""
        return f"SQLiteGallery({str(self._path)!r}{ro})"

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """The connection, held by this thread, with sqlite3 errors translated into GalleryError."""
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as exc:
                if _is_read_only_error(exc):
                    # Permissions looked fine, SQLite found otherwise (a read-only mount):
                    # remember it, so later writes fail before touching the file.
                    if self._read_only_reason is None:
                        self._read_only_reason = f"SQLite cannot write it ({exc})"
                    raise ReadOnlyGalleryError(_read_only_message(self._path, self._read_only_reason, "change it")) from exc
                raise GalleryError(f"{self._path}: gallery database error ({exc})") from exc

    def _require_writable(self, action: str) -> None:
        if self._read_only_reason is not None:
            raise ReadOnlyGalleryError(_read_only_message(self._path, self._read_only_reason, action))

    @contextmanager
    def _transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        """One write transaction: everything inside commits together or not at all.

        It also bumps ``meta.revision``, so every committed write changes :meth:`revision`.
        """
        self._require_writable(action)
        with self._db() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                # Under the write lock nobody else commits until we do, and our own
                # commit leaves our data_version alone: both stay exact.
                data_version = int(conn.execute("PRAGMA data_version").fetchone()[0])
                if not conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'revision'").rowcount:
                    conn.execute("INSERT INTO meta (key, value) VALUES ('revision', '1')")
                counter = self._read_counter(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._counter, self._data_version = counter, data_version

    @staticmethod
    def _read_counter(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()
        try:
            return 0 if row is None else int(row[0])
        except (TypeError, ValueError):
            return 0

    def _person_id(self, conn: sqlite3.Connection, name: str) -> int | None:
        row = conn.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def _require_person(self, conn: sqlite3.Connection, name: str) -> int:
        pid = self._person_id(conn, name)
        if pid is None:
            raise EnrollmentError(f"no person named {name!r} in the gallery {self._path}")
        return pid

    def _model_ids(self, conn: sqlite3.Connection) -> list[tuple[str, int]]:
        return [(str(m), int(d)) for m, d in conn.execute("SELECT DISTINCT model_id, dim FROM samples")]

    def _check_model(self, conn: sqlite3.Connection, model_id: str, dim: int | None) -> None:
        for stored, stored_dim in self._model_ids(conn):
            if stored != model_id:
                raise ModelMismatchError(
                    f"{self._path}: the gallery holds embeddings from model {stored!r}, not {model_id!r}; "
                    f"run `facesense reembed --db {self._path}` to recompute them with the current model"
                )
            if dim is not None and stored_dim != dim:
                raise ModelMismatchError(
                    f"{self._path}: model {model_id!r} embeddings are {stored_dim}-d in the gallery, got {dim}-d"
                )

    # --- reads ---------------------------------------------------------------------

    @property
    def model_id(self) -> str | None:
        """The model id of the stored embeddings, or ``None`` while the gallery is empty."""
        with self._db() as conn:
            models = self._model_ids(conn)
        if len({m for m, _ in models}) > 1:
            raise GalleryError(f"{self._path}: corrupt gallery (embeddings of several models: {models})")
        return models[0][0] if models else None

    def revision(self) -> int:
        """A number that changes with every committed write, by this connection or another
        (another process included). Compare it for equality only.

        Cheap enough to call per frame: one ``PRAGMA data_version``; the counter row is
        read only when another connection has committed since the last call.
        """
        with self._db() as conn:
            if self._immutable:
                signature = self._stat_signature()
                if signature != self._file_signature:
                    self._reconnect()
                    conn = self._conn
            data_version = int(conn.execute("PRAGMA data_version").fetchone()[0])
            if data_version != self._data_version:
                counter = self._read_counter(conn)
                if self._data_version is not None and counter == self._counter:
                    self._external += 1  # a writer that does not keep the counter (an older facesense)
                self._counter, self._data_version = counter, data_version
            return self._counter + self._external

    def _reconnect(self) -> None:
        """Reopen an immutable connection after the file (or a new write-ahead log) changed."""
        logger.info("%s: the gallery file changed; reopening it", self._path)
        self._conn.close()
        self._conn = self._connect(create=False)
        self._open(create=False)
        self._external += 1
        self._data_version = None
        self._file_signature = self._stat_signature()

    def has_source(self, name: str, source_sha256: str, model_id: str) -> bool:
        """Whether ``name`` already has a sample of ``model_id`` from this source."""
        with self._db() as conn:
            row = conn.execute(
                "SELECT 1 FROM samples s JOIN people p ON p.id = s.person_id "
                "WHERE p.name = ? AND s.model_id = ? AND s.source_sha256 = ?",
                (name, model_id, source_sha256),
            ).fetchone()
        return row is not None

    _PEOPLE_SQL = (
        "SELECT p.id, p.name, p.created, count(s.id) FROM people p "
        "LEFT JOIN samples s ON s.person_id = p.id {where} GROUP BY p.id ORDER BY p.name"
    )

    def people(self) -> list[Person]:
        """Every person, sorted by name."""
        with self._db() as conn:
            rows = conn.execute(self._PEOPLE_SQL.format(where="")).fetchall()
        return [Person(id=r[0], name=r[1], created=r[2], n_samples=r[3]) for r in rows]

    def person(self, name: str) -> Person:
        """One person by name.

        Raises:
            EnrollmentError: no such person.
        """
        with self._db() as conn:
            row = conn.execute(self._PEOPLE_SQL.format(where="WHERE p.name = ?"), (name,)).fetchone()
        if row is None:
            raise EnrollmentError(f"no person named {name!r} in the gallery {self._path}")
        return Person(id=row[0], name=row[1], created=row[2], n_samples=row[3])

    def person_by_id(self, person_id: int) -> Person:
        """One person by store id.

        Raises:
            EnrollmentError: no such person.
        """
        with self._db() as conn:
            row = conn.execute(self._PEOPLE_SQL.format(where="WHERE p.id = ?"), (int(person_id),)).fetchone()
        if row is None:
            raise EnrollmentError(f"no person with id {person_id} in the gallery {self._path}")
        return Person(id=row[0], name=row[1], created=row[2], n_samples=row[3])

    def samples(self, name: str | None = None) -> list[Sample]:
        """The samples of one person (everybody's when ``name`` is ``None``), oldest first."""
        sql = (
            "SELECT s.id, p.name, s.model_id, s.dim, s.source_path, s.source_sha256, "
            "s.x1, s.y1, s.x2, s.y2, s.thumbnail, s.added FROM samples s "
            "JOIN people p ON p.id = s.person_id {where} ORDER BY s.id"
        )
        with self._db() as conn:
            if name is not None:
                self._require_person(conn, name)
            rows = _rows_of(conn, sql, name)
        return [
            Sample(
                id=r[0], person=r[1], model_id=r[2], dim=r[3], source_path=r[4], source_sha256=r[5],
                xyxy=(r[6], r[7], r[8], r[9]), thumbnail_jpeg=bytes(r[10]), added=r[11],
            )
            for r in rows
        ]

    # --- negatives (corrections) -------------------------------------------------------

    def _has_negatives_table(self) -> bool:
        return self._format_version >= 2

    def _require_negatives_table(self, action: str) -> None:
        if not self._has_negatives_table():
            raise GalleryError(f"{self._path}: gallery format version {self._format_version} has no negatives; cannot {action}")

    def negatives(self, model_id: str) -> GalleryNegatives:
        """Every negative of ``model_id``, by id (one consistent read with the model check).

        Raises:
            ModelMismatchError: the gallery holds another model's embeddings.
        """
        with self._db() as conn:
            conn.execute("BEGIN")
            try:
                self._check_model(conn, model_id, None)
                rows = []
                if self._has_negatives_table():
                    rows = conn.execute(
                        "SELECT n.id, p.name, n.dim, n.embedding FROM negatives n JOIN people p ON p.id = n.person_id "
                        "WHERE n.model_id = ? ORDER BY n.id",
                        (model_id,),
                    ).fetchall()
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
        if not rows:
            return GalleryNegatives.empty(model_id)
        emb = self._embedding_rows(rows, model_id)
        return GalleryNegatives(labels=emb.labels, matrix=emb.matrix, negative_ids=emb.sample_ids, model_id=model_id)

    def negative_records(self, name: str | None = None) -> list[Negative]:
        """The negatives of one person (everybody's when ``name`` is ``None``), oldest first.

        Raises:
            EnrollmentError: no such person.
        """
        sql = (
            "SELECT n.id, p.name, n.model_id, n.dim, n.source, n.source_sha256, n.thumbnail, n.added "
            "FROM negatives n JOIN people p ON p.id = n.person_id {where} ORDER BY n.id"
        )
        with self._db() as conn:
            if name is not None:
                self._require_person(conn, name)
            if not self._has_negatives_table():
                return []
            rows = _rows_of(conn, sql, name)
        return [
            Negative(
                id=r[0], person=r[1], model_id=r[2], dim=r[3], source=r[4], source_sha256=r[5],
                thumbnail_jpeg=bytes(r[6]), added=r[7],
            )
            for r in rows
        ]

    def _insert_negative(self, conn: sqlite3.Connection, person_id: int, name: str, s: NewSample, source: str) -> int:
        try:
            cur = conn.execute(
                "INSERT INTO negatives (person_id, model_id, dim, embedding, source, source_sha256, "
                "x1, y1, x2, y2, thumbnail, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    person_id, s.model_id, int(s.embedding.shape[0]), _blob(s.embedding), source,
                    s.source_sha256, *s.xyxy, s.thumbnail_jpeg, _now(),
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise GalleryError(
                f"this face (sha256 {s.source_sha256[:12]}...) is already a negative of {name!r}"
            ) from exc
        return int(cur.lastrowid or 0)

    def add_negative(self, name: str, sample: NewSample, *, source: str) -> int:
        """Store a face that is not ``name``; returns the negative's id.

        Raises:
            EnrollmentError: no such person.
            ModelMismatchError: the face's model or length differs from the gallery's.
            GalleryError: the same face is a negative of ``name`` already, or the gallery is read-only.
        """
        action = f"add a negative of {name!r}"
        self._require_writable(action)
        self._require_negatives_table(action)
        clean = validate_negative_source(source)
        with self._transaction(action) as conn:
            self._check_model(conn, sample.model_id, int(sample.embedding.shape[0]))
            pid = self._require_person(conn, name)
            nid = self._insert_negative(conn, pid, name, sample, clean)
        return nid

    def correct(self, wrong: str, right: str, sample: NewSample, *, source: str) -> tuple[int, int]:
        """``sample`` becomes a sample of ``right`` and a negative of ``wrong``, in one transaction.

        Returns:
            ``(sample id, negative id)``.

        Raises:
            EnrollmentError: an unknown person, or ``wrong == right``.
            ModelMismatchError: the face's model or length differs from the gallery's.
            GalleryError: ``right`` has a sample from this source already (nothing is written).
        """
        action = f"correct {wrong!r} to {right!r}"
        self._require_writable(action)
        self._require_negatives_table(action)
        check_correction(wrong, right)
        clean = validate_negative_source(source)
        with self._transaction(action) as conn:
            self._check_model(conn, sample.model_id, int(sample.embedding.shape[0]))
            wrong_id = self._require_person(conn, wrong)
            right_id = self._require_person(conn, right)
            try:
                sid = self._insert(conn, right_id, sample)
            except sqlite3.IntegrityError as exc:
                raise GalleryError(
                    f"{right!r} already has a sample from this image (sha256 {sample.source_sha256[:12]}...)"
                ) from exc
            nid = self._insert_negative(conn, wrong_id, wrong, sample, clean)
        return sid, nid

    def remove_negative(self, negative_id: int) -> None:
        """Remove one negative.

        Raises:
            EnrollmentError: no negative with this id.
        """
        with self._transaction(f"remove negative {negative_id}") as conn:
            n = 0
            if self._has_negatives_table():
                n = conn.execute("DELETE FROM negatives WHERE id = ?", (int(negative_id),)).rowcount
            if not n:
                raise EnrollmentError(f"no negative with id {negative_id} in the gallery {self._path}")

    _EMBEDDINGS_SQL = (
        "SELECT s.id, p.name, s.dim, s.embedding FROM samples s JOIN people p ON p.id = s.person_id "
        "WHERE s.model_id = ? AND s.id > ? ORDER BY s.id LIMIT ?"
    )

    def _embedding_rows(self, rows: list[tuple[int, str, int, bytes]], model_id: str) -> GalleryEmbeddings:
        dims = {r[2] for r in rows}
        if len(dims) != 1:
            raise GalleryError(f"{self._path}: corrupt gallery (embeddings of several lengths {sorted(dims)})")
        dim = dims.pop()
        blob = b"".join(r[3] for r in rows)
        if len(blob) != 4 * dim * len(rows):
            raise GalleryError(f"{self._path}: corrupt gallery (embedding blobs of the wrong size)")
        matrix = np.frombuffer(blob, dtype="<f4").reshape(len(rows), dim).astype(np.float32)
        return GalleryEmbeddings(
            labels=tuple(r[1] for r in rows),
            matrix=matrix,
            sample_ids=np.array([r[0] for r in rows], dtype=np.int64),
            model_id=model_id,
        )

    def embeddings(self, model_id: str) -> GalleryEmbeddings:
        """Every embedding made by ``model_id``, ordered by sample id (one consistent read).

        Returns:
            labels ``(N,)``, matrix ``(N, D)`` float32; ``(0, 0)`` when the gallery is empty.

        Raises:
            ModelMismatchError: the gallery holds another model's embeddings.
        """
        return self._embeddings_at_revision(model_id)[0]

    def _embeddings_at_revision(self, model_id: str) -> tuple[GalleryEmbeddings, int]:
        with self._lock:
            # The revision first: a write between the two reads can only make the
            # revision older than the rows (one reload too many, never stale rows).
            revision = self.revision()
            with self._db() as conn:
                conn.execute("BEGIN")  # one snapshot for the model check and the rows
                try:
                    self._check_model(conn, model_id, None)
                    rows = conn.execute(self._EMBEDDINGS_SQL, (model_id, -1, -1)).fetchall()
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")
        if not rows:
            empty = GalleryEmbeddings((), np.zeros((0, 0), np.float32), np.zeros((0,), np.int64), model_id)
            return empty, revision
        return self._embedding_rows(rows, model_id), revision

    def iter_embeddings(self, model_id: str, *, batch_size: int = 10_000) -> Iterator[GalleryEmbeddings]:
        """Every embedding of ``model_id`` in batches of at most ``batch_size`` rows, by sample id.

        Each batch is its own read, so other threads and writers are not held up
        between batches (a write in between shows in the later batches).
        """
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        with self._db() as conn:
            self._check_model(conn, model_id, None)
        last = -1
        while True:
            with self._db() as conn:
                rows = conn.execute(self._EMBEDDINGS_SQL, (model_id, last, batch_size)).fetchall()
            if not rows:
                return
            last = int(rows[-1][0])
            yield self._embedding_rows(rows, model_id)

    def search(self, embeddings: npt.ArrayLike, k: int, *, model_id: str) -> SearchResult:
        """The ``k`` nearest samples of ``model_id`` to each probe, nearest first.

        The model's embeddings are kept in memory between calls and reloaded when
        :meth:`revision` changes. Ties go to the older sample. Search is exact up to
        ``ann_from_samples`` samples of the model; past that it is approximate, through
        an HNSW index of the same matrix (:class:`~facesense.gallery.ann.AnnIndex`).

        Args:
            embeddings: ``(M, D)`` (or ``(D,)``) float32 L2-normalised probes.
            k: how many neighbours per probe (fewer when the gallery holds fewer samples).
            model_id: the model the probes were made by.

        Returns:
            A :class:`~facesense.gallery.base.SearchResult` with ``(M, min(k, N))`` arrays.

        Raises:
            ConfigError: ``k < 1`` or probes that are not ``(M, D)`` finite numbers.
            ModelMismatchError: the gallery holds another model, or ``D`` differs from its embeddings'.
        """
        from facesense.match import pairwise_distances

        if int(k) < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        q = np.asarray(embeddings, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2:
            raise ConfigError(f"embeddings: expected shape (M, D), got {q.shape}")
        if not np.all(np.isfinite(q)):
            raise ConfigError("embeddings: contains NaN or infinity")
        index = self._search_index(model_id)
        n = len(index.labels)
        kk = min(int(k), n)
        m = q.shape[0]
        if n and q.shape[1] != index.matrix.shape[1]:
            raise ModelMismatchError(
                f"{self._path}: model {model_id!r} embeddings are {index.matrix.shape[1]}-d in the gallery, got {q.shape[1]}-d"
            )
        ann = self._ann_index(index) if n > self._ann_from_samples else None
        if ann is not None:
            idx, dist = ann.search(q, kk)
            labels = tuple(tuple(index.labels[j] for j in row) for row in idx.tolist())
            return SearchResult(labels=labels, distances=dist, sample_ids=index.sample_ids[idx], model_id=model_id)
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
                part = np.sort(part, axis=1)  # by sample id, so the stable sort below breaks ties by age
                pd = np.take_along_axis(d, part, axis=1)
                order = np.argsort(pd, axis=1, kind="stable")
                idx[start : start + len(d)] = np.take_along_axis(part, order, axis=1)
                dist[start : start + len(d)] = np.take_along_axis(pd, order, axis=1)
        labels = tuple(tuple(index.labels[j] for j in row) for row in idx.tolist())
        return SearchResult(labels=labels, distances=dist, sample_ids=index.sample_ids[idx], model_id=model_id)

    def _search_index(self, model_id: str) -> _Index:
        with self._lock:
            index = self._index
            if index is not None and index.model_id == model_id and index.revision == self.revision():
                return index
            emb, revision = self._embeddings_at_revision(model_id)
            matrix = np.ascontiguousarray(emb.matrix)
            sq = np.einsum("ij,ij->i", matrix, matrix) if matrix.size else np.zeros((len(emb),), np.float32)
            self._index = _Index(revision, model_id, emb.labels, matrix, sq, emb.sample_ids)
            return self._index

    def _ann_index(self, index: _Index) -> AnnIndex | None:
        """The HNSW index of ``index`` if built; otherwise start building it in the background."""
        with self._lock:
            if self._ann is not None:
                if self._ann[0] is index:
                    return self._ann[1]
                self._ann = None  # another revision's: free it now
            if self._ann_building is None and self._ann_failed is not index:
                thread = threading.Thread(target=self._build_ann, args=(index,), name="facesense-ann-build", daemon=True)
                self._ann_building = (index, thread)
                thread.start()
        return None

    def _build_ann(self, index: _Index) -> None:
        built: AnnIndex | None = None
        try:
            built = AnnIndex(index.matrix)
        except GalleryError as exc:
            logger.warning("%s: searching %r exactly: %s", self._path, index.model_id, exc)
        with self._lock:
            self._ann_building = None
            if built is None:
                self._ann_failed = index
            elif self._index is index:  # not stale: the gallery did not change meanwhile
                self._ann = (index, built)

    def build_search_index(self, model_id: str) -> AnnIndex | None:
        """Build now the HNSW index :meth:`search` uses for ``model_id`` at this revision.

        :meth:`search` builds it in the background by itself and searches exactly until
        it is ready; this waits for it instead (for a build in progress, if there is one).

        Returns:
            The index, or ``None`` when the model has no more than ``ann_from_samples`` samples.

        Raises:
            GalleryError: faiss is missing or failed (search stays exact).
            ModelMismatchError: the gallery holds another model.
        """
        index = self._search_index(model_id)
        if len(index.labels) <= self._ann_from_samples:
            return None
        with self._lock:
            building = self._ann_building
        if building is not None and building[0] is index:
            building[1].join()
        with self._lock:
            if self._ann is not None and self._ann[0] is index:
                return self._ann[1]
        built = AnnIndex(index.matrix)
        with self._lock:
            if self._index is index:
                self._ann = (index, built)
        return built

    # --- writes --------------------------------------------------------------------

    def _insert(self, conn: sqlite3.Connection, person_id: int, s: NewSample) -> int:
        cur = conn.execute(
            "INSERT INTO samples (person_id, model_id, dim, embedding, source_path, source_sha256, "
            "x1, y1, x2, y2, thumbnail, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                person_id, s.model_id, int(s.embedding.shape[0]), _blob(s.embedding), s.source_path,
                s.source_sha256, *s.xyxy, s.thumbnail_jpeg, _now(),
            ),
        )
        return int(cur.lastrowid or 0)

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
                    raise EnrollmentError(f"no person named {name!r} in the gallery {self._path}")
                clean = validate_name(name)
                if clean != name:
                    raise EnrollmentError(f"person names must not start or end with spaces: {name!r}")
                pid = int(conn.execute("INSERT INTO people (name, created) VALUES (?, ?)", (name, _now())).lastrowid or 0)
            ids = []
            for s in samples:
                try:
                    ids.append(self._insert(conn, pid, s))
                except sqlite3.IntegrityError as exc:
                    raise GalleryError(
                        f"{name!r} already has a sample from this image (sha256 {s.source_sha256[:12]}...)"
                    ) from exc
        return tuple(ids)

    def rename_person(self, old: str, new: str) -> Person:
        """Rename ``old`` to ``new``.

        Raises:
            EnrollmentError: ``old`` is unknown or ``new`` is taken.
            ConfigError: ``new`` is not a valid name.
            GalleryError: the gallery is read-only.
        """
        self._require_writable(f"rename {old!r}")
        clean = validate_name(new)
        with self._transaction(f"rename {old!r}") as conn:
            pid = self._require_person(conn, old)
            other = self._person_id(conn, clean)
            if other is not None and other != pid:
                raise EnrollmentError(f"there is already a person named {clean!r}")
            conn.execute("UPDATE people SET name = ? WHERE id = ?", (clean, pid))
        return self.person(clean)

    def remove_person(self, name: str) -> int:
        """Remove ``name`` and their samples; returns the number of samples removed."""
        with self._transaction(f"remove {name!r}") as conn:
            pid = self._require_person(conn, name)
            n = conn.execute("DELETE FROM samples WHERE person_id = ?", (pid,)).rowcount
            conn.execute("DELETE FROM people WHERE id = ?", (pid,))
        return int(n)

    def remove_sample(self, sample_id: int) -> None:
        """Remove one sample, and its person if it was their last.

        Raises:
            EnrollmentError: no sample with this id.
        """
        with self._transaction(f"remove sample {sample_id}") as conn:
            row = conn.execute("SELECT person_id FROM samples WHERE id = ?", (int(sample_id),)).fetchone()
            if row is None:
                raise EnrollmentError(f"no sample with id {sample_id} in the gallery {self._path}")
            conn.execute("DELETE FROM samples WHERE id = ?", (int(sample_id),))
            conn.execute(
                "DELETE FROM people WHERE id = ? AND NOT EXISTS (SELECT 1 FROM samples WHERE person_id = ?)",
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

        Raises:
            ModelMismatchError: the replacements mix models or embedding lengths.
            EnrollmentError: a replacement names a sample id that does not exist.
        """
        self._require_writable("re-embed its samples")
        models = {(s.model_id, int(s.embedding.shape[0])) for s in replacements.values()}
        if len(models) > 1:
            raise ModelMismatchError(f"replacement samples mix models or lengths: {sorted(models)}")
        with self._transaction("re-embed its samples") as conn:
            existing = {int(r[0]) for r in conn.execute("SELECT id FROM samples")}
            unknown = set(replacements) - existing
            if unknown:
                raise EnrollmentError(f"no samples with ids {sorted(unknown)[:10]} in the gallery {self._path}")
            for sid, s in replacements.items():
                conn.execute(
                    "UPDATE samples SET model_id = ?, dim = ?, embedding = ?, x1 = ?, y1 = ?, x2 = ?, y2 = ?, "
                    "thumbnail = ? WHERE id = ?",
                    (s.model_id, int(s.embedding.shape[0]), _blob(s.embedding), *s.xyxy, s.thumbnail_jpeg, int(sid)),
                )
            gone = existing - set(replacements)
            conn.executemany("DELETE FROM samples WHERE id = ?", [(sid,) for sid in sorted(gone)])
            conn.execute("DELETE FROM people WHERE NOT EXISTS (SELECT 1 FROM samples WHERE person_id = people.id)")
            if models and self._has_negatives_table():
                model, dim = next(iter(models))
                for nid, e in (negatives or {}).items():
                    vector = negative_embedding(e, dim)
                    conn.execute(
                        "UPDATE negatives SET model_id = ?, dim = ?, embedding = ? WHERE id = ?",
                        (model, dim, _blob(vector), int(nid)),
                    )
                dropped = conn.execute("DELETE FROM negatives WHERE model_id != ?", (model,)).rowcount
                if dropped:
                    logger.warning(
                        "%s: dropped %d negative(s) of another model that were not re-embedded; "
                        "correct those faces again", self._path, dropped,
                    )
        return len(gone)

    # --- export / import -----------------------------------------------------------

    def export_file(self, path: str | os.PathLike[str]) -> int:
        """Write the whole gallery to a portable ``.npz`` (see :func:`~facesense.gallery.base.write_export`).

        Works on read-only galleries too.

        Returns:
            The number of samples written.
        """
        with self._db() as conn:
            conn.execute("BEGIN")  # one consistent snapshot for both queries
            try:
                people = tuple((r[0], r[1]) for r in conn.execute("SELECT name, created FROM people ORDER BY name"))
                rows = conn.execute(
                    "SELECT p.name, s.model_id, s.dim, s.embedding, s.source_path, s.source_sha256, "
                    "s.x1, s.y1, s.x2, s.y2, s.thumbnail, s.added FROM samples s "
                    "JOIN people p ON p.id = s.person_id ORDER BY s.id"
                ).fetchall()
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
        dims = {r[2] for r in rows}
        if len(dims) > 1:
            raise GalleryError(f"{self._path}: corrupt gallery (embeddings of several lengths {sorted(dims)})")
        dim = dims.pop() if dims else 0
        matrix = np.frombuffer(b"".join(r[3] for r in rows), dtype="<f4").reshape(len(rows), dim)
        samples = tuple(
            {
                "person": r[0], "model_id": r[1], "source_path": r[4], "source_sha256": r[5],
                "xyxy": [r[6], r[7], r[8], r[9]], "added": r[11],
            }
            for r in rows
        )
        write_export(path, ExportData(people=people, samples=samples, matrix=matrix, thumbnails=tuple(bytes(r[10]) for r in rows)))
        return len(rows)

    def import_file(self, path: str | os.PathLike[str]) -> ImportSummary:
        """Merge an export into this gallery in one transaction.

        People are matched by name (new ones are created with their original
        ``created`` time); samples the person already has (same model and sha256) are
        skipped.

        Raises:
            GalleryError: the file is not a valid export, or the gallery is read-only.
            ModelMismatchError: its embeddings come from another model than the gallery's.
        """
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
                        pid = int(
                            conn.execute(
                                "INSERT INTO people (name, created) VALUES (?, ?)", (row.person, row.created)
                            ).lastrowid or 0
                        )
                        added_people.append(row.person)
                    person_ids[row.person] = pid
                sample = row.sample
                cur = conn.execute(
                    "INSERT OR IGNORE INTO samples (person_id, model_id, dim, embedding, source_path, source_sha256, "
                    "x1, y1, x2, y2, thumbnail, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        pid, sample.model_id, int(sample.embedding.shape[0]), _blob(sample.embedding),
                        sample.source_path, sample.source_sha256, *sample.xyxy, sample.thumbnail_jpeg,
                        row.added or _now(),
                    ),
                )
                if cur.rowcount:
                    n_added += 1
                else:
                    n_skipped += 1
        return ImportSummary(people_added=tuple(added_people), samples_added=n_added, samples_skipped=n_skipped)


def _read_only_message(path: Path, reason: str, action: str) -> str:
    """The one wording of "this gallery is read-only" (CLI and web show it as is)."""
    return (
        f"gallery {path} is read-only: {reason}; cannot {action} "
        "(ask its owner for write access, or export it and import it into a gallery of your own)"
    )
