"""Corrections end to end on real faces: a face named X wrongly, "not X" / "this is Y", the next run.

A gallery is enrolled from ``knn_examples/train``. At a loose threshold (0.75, against the
calibrated 0.48) ``knn_examples/test/alex_lacamoire1.jpg`` is named ``obama`` (distance
~0.63: obama's two samples outvote alex's one; at the default only alex's sample is near
enough to vote). That face is stored as a ``recognized`` event (its
embedding and crop, as ``facesense serve`` keeps them) and corrected through the CLI
(``facesense correct``) or the library (:class:`facesense.corrections.Corrections`); the
next recognition run no longer names it obama, and obama's own test photos still are.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from facesense.cli import main
from facesense.gallery.events import EventRecord
from facesense.types import Event, EventType

LOOSE = 0.75  # loose enough for alex_lacamoire1.jpg to be taken for obama


@pytest.fixture(scope="module")
def analyzer() -> Iterator[Any]:
    """One FaceAnalyzer for the module, also the one the CLI commands build."""
    import facesense.analyzer

    shared = facesense.analyzer.FaceAnalyzer()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(facesense.analyzer, "FaceAnalyzer", lambda *a, **k: shared)
        yield shared


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory: pytest.TempPathFactory, examples_dir: Path, analyzer: Any) -> Path:
    db = tmp_path_factory.mktemp("gallery") / "knn.db"
    result = run("enroll", examples_dir / "knn_examples" / "train", "--db", db)
    assert result.exit_code == 0, result.output
    return db


@pytest.fixture
def db(enrolled: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "knn.db"
    shutil.copy(enrolled, copy)
    return copy


def names_in(analyzer: Any, db: Path, image: Path, threshold: float = LOOSE) -> list[str | None]:
    """One recognition run, as `facesense recognize` does it (the gallery read afresh)."""
    from facesense.gallery import open_gallery
    from facesense.imageio import load_image
    from facesense.recognize import Recognizer

    with open_gallery(db, create=False) as gallery:
        recognizer = Recognizer(gallery, analyzer=analyzer, threshold=threshold)
    return list(recognizer.recognize(load_image(image)).names)


def record_event(analyzer: Any, db: Path, image: Path, name: str) -> int:
    """Store the largest face of ``image`` as a ``recognized`` event named ``name``, as the server would."""
    from facesense.gallery.sqlite_events import SQLiteEventStore
    from facesense.imageio import load_image
    from facesense.web.thumbnails import face_crop_jpeg

    img = load_image(image)
    faces = analyzer.embed(img, analyzer.detect(img))
    i = int(np.argmax(faces.size_px))
    box = tuple(float(v) for v in faces.xyxy[i])
    event = Event(
        type=EventType.RECOGNIZED, time=1.0, frame=3, source="camera:test", track_id=7, name=name,
        confidence=0.55, xyxy=box,  # type: ignore[arg-type]
    )  # fmt: skip
    with SQLiteEventStore(db.with_name(db.stem + ".events.db")) as events:
        return events.add(
            EventRecord(
                event=event, seen_at=time.time(), crop_jpeg=face_crop_jpeg(img, faces.xyxy[i]),
                embedding=faces.embeddings[i], model_id=analyzer.model_id,
            )
        )


def test_not_x_through_the_cli_stops_the_wrong_name(analyzer: Any, db: Path, examples_dir: Path) -> None:
    test = examples_dir / "knn_examples" / "test"
    alex = test / "alex_lacamoire1.jpg"
    assert names_in(analyzer, db, alex) == ["obama"]  # the mistake
    assert names_in(analyzer, db, alex, threshold=0.48) == ["alex_lacamoire"]  # (the calibrated default is right)
    assert names_in(analyzer, db, test / "obama1.jpg") == ["obama"]
    before = names_in(analyzer, db, test / "obama_and_biden.jpg")
    assert "obama" in before
    event_id = record_event(analyzer, db, alex, "obama")

    result = run("correct", event_id, "--not", "obama", "--db", db, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["correction"] == "not obama" and out["not"] == "obama" and out["sample_id"] is None
    assert f"event {event_id}: not obama" in result.stderr

    assert names_in(analyzer, db, alex) == [None]  # the next run: not obama any more (obama is vetoed: unknown)
    assert names_in(analyzer, db, test / "obama1.jpg") == ["obama"]  # obama's own photos still are
    assert names_in(analyzer, db, test / "obama_and_biden.jpg") == before

    shown = run("people", "negatives", "obama", "--db", db, "--json")
    assert shown.exit_code == 0, shown.output
    (negative,) = [json.loads(line) for line in shown.stdout.splitlines()]
    assert negative["source"] == f"event {event_id}" and negative["id"] == out["negative_id"]
    again = run("correct", event_id, "--not", "obama", "--db", db)
    assert again.exit_code == 9 and "corrected already" in one_line_error(again)
    removed = run("people", "remove-negative", out["negative_id"], "--db", db)
    assert removed.exit_code == 0, removed.output
    assert names_in(analyzer, db, alex) == ["obama"]  # the correction taken back: the mistake is back


def test_this_is_y_through_the_library_names_the_face_right(analyzer: Any, db: Path, examples_dir: Path) -> None:
    from facesense.corrections import Corrections
    from facesense.gallery import open_gallery
    from facesense.gallery.sqlite_events import SQLiteEventStore

    test = examples_dir / "knn_examples" / "test"
    alex = test / "alex_lacamoire1.jpg"
    event_id = record_event(analyzer, db, alex, "obama")
    with open_gallery(db, create=False) as gallery, SQLiteEventStore(db.with_name(db.stem + ".events.db")) as events:
        revision = gallery.revision()
        done = Corrections(gallery, events, model_id=analyzer.model_id, analyzer=analyzer).is_person(event_id, "alex_lacamoire")
        assert gallery.revision() != revision
        assert (done.correction, done.wrong, done.right) == ("is alex_lacamoire", "obama", "alex_lacamoire")
        assert gallery.person("alex_lacamoire").n_samples == 2
        assert [n.id for n in gallery.negative_records("obama")] == [done.negative_id]
        stored = events.get(event_id)
        assert stored is not None and stored.correction == "is alex_lacamoire" and not stored.can_correct
    assert names_in(analyzer, db, alex) == ["alex_lacamoire"]
    assert names_in(analyzer, db, alex, threshold=0.48) == ["alex_lacamoire"]
    assert names_in(analyzer, db, test / "obama1.jpg") == ["obama"]


def test_this_is_y_through_the_cli(analyzer: Any, db: Path, examples_dir: Path) -> None:
    alex = examples_dir / "knn_examples" / "test" / "alex_lacamoire1.jpg"
    event_id = record_event(analyzer, db, alex, "obama")
    result = run("correct", event_id, "--is", "alex_lacamoire", "--db", db, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["correction"] == "is alex_lacamoire" and out["not"] == "obama" and out["sample_id"] is not None
    assert names_in(analyzer, db, alex) == ["alex_lacamoire"]


def test_not_x_about_another_enrolled_person(analyzer: Any, db: Path, examples_dir: Path) -> None:
    """"not X" is a statement about the face: X need not be the name it was recognised as."""
    alex = examples_dir / "knn_examples" / "test" / "alex_lacamoire1.jpg"
    event_id = record_event(analyzer, db, alex, "obama")
    result = run("correct", event_id, "--not", "biden", "--db", db)
    assert result.exit_code == 0, result.output
    from facesense.gallery import open_gallery

    with open_gallery(db, create=False) as gallery:
        assert [n.source for n in gallery.negative_records("biden")] == [f"event {event_id}"]
        assert gallery.negative_records("obama") == []


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--not", "obama"], 8, "no event with id 999"),
        (["--not", "nobody"], 8, "nobody named 'nobody'"),
        ([], 2, "exactly one of --not NAME and --is NAME"),
        (["--not", "obama", "--is", "biden"], 2, "exactly one"),
    ],
)
def test_cli_errors_are_one_line(analyzer: Any, db: Path, examples_dir: Path, args: list[str], code: int, words: str) -> None:
    record_event(analyzer, db, examples_dir / "knn_examples" / "test" / "alex_lacamoire1.jpg", "obama")
    event_id = "999" if "no event" in words else "1"
    result = run("correct", event_id, *args, "--db", db)
    assert result.exit_code == code, result.output
    assert words in one_line_error(result)


def test_cli_event_without_embedding_or_events_file(analyzer: Any, db: Path) -> None:
    from facesense.gallery.sqlite_events import SQLiteEventStore

    missing = run("correct", "1", "--not", "obama", "--db", db)
    assert missing.exit_code == 8 and "no events file" in one_line_error(missing)
    assert not db.with_name(db.stem + ".events.db").exists()  # not created by the attempt
    with SQLiteEventStore(db.with_name(db.stem + ".events.db")) as events:
        event_id = events.add(
            EventRecord(event=Event(type=EventType.APPEARED, time=0.0, frame=0, source="cam", name="obama"), seen_at=time.time())
        )
    result = run("correct", event_id, "--not", "obama", "--db", db)
    assert result.exit_code == 9 and "keeps no face embedding" in one_line_error(result)
    recognised = run("correct", event_id, "--is", "biden", "--db", db)
    assert recognised.exit_code == 9 and "keeps no face embedding" in one_line_error(recognised)


def test_reembed_with_the_same_model_keeps_the_corrections(analyzer: Any, db: Path, examples_dir: Path) -> None:
    alex = examples_dir / "knn_examples" / "test" / "alex_lacamoire1.jpg"
    event_id = record_event(analyzer, db, alex, "obama")
    assert run("correct", event_id, "--not", "obama", "--db", db).exit_code == 0
    result = run("reembed", "--db", db)
    assert result.exit_code == 0, result.output
    assert "negative" not in result.stderr  # nothing dropped: the model is the same
    listed = run("people", "negatives", "--db", db, "--json")
    assert [json.loads(line)["source"] for line in listed.stdout.splitlines()] == [f"event {event_id}"]
    assert names_in(analyzer, db, alex) == [None]  # still corrected
