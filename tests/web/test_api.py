"""The REST API end to end with FastAPI's TestClient, on the real models and images."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

from facesense.gallery.events import EventQuery, EventRecord
from facesense.gallery.sqlite_events import SQLiteEventStore
from facesense.types import Event, EventType
from facesense.web.config import ServeConfig

from .conftest import MakeClient

EXPECTED = {
    "alex_lacamoire1.jpg": ["alex_lacamoire"],
    "johnsnow_test1.jpg": ["kit_harington"],
    "kit_with_rose.jpg": ["kit_harington", "rose_leslie"],
    "obama1.jpg": ["obama"],
}
TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def enrolled_db(tmp_path_factory: pytest.TempPathFactory, examples_dir: Path, analyzer: Any) -> Path:
    """knn_examples/train enrolled with the enroll library (the connection closed, WAL merged)."""
    from facesense.enroll import Enroller
    from facesense.gallery.sqlite import SQLiteGallery

    db = tmp_path_factory.mktemp("web-gallery") / "knn.db"
    with SQLiteGallery(db) as gallery:
        summary = Enroller(gallery, analyzer).enroll_folder(examples_dir / "knn_examples" / "train")
    assert len(summary.added) == 9
    return db


@pytest.fixture
def db(enrolled_db: Path, tmp_path: Path) -> Path:
    """A private copy of the enrolled gallery."""
    copy = tmp_path / "g.db"
    shutil.copy(enrolled_db, copy)
    return copy


def upload(path: Path, field: str = "file") -> dict[str, Any]:
    return {field: (path.name, path.read_bytes(), "image/jpeg")}


def names(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return sorted(f["name"] for f in response.json()["faces"])


# --- recognition ------------------------------------------------------------------------


def test_recognize_knn_examples(make_client: MakeClient, db: Path, examples_dir: Path) -> None:
    client = make_client(db=db)
    test_dir = examples_dir / "knn_examples" / "test"
    for name, expected in EXPECTED.items():
        assert names(client.post("/api/recognize", files=upload(test_dir / name))) == expected, name
    group = names(client.post("/api/recognize", files=upload(test_dir / "obama_and_biden.jpg")))
    assert group.count("obama") == 1 and group.count("biden") == 1
    assert set(group) <= {"obama", "biden", "unknown"}
    face = client.post("/api/recognize", files=upload(test_dir / "obama1.jpg")).json()["faces"][0]
    # The same record as `facesense recognize --json`.
    assert set(face) == {"box", "score", "name", "distance", "confidence"}
    assert face["box"][0] < face["box"][2] and face["box"][1] < face["box"][3]
    assert 0 < face["distance"] < 1 and 0.5 < face["confidence"] <= 1 and face["score"] > 0.9


def test_detect_gives_boxes_and_landmarks(make_client: MakeClient, examples_dir: Path) -> None:
    client = make_client()
    response = client.post("/api/detect", files=upload(examples_dir / "two_people.jpg"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["width"] > 0 and body["height"] > 0
    assert len(body["faces"]) == 2
    for face in body["faces"]:
        assert len(face["box"]) == 4 and len(face["landmarks"]) == 5 and face["score"] > 0.9


def test_recognize_with_an_empty_gallery_says_unknown(make_client: MakeClient, examples_dir: Path) -> None:
    client = make_client()
    assert set(names(client.post("/api/recognize", files=upload(examples_dir / "obama.jpg")))) == {"unknown"}


# --- enrolling by upload ----------------------------------------------------------------------


def test_enroll_by_upload_then_recognize(make_client: MakeClient, examples_dir: Path, tmp_path: Path) -> None:
    client = make_client()
    train = examples_dir / "knn_examples" / "train"
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a photo at all")
    files = [
        ("files", ("biden.jpg", (train / "biden" / "biden.jpg").read_bytes(), "image/jpeg")),
        ("files", ("biden2.jpg", (train / "biden" / "biden2.jpg").read_bytes(), "image/jpeg")),
        ("files", ("again.jpg", (train / "biden" / "biden.jpg").read_bytes(), "image/jpeg")),
        ("files", ("group.jpg", (examples_dir / "two_people.jpg").read_bytes(), "image/jpeg")),
        ("files", ("notes.jpg", notes.read_bytes(), "image/jpeg")),
    ]
    response = client.post("/api/people", data={"name": "biden"}, files=files)
    assert response.status_code == 201, response.text
    body = response.json()
    outcomes = {r["file"]: r["outcome"] for r in body["results"]}
    assert outcomes == {
        "biden.jpg": "added",
        "biden2.jpg": "added",
        "again.jpg": "duplicate",
        "group.jpg": "several_faces",
        "notes.jpg": "unreadable",
    }
    assert body["person"]["name"] == "biden" and body["person"]["samples"] == 2
    group = names(client.post("/api/recognize", files=upload(examples_dir / "knn_examples" / "test" / "obama_and_biden.jpg")))
    assert group.count("biden") == 1 and set(group) == {"biden", "unknown"}

    # Add a photo of somebody else's to obama, and one of obama.
    people = client.get("/api/people").json()["people"]
    assert [p["name"] for p in people] == ["biden"]
    response = client.post("/api/people", data={"name": "obama"}, files=[("files", ("o.jpg", (examples_dir / "obama.jpg").read_bytes(), "image/jpeg"))])
    assert response.status_code == 201, response.text
    group = names(client.post("/api/recognize", files=upload(examples_dir / "knn_examples" / "test" / "obama_and_biden.jpg")))
    assert group.count("biden") == 1 and group.count("obama") == 1


def test_create_person_with_no_usable_photo_creates_nobody(make_client: MakeClient, examples_dir: Path) -> None:
    client = make_client()
    files = [("files", ("group.jpg", (examples_dir / "two_people.jpg").read_bytes(), "image/jpeg"))]
    response = client.post("/api/people", data={"name": "nobody"}, files=files)
    assert response.status_code == 422
    body = response.json()
    assert "nobody was added" in body["error"]
    assert [r["outcome"] for r in body["results"]] == ["several_faces"]
    assert client.get("/api/people").json() == {"people": []}


def test_people_rename_faces_and_delete(make_client: MakeClient, db: Path, examples_dir: Path) -> None:
    client = make_client(db=db)
    people = {p["name"]: p for p in client.get("/api/people").json()["people"]}
    assert sorted(people) == ["alex_lacamoire", "biden", "kit_harington", "obama", "rose_leslie"]
    obama = people["obama"]
    detail = client.get(f"/api/people/{obama['id']}").json()
    assert detail["samples"] == 2 and len(detail["faces"]) == 2
    assert detail["faces"][0]["source"] == "obama.jpg"  # a file name, not the server's path
    thumb = client.get(detail["faces"][0]["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg" and thumb.content[:2] == b"\xff\xd8"
    assert client.get(obama["thumbnail_url"]).content[:2] == b"\xff\xd8"

    # Rename (a taken name is refused), then recognition uses the new name.
    taken = client.patch(f"/api/people/{obama['id']}", json={"name": "biden"})
    assert taken.status_code == 409 and "already" in taken.json()["error"]
    bad = client.patch(f"/api/people/{obama['id']}", json={"name": "unknown"})
    assert bad.status_code == 422 and "reserved" in bad.json()["error"]
    renamed = client.patch(f"/api/people/{obama['id']}", json={"name": "Barack Obama"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Barack Obama"
    assert names(client.post("/api/recognize", files=upload(examples_dir / "knn_examples" / "test" / "obama1.jpg"))) == ["Barack Obama"]

    # Add a photo: a duplicate is reported, a new one added.
    response = client.post(
        f"/api/people/{obama['id']}/faces",
        files=[
            ("files", ("same.jpg", (examples_dir / "obama.jpg").read_bytes(), "image/jpeg")),
            ("files", ("new.jpg", (examples_dir / "knn_examples" / "test" / "obama1.jpg").read_bytes(), "image/jpeg")),
        ],
    )
    assert response.status_code == 200, response.text
    assert [r["outcome"] for r in response.json()["results"]] == ["duplicate", "added"]
    assert response.json()["person"]["samples"] == 3

    # Remove one sample, then the person.
    sample_id = detail["faces"][0]["id"]
    gone = client.delete(f"/api/people/{obama['id']}/faces/{sample_id}")
    assert gone.status_code == 200 and gone.json() == {"deleted": sample_id, "person_removed": False}
    assert client.delete(f"/api/people/{obama['id']}/faces/{sample_id}").status_code == 404
    assert client.delete(f"/api/people/{people['biden']['id']}/faces/{detail['faces'][1]['id']}").status_code == 404
    deleted = client.delete(f"/api/people/{obama['id']}")
    assert deleted.status_code == 200 and deleted.json()["samples_removed"] == 2
    assert client.get(f"/api/people/{obama['id']}").status_code == 404
    assert "Barack Obama" not in {p["name"] for p in client.get("/api/people").json()["people"]}
    assert "obama" not in names(client.post("/api/recognize", files=upload(examples_dir / "knn_examples" / "test" / "obama1.jpg")))

    # Removing a person's last sample removes them.
    alex = people["alex_lacamoire"]
    (only,) = client.get(f"/api/people/{alex['id']}").json()["faces"]
    assert client.delete(f"/api/people/{alex['id']}/faces/{only['id']}").json()["person_removed"] is True


# --- security and errors -------------------------------------------------------------------


def test_token_is_required_when_set(make_client: MakeClient, db: Path, examples_dir: Path) -> None:
    client = make_client(db=db, token=TOKEN)
    assert client.get("/api/health").status_code == 200  # no token needed
    for method, path in (("get", "/api/people"), ("get", "/api/events"), ("get", "/api/sources"), ("delete", "/api/people/1")):
        response = getattr(client, method)(path)
        assert response.status_code == 401, path
        assert "token" in response.json()["error"] and response.headers["www-authenticate"] == "Bearer"
    response = client.post("/api/recognize", files=upload(examples_dir / "obama.jpg"))
    assert response.status_code == 401
    assert client.get("/api/people", headers={"Authorization": "Bearer wrong-token-123"}).status_code == 401
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/api/people", headers=good).status_code == 200
    # The schema is behind the token too, and the token does not excuse a forged write.
    assert client.get("/api/openapi.json").status_code == 401
    assert "/api/people" in client.get("/api/openapi.json", headers=good).json()["paths"]
    forged = client.delete("/api/people/1", headers={**good, "Origin": "null"})
    assert forged.status_code == 403 and "cross-site" in forged.json()["error"]
    obama1 = examples_dir / "knn_examples" / "test" / "obama1.jpg"
    assert names(client.post("/api/recognize", files=upload(obama1), headers=good)) == ["obama"]

    # Pages: to the login form, which sets the session cookie.
    page = client.get("/people", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Fpeople"
    wrong = client.post("/login", data={"token": "nope-nope-nope", "next": "/people"}, follow_redirects=False)
    assert wrong.status_code == 401 and "Wrong token" in wrong.text
    evil = client.post("/login", data={"token": TOKEN, "next": "//evil.example/"}, follow_redirects=False)
    assert evil.status_code == 303 and evil.headers["location"] == "/live"
    client.cookies.clear()
    ok = client.post("/login", data={"token": TOKEN, "next": "/people"}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/people"
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert client.get("/people").status_code == 200
    assert client.get("/api/people").status_code == 200  # the pages' fetch calls use the cookie
    client.post("/logout")
    assert client.get("/api/people").status_code == 401


def test_non_loopback_host_needs_a_token(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from facesense.cli import main
    from facesense.errors import ConfigError

    with pytest.raises(ConfigError, match="token"):
        ServeConfig(host="0.0.0.0")
    ServeConfig(host="0.0.0.0", token=TOKEN)
    ServeConfig(host="::1")
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--db", str(tmp_path / "g.db")], env={"FACESENSE_TOKEN": ""})
    assert result.exit_code == 2
    assert "--token" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "g.db").exists()


def test_oversized_and_non_image_uploads(make_client: MakeClient, examples_dir: Path) -> None:
    client = make_client(max_upload_bytes=200_000, max_request_bytes=1_000_000)
    big = examples_dir / "obama.jpg"  # 280 kB
    response = client.post("/api/recognize", files=upload(big))
    assert response.status_code == 413 and "limit" in response.json()["error"]
    huge = client.post("/api/recognize", files={"file": ("x.jpg", b"\xff" * 1_100_000, "image/jpeg")})
    assert huge.status_code == 413 and "limit" in huge.json()["error"]
    # Checked by content, not by name or declared type.
    text = client.post("/api/recognize", files={"file": ("photo.jpg", b"GIF89a but not really an image", "image/jpeg")})
    assert text.status_code == 415 and "not a readable image" in text.json()["error"]
    empty = client.post("/api/detect", files={"file": ("photo.png", b"", "image/png")})
    assert empty.status_code == 415 and "empty" in empty.json()["error"]
    missing = client.post("/api/recognize")
    assert missing.status_code == 422 and "file" in missing.json()["error"]
    # A real image under another name and type is fine.
    import cv2

    _, png = cv2.imencode(".png", cv2.resize(cv2.imread(str(big)), (240, 300)))
    ok = client.post("/api/detect", files={"file": ("face.bin", png.tobytes(), "application/octet-stream")})
    assert ok.status_code == 200 and ok.json()["faces"][0]["score"] > 0.9


def test_errors_are_json_without_tracebacks(make_client: MakeClient) -> None:
    client = make_client()
    for path, status in (("/api/nothing", 404), ("/api/people/12345", 404), ("/api/events?page=0", 422), ("/api/events/99", 404), ("/api/sources/3", 404)):
        response = client.get(path)
        assert response.status_code == status, path
        assert response.headers["content-type"] == "application/json"
        assert set(response.json()) == {"error"} and "Traceback" not in response.text
    bad_time = client.get("/api/events?since=yesterday")
    assert bad_time.status_code == 422 and "ISO 8601" in bad_time.json()["error"]


def test_hosts_origins_and_headers(make_client: MakeClient) -> None:
    client = make_client()
    page = client.get("/people")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    rebound = client.get("/api/people", headers={"Host": "attacker.example"})
    assert rebound.status_code == 400 and "Host" in rebound.json()["error"]
    cross = client.post("/api/people", data={"name": "x"}, headers={"Origin": "http://attacker.example"})
    assert cross.status_code == 403 and "cross-site" in cross.json()["error"]
    # Writes a browser sends for other pages are refused; for our own pages, or from no browser
    # at all, they reach the app (which answers 422 to an empty form, 404 for a missing person).
    reached = {("post", "/api/people"): 422, ("patch", "/api/people/1"): 422, ("delete", "/api/people/1"): 404}
    for headers, refused in (
        ({"Origin": "null"}, True),
        ({"Origin": "http://127.0.0.1:8001"}, True),  # another port is another origin
        ({"Origin": "https://127.0.0.1"}, True),
        ({"Origin": "http://127.0.0.1"}, False),
        ({"Sec-Fetch-Site": "cross-site"}, True),
        ({"Sec-Fetch-Site": "same-site"}, True),
        ({"Sec-Fetch-Site": "same-origin"}, False),
        ({}, False),  # curl, scripts, the CLI
    ):
        for (method, path), status in reached.items():
            response = getattr(client, method)(path, headers=headers)
            assert response.status_code == (403 if refused else status), (headers, method, response.text)
    assert client.get("/api/people", headers={"Origin": "null"}).status_code == 200  # reads are not writes
    schema = client.get("/api/openapi.json").json()
    assert {"/api/recognize", "/api/detect", "/api/people", "/api/people/{person_id}", "/api/people/{person_id}/faces",
            "/api/people/{person_id}/faces/{sample_id}", "/api/events", "/api/sources", "/api/health"} <= set(schema["paths"])
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/..%2Fapp.py").status_code == 404
    assert client.get("/api-docs").status_code == 200


# --- events -------------------------------------------------------------------------------------


def _store(client: Any) -> SQLiteEventStore:
    return client.app.state.facesense.events


def test_events_paging_filters_and_naming(make_client: MakeClient, examples_dir: Path, analyzer: Any) -> None:
    from facesense.imageio import load_image
    from facesense.web.thumbnails import face_crop_jpeg

    client = make_client()
    store = _store(client)
    image = load_image(examples_dir / "knn_examples" / "train" / "kit_harington" / "john1.jpeg")
    faces = analyzer.analyze(image)
    crop = face_crop_jpeg(image, faces.xyxy[0])
    now = time.time()
    for i in range(23):
        appeared = Event(type=EventType.APPEARED, time=i / 25, frame=i, source="cam", track_id=i,
                         name="ann" if i % 2 else None, confidence=0.9, xyxy=(1.0, 2.0, 30.0, 40.0))
        store.add(EventRecord(event=appeared, seen_at=now - 3600 + i, crop_jpeg=crop))
    x1, y1, x2, y2 = (float(v) for v in faces.xyxy[0])
    unknown = Event(type=EventType.UNKNOWN, time=0.2, frame=5, source="cam", track_id=99, xyxy=(x1, y1, x2, y2))
    unknown_id = store.add(EventRecord(event=unknown, seen_at=now, crop_jpeg=crop, embedding=faces.embeddings[0],
                                       model_id=analyzer.model_id))
    status = Event(type=EventType.STATUS, time=now - 7200, frame=0, source="cam", status="reconnecting",
                   message="cam: reconnect attempt 1")
    store.add(EventRecord(event=status, seen_at=now - 7200))

    first = client.get("/api/events?per_page=10").json()
    assert (first["total"], first["pages"], first["page"]) == (25, 3, 1)
    assert first["events"][0]["id"] == unknown_id and first["events"][0]["can_name"] is True
    third = client.get("/api/events?per_page=10&page=3").json()
    assert len(third["events"]) == 5 and third["events"][-1]["type"] == "status"
    ids = [e["id"] for p in (1, 2, 3) for e in client.get(f"/api/events?per_page=10&page={p}").json()["events"]]
    assert len(ids) == len(set(ids)) == 25
    assert client.get("/api/events?name=ann").json()["total"] == 11
    assert client.get("/api/events?type=unknown").json()["total"] == 1
    assert client.get("/api/events?name=unknown").json()["total"] == 13  # 12 appeared unnamed + the unknown
    since = client.get("/api/events", params={"since": now - 3600 + 20}).json()
    assert since["total"] == 4
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 5400))
    assert client.get("/api/events", params={"until": iso + "Z"}).json()["total"] == 1
    typo = client.get("/api/events?type=unknwon")
    assert typo.status_code == 422 and "did you mean 'unknown'" in typo.json()["error"]
    crop_response = client.get(first["events"][0]["crop_url"])
    assert crop_response.status_code == 200 and crop_response.content[:2] == b"\xff\xd8"

    # Naming the unknown face enrolls it; recognition then knows him.
    named = client.post(f"/api/events/{unknown_id}/name", json={"name": "kit"})
    assert named.status_code == 200, named.text
    assert named.json()["person"]["name"] == "kit" and named.json()["person"]["samples"] == 1
    again = client.post(f"/api/events/{unknown_id}/name", json={"name": "kit"})
    assert again.status_code == 409 and "already" in again.json()["error"]
    not_unknown = client.post(f"/api/events/{first['events'][1]['id']}/name", json={"name": "kit"})
    assert not_unknown.status_code == 409
    assert client.post("/api/events/424242/name", json={"name": "kit"}).status_code == 404
    event = client.get(f"/api/events/{unknown_id}").json()
    assert event["name"] == "kit" and event["can_name"] is False and event["sample_id"] == named.json()["sample_id"]
    test_image = examples_dir / "knn_examples" / "test" / "johnsnow_test1.jpg"
    assert names(client.post("/api/recognize", files=upload(test_image))) == ["kit"]
    # The events page renders them all.
    page = client.get("/events?type=unknown")
    assert page.status_code == 200 and "Enrolled as kit" in page.text


def test_event_store_prunes_by_count_and_age(tmp_path: Path) -> None:
    from facesense.errors import GalleryError

    path = tmp_path / "events.db"
    now = time.time()
    with SQLiteEventStore(path, keep_events=10, keep_days=1) as store:
        for i in range(25):
            left = Event(type=EventType.LEFT, time=float(i), frame=i, source="s", track_id=i)
            store.add(EventRecord(event=left, seen_at=now - 3 * 86400 if i < 5 else now - i))
        assert store.count() == 25
        assert store.prune(now=now) == 15
        kept = store.query(EventQuery(), per_page=100).events
        assert sorted(e.track_id for e in kept) == list(range(15, 25))
    with SQLiteEventStore(path, keep_events=10, keep_days=1) as store:  # reopens
        assert store.count() == 10
        assert store.embedding(1) is None and store.crop(12345) is None
    foreign = tmp_path / "other.db"
    import sqlite3

    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(GalleryError, match="not a facesense events file"):
        SQLiteEventStore(foreign)
    not_sqlite = tmp_path / "photo.db"
    not_sqlite.write_bytes(b"\xff\xd8 certainly not sqlite" * 100)
    with pytest.raises(GalleryError):
        SQLiteEventStore(not_sqlite)


# --- a watched source ----------------------------------------------------------------------------


def test_a_source_is_watched_streamed_and_logged(make_client: MakeClient, examples_dir: Path) -> None:
    clip = examples_dir / "short_hamilton_clip.mp4"
    client = make_client(sources=(str(clip),), unknown_after_frames=10)
    deadline = time.monotonic() + 60
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        info = client.get("/api/sources").json()["sources"][0]
        if info["status"] == "live" and info["frames"] > 30 and _store(client).query(EventQuery(type=EventType.UNKNOWN)).total:
            break
        time.sleep(0.25)
    assert info["status"] == "live" and info["kind"] == "file", info
    assert info["source"] == str(clip) and info["fps"] > 0
    snapshot = client.get(info["snapshot_url"])
    assert snapshot.status_code == 200 and snapshot.content[:2] == b"\xff\xd8"
    import cv2

    frame = cv2.imdecode(np.frombuffer(snapshot.content, np.uint8), cv2.IMREAD_COLOR)
    assert frame.shape == (360, 640, 3)
    events = client.get("/api/events?type=appeared").json()
    assert events["total"] >= 1 and events["events"][0]["has_crop"]
    unknown = client.get("/api/events?type=unknown").json()["events"]
    assert unknown and unknown[0]["can_name"], unknown
    page = client.get("/live")
    assert page.status_code == 200 and "short_hamilton_clip.mp4" in page.text and info["stream_url"] in page.text


def test_configured_cameras_are_watched_by_name_on_one_inference_thread(make_client: MakeClient, examples_dir: Path) -> None:
    from facesense.multicam import CameraSpec

    clip = str(examples_dir / "short_hamilton_clip.mp4")
    cameras = (CameraSpec(name="door", url=clip, every=3), CameraSpec(name="hall", url=clip, every=5, min_face_px=60))
    client = make_client(cameras=cameras, loop=True)
    deadline = time.monotonic() + 90
    infos: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        infos = client.get("/api/sources").json()["sources"]
        if all(i["status"] == "live" and i["frames"] > 20 for i in infos):
            break
        time.sleep(0.25)
    assert [i["name"] for i in infos] == ["door", "hall"], infos
    for info in infos:
        assert info["status"] == "live" and info["source"] == clip
        assert info["fps"] > 0 and info["lag_ms"] > 0 and info["dropped"] >= 0
    runners = client.app.state.facesense.runners
    assert runners[0].broker is not None and runners[0].broker is runners[1].broker  # one thread budget
    # Both cameras' detections ran on it (every 3rd and every 5th frame, at least).
    assert runners[0].broker.stats().calls >= infos[0]["frames"] // 3 + infos[1]["frames"] // 5
    assert runners[1].detector is not None and runners[0].detector is None  # hall's own minimum face size
    appeared = client.get("/api/events?type=appeared").json()["events"]
    assert {e["source"] for e in appeared} <= {"door", "hall"} and appeared
    page = client.get("/live").text
    assert ">door</h2>" in page and ">hall</h2>" in page and "ms lag" in page
