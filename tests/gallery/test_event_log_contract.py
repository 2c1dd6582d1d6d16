"""The :class:`~facesense.gallery.events.EventLog` contract, run over every store:
the SQLite file and PostgreSQL (a real server, see conftest). The cases are those
``tests/web/test_api.py`` checks through the API for the SQLite store, asked of the
stores directly."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg
import pytest

from facesense.errors import ConfigError, GalleryError
from facesense.gallery import parse_location
from facesense.gallery.events import EventLog, EventQuery, EventRecord
from facesense.gallery.location import open_event_log
from facesense.gallery.sqlite_events import SQLiteEventStore
from facesense.types import Event, EventType

if TYPE_CHECKING:
    from conftest import PgCluster

OpenLog = Callable[..., EventLog]
CROP = b"\xff\xd8\xff\xe0 a tiny jpeg \xff\xd9"
MODEL = "fake-model/v1"


@pytest.fixture(params=["sqlite", "postgresql"])
def open_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenLog]:
    """Opens (and reopens) one events log of the store under test."""
    opened: list[EventLog] = []
    if request.param == "sqlite":
        target: Any = tmp_path / "gallery.events.db"

        def factory(**kwargs: Any) -> EventLog:
            log = SQLiteEventStore(target, **kwargs)
            opened.append(log)
            return log
    else:
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        url = cluster.new_database()

        def factory(**kwargs: Any) -> EventLog:
            from facesense.gallery.postgres_events import PostgresEventStore

            log = PostgresEventStore(url, **kwargs)
            opened.append(log)
            return log

    yield factory
    for log in opened:
        log.close()


def _fill(log: EventLog, now: float) -> tuple[int, np.ndarray]:
    """23 appeared (every other one "ann"), one unknown face with its embedding, one status event."""
    for i in range(23):
        appeared = Event(type=EventType.APPEARED, time=i / 25, frame=i, source="cam", track_id=i,
                         name="ann" if i % 2 else None, confidence=0.9, xyxy=(1.0, 2.0, 30.0, 40.0))
        log.add(EventRecord(event=appeared, seen_at=now - 3600 + i, crop_jpeg=CROP))
    emb = np.random.default_rng(0).standard_normal(512).astype(np.float32)
    unknown = Event(type=EventType.UNKNOWN, time=0.2, frame=5, source="cam2", track_id=99, xyxy=(3.5, 4.25, 60.0, 80.0))
    unknown_id = log.add(EventRecord(event=unknown, seen_at=now, crop_jpeg=CROP, embedding=emb, model_id=MODEL))
    status = Event(type=EventType.STATUS, time=now - 7200, frame=0, source="cam", status="reconnecting",
                   message="cam: reconnect attempt 1")
    log.add(EventRecord(event=status, seen_at=now - 7200))
    return unknown_id, emb


def test_it_is_an_event_log(open_log: OpenLog) -> None:
    log = open_log()
    assert isinstance(log, EventLog)
    assert log.count() == 0 and log.query().total == 0 and log.query().pages == 1
    assert not log.closed


def test_paging_filters_crops_embeddings_and_naming(open_log: OpenLog) -> None:
    log = open_log()
    now = time.time()
    unknown_id, emb = _fill(log, now)
    assert log.count() == 25

    first = log.query(per_page=10)
    assert (first.total, first.pages, first.page, len(first.events)) == (25, 3, 1, 10)
    top = first.events[0]
    assert top.id == unknown_id and top.can_name and top.has_crop and top.has_embedding
    assert (top.source, top.track_id, top.xyxy, top.model_id, top.media_time) == ("cam2", 99, (3.5, 4.25, 60.0, 80.0), MODEL, 0.2)
    third = log.query(page=3, per_page=10)
    assert len(third.events) == 5 and third.events[-1].type is EventType.STATUS
    status = third.events[-1]
    assert (status.status, status.message, status.media_time, status.has_crop) == (
        "reconnecting", "cam: reconnect attempt 1", None, False)
    ids = [e.id for p in (1, 2, 3) for e in log.query(page=p, per_page=10).events]
    assert len(ids) == len(set(ids)) == 25
    times = [e.time for p in (1, 2, 3) for e in log.query(page=p, per_page=10).events]
    assert times == sorted(times, reverse=True)
    assert log.query(page=4, per_page=10).events == ()

    assert log.query(EventQuery(name="ann")).total == 11
    assert log.query(EventQuery(type=EventType.UNKNOWN)).total == 1
    assert log.query(EventQuery(name="unknown")).total == 13  # 12 appeared unnamed + the unknown
    assert log.query(EventQuery(source="cam2")).total == 1
    assert log.query(EventQuery(since=now - 3600 + 20)).total == 4
    assert log.query(EventQuery(until=now - 5400)).total == 1
    assert log.query(EventQuery(name="ann", since=now - 3600 + 20)).total == 1

    assert log.crop(unknown_id) == CROP and log.crop(424242) is None
    assert log.crop(status.id) is None
    stored = log.embedding(unknown_id)
    assert stored is not None and stored.dtype == np.float32 and stored.tobytes() == emb.tobytes()
    assert log.embedding(status.id) is None and log.embedding(424242) is None
    assert log.get(424242) is None
    got = log.get(unknown_id)
    assert got == top

    log.mark_named(unknown_id, "kit", 17)
    named = log.get(unknown_id)
    assert named is not None and (named.name, named.sample_id, named.can_name) == ("kit", 17, False)
    assert log.query(EventQuery(name="kit")).total == 1
    log.rename("ann", "anne")
    assert log.query(EventQuery(name="ann")).total == 0 and log.query(EventQuery(name="anne")).total == 11
    assert log.count() == 25


def test_bad_pages_and_settings_are_config_errors(open_log: OpenLog) -> None:
    log = open_log()
    with pytest.raises(ConfigError, match="page must be"):
        log.query(page=0)
    with pytest.raises(ConfigError, match="per_page"):
        log.query(per_page=501)
    with pytest.raises(ConfigError, match="keep_events"):
        open_log(keep_events=0)
    with pytest.raises(ConfigError, match="keep_events"):
        open_log(keep_days=0)


def test_prunes_by_count_and_age_and_keeps_on_reopen(open_log: OpenLog) -> None:
    now = time.time()
    log = open_log(keep_events=10, keep_days=1)
    for i in range(25):
        left = Event(type=EventType.LEFT, time=float(i), frame=i, source="s", track_id=i)
        log.add(EventRecord(event=left, seen_at=now - 3 * 86400 if i < 5 else now - i))
    assert log.count() == 25
    assert log.prune(now=now) == 15  # type: ignore[attr-defined]  # both stores have prune; the protocol does not
    kept = log.query(EventQuery(), per_page=100).events
    assert sorted(e.track_id for e in kept if e.track_id is not None) == list(range(15, 25))
    log.close()
    assert log.closed
    log.close()  # idempotent
    with pytest.raises(GalleryError):
        log.add(EventRecord(event=Event(type=EventType.LEFT, time=0.0, frame=0), seen_at=now))
    reopened = open_log(keep_events=10, keep_days=1)
    assert reopened.count() == 10
    assert reopened.embedding(1) is None and reopened.crop(12345) is None


def test_open_old_events_are_pruned_on_open(open_log: OpenLog) -> None:
    now = time.time()
    log = open_log()
    for i in range(3):
        log.add(EventRecord(event=Event(type=EventType.LEFT, time=0.0, frame=i), seen_at=now - (40 if i else 0) * 86400))
    log.close()
    assert open_log(keep_days=30).count() == 1


# --- PostgreSQL only --------------------------------------------------------------------


def test_open_event_log_of_a_postgresql_gallery_uses_its_database(pg_url: str, tmp_path: Path) -> None:
    from facesense.gallery.postgres_events import FORMAT_VERSION, PostgresEventStore

    with open_event_log(parse_location(pg_url)) as log:  # type: ignore[attr-defined]
        assert isinstance(log, PostgresEventStore)
        log.add(EventRecord(event=Event(type=EventType.LEFT, time=1.0, frame=1, source="a"), seen_at=time.time()))
    with psycopg.connect(pg_url) as conn:
        meta: dict[str, str] = dict(conn.execute("SELECT key, value FROM facesense_events_meta").fetchall())
        assert conn.execute("SELECT count(*) FROM facesense_events").fetchone() == (1,)
    assert meta["application"] == "facesense-events" and meta["format_version"] == str(FORMAT_VERSION)
    # An explicit path still means an SQLite file.
    other = open_event_log(parse_location(pg_url), path=tmp_path / "ev.db")
    try:
        assert isinstance(other, SQLiteEventStore)
    finally:
        other.close()


def test_postgresql_refuses_a_newer_format_and_foreign_tables(pg_url: str, pg_cluster: PgCluster) -> None:
    from facesense.gallery.postgres_events import PostgresEventStore

    PostgresEventStore(pg_url).close()
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE facesense_events_meta SET value = '99' WHERE key = 'format_version'")
    with pytest.raises(GalleryError, match="newer facesense"):
        PostgresEventStore(pg_url)
    foreign = pg_cluster.new_database()
    with psycopg.connect(foreign) as conn:
        conn.execute("CREATE TABLE facesense_events_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO facesense_events_meta VALUES ('application', 'someone-else')")
    with pytest.raises(GalleryError, match="not a facesense events log"):
        PostgresEventStore(foreign)
    with pytest.raises(GalleryError, match="cannot connect") as refused:
        PostgresEventStore("postgresql://nobody:s3cret@127.0.0.1:1/none?connect_timeout=2")
    assert "s3cret" not in str(refused.value)
