"""Correcting the names of an uploaded photo: ``POST /api/recognize?correctable=true``.

Real models and images: the gallery has ``obama`` enrolled from *alex_lacamoire's* photo
(``knn_examples/train/alex_lacamoire/img1.jpg``, someone else's face enrolled as the person
shown) and ``biden`` from his own, so alex's other photo (``knn_examples/test/alex_lacamoire1.jpg``)
is named ``obama``. With the flag the face is kept as a ``recognized`` event (source
``upload``, crop and embedding) whose id the answer gives; ``POST /api/events/{id}/correct``
corrects it, and the next upload of the photo shows the correction. Unknown faces are kept
as ``unknown`` events the events page can name. Without the flag nothing is kept.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

from .conftest import MakeClient

PLAIN_KEYS = {"box", "score", "name", "distance", "confidence"}  # `facesense recognize --json`
KEPT_KEYS = PLAIN_KEYS | {"event_id", "can_correct", "can_name"}


@pytest.fixture
def db(mistaken_db: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "g.db"
    shutil.copy(mistaken_db, copy)
    return copy


@pytest.fixture(scope="module")
def alex_photo(examples_dir: Path) -> dict[str, Any]:
    path = examples_dir / "knn_examples" / "test" / "alex_lacamoire1.jpg"
    return {"file": (path.name, path.read_bytes(), "image/jpeg")}


def recognize(client: Any, files: dict[str, Any], **params: str) -> list[dict[str, Any]]:
    response = client.post("/api/recognize", files=files, params=params)
    assert response.status_code == 200, response.text
    faces: list[dict[str, Any]] = response.json()["faces"]
    return faces


def one_line_error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error, str) and "\n" not in error
    return error


def stored(client: Any) -> int:
    return int(client.app.state.facesense.events.count())


def test_without_the_flag_nothing_is_kept(make_client: MakeClient, db: Path, alex_photo: dict[str, Any]) -> None:
    client = make_client(db=db, start_sources=False)
    (plain,) = recognize(client, alex_photo)
    assert set(plain) == PLAIN_KEYS and plain["name"] == "obama"
    assert recognize(client, alex_photo, correctable="false") == [plain]
    assert stored(client) == 0
    # The flag adds to the records; what they say is the same.
    (kept,) = recognize(client, alex_photo, correctable="true")
    assert set(kept) == KEPT_KEYS and {k: kept[k] for k in PLAIN_KEYS} == plain
    assert stored(client) == 1


def test_every_face_of_a_group_photo_is_kept(make_client: MakeClient, db: Path, examples_dir: Path) -> None:
    client = make_client(db=db, start_sources=False)
    path = examples_dir / "knn_examples" / "test" / "obama_and_biden.jpg"
    faces = recognize(client, {"file": (path.name, path.read_bytes(), "image/jpeg")}, correctable="true")
    names = [f["name"] for f in faces]  # "obama" is alex's face here; a face in the background too
    assert names.count("biden") == 1 and set(names) == {"biden", "unknown"} and len(names) >= 2
    assert len({f["event_id"] for f in faces}) == len(faces) == stored(client)
    for f in faces:
        event = client.get(f"/api/events/{f['event_id']}").json()
        named = f["name"] != "unknown"
        assert (event["type"], event["name"], event["box"]) == (
            ("recognized" if named else "unknown"),
            (f["name"] if named else None),
            f["box"],
        )
        assert (f["can_correct"], f["can_name"]) == (named, not named) == (event["can_correct"], event["can_name"])


def test_not_x_on_an_uploaded_face_then_naming_it(
    make_client: MakeClient, db: Path, alex_photo: dict[str, Any], analyzer: Any
) -> None:
    client = make_client(db=db, start_sources=False)
    (face,) = recognize(client, alex_photo, correctable="true")
    assert (face["name"], face["can_correct"], face["can_name"]) == ("obama", True, False)
    event = client.get(f"/api/events/{face['event_id']}").json()
    assert (event["type"], event["source"], event["name"], event["track_id"]) == ("recognized", "upload", "obama", None)
    assert event["box"] == face["box"] and event["can_correct"] is True and event["has_crop"] is True
    # The face's crop is kept, not the photo.
    from facesense.imageio import decode_image
    from facesense.web.thumbnails import CROP_PX

    crop = client.get(event["crop_url"])
    assert crop.status_code == 200 and crop.content[:2] == b"\xff\xd8"
    assert decode_image(crop.content, name="crop").shape == (CROP_PX, CROP_PX, 3)
    embedding = client.app.state.facesense.events.embedding(face["event_id"])
    assert embedding is not None and embedding.shape == (analyzer.embedder.dim,)

    done = client.post(f"/api/events/{face['event_id']}/correct", json={"not": "obama"})
    assert done.status_code == 200, done.text
    assert done.json()["correction"] == "not obama" and done.json()["event"]["can_correct"] is False
    again = one_line_error(client.post(f"/api/events/{face['event_id']}/correct", json={"not": "obama"}), 409)
    assert "corrected already" in again

    # The same photo again: not obama any more, and nobody else: an unknown face to name.
    (after,) = recognize(client, alex_photo, correctable="true")
    assert after["name"] == "unknown" and after["box"] == face["box"]
    assert (after["can_correct"], after["can_name"]) == (False, True) and after["event_id"] != face["event_id"]
    unknown = client.get(f"/api/events/{after['event_id']}").json()
    assert (unknown["type"], unknown["source"], unknown["can_name"]) == ("unknown", "upload", True)
    named = client.post(f"/api/events/{after['event_id']}/name", json={"name": "alex"})
    assert named.status_code == 200, named.text
    assert named.json()["person"]["samples"] == 1
    (known,) = recognize(client, alex_photo)
    assert set(known) == PLAIN_KEYS and known["name"] == "alex"
    assert stored(client) == 2
    page = client.get("/events")
    assert page.status_code == 200 and "Corrected: not obama" in page.text and "Enrolled as alex" in page.text


def test_this_is_y_on_an_uploaded_face(make_client: MakeClient, db: Path, alex_photo: dict[str, Any]) -> None:
    client = make_client(db=db, start_sources=False)
    (face,) = recognize(client, alex_photo, correctable="true")
    assert face["name"] == "obama" and face["can_correct"] is True
    done = client.post(f"/api/events/{face['event_id']}/correct", json={"is": "biden"})
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["correction"], body["not"], body["is"]) == ("is biden", "obama", "biden")
    assert isinstance(body["sample_id"], int) and isinstance(body["negative_id"], int)
    (after,) = recognize(client, alex_photo)
    assert after["name"] == "biden"


def test_an_empty_gallery_keeps_unknown_faces_to_name(
    make_client: MakeClient, examples_dir: Path, alex_photo: dict[str, Any]
) -> None:
    client = make_client(start_sources=False)
    (plain,) = recognize(client, alex_photo)
    assert set(plain) == PLAIN_KEYS and plain["name"] == "unknown" and plain["distance"] is None
    (face,) = recognize(client, alex_photo, correctable="true")
    assert {k: face[k] for k in PLAIN_KEYS} == plain
    assert (face["can_correct"], face["can_name"]) == (False, True)
    named = client.post(f"/api/events/{face['event_id']}/name", json={"name": "alex"})
    assert named.status_code == 200, named.text
    (known,) = recognize(client, alex_photo)
    assert known["name"] == "alex"


def test_bad_uploads_keep_nothing(make_client: MakeClient, examples_dir: Path) -> None:
    client = make_client(max_upload_bytes=200_000, max_request_bytes=1_000_000, start_sources=False)
    big = examples_dir / "obama.jpg"  # 280 kB
    assert "limit" in one_line_error(
        client.post("/api/recognize?correctable=true", files={"file": (big.name, big.read_bytes(), "image/jpeg")}), 413
    )
    text = client.post(
        "/api/recognize?correctable=true", files={"file": ("a.jpg", b"GIF89a, not really", "image/jpeg")}
    )
    assert "not a readable image" in one_line_error(text, 415)
    assert "file" in one_line_error(client.post("/api/recognize?correctable=true"), 422)
    maybe = client.post("/api/recognize?correctable=maybe", files={"file": ("a.jpg", b"x", "image/jpeg")})
    assert "correctable" in one_line_error(maybe, 422)
    assert stored(client) == 0


def test_the_flag_is_in_the_schema(make_client: MakeClient) -> None:
    client = make_client(start_sources=False)
    schema = client.get("/api/openapi.json").json()
    (param,) = schema["paths"]["/api/recognize"]["post"]["parameters"]
    assert (param["name"], param["in"], param["schema"]["type"], param["schema"]["default"]) == (
        "correctable", "query", "boolean", False,
    )  # fmt: skip
    assert "POST /api/events/{event_id}/correct" in param["description"]
    schemas = schema["components"]["schemas"]
    ref = schemas["RecognizeResponse"]["properties"]["faces"]["items"]["$ref"]
    face = schemas[ref.rsplit("/", 1)[-1]]
    assert {"event_id", "can_correct", "can_name"} <= set(face["properties"])
    assert set(face["required"]) == PLAIN_KEYS
    assert all(
        face["properties"][k]["description"].startswith("Only with ?correctable=true")
        for k in ("event_id", "can_correct", "can_name")
    )


# An upload repeats a face exactly: "not X" then "this is Y", and "not X" twice, on the same face.
def test_not_x_then_this_is_y_on_the_same_upload(make_client: MakeClient, db: Path, alex_photo: dict[str, Any]) -> None:
    client = make_client(db=db, start_sources=False)
    (face,) = recognize(client, alex_photo, correctable="true")
    assert client.post(f"/api/events/{face['event_id']}/correct", json={"not": "obama"}).status_code == 200
    assert recognize(client, alex_photo)[0]["name"] == "unknown"
    moved = client.post(f"/api/events/{face['event_id']}/correct", json={"is": "biden"})
    assert moved.status_code == 200 and moved.json()["correction"] == "is biden"
    assert recognize(client, alex_photo)[0]["name"] == "biden"


def test_the_same_photo_kept_twice_and_said_not_x_twice(
    make_client: MakeClient, db: Path, alex_photo: dict[str, Any]
) -> None:
    client = make_client(db=db, start_sources=False)
    first, second = (recognize(client, alex_photo, correctable="true")[0] for _ in range(2))
    assert first["event_id"] != second["event_id"] and first["name"] == second["name"] == "obama"
    assert client.post(f"/api/events/{first['event_id']}/correct", json={"not": "obama"}).status_code == 200
    again = client.post(f"/api/events/{second['event_id']}/correct", json={"not": "obama"})
    assert again.status_code == 200, again.text
    assert again.json()["correction"] == "not obama" and again.json()["negative_id"] is None
