"""Correcting the name of a face on screen: the Live page's tracks over the REST API.

Real models, a real source: the gallery has ``obama`` enrolled from *alex_lacamoire's*
photo (``knn_examples/train/alex_lacamoire/img1.jpg``, someone else's face enrolled as the
person shown) and ``biden`` from his own. The source is a folder holding alex's other photo
(``knn_examples/test/alex_lacamoire1.jpg``, shrunk to 640 px), played in a loop: one still
face, one track, named ``obama``. ``GET /api/sources`` gives the track the id of the
``recognized`` event its name came from; ``POST /api/sources/0/tracks/{id}/correct``
corrects it, and the track is identified again with the corrected gallery.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

from .conftest import MakeClient

WAIT_S = 30.0


@pytest.fixture(scope="module")
def alex_folder(tmp_path_factory: pytest.TempPathFactory, examples_dir: Path) -> Path:
    """A folder source of one photo of alex (shrunk: a camera-sized frame)."""
    import cv2

    folder = tmp_path_factory.mktemp("alex-source")
    image = cv2.imread(str(examples_dir / "knn_examples" / "test" / "alex_lacamoire1.jpg"))
    h, w = image.shape[:2]
    small = cv2.resize(image, (640, round(h * 640 / w)), interpolation=cv2.INTER_AREA)
    assert cv2.imwrite(str(folder / "alex.jpg"), small)
    return folder


def wait_for(client: Any, check: Callable[[dict[str, Any]], bool], what: str, timeout_s: float = WAIT_S) -> dict[str, Any]:
    """Poll ``GET /api/sources/0`` until ``check(source)``; the source then."""
    deadline = time.monotonic() + timeout_s
    source: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get("/api/sources/0")
        assert response.status_code == 200, response.text
        source = response.json()
        if check(source):
            return source
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout_s:g} s; last: {source}")


def named(source: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [t for t in source["tracks"] if t["name"] == name and t["can_correct"]]


def one_line_error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error, str) and "\n" not in error
    return error


@pytest.fixture
def live(make_client: MakeClient, mistaken_db: Path, alex_folder: Path, tmp_path: Path) -> tuple[Any, dict[str, Any]]:
    """A server watching the folder, once its track is named obama: (client, the track)."""
    import shutil

    db = tmp_path / "g.db"
    shutil.copy(mistaken_db, db)
    client = make_client(db=db, sources=(str(alex_folder),), loop=True, every=1)
    source = wait_for(client, lambda s: bool(named(s, "obama")), "the track named obama")
    (track,) = source["tracks"]
    return client, track


def test_a_live_track_is_corrected_not_x_and_named_again(live: tuple[Any, dict[str, Any]]) -> None:
    client, track = live
    tid, event_id = track["track_id"], track["event_id"]
    assert track["state"] == "known" and isinstance(event_id, int)
    event = client.get(f"/api/events/{event_id}").json()  # the track's name came from this event
    assert (event["type"], event["name"], event["track_id"], event["can_correct"]) == ("recognized", "obama", tid, True)
    assert client.get("/api/sources").json()["sources"][0]["tracks"][0]["event_id"] == event_id

    done = client.post(f"/api/sources/0/tracks/{tid}/correct", json={"not": "obama"})
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["source_id"], body["track_id"], body["event_id"]) == (0, tid, event_id)
    assert (body["correction"], body["not"], body["is"]) == ("not obama", "obama", None)
    assert body["event"]["correction"] == "not obama" and isinstance(body["negative_id"], int)
    # At once: the track no longer shows the wrong name (pending: being identified again,
    # or already re-identified), and a second click is refused.
    (now,) = client.get("/api/sources/0").json()["tracks"]
    assert (now["track_id"], now["name"], now["can_correct"]) == (tid, None, False) and now["state"] != "known"
    again = one_line_error(client.post(f"/api/sources/0/tracks/{tid}/correct", json={"not": "obama"}), 409)
    assert "being identified again" in again or "is not named anybody" in again, again
    # Identified again with the corrected gallery: the same track, not obama (obama is vetoed).
    after = wait_for(client, lambda s: any(t["state"] != "pending" for t in s["tracks"]), "the track re-identified")
    (track_after,) = after["tracks"]
    assert track_after["track_id"] == tid and track_after["state"] == "unknown" and track_after["name"] is None
    time.sleep(1.0)  # and it stays so
    assert [t["name"] for t in client.get("/api/sources/0").json()["tracks"]] == [None]
    (negative,) = client.get(f"/api/people/{_person_id(client, 'obama')}/negatives").json()["negatives"]
    assert negative["source"] == f"event {event_id}"

    # Bad input: one-line JSON errors.
    assert "no source with id 7" in one_line_error(client.post("/api/sources/7/tracks/1/correct", json={"not": "obama"}), 404)
    assert "has no track 999" in one_line_error(client.post("/api/sources/0/tracks/999/correct", json={"not": "obama"}), 404)
    assert "no event with id 123456" in one_line_error(client.post("/api/events/123456/correct", json={"not": "obama"}), 404)
    unknown = one_line_error(client.post(f"/api/sources/0/tracks/{tid}/correct", json={"not": "obama"}), 409)
    assert f"track {tid} is not named anybody (unknown)" in unknown
    # The face leaves (the source stops) between the page's render and the click.
    client.app.state.facesense.runners[0].stop()
    gone = one_line_error(client.post(f"/api/sources/0/tracks/{tid}/correct", json={"not": "obama"}), 409)
    assert f"track {tid} is no longer in view on source 0" in gone, gone


def test_this_is_y_on_a_live_track_renames_it(live: tuple[Any, dict[str, Any]]) -> None:
    client, track = live
    tid = track["track_id"]
    wrong = one_line_error(client.post(f"/api/sources/0/tracks/{tid}/correct", json={"is": "nobody_here"}), 404)
    assert "nobody named 'nobody_here'" in wrong
    both = client.post(f"/api/sources/0/tracks/{tid}/correct", json={"not": "obama", "is": "biden"})
    assert both.status_code == 422, both.text
    done = client.post(f"/api/sources/0/tracks/{tid}/correct", json={"is": "biden"})
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["correction"], body["not"], body["is"]) == ("is biden", "obama", "biden")
    assert isinstance(body["sample_id"], int) and isinstance(body["negative_id"], int)
    # The same track, named biden now, from a new recognized event that can be corrected in turn.
    after = wait_for(client, lambda s: bool(named(s, "biden")), "the track renamed biden")
    (renamed,) = after["tracks"]
    assert renamed["track_id"] == tid and renamed["event_id"] not in (None, track["event_id"])
    assert client.get(f"/api/events/{renamed['event_id']}").json()["name"] == "biden"
    # A page that still shows the old name (its event id) is told the track was renamed.
    stale = client.post(f"/api/sources/0/tracks/{tid}/correct?event_id={track['event_id']}", json={"not": "obama"})
    assert f"track {tid} has been named 'biden' since" in one_line_error(stale, 409)


def test_a_correction_from_the_events_page_renames_the_live_track(live: tuple[Any, dict[str, Any]]) -> None:
    client, track = live
    done = client.post(f"/api/events/{track['event_id']}/correct", json={"not": "obama"})
    assert done.status_code == 200, done.text
    assert [t["name"] for t in client.get("/api/sources/0").json()["tracks"]] == [None]  # at once
    after = wait_for(client, lambda s: any(t["state"] != "pending" for t in s["tracks"]), "the track re-identified")
    assert [(t["track_id"], t["name"]) for t in after["tracks"]] == [(track["track_id"], None)]


def test_the_schema_documents_the_track_correction(make_client: MakeClient, tmp_path: Path) -> None:
    client = make_client(db=tmp_path / "g.db", start_sources=False)
    schema = client.get("/api/openapi.json").json()
    route = schema["paths"]["/api/sources/{source_id}/tracks/{track_id}/correct"]["post"]
    assert {"200", "404", "409", "422"} <= set(route["responses"])
    track = schema["components"]["schemas"]["TrackOut"]["properties"]
    assert {"event_id", "can_correct"} <= set(track)


def _person_id(client: Any, name: str) -> int:
    return int(next(p["id"] for p in client.get("/api/people").json()["people"] if p["name"] == name))
