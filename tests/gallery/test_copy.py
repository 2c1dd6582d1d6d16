"""``copy_gallery`` and ``facesense gallery copy``: SQLite -> PostgreSQL -> SQLite is
lossless in every field, a non-empty destination is refused (unless merging), and the
command reports one-line errors. A real PostgreSQL (see conftest)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from click.testing import CliRunner, Result

from facesense.cli import main
from facesense.errors import GalleryError, ModelMismatchError
from facesense.gallery import NewSample, open_gallery, parse_location
from facesense.gallery.base import GalleryStore
from facesense.gallery.copy import CopySummary, copy_gallery
from facesense.gallery.events import EventLog, EventQuery, EventRecord
from facesense.gallery.location import open_event_log
from facesense.types import Event, EventType

MODEL = "fake-model/v1"
DIM = 128


def _unit(rng: np.random.Generator) -> npt.NDArray[np.float32]:
    v = rng.standard_normal(DIM)
    return np.asarray(v / np.linalg.norm(v), np.float32)


def _fill(store: GalleryStore, log: EventLog) -> None:
    """Three people, five samples (odd boxes, a missing source path, thumbnails), and
    every kind of event, one of them an unknown face that was named."""
    rng = np.random.default_rng(7)
    for p, name in enumerate(("ann", "Bob Ölund", "zoë")):
        samples = [
            NewSample(
                embedding=_unit(rng), model_id=MODEL, source_sha256=f"{p * 10 + i:064x}",
                source_path=None if i else f"/photos/{name}/{i}.jpg",
                xyxy=(0.1 + i, 2.0 / 3.0, 100.25, 1e-7 + p), thumbnail_jpeg=bytes(rng.integers(0, 256, 50 + p, dtype=np.uint8)),
            )
            for i in range(1 if p == 2 else 2)
        ]
        store.add_samples(name, samples)
    now = time.time()
    for i in range(7):
        ev = Event(type=EventType.APPEARED, time=i / 3, frame=i, source="door", track_id=i,
                   name="ann" if i % 2 else None, confidence=0.1 + i / 9, xyxy=(1.5, 2.25, 30.0, 40.125))
        log.add(EventRecord(event=ev, seen_at=now - 100 + i / 7, crop_jpeg=b"\xff\xd8crop%d" % i))
    log.add(EventRecord(event=Event(type=EventType.LEFT, time=9.5, frame=200, source="door", track_id=3), seen_at=now - 50))
    log.add(EventRecord(event=Event(type=EventType.STATUS, time=now - 40, frame=0, source="yard", status="reconnecting",
                                    message="yard: reconnect attempt 1"), seen_at=now - 40))
    for j in range(2):
        unknown = Event(type=EventType.UNKNOWN, time=1.0 + j, frame=10 + j, source="yard", track_id=50 + j, xyxy=(3.0, 4.0, 5.0, 6.0))
        eid = log.add(EventRecord(event=unknown, seen_at=now - 10 + j, crop_jpeg=b"\xff\xd8face",
                                  embedding=_unit(rng), model_id=MODEL))
        if j == 0:  # named: it became bob's second sample
            bob = store.samples("Bob Ölund")[1]
            log.mark_named(eid, "Bob Ölund", bob.id)


def _age(path: Path) -> None:
    """Give every person and sample of an SQLite gallery its own old time (the API stamps "now")."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute("UPDATE people SET created = '2020-01-0' || id || 'T03:04:05+00:00'")
            conn.execute("UPDATE samples SET added = '2021-02-0' || id || 'T06:07:08+00:00'")
    finally:
        conn.close()


def _content(store: GalleryStore, log: EventLog | None) -> dict[str, Any]:
    """Everything a copy must keep, without the store ids (ids are each store's own)."""
    samples = store.samples()
    key_of = {s.id: (s.person, s.model_id, s.source_sha256) for s in samples}
    emb = store.embeddings(MODEL) if samples else None
    vectors = {} if emb is None else {key_of[int(i)]: emb.matrix[r].tobytes() for r, i in enumerate(emb.sample_ids)}
    out: dict[str, Any] = {
        "people": [(p.name, p.created, p.n_samples) for p in store.people()],
        "samples": sorted((
            (s.person, s.model_id, s.dim, s.source_path, s.source_sha256, s.xyxy, s.thumbnail_jpeg, s.added,
             vectors[(s.person, s.model_id, s.source_sha256)])
            for s in samples
        ), key=lambda row: (row[0], row[4])),
        "model_id": store.model_id,
    }
    if log is not None:
        events = log.query(EventQuery(), per_page=500).events
        rows = []
        for e in events:
            fields = {k: v for k, v in vars(e).items() if k not in ("id", "sample_id")}
            vector = log.embedding(e.id)
            rows.append((sorted(fields.items(), key=lambda kv: kv[0]), key_of.get(e.sample_id or -1), log.crop(e.id),
                         None if vector is None else vector.tobytes()))
        out["events"] = rows
    return out


def _open(location: str | Path) -> tuple[GalleryStore, EventLog]:
    return open_gallery(location), open_event_log(parse_location(location))


def test_sqlite_to_postgresql_to_sqlite_is_lossless(tmp_path: Path, pg_url: str) -> None:
    store, log = _open(tmp_path / "src.db")
    pg_store, pg_log = _open(pg_url)
    back_store, back_log = _open(tmp_path / "back.db")
    try:
        _fill(store, log)
        _age(tmp_path / "src.db")
        expected = _content(store, log)
        assert len(expected["samples"]) == 5 and len(expected["events"]) == 11
        assert {p[1] for p in expected["people"]} == {f"2020-01-0{i}T03:04:05+00:00" for i in (1, 2, 3)}
        assert len({s[7] for s in expected["samples"]}) == 5
        assert sum(1 for e in expected["events"] if e[1] is not None) == 1  # the named face points at a sample

        summary = copy_gallery(store, pg_store, src_events=log, dst_events=pg_log)
        assert summary == CopySummary(("ann", "Bob Ölund", "zoë"), 5, 0, 11, 0)
        assert _content(pg_store, pg_log) == expected

        copy_gallery(pg_store, back_store, src_events=pg_log, dst_events=back_log)
        assert _content(back_store, back_log) == expected

        # Refused: a non-empty destination (people, or only events), and a copy onto itself.
        with pytest.raises(GalleryError, match="is not empty"):
            copy_gallery(store, back_store, src_events=log, dst_events=back_log)
        with pytest.raises(GalleryError, match="onto itself"):
            copy_gallery(store, store)
        assert _content(back_store, back_log) == expected  # unchanged

        # Merging skips everything that is there already.
        again = copy_gallery(store, back_store, src_events=log, dst_events=back_log, merge=True)
        assert (again.people_added, again.samples_added, again.samples_skipped, again.events_added, again.events_skipped) == (
            (), 0, 5, 0, 11)
        assert _content(back_store, back_log) == expected
    finally:
        for closable in (store, log, pg_store, pg_log, back_store, back_log):
            closable.close()


def test_events_only_destination_is_not_empty_and_models_are_guarded(tmp_path: Path, pg_url: str) -> None:
    store, log = _open(tmp_path / "src.db")
    dst, dst_log = _open(pg_url)
    try:
        _fill(store, log)
        dst_log.add(EventRecord(event=Event(type=EventType.LEFT, time=0.0, frame=0), seen_at=time.time()))
        with pytest.raises(GalleryError, match=r"0 people, 1 events"):
            copy_gallery(store, dst, src_events=log, dst_events=dst_log)
        # A merge into a gallery of another model writes nothing.
        other = NewSample(embedding=np.full(4, 0.5, np.float32), model_id="other/v2", source_sha256="f" * 64)
        dst.add_samples("eve", [other])
        with pytest.raises(ModelMismatchError):
            copy_gallery(store, dst, merge=True)
        assert [p.name for p in dst.people()] == ["eve"]
        # Without logs only the gallery is copied.
        empty = open_gallery(tmp_path / "g-only.db")
        try:
            summary = copy_gallery(store, empty)
            assert (summary.samples_added, summary.events_added) == (5, 0)
        finally:
            empty.close()
    finally:
        for closable in (store, log, dst, dst_log):
            closable.close()


# --- the command ----------------------------------------------------------------------------


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def test_gallery_copy_command_end_to_end(tmp_path: Path, pg_url: str) -> None:
    src = tmp_path / "src.db"
    store, log = _open(src)
    try:
        _fill(store, log)
    finally:
        store.close()
        log.close()
    _age(src)
    store, log = _open(src)
    try:
        expected = _content(store, log)
    finally:
        store.close()
        log.close()

    result = run("gallery", "copy", src, pg_url, "--json")
    assert result.exit_code == 0, result.stderr
    assert '"samples_added":5' in result.stdout and '"events_added":11' in result.stdout
    assert "copied 3 new people, 5 samples" in result.stderr
    back = tmp_path / "back.db"
    result = run("gallery", "copy", pg_url, back)
    assert result.exit_code == 0, result.stderr
    store, log = _open(back)
    try:
        assert _content(store, log) == expected
    finally:
        store.close()
        log.close()

    refused = run("gallery", "copy", src, pg_url)
    assert refused.exit_code == 6 and "is not empty" in one_line_error(refused)
    merged = run("gallery", "copy", src, pg_url, "--merge")
    assert merged.exit_code == 0 and "0 samples (5 already there), 0 events (11 already there)" in merged.stderr

    # Errors are one line, and a failed copy leaves no new files behind.
    missing = run("gallery", "copy", tmp_path / "nope.db", tmp_path / "new.db")
    assert missing.exit_code == 6 and "nope.db" in one_line_error(missing)
    bad = run("gallery", "copy", src, "mysql://u@h/db")
    assert bad.exit_code == 2 and "unknown gallery URL scheme" in one_line_error(bad)
    same = run("gallery", "copy", src, f"sqlite:///{src}")
    assert same.exit_code == 2 and "same gallery" in one_line_error(same)
    into_full = tmp_path / "full.db"
    assert run("gallery", "copy", src, into_full).exit_code == 0
    assert one_line_error(run("gallery", "copy", back, into_full)).startswith("error: ")
    fresh = tmp_path / "fresh.db"
    assert run("gallery", "copy", src, fresh, "--no-events").exit_code == 0
    assert not (tmp_path / "fresh.events.db").exists()
    assert not (tmp_path / "new.db").exists() and not (tmp_path / "new.events.db").exists()
    assert not (tmp_path / "nope.events.db").exists()
