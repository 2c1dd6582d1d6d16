"""Corrections in the stored schemas: the events log's ``correction`` mark, and the
format-version migrations that add it and the gallery's ``negatives`` table.

Every test runs on the SQLite files and on a real PostgreSQL (``tests/gallery/conftest.py``).
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from facesense.errors import GalleryError
from facesense.gallery import NewSample, open_gallery
from facesense.gallery.events import EventLog, EventRecord
from facesense.gallery.sqlite_events import SQLiteEventStore
from facesense.types import Event, EventType

from ..pg import PgCluster

MODEL = "fake-model/v1"
OpenLog = Callable[[], EventLog]


def _sample(seed: int) -> NewSample:
    e = np.random.default_rng(seed).normal(size=8).astype(np.float32)
    return NewSample(embedding=e / np.linalg.norm(e), model_id=MODEL, source_sha256=hashlib.sha256(bytes([seed])).hexdigest())


@pytest.fixture(params=["sqlite", "postgresql"])
def open_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenLog]:
    opened: list[EventLog] = []
    if request.param == "sqlite":

        def factory() -> EventLog:
            log: EventLog = SQLiteEventStore(tmp_path / "gallery.events.db")
            opened.append(log)
            return log
    else:
        url = request.getfixturevalue("pg_cluster").new_database()

        def factory() -> EventLog:
            from facesense.gallery.postgres_events import PostgresEventStore

            log: EventLog = PostgresEventStore(url)
            opened.append(log)
            return log

    yield factory
    for log in opened:
        log.close()


def _recognised(log: EventLog, *, embedded: bool = True) -> int:
    event = Event(type=EventType.RECOGNIZED, time=1.0, frame=2, source="cam", track_id=4, name="alice", confidence=0.7,
                  xyxy=(1.0, 2.0, 30.0, 40.0))  # fmt: skip
    emb = np.ones(8, np.float32) / np.sqrt(8)
    return log.add(EventRecord(event=event, seen_at=time.time(), crop_jpeg=b"\xff\xd8jpeg",
                               embedding=emb if embedded else None, model_id=MODEL if embedded else None))  # fmt: skip


# --- the events log -----------------------------------------------------------------------


def test_events_record_their_correction(open_log: OpenLog) -> None:
    log = open_log()
    event_id = _recognised(log)
    bare = _recognised(log, embedded=False)
    first = log.get(event_id)
    assert first is not None and first.correction is None and first.can_correct
    assert first.to_dict()["can_correct"] is True and first.to_dict()["correction"] is None
    no_face = log.get(bare)
    assert no_face is not None and not no_face.can_correct  # nothing to correct it with
    log.mark_corrected(event_id, "not alice")
    log.close()
    again = open_log().get(event_id)  # kept
    assert again is not None and again.correction == "not alice" and not again.can_correct
    assert again.to_dict()["correction"] == "not alice"


def test_an_older_sqlite_events_file_gets_the_column(tmp_path: Path) -> None:
    path = tmp_path / "gallery.events.db"
    with SQLiteEventStore(path) as log:
        event_id = _recognised(log)
    with sqlite3.connect(path) as con:  # back to format version 1
        con.execute("ALTER TABLE events DROP COLUMN correction")
        con.execute("UPDATE meta SET value = '1' WHERE key = 'format_version'")
        con.execute("PRAGMA user_version = 1")
    con.close()
    with SQLiteEventStore(path) as log:
        stored = log.get(event_id)
        assert stored is not None and stored.correction is None and stored.can_correct
        log.mark_corrected(event_id, "is bob")
        assert (log.get(event_id) or stored).correction == "is bob"
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone() == ("2",)
    con.close()


def test_an_older_postgresql_events_log_gets_the_column(pg_cluster: PgCluster) -> None:
    from facesense.gallery.postgres_events import PostgresEventStore

    url = pg_cluster.new_database()
    with PostgresEventStore(url) as log:
        event_id = _recognised(log)
    with psycopg.connect(url) as conn:
        conn.execute("ALTER TABLE facesense_events DROP COLUMN correction")
        conn.execute("UPDATE facesense_events_meta SET value = '1' WHERE key = 'format_version'")
    with PostgresEventStore(url) as log:
        log.mark_corrected(event_id, "not alice")
        stored = log.get(event_id)
        assert stored is not None and stored.correction == "not alice"


# --- the gallery's negatives table ------------------------------------------------------------


def _sqlite_v1(path: Path) -> None:
    """A gallery as format version 1 wrote it: alice with one sample, no negatives table."""
    with open_gallery(path) as g:
        g.add_samples("alice", [_sample(1)])
    with sqlite3.connect(path) as con:
        con.execute("DROP TABLE negatives")
        con.execute("UPDATE meta SET value = '1' WHERE key = 'format_version'")
        con.execute("PRAGMA user_version = 1")
    con.close()


def test_an_older_sqlite_gallery_is_migrated_when_opened_for_writing(tmp_path: Path) -> None:
    path = tmp_path / "gallery.db"
    _sqlite_v1(path)
    with open_gallery(path) as g:
        assert [p.name for p in g.people()] == ["alice"] and len(g.negatives(MODEL)) == 0
        g.add_negative("alice", _sample(2), source="event 1")
        assert g.negatives(MODEL).labels == ("alice",)
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone() == ("2",)
        assert con.execute("PRAGMA user_version").fetchone() == (2,)
    con.close()


def test_an_older_sqlite_gallery_opened_read_only_is_read_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "gallery.db"
    _sqlite_v1(path)
    with open_gallery(path, read_only=True) as g:
        assert [p.name for p in g.people()] == ["alice"]
        assert len(g.negatives(MODEL)) == 0 and g.negative_records() == [] and g.negative_records("alice") == []
        with pytest.raises(GalleryError):
            g.add_negative("alice", _sample(2), source="event 1")
    with sqlite3.connect(path) as con:  # untouched
        assert con.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone() == ("1",)
    con.close()


def test_an_older_postgresql_gallery_is_migrated(pg_cluster: PgCluster) -> None:
    url = pg_cluster.new_database()
    with open_gallery(url) as g:
        g.add_samples("alice", [_sample(1)])
    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE facesense_negatives")
        conn.execute("UPDATE facesense_meta SET value = '1' WHERE key = 'format_version'")
    with pytest.raises(GalleryError, match="needs upgrading"):
        open_gallery(url, create=False)
    with open_gallery(url) as g:
        g.add_negative("alice", _sample(2), source="event 1")
        assert g.negatives(MODEL).labels == ("alice",)
    with psycopg.connect(url) as conn:
        row: Any = conn.execute("SELECT value FROM facesense_meta WHERE key = 'format_version'").fetchone()
    assert row == ("2",)
