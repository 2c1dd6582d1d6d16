"""``facesense correct`` on both gallery kinds (SQLite file + events file, PostgreSQL with its
events in the same database), with small synthetic faces: no models are loaded (``--not``,
and ``--is`` on an event without a crop, which uses the stored embedding as is).
The real-image end to end is ``tests/test_corrections_e2e.py``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from facesense.cli import main
from facesense.gallery import NewSample, open_gallery
from facesense.gallery.events import EventLog, EventRecord
from facesense.gallery.location import open_event_log, parse_location
from facesense.types import Event, EventType

MODEL = "fake-model/v1"


def unit(seed: int) -> np.ndarray:
    e = np.random.default_rng(seed).normal(size=8).astype(np.float32)
    return e / np.linalg.norm(e)


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A gallery with alice and bob (fake model), at a path or a PostgreSQL URL."""
    if request.param == "sqlite":
        location = str(tmp_path / "people.db")
    else:
        from ..pg import PG

        PG.server()  # skips where the pgserver wheel cannot start one
        location = PG.new_database()
    with open_gallery(location) as g:
        for i, name in enumerate(("alice", "bob")):
            g.add_samples(name, [NewSample(embedding=unit(i), model_id=MODEL,
                                           source_sha256=hashlib.sha256(name.encode()).hexdigest())])  # fmt: skip
    return location


@pytest.fixture
def events(db: str) -> Iterator[EventLog]:
    log = open_event_log(parse_location(db))
    yield log
    log.close()


def recognised(events: EventLog, name: str, seed: int) -> int:
    event = Event(type=EventType.RECOGNIZED, time=1.0, frame=1, source="cam", track_id=seed, name=name, confidence=0.6)
    return events.add(EventRecord(event=event, seen_at=time.time(), embedding=unit(seed), model_id=MODEL))


def test_not_x_then_this_is_y(db: str, events: EventLog) -> None:
    event_id = recognised(events, "alice", 7)
    done = run("correct", event_id, "--not", "alice", "--db", db, "--json")
    assert done.exit_code == 0, done.output
    out = json.loads(done.stdout)
    assert out["correction"] == "not alice" and out["negative_id"] and out["sample_id"] is None
    # "this is bob" after "not alice": alice has the negative already, bob gets the face.
    moved = run("correct", event_id, "--is", "bob", "--db", db, "--json")
    assert moved.exit_code == 0, moved.output
    out2 = json.loads(moved.stdout)
    assert out2["correction"] == "is bob" and out2["not"] == "alice" and out2["negative_id"] is None
    with open_gallery(db, create=False) as g:
        assert g.person("bob").n_samples == 2 and [n.source for n in g.negative_records("alice")] == [f"event {event_id}"]
        np.testing.assert_array_equal(g.negatives(MODEL).matrix[0], unit(7))
    stored = events.get(event_id)
    assert stored is not None and stored.correction == "is bob"
    listed = run("people", "negatives", "alice", "--db", db)
    assert listed.exit_code == 0 and f"not alice  (event {event_id})" in listed.stdout


def test_this_is_y_in_one_transaction(db: str, events: EventLog) -> None:
    event_id = recognised(events, "alice", 8)
    done = run("correct", event_id, "--is", "bob", "--db", db)
    assert done.exit_code == 0, done.output
    assert f"event {event_id}: is bob (negative #" in done.stderr and "sample #" in done.stderr
    with open_gallery(db, create=False) as g:
        assert g.person("bob").n_samples == 2 and len(g.negative_records("alice")) == 1


def test_refusals_are_one_line_and_change_nothing(db: str, events: EventLog) -> None:
    event_id = recognised(events, "alice", 9)
    unknown = events.add(EventRecord(event=Event(type=EventType.UNKNOWN, time=1.0, frame=1, source="cam", track_id=1),
                                     seen_at=time.time(), embedding=unit(10), model_id=MODEL))  # fmt: skip
    other_model = events.add(EventRecord(event=Event(type=EventType.RECOGNIZED, time=1.0, frame=1, name="alice"),
                                         seen_at=time.time(), embedding=unit(11), model_id="other/v2"))  # fmt: skip
    with open_gallery(db, create=False) as g:
        revision = g.revision()
    for args, code, words in (
        ([event_id, "--is", "alice"], 9, "recognised as 'alice' already"),
        ([unknown, "--is", "bob"], 9, "not recognised as anybody"),
        ([other_model, "--not", "alice"], 6, "embedded by model 'other/v2'"),
        ([event_id, "--not", "carol"], 8, "nobody named 'carol'"),
        ([424242, "--not", "alice"], 8, "no event with id 424242"),
    ):
        result = run("correct", *args, "--db", db)
        assert result.exit_code == code, (args, result.output)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], (args, result.stderr)
    with open_gallery(db, create=False) as g:
        assert g.revision() == revision and g.negative_records() == []
    assert run("correct", unknown, "--not", "bob", "--db", db).exit_code == 0  # "not X" is about the face
