"""Versioned schemas in PostgreSQL: one stamp table per set of tables, migrations in order.

The gallery (:mod:`facesense.gallery.postgres`), the events log
(:mod:`facesense.gallery.postgres_events`) and the fleet's lease tables
(:mod:`facesense.fleet.leases`) each keep a ``<name>_meta`` table (``application``,
``format_version``, ``created``, ...) and a list of numbered migrations. A
:class:`PgSchema` reads the stamp (refusing another application's tables, a corrupt
stamp or a newer format), and applies the missing migrations inside the caller's
transaction, under an advisory lock so that two processes opening one database at
once migrate it once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from facesense.errors import GalleryError

logger = logging.getLogger(__name__)

__all__ = ["PgSchema"]


@dataclass(frozen=True)
class PgSchema:
    """One versioned set of tables.

    Attributes:
        what: its name in messages ("gallery", "events log", "fleet lease table").
        application: the stamp's ``application`` value (``facesense-gallery`` ...).
        meta_table: the stamp table (``key TEXT PRIMARY KEY, value TEXT``), created by
            migration 1.
        lock_key: the advisory lock that serialises migrations.
        migrations: ``(number, statements)`` in order, from 1.
        initial: more stamp rows written by migration 1 (e.g. ``revision = 0``).
    """

    what: str
    application: str
    meta_table: str
    lock_key: int
    migrations: Sequence[tuple[int, Sequence[str]]]
    initial: Mapping[str, str] = field(default_factory=dict)

    @property
    def latest(self) -> int:
        """The format version this facesense writes."""
        return self.migrations[-1][0]

    def version(self, conn: Any, display: str) -> int:
        """The database's format version of these tables (0: none yet).

        Raises:
            GalleryError: another application's tables, a corrupt stamp, or a newer format.
        """
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (self.meta_table,)).fetchone()
        if row is None or not row[0]:
            return 0
        meta = dict(conn.execute(f"SELECT key, value FROM {self.meta_table}").fetchall())
        if meta.get("application") != self.application:
            raise GalleryError(
                f"{display}: not a facesense {self.what} ({self.meta_table}.application is {meta.get('application')!r})"
            )
        try:
            version = int(meta.get("format_version", ""))
        except ValueError:
            raise GalleryError(f"{display}: corrupt {self.what} (bad format_version {meta.get('format_version')!r})") from None
        if version > self.latest:
            raise GalleryError(
                f"{display}: {self.what} format version {version} was written by a newer facesense "
                f"(this one reads up to {self.latest}); upgrade facesense"
            )
        return version

    def lock(self, conn: Any) -> None:
        """Take the migration lock until the end of the current transaction."""
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.lock_key,))

    def apply(self, conn: Any, display: str, *, after: int) -> None:
        """Run the migrations numbered above ``after`` and stamp each (in the caller's transaction)."""
        from facesense.gallery.events import iso_time

        for number, statements in self.migrations:
            if number <= after:
                continue
            for stmt in statements:
                conn.execute(stmt)
            if number == 1:
                rows = {"application": self.application, "format_version": "1", "created": iso_time(time.time()), **self.initial}
                for key, value in rows.items():
                    conn.execute(f"INSERT INTO {self.meta_table} (key, value) VALUES (%s, %s)", (key, value))
            else:
                conn.execute(f"UPDATE {self.meta_table} SET value = %s WHERE key = 'format_version'", (str(number),))
            logger.info("%s: %s migrated to format version %d", display, self.what, number)

    def migrate(self, conn: Any, display: str) -> int:
        """Bring the tables to :attr:`latest` in one transaction, under the lock; the version found.

        Raises:
            GalleryError: as :meth:`version`.
        """
        with conn.transaction():
            self.lock(conn)
            version = self.version(conn, display)
            self.apply(conn, display, after=version)
        return version
