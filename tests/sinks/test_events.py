"""JSON Lines events."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from facesense.capture import SourceStatus, StatusKind
from facesense.errors import ConfigError
from facesense.pipeline import status_event
from facesense.sinks.base import EventSink
from facesense.sinks.events import JsonlEventSink
from facesense.types import EventType


def test_track_events_have_the_documented_fields(tmp_path: Path, make_result, event) -> None:
    path = tmp_path / "ev.jsonl"
    sink = JsonlEventSink(path)
    assert isinstance(sink, EventSink)
    r0 = make_result(0)
    r1 = make_result(5, events=[event(EventType.APPEARED, 1, 5), event(EventType.RECOGNIZED, 1, 5, "ann")])
    r2 = make_result(8, events=[event(EventType.APPEARED, 2, 8), event(EventType.UNKNOWN, 2, 8)])
    sink.write(r0)
    sink.write(r1)
    # Flushed as they happen (tail -f works).
    assert len(path.read_text().splitlines()) == 2
    sink.write(r2)
    sink.notify([event(EventType.LEFT, 1, 9, "ann")])
    sink.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [d["type"] for d in lines] == ["appeared", "recognized", "appeared", "unknown", "left"]
    assert lines[1] == {
        "time": 0.2,
        "frame": 5,
        "type": "recognized",
        "source": "test",
        "track_id": 1,
        "name": "ann",
        "confidence": 0.9,
        "box": [10.0, 20.0, 60.0, 90.0],
    }
    assert lines[0]["name"] is None and lines[3]["name"] is None
    assert sink.events_written == 5


def test_status_events(make_result) -> None:
    stream = io.StringIO()
    sink = JsonlEventSink(stream)
    status = SourceStatus(
        kind=StatusKind.DISCONNECTED, source_id="http://cam", time=1700000000.5, message="lost it", frame_index=42
    )
    sink.notify([status_event(status)])
    sink.close()
    assert not stream.closed  # not ours to close
    assert json.loads(stream.getvalue()) == {
        "time": 1700000000.5,
        "frame": 42,
        "type": "status",
        "status": "disconnected",
        "message": "lost it",
        "source": "http://cam",
    }


def test_dash_means_stdout(capsys: pytest.CaptureFixture[str], event) -> None:
    sink = JsonlEventSink("-")
    sink.notify([event(EventType.APPEARED, 7, 0)])
    sink.close()
    assert json.loads(capsys.readouterr().out)["track_id"] == 7


def test_unwritable_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot write events"):
        JsonlEventSink(tmp_path / "no" / "such" / "dir" / "ev.jsonl")
