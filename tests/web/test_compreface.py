"""The CompreFace-compatible API (``/api/v1/recognition``) on the real models and images.

First with FastAPI's TestClient (shapes, statuses, errors, the similarity mapping,
live gallery changes), then with CompreFace's own Python SDK (``compreface-sdk``)
against a real ``facesense serve`` subprocess.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

from .conftest import MakeClient

V1 = "/api/v1/recognition"
TOKEN = "s3cret-token-for-compreface"
KEY = {"x-api-key": TOKEN}
EXPECTED = {
    "alex_lacamoire1.jpg": ["alex_lacamoire"],
    "johnsnow_test1.jpg": ["kit_harington"],
    "kit_with_rose.jpg": ["kit_harington", "rose_leslie"],
    "obama1.jpg": ["obama"],
    "obama_and_biden.jpg": ["biden", "obama"],
}
TRAIN_PEOPLE = ["alex_lacamoire", "biden", "kit_harington", "obama", "rose_leslie"]
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# LFW people not in knn_examples: strangers to the gallery.
STRANGERS = [
    "Aaron_Patterson",
    "Aaron_Sorkin",
    "Abbas_Kiarostami",
    "Abdel_Madi_Shabneh",
    "Abdoulaye_Wade",
    "Adam_Sandler",
]


@pytest.fixture(scope="module")
def enrolled_db(tmp_path_factory: pytest.TempPathFactory, examples_dir: Path, analyzer: Any) -> Path:
    """knn_examples/train enrolled with the enroll library."""
    from facesense.enroll import Enroller
    from facesense.gallery.sqlite import SQLiteGallery

    db = tmp_path_factory.mktemp("compreface-gallery") / "knn.db"
    with SQLiteGallery(db) as gallery:
        summary = Enroller(gallery, analyzer).enroll_folder(examples_dir / "knn_examples" / "train")
    assert len(summary.added) == 9
    return db


@pytest.fixture
def db(enrolled_db: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "knn-copy.db"
    shutil.copy(enrolled_db, copy)
    return copy


@pytest.fixture
def train(examples_dir: Path) -> Path:
    return examples_dir / "knn_examples" / "train"


@pytest.fixture
def test_dir(examples_dir: Path) -> Path:
    return examples_dir / "knn_examples" / "test"


def upload(path: Path) -> dict[str, Any]:
    return {"file": (path.name, path.read_bytes(), "image/jpeg")}


def error(response: Any, status: int, code: int) -> str:
    """The CompreFace error body's message, after checking status, code and shape."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"message", "code"}, body
    assert body["code"] == code, body
    message = body["message"]
    assert isinstance(message, str) and message and "\n" not in message and "Traceback" not in message
    return message


def recognized(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert isinstance(result, list)
    return result


def named(faces: list[dict[str, Any]]) -> list[str]:
    """Subjects named as facesense names them: the first subject at similarity >= 0.5."""
    return sorted(f["subjects"][0]["subject"] for f in faces if f["subjects"] and f["subjects"][0]["similarity"] >= 0.5)


# --- subjects ---------------------------------------------------------------------------


def test_subjects_add_list_rename_delete(make_client: MakeClient) -> None:
    client = make_client()
    assert client.get(f"{V1}/subjects").json() == {"subjects": []}
    response = client.post(f"{V1}/subjects", json={"subject": "Ada Lovelace"})
    assert response.status_code == 201 and response.json() == {"subject": "Ada Lovelace"}
    assert client.get(f"{V1}/subjects").json() == {"subjects": ["Ada Lovelace"]}
    listed = client.get(f"{V1}/subjects/", follow_redirects=False)  # CompreFace's docs write the slash
    assert listed.status_code == 200 and listed.json() == {"subjects": ["Ada Lovelace"]}
    assert "already exists" in error(client.post(f"{V1}/subjects", json={"subject": "Ada Lovelace"}), 400, 43)

    response = client.put(f"{V1}/subjects/Ada Lovelace", json={"subject": "Ada"})
    assert response.status_code == 200 and response.json() == {"updated": True}
    assert client.get(f"{V1}/subjects").json() == {"subjects": ["Ada"]}
    assert "Ghost" in error(client.put(f"{V1}/subjects/Ghost", json={"subject": "X"}), 404, 42)

    assert client.post(f"{V1}/subjects", json={"subject": "Bea"}).status_code == 201
    assert client.delete(f"{V1}/subjects/Ada").json() == {"subject": "Ada"}
    assert "Ada" in error(client.delete(f"{V1}/subjects/Ada"), 404, 42)
    assert client.get(f"{V1}/subjects").json() == {"subjects": ["Bea"]}
    assert client.delete(f"{V1}/subjects").json() == {"deleted": 1}
    assert client.get(f"{V1}/subjects").json() == {"subjects": []}

    assert "reserved" in error(client.post(f"{V1}/subjects", json={"subject": "unknown"}), 400, 26)
    assert "empty" in error(client.post(f"{V1}/subjects", json={"subject": "  "}), 400, 26)
    assert "subject" in error(client.post(f"{V1}/subjects", json={"name": "x"}), 400, 26)
    assert error(
        client.post(f"{V1}/subjects", content=b"{not json", headers={"Content-Type": "application/json"}), 400, 26
    )


def test_enrolled_people_are_subjects_and_rename_merges(make_client: MakeClient, db: Path) -> None:
    client = make_client(db=db)
    assert client.get(f"{V1}/subjects").json() == {"subjects": TRAIN_PEOPLE}
    faces = client.get(f"{V1}/faces", params={"size": 100}).json()
    by_subject = {s: sum(f["subject"] == s for f in faces["faces"]) for s in TRAIN_PEOPLE}
    assert by_subject == {"alex_lacamoire": 1, "biden": 2, "kit_harington": 2, "obama": 2, "rose_leslie": 2}
    # CompreFace merges into an existing subject: biden's faces move to obama.
    assert client.put(f"{V1}/subjects/biden", json={"subject": "obama"}).json() == {"updated": True}
    assert client.get(f"{V1}/subjects").json() == {
        "subjects": ["alex_lacamoire", "kit_harington", "obama", "rose_leslie"]
    }
    assert client.get(f"{V1}/faces", params={"subject": "obama"}).json()["total_elements"] == 4
    # The rename reached the people API too (one store).
    people = {p["name"]: p["samples"] for p in client.get("/api/people").json()["people"]}
    assert people["obama"] == 4 and "biden" not in people


# --- faces ----------------------------------------------------------------------------------


def test_add_list_download_and_delete_faces(make_client: MakeClient, train: Path) -> None:
    client = make_client()
    response = client.post(f"{V1}/faces", params={"subject": "obama"}, files=upload(train / "obama" / "obama.jpg"))
    assert response.status_code == 201, response.text
    first = response.json()
    assert set(first) == {"image_id", "subject"} and first["subject"] == "obama"
    assert UUID_RE.match(first["image_id"])
    # The same photo again is the same face, not a second copy.
    again = client.post(f"{V1}/faces", params={"subject": "obama"}, files=upload(train / "obama" / "obama.jpg"))
    assert again.status_code == 201 and again.json() == first
    second = client.post(
        f"{V1}/faces",
        params={"subject": "obama", "det_prob_threshold": "0.9"},  # YuNet (the default) scores obama2.jpg 0.94
        files=upload(train / "obama" / "obama2.jpg"),
    ).json()
    assert second["image_id"] != first["image_id"]
    # The image_id is the people API's sample id.
    (person,) = client.get("/api/people").json()["people"]
    sample_ids = [f["id"] for f in client.get(f"/api/people/{person['id']}").json()["faces"]]
    ids = [divmod(uuid.UUID(x["image_id"]).int, 2**64) for x in (first, second)]
    assert ids == [(person["id"], sample_ids[0]), (person["id"], sample_ids[1])]

    page = client.get(f"{V1}/faces").json()
    assert page == {
        "faces": [first, second],
        "page_number": 0,
        "page_size": 20,
        "total_pages": 1,
        "total_elements": 2,
    }
    page = client.get(f"{V1}/faces", params={"subject": "obama", "page": 1, "size": 1}).json()
    assert page["faces"] == [second] and page["total_pages"] == 2 and page["page_number"] == 1
    assert client.get(f"{V1}/faces", params={"subject": "nobody"}).json()["total_elements"] == 0
    assert error(client.get(f"{V1}/faces", params={"size": 0}), 400, 26)
    assert error(client.get(f"{V1}/faces", params={"page": "x"}), 400, 26)

    img = client.get(f"{V1}/faces/{first['image_id']}/img")
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg" and img.content[:2] == b"\xff\xd8"
    assert client.get(f"{V1}/faces/{ids[0][1]}/img").content == img.content  # the plain sample id works too
    someone_else = str(uuid.UUID(int=((person["id"] + 1) << 64) | ids[0][1]))
    assert "not found" in error(client.get(f"{V1}/faces/{someone_else}/img"), 404, 11)

    assert client.delete(f"{V1}/faces/{first['image_id']}").json() == first
    assert "not found" in error(client.delete(f"{V1}/faces/{first['image_id']}"), 404, 11)
    assert error(client.get(f"{V1}/faces/{first['image_id']}/img"), 404, 11)
    assert "UUID" in error(client.delete(f"{V1}/faces/not-an-id"), 400, 26)
    # Several at once; ids of faces that do not exist are ignored.
    response = client.post(f"{V1}/faces/delete", json=[second["image_id"], first["image_id"]])
    assert response.status_code == 200 and response.json() == [second]
    # As in CompreFace, the subject stays when its last face goes.
    assert client.get(f"{V1}/subjects").json() == {"subjects": ["obama"]}
    assert client.get("/api/people").json()["people"] == []
    # ... and gets faces again.
    client.post(f"{V1}/faces", params={"subject": "obama"}, files=upload(train / "obama" / "obama.jpg"))
    client.post(f"{V1}/faces", params={"subject": "biden"}, files=upload(train / "biden" / "biden.jpg"))
    assert client.delete(f"{V1}/faces", params={"subject": "obama"}).json() == {"deleted": 1}
    assert client.delete(f"{V1}/faces", params={"subject": "nobody"}).json() == {"deleted": 0}
    assert "empty" in error(client.delete(f"{V1}/faces", params={"subject": ""}), 400, 26)  # not "every face"
    assert client.get(f"{V1}/faces").json()["faces"][0]["subject"] == "biden"
    assert client.delete(f"{V1}/faces").json() == {"deleted": 1}
    assert client.get(f"{V1}/subjects").json() == {"subjects": ["biden", "obama"]}


def test_add_face_refuses_bad_photos_with_one_line_errors(
    make_client: MakeClient, examples_dir: Path, data_dir: Path, train: Path
) -> None:
    client = make_client()
    url = f"{V1}/faces"
    two = error(client.post(url, params={"subject": "x"}, files=upload(examples_dir / "two_people.jpg")), 400, 31)
    assert "2 faces" in two
    no_face = upload(data_dir / "negatives" / "darknet_dog.jpg")
    assert (
        error(client.post(url, params={"subject": "x"}, files=no_face), 400, 28)
        == "No face is found in the given image"
    )
    corrupt = {"file": ("broken.jpg", b"\xff\xd8\xff\xe0 this is not a JPEG", "image/jpeg")}
    assert "broken.jpg" in error(client.post(url, params={"subject": "x"}, files=corrupt), 400, 21)
    assert "subject" in error(client.post(url, files=upload(train / "obama" / "obama.jpg")), 400, 33)
    assert "file" in error(client.post(url, params={"subject": "x"}), 400, 33)
    bad_threshold = client.post(
        url, params={"subject": "x", "det_prob_threshold": "2"}, files=upload(train / "obama" / "obama.jpg")
    )
    assert "det_prob_threshold" in error(bad_threshold, 400, 26)
    # Nothing of it reached the gallery.
    assert client.get(f"{V1}/subjects").json() == {"subjects": []}
    assert client.get(f"{V1}/faces").json()["total_elements"] == 0


# --- recognition ------------------------------------------------------------------------------


def test_recognize_knn_examples(make_client: MakeClient, db: Path, test_dir: Path) -> None:
    client = make_client(db=db)
    for name, expected in EXPECTED.items():
        faces = recognized(client.post(f"{V1}/recognize", files=upload(test_dir / name)))
        assert named(faces) == expected, (name, faces)
    face = recognized(client.post(f"{V1}/recognize", files=upload(test_dir / "obama1.jpg")))[0]
    assert set(face) == {"box", "subjects"}
    box = face["box"]
    assert set(box) == {"probability", "x_min", "y_min", "x_max", "y_max"}
    assert all(isinstance(box[k], int) for k in ("x_min", "y_min", "x_max", "y_max"))
    assert 0 <= box["x_min"] < box["x_max"] and 0 <= box["y_min"] < box["y_max"] and 0.9 < box["probability"] <= 1
    assert len(face["subjects"]) == 1 and face["subjects"][0]["subject"] == "obama"
    assert 0.5 <= face["subjects"][0]["similarity"] <= 1


def test_similarity_is_facesense_decision(make_client: MakeClient, db: Path, test_dir: Path, lfw_dir: Path) -> None:
    """A face is named by ``/api/recognize`` exactly when its first similarity is >= 0.5,
    and the similarity is that API's confidence."""
    client = make_client(db=db)
    images = [test_dir / n for n in EXPECTED] + [sorted((lfw_dir / p).glob("*.jpg"))[0] for p in STRANGERS]
    strangers_seen = known_seen = 0
    for path in images:
        ours = client.post("/api/recognize", files=upload(path)).json()["faces"]
        theirs = recognized(client.post(f"{V1}/recognize", files=upload(path), params={"prediction_count": 3}))
        assert len(ours) == len(theirs), path
        for mine, cf in zip(ours, theirs, strict=True):
            top = cf["subjects"][0]
            assert (mine["name"] != "unknown") == (top["similarity"] >= 0.5), (path, mine, cf)
            if mine["name"] != "unknown":
                assert top["subject"] == mine["name"]
                known_seen += 1
            else:
                strangers_seen += 1
            assert abs(top["similarity"] - mine["confidence"]) <= 1e-4, (mine, top)
            sims = [s["similarity"] for s in cf["subjects"]]
            assert len(cf["subjects"]) == 3 and sims == sorted(sims, reverse=True), cf
            assert all(s < 0.5 for s in sims[1:]), cf  # facesense names one person per face at most
            assert len({s["subject"] for s in cf["subjects"]}) == 3
    assert strangers_seen >= len(STRANGERS) - 1  # LFW strangers are (nearly all) unknown
    assert known_seen >= 7  # every face of the knn_examples test photos


def test_recognize_options(make_client: MakeClient, db: Path, test_dir: Path) -> None:
    client = make_client(db=db)
    url = f"{V1}/recognize"
    both = recognized(client.post(url, files=upload(test_dir / "kit_with_rose.jpg")))
    assert len(both) == 2
    area = [(f["box"]["x_max"] - f["box"]["x_min"]) * (f["box"]["y_max"] - f["box"]["y_min"]) for f in both]
    largest = both[area.index(max(area))]
    one = recognized(client.post(url, params={"limit": 1}, files=upload(test_dir / "kit_with_rose.jpg")))
    assert [f["box"] for f in one] == [largest["box"]]
    assert len(recognized(client.post(url, params={"limit": 0}, files=upload(test_dir / "kit_with_rose.jpg")))) == 2

    lowest, highest = sorted(f["box"]["probability"] for f in both)
    assert highest - lowest > 2e-5  # scores are rounded to 5 decimals
    between = {"det_prob_threshold": (lowest + highest) / 2}
    fewer = recognized(client.post(url, params=between, files=upload(test_dir / "kit_with_rose.jpg")))
    assert [f["box"]["probability"] for f in fewer] == [highest]

    full = recognized(
        client.post(
            url,
            params={"face_plugins": "landmarks,calculator,age,gender", "status": "true"},
            files=upload(test_dir / "obama1.jpg"),
        )
    )[0]
    assert set(full) == {"box", "subjects", "landmarks", "embedding", "execution_time"}
    assert len(full["landmarks"]) == 5 and all(len(p) == 2 for p in full["landmarks"])
    x = [p[0] for p in full["landmarks"]]
    assert all(full["box"]["x_min"] <= v <= full["box"]["x_max"] for v in x)
    assert len(full["embedding"]) == 256 and abs(sum(v * v for v in full["embedding"]) - 1) < 1e-3
    assert set(full["execution_time"]) == {"detector", "calculator"} and full["execution_time"]["calculator"] > 0
    body = client.post(url, params={"status": "true"}, files=upload(test_dir / "obama1.jpg")).json()
    assert set(body["plugins_versions"]) == {"detector", "calculator"}

    assert "prediction_count" in error(
        client.post(url, params={"prediction_count": 0}, files=upload(test_dir / "obama1.jpg")), 400, 26
    )
    assert "limit" in error(client.post(url, params={"limit": -1}, files=upload(test_dir / "obama1.jpg")), 400, 26)
    assert "det_prob_threshold" in error(
        client.post(url, params={"det_prob_threshold": 1.5}, files=upload(test_dir / "obama1.jpg")), 400, 26
    )
    # Double Take sends face_plugins=undefined when its configuration names none.
    plain = recognized(client.post(url, params={"face_plugins": "undefined"}, files=upload(test_dir / "obama1.jpg")))
    assert set(plain[0]) == {"box", "subjects"} and named(plain) == ["obama"]
    assert error(client.post(url, params={"status": "maybe"}, files=upload(test_dir / "obama1.jpg")), 400, 26)


def test_recognize_errors_and_empty_gallery(make_client: MakeClient, data_dir: Path, test_dir: Path) -> None:
    client = make_client()
    url = f"{V1}/recognize"
    # Nobody enrolled: faces are found, with no subjects.
    faces = recognized(client.post(url, files=upload(test_dir / "kit_with_rose.jpg")))
    assert len(faces) == 2 and all(f["subjects"] == [] for f in faces)
    no_face = upload(data_dir / "negatives" / "darknet_dog.jpg")
    assert error(client.post(url, files=no_face), 400, 28) == "No face is found in the given image"
    corrupt = {"file": ("broken.png", b"\x89PNG\r\n\x1a\n garbage", "image/png")}
    assert "broken.png" in error(client.post(url, files=corrupt), 400, 21)
    empty = {"file": ("empty.jpg", b"", "image/jpeg")}
    assert "empty" in error(client.post(url, files=empty), 400, 21)
    assert "file" in error(client.post(url), 400, 33)
    assert "file" in error(client.post(url, json={"file": "aGVsbG8="}), 400, 33)


def test_live_gallery_changes_reach_recognition(make_client: MakeClient, train: Path, test_dir: Path) -> None:
    client = make_client()
    url = f"{V1}/recognize"
    assert recognized(client.post(url, files=upload(test_dir / "obama1.jpg")))[0]["subjects"] == []
    added = client.post(f"{V1}/faces", params={"subject": "obama"}, files=upload(train / "obama" / "obama.jpg")).json()
    assert named(recognized(client.post(url, files=upload(test_dir / "obama1.jpg")))) == ["obama"]
    # Enrolled through the people API: recognised here at once, too.
    photos = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in sorted((train / "kit_harington").iterdir())]
    assert client.post("/api/people", data={"name": "kit_harington"}, files=photos).status_code == 201
    assert named(recognized(client.post(url, files=upload(test_dir / "johnsnow_test1.jpg")))) == ["kit_harington"]
    # Renamed and removed: recognition follows.
    client.put(f"{V1}/subjects/obama", json={"subject": "barack"})
    assert named(recognized(client.post(url, files=upload(test_dir / "obama1.jpg")))) == ["barack"]
    client.delete(f"{V1}/faces/{added['image_id']}")
    top = recognized(client.post(url, files=upload(test_dir / "obama1.jpg")))[0]["subjects"][0]
    assert top["subject"] == "kit_harington" and top["similarity"] < 0.5


# --- access ---------------------------------------------------------------------------------


def test_api_key_is_the_token(make_client: MakeClient, test_dir: Path) -> None:
    client = make_client(token=TOKEN)
    url = f"{V1}/subjects"
    assert error(client.get(url), 401, 20) == "Missing header: x-api-key"
    assert "x-api-key" in error(client.get(url, headers={"x-api-key": "wrong-key-123"}), 401, 0)
    assert error(client.post(url, json={"subject": "a"}), 401, 20)
    assert error(client.post(f"{V1}/recognize", files=upload(test_dir / "obama1.jpg")), 401, 20)
    assert client.get(url, headers=KEY).json() == {"subjects": []}
    assert client.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.post(url, json={"subject": "a"}, headers=KEY).status_code == 201
    # A web page elsewhere cannot write through a browser, key or not (the server's CSRF rule).
    forged = client.post(url, json={"subject": "b"}, headers={**KEY, "Origin": "http://evil.example"})
    assert forged.status_code == 403
    assert client.get(url, headers=KEY).json() == {"subjects": ["a"]}


def test_upload_over_the_limit_is_refused(make_client: MakeClient, test_dir: Path) -> None:
    client = make_client(max_upload_bytes=50_000)
    photo = upload(test_dir / "obama1.jpg")
    assert len(photo["file"][1]) > 50_000
    assert "upload limit" in error(client.post(f"{V1}/recognize", files=photo), 413, 26)
    assert "upload limit" in error(client.post(f"{V1}/faces", params={"subject": "obama"}, files=photo), 413, 26)


def test_without_a_token_any_key_is_accepted(make_client: MakeClient) -> None:
    client = make_client()
    assert (
        client.get(f"{V1}/subjects", headers={"x-api-key": "00000000-0000-0000-0000-000000000002"}).status_code == 200
    )
    assert client.get(f"{V1}/subjects").status_code == 200


def test_openapi_lists_the_endpoints_under_their_tag(make_client: MakeClient) -> None:
    from facesense.web.compreface import TAG

    schema = make_client().get("/api/openapi.json").json()
    paths = {p: ops for p, ops in schema["paths"].items() if p.startswith(V1)}
    expected = {
        f"{V1}/subjects": {"get", "post", "delete"},
        f"{V1}/subjects/{{subject}}": {"put", "delete"},
        f"{V1}/faces": {"get", "post", "delete"},
        f"{V1}/faces/delete": {"post"},
        f"{V1}/faces/{{image_id}}": {"delete"},
        f"{V1}/faces/{{image_id}}/img": {"get"},
        f"{V1}/recognize": {"post"},
    }
    assert {p: set(ops) for p, ops in paths.items()} == expected
    assert all(op["tags"] == [TAG] for ops in paths.values() for op in ops.values())
    assert {"type": "apiKey", "in": "header", "name": "x-api-key"}.items() <= next(
        iter(schema["components"]["securitySchemes"].values())
    ).items()
    params = {p["name"] for p in paths[f"{V1}/recognize"]["post"]["parameters"]}
    assert {"limit", "det_prob_threshold", "prediction_count", "face_plugins", "status"} <= params


# --- the official CompreFace Python SDK against a real server ---------------------------------------


def compreface_sdk() -> Any:
    """CompreFace's SDK, or a skip when it is not installed at all.

    An SDK that is installed but does not import (its pinned requests-toolbelt 0.9.1
    with urllib3 2) fails the test instead: that is a broken environment, not a
    missing optional one.
    """
    if importlib.util.find_spec("compreface") is None:
        pytest.skip(
            "compreface-sdk is not installed; install it with "
            "`pip install --no-deps compreface-sdk==0.6.0` after `pip install -e '.[test]'`"
        )
    import compreface

    return compreface


def test_official_sdk_against_facesense_serve(tmp_path: Path, train: Path, test_dir: Path) -> None:
    compreface = compreface_sdk()
    from .serving import serve

    # Photos go as bytes: given a path, the SDK opens the file and never closes it.
    with serve(tmp_path, token=TOKEN) as server:
        port = server.url.rsplit(":", 1)[1]
        service = compreface.CompreFace("http://127.0.0.1", port, {"prediction_count": 2, "det_prob_threshold": 0.8})
        recognition = service.init_face_recognition(TOKEN)
        faces = recognition.get_face_collection()
        subjects = recognition.get_subjects()

        added: dict[str, list[str]] = {}
        for folder in sorted(train.iterdir()):
            for photo in sorted(folder.iterdir()):
                answer = faces.add(image_path=photo.read_bytes(), subject=folder.name)
                assert answer.get("subject") == folder.name and UUID_RE.match(answer["image_id"]), answer
                added.setdefault(folder.name, []).append(answer["image_id"])
        assert subjects.list() == {"subjects": TRAIN_PEOPLE}
        assert subjects.add("nobody_yet") == {"subject": "nobody_yet"}
        assert "nobody_yet" in subjects.list()["subjects"]
        listed = faces.list()
        assert listed["total_elements"] == 9 and {f["subject"] for f in listed["faces"]} == set(TRAIN_PEOPLE)

        for name, expected in EXPECTED.items():
            answer = recognition.recognize(image_path=(test_dir / name).read_bytes())
            result = answer["result"]
            assert named(result) == expected, (name, answer)
            assert all(len(f["subjects"]) == 2 for f in result)

        # Delete an example, then a subject: recognition follows.
        obama = added["obama"]
        assert faces.delete(obama[0]) == {"image_id": obama[0], "subject": "obama"}
        assert faces.list()["total_elements"] == 8
        assert named(recognition.recognize(image_path=(test_dir / "obama1.jpg").read_bytes())["result"]) == ["obama"]
        assert subjects.delete("obama") == {"subject": "obama"}
        assert "obama" not in subjects.list()["subjects"]
        top = recognition.recognize(image_path=(test_dir / "obama1.jpg").read_bytes())["result"][0]["subjects"][0]
        assert top["subject"] != "obama" and top["similarity"] < 0.5
        assert subjects.update("biden", "joe") == {"updated": True}
        assert named(recognition.recognize(image_path=(test_dir / "obama_and_biden.jpg").read_bytes())["result"]) == [
            "joe"
        ]
        assert faces.delete_all("joe") == {"deleted": 2}
        # A wrong key is refused in CompreFace's shape.
        wrong = compreface.CompreFace("http://127.0.0.1", port).init_face_recognition("not-the-token")
        assert wrong.get_subjects().list() == {"message": "invalid x-api-key", "code": 0}
        assert subjects.delete_all() == {"deleted": 5}
        assert subjects.list() == {"subjects": []}
