"""The SQLite gallery: one file, safe to keep for years.

Schema (format version 1)::

    meta     (key TEXT PRIMARY KEY, value TEXT)       application, format_version, created
    people   (id, name UNIQUE, created)
    samples  (id, person_id -> people ON DELETE CASCADE, model_id, dim,
              embedding BLOB (dim little-endian float32), source_path, source_sha256,
              x1, y1, x2, y2, thumbnail BLOB (JPEG), added,
              UNIQUE (person_id, model_id, source_sha256))

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
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

import numpy as np
import numpy.typing as npt

from facesense.errors import EnrollmentError, GalleryError, ModelMismatchError
from facesense.gallery.base import (
    ExportData,
    GalleryEmbeddings,
    ImportSummary,
    NewSample,
    Person,
    Sample,
    read_export,
    validate_name,
    write_export,
)

logger = logging.getLogger(__name__)

__all__ = ["APPLICATION", "APPLICATION_ID", "FORMAT_VERSION", "SQLiteGallery", "default_db_path"]

APPLICATION = "facesense-gallery"
APPLICATION_ID = 0x46534E47  # "FSNG"
FORMAT_VERSION = 1
DB_ENV = "FACESENSE_DB"
BUSY_TIMEOUT_S = 10.0

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


class SQLiteGallery:
    """A :class:`~facesense.gallery.base.GalleryStore` in one SQLite file.

    Args:
        path: the database file; ``None`` means :func:`default_db_path`.
        create: create the file (and its folder) when missing. When false, a missing
            file raises :class:`~facesense.errors.GalleryError` and nothing is created.

    Raises:
        GalleryError: the file is missing (and ``create`` is false), is not a facesense
            gallery, was written by a newer version, or cannot be opened.

    Use it as a context manager, or call :meth:`close`. One instance belongs to one
    thread.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, create: bool = True) -> None:
        self._path = Path(path).expanduser() if path is not None else default_db_path()
        p = self._path
        if p.is_dir():
            raise GalleryError(f"{p}: is a directory, not a gallery file")
        exists = p.exists()
        if not exists and not create:
            raise GalleryError(f"{p}: no gallery here (enroll someone first, or pass --db PATH)")
        if not exists:
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise GalleryError(f"{p}: cannot create the gallery folder ({exc.strerror or exc})") from exc
        mode = "rwc" if create else "rw"
        try:
            self._conn = sqlite3.connect(
                f"{p.resolve().as_uri()}?mode={mode}", uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_S
            )
        except sqlite3.Error as exc:
            raise GalleryError(f"{p}: cannot open gallery ({exc})") from exc
        try:
            self._open(create=create)
        except BaseException:
            self._conn.close()
            raise

    # --- opening -------------------------------------------------------------------

    def _open(self, *, create: bool) -> None:
        conn = self._conn
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"{self._path}: not a facesense gallery (not an SQLite database: {exc})") from exc
        if not tables and app_id == 0:
            if not create:
                raise GalleryError(f"{self._path}: not a facesense gallery (empty database)")
            self._initialise()
        else:
            self._check_meta(app_id, tables)
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                logger.warning("%s: journal mode is %s, not WAL", self._path, mode)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise GalleryError(f"{self._path}: cannot open gallery ({exc})") from exc

    def _check_meta(self, app_id: int, tables: set[str]) -> None:
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

    def _initialise(self) -> None:
        conn = self._conn
        try:
            conn.execute("PRAGMA journal_mode = WAL")
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
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("application", APPLICATION), ("format_version", str(FORMAT_VERSION)), ("created", _now())],
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

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteGallery({str(self._path)!r})"

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Translate sqlite3 errors into GalleryError."""
        try:
            yield
        except sqlite3.Error as exc:
            raise GalleryError(f"{self._path}: gallery database error ({exc})") from exc

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: everything inside commits together or not at all."""
        conn = self._conn
        with self._errors():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

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
        with self._errors():
            models = self._model_ids(self._conn)
        if len({m for m, _ in models}) > 1:
            raise GalleryError(f"{self._path}: corrupt gallery (embeddings of several models: {models})")
        return models[0][0] if models else None

    def has_source(self, name: str, source_sha256: str, model_id: str) -> bool:
        """Whether ``name`` already has a sample of ``model_id`` from this source."""
        with self._errors():
            row = self._conn.execute(
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
        with self._errors():
            rows = self._conn.execute(self._PEOPLE_SQL.format(where="")).fetchall()
        return [Person(id=r[0], name=r[1], created=r[2], n_samples=r[3]) for r in rows]

    def person(self, name: str) -> Person:
        """One person by name.

        Raises:
            EnrollmentError: no such person.
        """
        with self._errors():
            row = self._conn.execute(self._PEOPLE_SQL.format(where="WHERE p.name = ?"), (name,)).fetchone()
        if row is None:
            raise EnrollmentError(f"no person named {name!r} in the gallery {self._path}")
        return Person(id=row[0], name=row[1], created=row[2], n_samples=row[3])

    def samples(self, name: str | None = None) -> list[Sample]:
        """The samples of one person (everybody's when ``name`` is ``None``), oldest first."""
        sql = (
            "SELECT s.id, p.name, s.model_id, s.dim, s.source_path, s.source_sha256, "
            "s.x1, s.y1, s.x2, s.y2, s.thumbnail, s.added FROM samples s "
            "JOIN people p ON p.id = s.person_id {where} ORDER BY s.id"
        )
        with self._errors():
            if name is None:
                rows = self._conn.execute(sql.format(where="")).fetchall()
            else:
                self._require_person(self._conn, name)
                rows = self._conn.execute(sql.format(where="WHERE p.name = ?"), (name,)).fetchall()
        return [
            Sample(
                id=r[0], person=r[1], model_id=r[2], dim=r[3], source_path=r[4], source_sha256=r[5],
                xyxy=(r[6], r[7], r[8], r[9]), thumbnail_jpeg=bytes(r[10]), added=r[11],
            )
            for r in rows
        ]

    def embeddings(self, model_id: str) -> GalleryEmbeddings:
        """Every embedding made by ``model_id``, ordered by sample id.

        Returns:
            labels ``(N,)``, matrix ``(N, D)`` float32; ``(0, 0)`` when the gallery is empty.

        Raises:
            ModelMismatchError: the gallery holds another model's embeddings.
        """
        parts = list(self.iter_embeddings(model_id, batch_size=1_000_000))
        if not parts:
            return GalleryEmbeddings((), np.zeros((0, 0), np.float32), np.zeros((0,), np.int64), model_id)
        if len(parts) == 1:
            return parts[0]
        return GalleryEmbeddings(
            labels=tuple(label for p in parts for label in p.labels),
            matrix=np.concatenate([p.matrix for p in parts]),
            sample_ids=np.concatenate([p.sample_ids for p in parts]),
            model_id=model_id,
        )

    def iter_embeddings(self, model_id: str, *, batch_size: int = 10_000) -> Iterator[GalleryEmbeddings]:
        """Every embedding of ``model_id`` in batches of at most ``batch_size`` rows."""
        with self._errors():
            self._check_model(self._conn, model_id, None)
            cur = self._conn.execute(
                "SELECT s.id, p.name, s.dim, s.embedding FROM samples s JOIN people p ON p.id = s.person_id "
                "WHERE s.model_id = ? ORDER BY s.id",
                (model_id,),
            )
            while True:
                rows = cur.fetchmany(batch_size)
                if not rows:
                    return
                dims = {r[2] for r in rows}
                if len(dims) != 1:
                    raise GalleryError(f"{self._path}: corrupt gallery (embeddings of several lengths {sorted(dims)})")
                dim = dims.pop()
                blob = b"".join(r[3] for r in rows)
                if len(blob) != 4 * dim * len(rows):
                    raise GalleryError(f"{self._path}: corrupt gallery (embedding blobs of the wrong size)")
                matrix = np.frombuffer(blob, dtype="<f4").reshape(len(rows), dim).astype(np.float32)
                yield GalleryEmbeddings(
                    labels=tuple(r[1] for r in rows),
                    matrix=matrix,
                    sample_ids=np.array([r[0] for r in rows], dtype=np.int64),
                    model_id=model_id,
                )

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
            GalleryError: a duplicate source for this person, or a database error.
        """
        if not samples:
            raise EnrollmentError(f"no samples to add for {name!r}")
        models = {(s.model_id, int(s.embedding.shape[0])) for s in samples}
        if len(models) != 1:
            raise ModelMismatchError(f"samples for {name!r} mix models or lengths: {sorted(models)}")
        model_id, dim = models.pop()
        with self._transaction() as conn:
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
        """
        clean = validate_name(new)
        with self._transaction() as conn:
            pid = self._require_person(conn, old)
            other = self._person_id(conn, clean)
            if other is not None and other != pid:
                raise EnrollmentError(f"there is already a person named {clean!r}")
            conn.execute("UPDATE people SET name = ? WHERE id = ?", (clean, pid))
        return self.person(clean)

    def remove_person(self, name: str) -> int:
        """Remove ``name`` and their samples; returns the number of samples removed."""
        with self._transaction() as conn:
            pid = self._require_person(conn, name)
            n = conn.execute("DELETE FROM samples WHERE person_id = ?", (pid,)).rowcount
            conn.execute("DELETE FROM people WHERE id = ?", (pid,))
        return int(n)

    def remove_sample(self, sample_id: int) -> None:
        """Remove one sample, and its person if it was their last.

        Raises:
            EnrollmentError: no sample with this id.
        """
        with self._transaction() as conn:
            row = conn.execute("SELECT person_id FROM samples WHERE id = ?", (int(sample_id),)).fetchone()
            if row is None:
                raise EnrollmentError(f"no sample with id {sample_id} in the gallery {self._path}")
            conn.execute("DELETE FROM samples WHERE id = ?", (int(sample_id),))
            conn.execute(
                "DELETE FROM people WHERE id = ? AND NOT EXISTS (SELECT 1 FROM samples WHERE person_id = ?)",
                (row[0], row[0]),
            )

    def replace_samples(self, replacements: Mapping[int, NewSample]) -> int:
        """Atomically replace every sample's embedding, model id, box and thumbnail.

        Samples not in ``replacements`` are removed, then people without samples.

        Returns:
            The number of samples removed.

        Raises:
            ModelMismatchError: the replacements mix models or embedding lengths.
            EnrollmentError: a replacement names a sample id that does not exist.
        """
        models = {(s.model_id, int(s.embedding.shape[0])) for s in replacements.values()}
        if len(models) > 1:
            raise ModelMismatchError(f"replacement samples mix models or lengths: {sorted(models)}")
        with self._transaction() as conn:
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
        return len(gone)

    # --- export / import -----------------------------------------------------------

    def export_file(self, path: str | os.PathLike[str]) -> int:
        """Write the whole gallery to a portable ``.npz`` (see :func:`~facesense.gallery.base.write_export`).

        Returns:
            The number of samples written.
        """
        with self._errors():
            conn = self._conn
            conn.execute("BEGIN")  # one consistent snapshot for both queries
            try:
                people = tuple((r[0], r[1]) for r in conn.execute("SELECT name, created FROM people ORDER BY name"))
                rows = conn.execute(
                    "SELECT p.name, s.model_id, s.dim, s.embedding, s.source_path, s.source_sha256, "
                    "s.x1, s.y1, s.x2, s.y2, s.thumbnail, s.added FROM samples s "
                    "JOIN people p ON p.id = s.person_id ORDER BY s.id"
                ).fetchall()
            finally:
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
            GalleryError: the file is not a valid export.
            ModelMismatchError: its embeddings come from another model than the gallery's.
        """
        data = read_export(path)
        models = {(str(s["model_id"]), int(data.matrix.shape[1])) for s in data.samples}
        if len(models) > 1:
            raise ModelMismatchError(f"{path}: the export mixes models {sorted(models)}")
        for name, _ in data.people:
            validate_name(name)
        created_at = dict(data.people)
        added_people: list[str] = []
        n_added = n_skipped = 0
        with self._transaction() as conn:
            if models:
                model_id, dim = next(iter(models))
                self._check_model(conn, model_id, dim)
            person_ids: dict[str, int] = {}
            for i, s in enumerate(data.samples):
                name = str(s["person"])
                pid = person_ids.get(name)
                if pid is None:
                    pid = self._person_id(conn, name)
                    if pid is None:
                        pid = int(
                            conn.execute(
                                "INSERT INTO people (name, created) VALUES (?, ?)", (name, created_at[name])
                            ).lastrowid or 0
                        )
                        added_people.append(name)
                    person_ids[name] = pid
                xyxy = s.get("xyxy") or [0.0, 0.0, 0.0, 0.0]
                try:
                    sample = NewSample(
                        embedding=data.matrix[i], model_id=str(s["model_id"]), source_sha256=str(s["source_sha256"]),
                        source_path=None if s.get("source_path") is None else str(s["source_path"]),
                        xyxy=tuple(float(v) for v in xyxy),  # type: ignore[arg-type]
                        thumbnail_jpeg=data.thumbnails[i],
                    )
                except (TypeError, ValueError) as exc:
                    raise GalleryError(f"{path}: corrupt sample {i} in the export ({exc})") from exc
                cur = conn.execute(
                    "INSERT OR IGNORE INTO samples (person_id, model_id, dim, embedding, source_path, source_sha256, "
                    "x1, y1, x2, y2, thumbnail, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        pid, sample.model_id, int(sample.embedding.shape[0]), _blob(sample.embedding),
                        sample.source_path, sample.source_sha256, *sample.xyxy, sample.thumbnail_jpeg,
                        str(s.get("added") or _now()),
                    ),
                )
                if cur.rowcount:
                    n_added += 1
                else:
                    n_skipped += 1
        return ImportSummary(people_added=tuple(added_people), samples_added=n_added, samples_skipped=n_skipped)
