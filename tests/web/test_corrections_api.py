"""Corrections over the REST API: ``POST /api/events/{id}/correct`` and a person's negatives.

Real models and images: the gallery is knn_examples/train; the event is the face of
``knn_examples/test/alex_lacamoire1.jpg`` recognised as ``obama``, stored as the server stores a
``recognized`` event (crop and embedding).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

from facesense.gallery.events import EventRecord
from facesense.types import Event, EventType

from .conftest import MakeClient

TOKEN = "s3cret-token-for-corrections"


@pytest.fixture(scope="module")
def enrolled_db(tmp_path_factory: pytest.TempPathFactory, examples_dir: Path, analyzer: Any) -> Path:
    from facesense.enroll import Enroller
    from facesense.gallery.sqlite import SQLiteGallery

    db = tmp_path_factory.mktemp("web-corrections") / "knn.db"
    with SQLiteGallery(db) as gallery:
        Enroller(gallery, analyzer).enroll_folder(examples_dir / "knn_examples" / "train")
    return db


@pytest.fixture
def db(enrolled_db: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "g.db"
    shutil.copy(enrolled_db, copy)
    return copy


@pytest.fixture(scope="module")
def alex_face(examples_dir: Path, analyzer: Any) -> tuple[bytes, Any, tuple[float, float, float, float]]:
    from facesense.imageio import load_image
    from facesense.web.thumbnails import face_crop_jpeg

    image = load_image(examples_dir / "knn_examples" / "test" / "alex_lacamoire1.jpg")
    faces = analyzer.analyze(image)
    box = tuple(float(v) for v in faces.xyxy[0])
    return face_crop_jpeg(image, faces.xyxy[0]), faces.embeddings[0], box  # type: ignore[return-value]


def recognised(client: Any, analyzer: Any, face: tuple[bytes, Any, Any], name: str = "obama", *, embedded: bool = True) -> int:
    crop, embedding, box = face
    event = Event(type=EventType.RECOGNIZED, time=0.4, frame=10, source="cam", track_id=3, name=name, confidence=0.52, xyxy=box)
    record = EventRecord(
        event=event, seen_at=time.time(), crop_jpeg=crop, embedding=embedding if embedded else None,
        model_id=analyzer.model_id if embedded else None,
    )  # fmt: skip
    return int(client.app.state.facesense.events.add(record))


def person_id(client: Any, name: str) -> int:
    return next(p["id"] for p in client.get("/api/people").json()["people"] if p["name"] == name)


def test_not_x_stores_a_negative_shows_it_and_takes_it_back(
    make_client: MakeClient, db: Path, analyzer: Any, alex_face: Any
) -> None:
    client = make_client(db=db)
    event_id = recognised(client, analyzer, alex_face)
    before = client.get(f"/api/events/{event_id}").json()
    assert before["can_correct"] is True and before["correction"] is None
    revision = client.app.state.facesense.store.revision()
    done = client.post(f"/api/events/{event_id}/correct", json={"not": "obama"})
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["correction"] == "not obama" and body["not"] == "obama" and body["is"] is None
    assert body["sample_id"] is None and body["event"]["correction"] == "not obama" and body["event"]["can_correct"] is False
    assert client.app.state.facesense.store.revision() != revision  # live matchers refit
    obama = person_id(client, "obama")
    (negative,) = client.get(f"/api/people/{obama}/negatives").json()["negatives"]
    assert negative["id"] == body["negative_id"] and negative["source"] == f"event {event_id}"
    assert negative["model_id"] == analyzer.model_id and negative["person_id"] == obama
    thumb = client.get(negative["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
    page = client.get("/events")
    assert page.status_code == 200 and "Corrected: not obama" in page.text
    again = client.post(f"/api/events/{event_id}/correct", json={"not": "obama"})
    assert again.status_code == 409 and "corrected already" in again.json()["error"]
    # Taking it back.
    assert client.delete(f"/api/people/{person_id(client, 'biden')}/negatives/{negative['id']}").status_code == 404
    gone = client.delete(f"/api/people/{obama}/negatives/{negative['id']}")
    assert gone.status_code == 200 and gone.json() == {"deleted": negative["id"]}
    assert client.get(f"/api/people/{obama}/negatives").json() == {"negatives": []}
    assert client.delete(f"/api/people/{obama}/negatives/{negative['id']}").status_code == 404
    assert client.get("/api/people/424242/negatives").status_code == 404


def test_this_is_y_moves_the_face(make_client: MakeClient, db: Path, analyzer: Any, alex_face: Any) -> None:
    client = make_client(db=db)
    event_id = recognised(client, analyzer, alex_face)
    done = client.post(f"/api/events/{event_id}/correct", json={"is": "alex_lacamoire"})
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["correction"] == "is alex_lacamoire" and body["not"] == "obama" and body["is"] == "alex_lacamoire"
    alex = client.get(f"/api/people/{person_id(client, 'alex_lacamoire')}").json()
    assert alex["samples"] == 2 and alex["faces"][-1]["id"] == body["sample_id"]
    assert alex["faces"][-1]["source"] == f"event:{event_id}"
    negatives = client.get(f"/api/people/{person_id(client, 'obama')}/negatives").json()["negatives"]
    assert [n["id"] for n in negatives] == [body["negative_id"]]
    # The next recognition of that photo says alex, even with the loose threshold that said obama.
    store = client.app.state.facesense.store
    from facesense.recognize import fit_matcher

    matcher = fit_matcher(store, analyzer.model_id, threshold=0.75)
    assert matcher is not None and matcher.match(np.asarray(alex_face[1])[None]).names == ("alex_lacamoire",)


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({}, 422, "exactly one"),
        ({"not": "obama", "is": "biden"}, 422, "exactly one"),
        ({"not": ""}, 422, "not"),
        ({"not": "nobody"}, 404, "nobody named 'nobody'"),
        ({"is": "nobody"}, 404, "nobody named 'nobody'"),
        ({"is": "obama"}, 409, "recognised as 'obama' already"),
    ],
)
def test_refused_corrections_change_nothing(
    make_client: MakeClient, db: Path, analyzer: Any, alex_face: Any, body: dict[str, str], status: int, words: str
) -> None:
    client = make_client(db=db)
    event_id = recognised(client, analyzer, alex_face)
    store = client.app.state.facesense.store
    revision = store.revision()
    response = client.post(f"/api/events/{event_id}/correct", json=body)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]
    assert store.revision() == revision and store.negative_records() == []
    assert client.get(f"/api/events/{event_id}").json()["correction"] is None


def test_events_that_cannot_be_corrected(make_client: MakeClient, db: Path, analyzer: Any, alex_face: Any) -> None:
    client = make_client(db=db)
    assert client.post("/api/events/424242/correct", json={"not": "obama"}).status_code == 404
    bare = recognised(client, analyzer, alex_face, embedded=False)
    assert client.get(f"/api/events/{bare}").json()["can_correct"] is False
    response = client.post(f"/api/events/{bare}/correct", json={"not": "obama"})
    assert response.status_code == 409 and "keeps no face embedding" in response.json()["error"]


def test_correct_is_documented_and_guarded(make_client: MakeClient, db: Path, analyzer: Any, alex_face: Any) -> None:
    client = make_client(db=db, token=TOKEN)
    good = {"Authorization": f"Bearer {TOKEN}"}
    schema = client.get("/api/openapi.json", headers=good).json()
    assert {"/api/events/{event_id}/correct", "/api/people/{person_id}/negatives",
            "/api/people/{person_id}/negatives/{negative_id}"} <= set(schema["paths"])  # fmt: skip
    request = schema["components"]["schemas"]["CorrectRequest"]
    assert {"not", "is"} <= set(request["properties"])
    event_id = recognised(client, analyzer, alex_face)
    assert client.post(f"/api/events/{event_id}/correct", json={"not": "obama"}).status_code == 401
    forged = client.post(f"/api/events/{event_id}/correct", json={"not": "obama"}, headers={**good, "Origin": "null"})
    assert forged.status_code == 403 and "cross-site" in forged.json()["error"]
    assert client.delete("/api/people/1/negatives/1", headers={**good, "Origin": "http://attacker.example"}).status_code == 403
    assert client.get(f"/api/events/{event_id}", headers=good).json()["correction"] is None
    ok = client.post(f"/api/events/{event_id}/correct", json={"not": "obama"}, headers=good)
    assert ok.status_code == 200, ok.text


def test_a_watched_source_keeps_recognised_faces_correctable(
    make_client: MakeClient, db: Path, examples_dir: Path, tmp_path: Path
) -> None:
    """The server stores the embedding of a ``recognized`` face, so it can be corrected from the page."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(12):  # one face standing still: one track, named by its vote
        shutil.copy(examples_dir / "knn_examples" / "test" / "obama1.jpg", folder / f"{i:02d}.jpg")
    client = make_client(db=db, sources=(str(folder),), every=1)
    deadline = time.monotonic() + 90
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not found:
        found = client.get("/api/events?type=recognized").json()["events"]
        time.sleep(0.25)
    assert found, client.get("/api/sources").json()
    event = found[0]
    assert event["name"] == "obama" and event["can_correct"] is True and event["has_crop"]
    done = client.post(f"/api/events/{event['id']}/correct", json={"not": "obama"})
    assert done.status_code == 200, done.text
    assert "Corrected: not obama" in client.get("/events?type=recognized").text


def test_this_is_y_puts_the_crop_through_the_enrollment_checks(
    make_client: MakeClient, db: Path, analyzer: Any, alex_face: Any
) -> None:
    import cv2

    client = make_client(db=db)
    ok, blank = cv2.imencode(".jpg", np.full((128, 128, 3), 128, np.uint8))
    assert ok
    event_id = recognised(client, analyzer, (blank.tobytes(), alex_face[1], alex_face[2]))  # a crop without a face
    store = client.app.state.facesense.store
    revision = store.revision()
    response = client.post(f"/api/events/{event_id}/correct", json={"is": "alex_lacamoire"})
    assert response.status_code == 409 and "no face found" in response.json()["error"], response.text
    assert store.revision() == revision and store.person("alex_lacamoire").n_samples == 1
    # "not X" needs no checks: it is the stored face the matcher saw.
    assert client.post(f"/api/events/{event_id}/correct", json={"not": "obama"}).status_code == 200
