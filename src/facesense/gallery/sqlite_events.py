"""The events log in an SQLite file of its own (:class:`SQLiteEventStore`).

It implements :class:`facesense.gallery.events.EventLog` (the records and the
query types are there).

The file sits beside the gallery (``<gallery stem>.events.db`` by default) and is
only ever written by ``facesense serve`` (and ``facesense correct``). Schema (format version 2)::

    meta    (key TEXT PRIMARY KEY, value TEXT)     application, format_version, created
    events  (id, time, source, type, track_id, name, confidence, x1, y1, x2, y2,
             frame, media_time, status, message, crop BLOB (JPEG), embedding BLOB
             (little-endian float32), model_id, sample_id, correction)

``correction`` ("not X" / "is Y") came with version 2; an older file gets the column
when it is opened.

``time`` is wall-clock epoch seconds (when the server saw it); ``media_time`` the
frame's own timestamp. ``type`` is a track event (``appeared``, ``recognized``,
``left``), a source ``status``, or ``unknown``: the best face of a track that stayed
unknown, stored with its embedding so that naming it enrolls that face
(``sample_id`` is then the gallery sample it became).

The store is pruned on open and every :data:`PRUNE_EVERY` inserts: events older than
``keep_days`` go, and only the newest ``keep_events`` stay. One instance may be
shared between threads (a lock serialises the connection).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from facesense.errors import ConfigError, GalleryError
from facesense.gallery.events import EventPage, EventQuery, EventRecord, StoredEvent, query_where
from facesense.gallery.sqlite_file import SideFile
from facesense.types import EventType

logger = logging.getLogger(__name__)

__all__ = ["SQLiteEventStore"]

APPLICATION = "facesense-events"
APPLICATION_ID = 0x46534556  # "FSEV"
FORMAT_VERSION = 2
PRUNE_EVERY = 200

_SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    time       REAL NOT NULL,
    source     TEXT NOT NULL,
    type       TEXT NOT NULL,
    track_id   INTEGER,
    name       TEXT,
    confidence REAL,
    x1 REAL, y1 REAL, x2 REAL, y2 REAL,
    frame      INTEGER,
    media_time REAL,
    status     TEXT,
    message    TEXT,
    crop       BLOB,
    embedding  BLOB,
    model_id   TEXT,
    sample_id  INTEGER,
    correction TEXT
);
CREATE INDEX events_time ON events(time);
CREATE INDEX events_name ON events(name, time);
CREATE INDEX events_type ON events(type, time);
"""


_COLUMNS = (
    "id, time, source, type, track_id, name, confidence, x1, y1, x2, y2, frame, media_time, "
    "status, message, crop IS NOT NULL AND length(crop) > 0, embedding IS NOT NULL, model_id, sample_id, correction"
)


def _row(r: tuple[Any, ...]) -> StoredEvent:
    box = None if r[7] is None else (float(r[7]), float(r[8]), float(r[9]), float(r[10]))
    return StoredEvent(
        id=int(r[0]), time=float(r[1]), source=str(r[2]), type=EventType(r[3]), track_id=r[4], name=r[5],
        confidence=r[6], xyxy=box, frame=r[11], media_time=r[12], status=r[13], message=r[14],
        has_crop=bool(r[15]), has_embedding=bool(r[16]), model_id=r[17], sample_id=r[18], correction=r[19],
    )


def _where(query: EventQuery) -> tuple[str, list[Any]]:
    """The SQL ``WHERE`` clause and its arguments for ``query``."""
    return query_where(query)


class SQLiteEventStore(SideFile):
    """An :class:`EventLog` in one SQLite file: events and unknown-face crops.

    Args:
        path: the file (created with its folder when missing).
        keep_events: keep at most this many events (the newest).
        keep_days: drop events older than this many days.

    Raises:
        GalleryError: the file cannot be created or opened, or is not an events store.
    """

    kind = "events"
    application = APPLICATION
    application_id = APPLICATION_ID
    format_version = FORMAT_VERSION
    schema = _SCHEMA
    main_table = "events"

    def __init__(self, path: str | os.PathLike[str], *, keep_events: int = 10_000, keep_days: float = 30.0) -> None:
        if keep_events < 1 or not keep_days > 0:
            raise ConfigError("keep_events must be >= 1 and keep_days > 0")
        self.keep_events = int(keep_events)
        self.keep_days = float(keep_days)
        self._inserts = 0
        self._connect(path)
        self.prune()

    def _migrate(self, version: int) -> None:
        if version < 2:
            self._migrate_to_2()

    def _migrate_to_2(self) -> None:
        """Version 2: the ``correction`` column (one transaction; a no-op if another process did it)."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            columns = {r[1] for r in conn.execute("PRAGMA table_info(events)")}
            if "correction" not in columns:
                conn.execute("ALTER TABLE events ADD COLUMN correction TEXT")
            conn.execute("UPDATE meta SET value = ? WHERE key = 'format_version'", (str(FORMAT_VERSION),))
            conn.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        logger.info("%s: events file migrated to format version %d", self.path, FORMAT_VERSION)

    # --- writes --------------------------------------------------------------------

    def add(self, record: EventRecord) -> int:
        """Store one event; returns its id.

        Raises:
            GalleryError: the store is closed or the write failed.
        """
        event = record.event
        box = event.xyxy if event.xyxy is not None else (None, None, None, None)
        media_time = None if event.type is EventType.STATUS else event.time
        emb = None
        if record.embedding is not None:
            emb = np.ascontiguousarray(np.asarray(record.embedding, np.float32).reshape(-1), dtype="<f4").tobytes()
        with self._lock, self._errors():
            if self._closed:
                raise GalleryError(f"{self.path}: the events store is closed")
            cur = self._conn.execute(
                "INSERT INTO events (time, source, type, track_id, name, confidence, x1, y1, x2, y2, frame,"
                " media_time, status, message, crop, embedding, model_id) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.seen_at, event.source or "", event.type.value, event.track_id, event.name,
                    event.confidence, *box, event.frame, media_time, event.status, event.message,
                    record.crop_jpeg or None, emb, record.model_id,
                ),
            )
            self._inserts += 1
            due = self._inserts % PRUNE_EVERY == 0
            event_id = int(cur.lastrowid or 0)
        if due:
            self.prune()
        return event_id

    def prune(self, *, now: float | None = None) -> int:
        """Drop events past the age and count limits; returns how many went."""
        cutoff = (time.time() if now is None else now) - self.keep_days * 86400.0
        with self._lock, self._errors():
            n = self._conn.execute("DELETE FROM events WHERE time < ?", (cutoff,)).rowcount
            n += self._conn.execute(
                "DELETE FROM events WHERE id <= (SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (self.keep_events,),
            ).rowcount
        if n:
            logger.debug("pruned %d events from %s", n, self.path)
        return int(n)

    def mark_named(self, event_id: int, name: str, sample_id: int) -> None:
        """Record that an unknown face became ``sample_id`` of ``name``."""
        with self._lock, self._errors():
            self._conn.execute("UPDATE events SET name = ?, sample_id = ? WHERE id = ?", (name, int(sample_id), int(event_id)))

    def rename(self, old: str, new: str) -> None:
        """Follow a person's rename in the stored events."""
        with self._lock, self._errors():
            self._conn.execute("UPDATE events SET name = ? WHERE name = ?", (new, old))

    def mark_corrected(self, event_id: int, correction: str) -> None:
        """Record what somebody said about an event's face (``"not X"`` or ``"is Y"``)."""
        with self._lock, self._errors():
            self._conn.execute("UPDATE events SET correction = ? WHERE id = ?", (correction, int(event_id)))

    # --- reads ---------------------------------------------------------------------

    def get(self, event_id: int) -> StoredEvent | None:
        """One event, or ``None``."""
        with self._lock, self._errors():
            row = self._conn.execute(f"SELECT {_COLUMNS} FROM events WHERE id = ?", (int(event_id),)).fetchone()
        return None if row is None else _row(row)

    def crop(self, event_id: int) -> bytes | None:
        """The JPEG crop of an event, or ``None``."""
        with self._lock, self._errors():
            row = self._conn.execute("SELECT crop FROM events WHERE id = ?", (int(event_id),)).fetchone()
        return bytes(row[0]) if row is not None and row[0] else None

    def embedding(self, event_id: int) -> npt.NDArray[np.float32] | None:
        """The stored embedding of an event, or ``None``."""
        with self._lock, self._errors():
            row = self._conn.execute("SELECT embedding FROM events WHERE id = ?", (int(event_id),)).fetchone()
        if row is None or row[0] is None:
            return None
        return np.frombuffer(bytes(row[0]), dtype="<f4").astype(np.float32)

    def query(self, query: EventQuery | None = None, *, page: int = 1, per_page: int = 50) -> EventPage:
        """Events matching ``query``, newest first, one page of them.

        Raises:
            ConfigError: ``page`` < 1 or ``per_page`` outside 1-500.
        """
        if page < 1:
            raise ConfigError(f"page must be >= 1, got {page}")
        if not 1 <= per_page <= 500:
            raise ConfigError(f"per_page must be in 1-500, got {per_page}")
        where, args = _where(query or EventQuery())
        with self._lock, self._errors():
            total = int(self._conn.execute(f"SELECT count(*) FROM events{where}", args).fetchone()[0])
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM events{where} ORDER BY time DESC, id DESC LIMIT ? OFFSET ?",
                [*args, per_page, (page - 1) * per_page],
            ).fetchall()
        return EventPage(tuple(_row(r) for r in rows), page, per_page, total)

    def count(self) -> int:
        """How many events are stored."""
        with self._lock, self._errors():
            return int(self._conn.execute("SELECT count(*) FROM events").fetchone()[0])
