"""The connection side of facesense's SQLite side files (events log, unknowns): :class:`SideFile`.

A side file sits beside the gallery file: one connection in autocommit mode shared by
threads under a lock, its schema created on first use or checked (application id, the
``meta`` table's application and format version, a newer format refused, an older one
migrated by the subclass), and SQLite's errors turned into one-line
:class:`~facesense.errors.GalleryError` messages.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from facesense.errors import GalleryError

__all__ = ["BUSY_TIMEOUT_S", "SideFile", "read_header", "use_wal"]

BUSY_TIMEOUT_S = 10.0


def read_header(conn: sqlite3.Connection) -> tuple[int, set[str]]:
    """A file's application id and tables, read in one transaction (one snapshot).

    Read apart, another process creating the file between the two reads showed
    application id 0 with every table there: "some other database".

    Raises:
        sqlite3.DatabaseError: not an SQLite database.
    """
    conn.execute("BEGIN")
    try:
        app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.execute("COMMIT")
    return app_id, tables


def use_wal(conn: sqlite3.Connection) -> str:
    """Put the file in WAL mode, waiting up to :data:`BUSY_TIMEOUT_S` for other connections; the mode it is in.

    Switching a file's journal to WAL needs the file to itself, and SQLite answers
    "database is locked" at once, without calling the busy handler, while another
    connection is opening it (several processes opening a new file together); once in
    WAL the switch is a no-op.

    Raises:
        sqlite3.Error: another error, or still locked after :data:`BUSY_TIMEOUT_S`.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


class SideFile:
    """A side file's connection, errors and lifecycle.

    Subclasses set ``kind`` (``"events"``, ``"unknowns"``: the messages' word), the file's
    ``application`` name and ``application_id``, its ``format_version``, ``schema`` (SQL
    statements, ``meta`` among the tables), ``main_table`` (which a file of this kind must
    have) and any ``initial_meta`` rows; they override :meth:`_migrate` when an older
    format needs work, and call :meth:`_connect` from ``__init__``.
    """

    kind = "side"
    application = ""
    application_id = 0
    format_version = 1
    schema = ""
    main_table = ""
    initial_meta: tuple[tuple[str, str], ...] = ()

    def _open(self) -> None:
        """Create the schema in an empty file, or check the file is this kind's (then migrate it)."""
        conn = self._conn
        try:
            app_id, tables = read_header(conn)
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"{self.path}: not a facesense {self.kind} file ({exc})") from exc
        created = False
        if not tables and app_id == 0:
            with self._errors():
                created = self._create()
                if not created:  # another connection created it first
                    app_id, tables = read_header(conn)
        with self._errors():
            if not created:
                meta: dict[str, str] = {}
                if app_id == self.application_id and "meta" in tables:
                    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                if meta.get("application") != self.application or self.main_table not in tables:
                    raise GalleryError(f"{self.path}: not a facesense {self.kind} file (some other database)")
                version = int(meta.get("format_version", "0") or 0)
                if version > self.format_version:
                    raise GalleryError(f"{self.path}: written by a newer facesense; upgrade facesense")
                if version < self.format_version:
                    self._migrate(version)
            use_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")

    def _create(self) -> bool:
        """The schema and the ``meta`` rows, in one transaction; ``False`` when the file got tables meanwhile."""
        from facesense.gallery.events import iso_time

        conn = self._conn
        use_wal(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]:
                conn.execute("ROLLBACK")
                return False
            for statement in self.schema.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [
                    ("application", self.application),
                    ("format_version", str(self.format_version)),
                    ("created", iso_time(time.time())),
                    *self.initial_meta,
                ],
            )
            conn.execute(f"PRAGMA application_id = {int(self.application_id)}")
            conn.execute(f"PRAGMA user_version = {int(self.format_version)}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return True

    def _migrate(self, version: int) -> None:
        """Bring a file of an older format ``version`` up to ``format_version`` (nothing by default)."""

    def _connect(self, path: str | os.PathLike[str]) -> None:
        """Open (creating it and its folder when missing) and check the file.

        Raises:
            GalleryError: a directory, a file that cannot be opened, or ``_open`` refused it.
        """
        self.path = Path(path)
        self._lock = threading.Lock()
        self._closed = False
        if self.path.is_dir():
            raise GalleryError(f"{self.path}: is a directory, not an {self.kind} file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                str(self.path), isolation_level=None, timeout=BUSY_TIMEOUT_S, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise GalleryError(f"{self.path}: cannot open the {self.kind} file ({exc})") from exc
        try:
            self._open()
        except BaseException:
            self._conn.close()
            raise

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise GalleryError(f"{self.path}: {self.kind} database error ({exc})") from exc

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
