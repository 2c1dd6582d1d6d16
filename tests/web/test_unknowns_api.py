"""Recurring unknowns over the REST API: ``/api/unknowns`` and the ``/unknowns`` page.

Real models and images: the unknowns store is filled, as the sources' recorder fills it,
with one record per photo of knn_examples (train and test: biden, obama, kit_harington,
rose_leslie, alex_lacamoire; one track each, its face embedded and cropped), which the
clusterer groups into one cluster per person; plus one LFW face seen once, and one
"track" whose crop is a brick wall (no face: naming it fails the enrollment checks).
Built once per module; each test works on a copy.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

from .conftest import MakeClient

PEOPLE = ("alex_lacamoire", "biden", "kit_harington", "obama", "rose_leslie")
TEST_PHOTOS = {"obama": "obama1.jpg", "kit_harington": "johnsnow_test1.jpg", "alex_lacamoire": "alex_lacamoire1.jpg"}
LFW_FACE = "Aaron_Sorkin/Aaron_Sorkin_0001.jpg"
OTHER_LFW_FACE = "Aaron_Patterson/Aaron_Patterson_0001.jpg"  # its record's crop is a brick wall
TOKEN = "s3cret-token-for-unknowns"


def _record(analyzer: Any, path: Path, *, source: str, track: int, seen_at: float, crop_from: Any = None) -> Any:
    """The record of one track of one photo's largest face, as the recorder builds it."""
    from facesense.imageio import load_image
    from facesense.unknowns import TrackRecorder

    image = load_image(path)
    faces = analyzer.analyze(image)
    i = int(np.argmax(faces.size_px))
    recorder = TrackRecorder(source=source, model_id=analyzer.model_id, track_id=track)
    if crop_from is None:
        recorder.add(faces.embeddings[i], seen_at=seen_at, quality=0.8, image=image, xyxy=faces.xyxy[i])
    else:  # the face's embedding, but a crop of something else
        recorder.add(faces.embeddings[i], seen_at=seen_at, quality=0.8, image=crop_from, xyxy=(10, 10, 200, 200))
    return recorder.record()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, data_dir: Path, examples_dir: Path, analyzer: Any) -> dict[str, Any]:
    """A folder with an empty gallery's unknowns store, and which cluster is whom."""
    from facesense.gallery.sqlite_unknowns import SQLiteUnknownStore
    from facesense.gallery.unknowns import StoredUnknowns
    from facesense.imageio import load_image

    tmp = tmp_path_factory.mktemp("web-unknowns")
    knn = examples_dir / "knn_examples"
    photos = [(p.parent.name, p) for p in sorted((knn / "train").glob("*/*"))]
    photos += [(person, knn / "test" / name) for person, name in TEST_PHOTOS.items()]
    now = time.time() - 3600
    who: dict[str, int] = {}
    with SQLiteUnknownStore(tmp / "gallery.unknowns.db") as store:
        book = StoredUnknowns(store, analyzer.model_id)
        for k, (person, path) in enumerate(photos):
            record = _record(analyzer, path, source="door" if k % 2 else "gate", track=k + 1, seen_at=now + 60 * k)
            who[person] = book.add(record).cluster_id
        lfw = book.add(_record(analyzer, data_dir / "lfw" / LFW_FACE, source="gate", track=90, seen_at=now + 1500))
        wall = load_image(data_dir / "negatives" / "skimage_brick.png")
        faceless = _record(analyzer, data_dir / "lfw" / OTHER_LFW_FACE, source="gate", track=91, seen_at=now + 1600, crop_from=wall)
        wall_cluster = book.add(faceless).cluster_id
    return {"dir": tmp, "who": who, "singleton": lfw.cluster_id, "faceless": wall_cluster, "photos": len(photos)}


@pytest.fixture
def db(recorded: dict[str, Any], tmp_path: Path) -> Path:
    shutil.copy(recorded["dir"] / "gallery.unknowns.db", tmp_path / "gallery.unknowns.db")
    return tmp_path / "gallery.db"


def _clusters(client: Any, **params: Any) -> dict[int, dict[str, Any]]:
    response = client.get("/api/unknowns", params=params)
    assert response.status_code == 200, response.text
    return {c["id"]: c for c in response.json()["clusters"]}


def test_clusters_are_listed_last_seen_first_and_all_adds_the_singletons(
    make_client: MakeClient, db: Path, recorded: dict[str, Any]
) -> None:
    client = make_client(db=db)
    body = client.get("/api/unknowns").json()
    who = recorded["who"]
    assert {c["id"] for c in body["clusters"]} == set(who.values())  # one per person, all recurring
    assert body["total_records"] == recorded["photos"] + 2 and body["min_size"] == 2
    last = [c["last_seen"] for c in body["clusters"]]
    assert last == sorted(last, reverse=True)
    obama = next(c for c in body["clusters"] if c["id"] == who["obama"])
    assert obama["records"] == 3 and obama["faces"] == 3 and obama["recurring"] and not obama["ignored"]
    assert set(obama["sources"]) <= {"door", "gate"} and len(obama["crop_urls"]) == 3
    every = _clusters(client, all="true")
    assert set(every) == {*who.values(), recorded["singleton"], recorded["faceless"]}
    assert not every[recorded["singleton"]]["recurring"] and every[recorded["singleton"]]["records"] == 1


def test_one_cluster_with_its_records_and_their_crops(make_client: MakeClient, db: Path, recorded: dict[str, Any]) -> None:
    client = make_client(db=db)
    cid = recorded["who"]["kit_harington"]
    detail = client.get(f"/api/unknowns/{cid}").json()
    assert detail["id"] == cid and detail["records"] == 3 and len(detail["record_list"]) == 3
    first = detail["record_list"][0]
    assert {"id", "faces", "first_seen", "last_seen", "source", "track_id", "crop_urls"} <= set(first)
    assert first["first_seen"] <= detail["record_list"][-1]["first_seen"]  # oldest first
    crop = client.get(first["crop_urls"][0])
    assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg"
    assert crop.content.startswith(b"\xff\xd8")
    for url in (f"/api/unknowns/records/{first['id']}/crops/7", "/api/unknowns/records/9999/crops/0", "/api/unknowns/999"):
        missing = client.get(url)
        assert missing.status_code == 404 and set(missing.json()) == {"error"}, url
    assert client.get("/api/unknowns/abc").status_code == 422


def test_naming_a_cluster_enrolls_it_and_the_next_recognition_names_them(
    make_client: MakeClient, db: Path, recorded: dict[str, Any], examples_dir: Path
) -> None:
    client = make_client(db=db)
    photo = (examples_dir / "knn_examples" / "test" / "obama_and_biden.jpg").read_bytes()
    before = client.post("/api/recognize", files={"file": ("o.jpg", photo, "image/jpeg")}).json()["faces"]
    assert {f["name"] for f in before} == {"unknown"}
    state = client.app.state.facesense
    revision = state.store.revision()
    cid = recorded["who"]["obama"]
    named = client.post(f"/api/unknowns/{cid}/name", json={"name": "Barack Obama"})
    assert named.status_code == 200, named.text
    body = named.json()
    assert body["cluster"] == cid and body["samples_added"] == 3
    assert body["person"]["name"] == "Barack Obama" and body["person"]["samples"] == 3
    assert state.store.revision() != revision  # the live matcher refits
    assert cid not in _clusters(client, all="true")
    people = {p["name"]: p for p in client.get("/api/people").json()["people"]}
    assert people["Barack Obama"]["id"] == body["person"]["id"]
    after = client.post("/api/recognize", files={"file": ("o.jpg", photo, "image/jpeg")}).json()["faces"]
    assert "Barack Obama" in {f["name"] for f in after}
    # Naming a second cluster as the same person adds to them.
    again = client.post(f"/api/unknowns/{recorded['who']['biden']}/name", json={"name": "Barack Obama"}).json()
    assert again["person"]["id"] == body["person"]["id"] and again["person"]["samples"] == 3 + again["samples_added"]


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/api/unknowns/999/name", {"name": "ann"}, 404, "no unknown cluster 999"),
        ("/api/unknowns/{obama}/name", {"name": "   "}, 422, "must not be empty"),
        ("/api/unknowns/{obama}/name", {"name": ""}, 422, "name"),
        ("/api/unknowns/{obama}/name", {}, 422, "name"),
        ("/api/unknowns/{obama}/merge", {"other": "{obama}"}, 422, "with itself"),
        ("/api/unknowns/{obama}/merge", {"other": 999}, 404, "no unknown cluster 999"),
        ("/api/unknowns/999/merge", {"other": "{obama}"}, 404, "no unknown cluster 999"),
        ("/api/unknowns/999/ignore", {"ignored": True}, 404, "no unknown cluster 999"),
        ("/api/unknowns/{obama}/ignore", {"ignored": "perhaps"}, 422, "ignored"),
    ],
)
def test_bad_ids_and_names_answer_one_line_and_change_nothing(
    make_client: MakeClient, db: Path, recorded: dict[str, Any], path: str, body: dict[str, Any], status: int, message: str
) -> None:
    client = make_client(db=db)
    before = _clusters(client, all="true")
    obama = str(recorded["who"]["obama"])
    sent = {k: int(v.format(obama=obama)) if isinstance(v, str) and "{" in v else v for k, v in body.items()}
    response = client.post(path.format(obama=obama), json=sent)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"} and message in response.json()["error"]
    assert _clusters(client, all="true") == before


def test_a_cluster_whose_crops_fail_the_enrollment_checks_stays(
    make_client: MakeClient, db: Path, recorded: dict[str, Any]
) -> None:
    client = make_client(db=db)
    cid = recorded["faceless"]
    response = client.post(f"/api/unknowns/{cid}/name", json={"name": "wall"})
    assert response.status_code == 409, response.text
    assert "no face" in response.json()["error"]
    assert cid in _clusters(client, all="true")
    assert client.get("/api/people").json()["people"] == []


def test_naming_into_a_gallery_of_another_model_is_refused(
    make_client: MakeClient, db: Path, recorded: dict[str, Any]
) -> None:
    from facesense.gallery.base import NewSample
    from facesense.gallery.sqlite import SQLiteGallery

    with SQLiteGallery(db) as gallery:
        gallery.add_samples("someone", [NewSample(embedding=np.ones(8, np.float32) / np.sqrt(8), model_id="other/v1",
                                                  source_sha256="0" * 64, source_path="x.jpg", xyxy=(0, 0, 1, 1))])  # fmt: skip
    client = make_client(db=db)
    cid = recorded["who"]["rose_leslie"]
    response = client.post(f"/api/unknowns/{cid}/name", json={"name": "rose"})
    assert response.status_code == 409, response.text
    assert "other/v1" in response.json()["error"]
    assert cid in _clusters(client)


def test_merge_ignore_and_remove_a_record(make_client: MakeClient, db: Path, recorded: dict[str, Any]) -> None:
    client = make_client(db=db)
    who = recorded["who"]
    merged = client.post(f"/api/unknowns/{who['kit_harington']}/merge", json={"other": who["rose_leslie"]})
    assert merged.status_code == 200, merged.text
    assert merged.json()["id"] == who["kit_harington"] and merged.json()["records"] == 5
    listed = _clusters(client)
    assert who["rose_leslie"] not in listed and listed[who["kit_harington"]]["records"] == 5

    ignored = client.post(f"/api/unknowns/{who['alex_lacamoire']}/ignore", json={"ignored": True})
    assert ignored.status_code == 200 and ignored.json()["ignored"] is True
    assert who["alex_lacamoire"] not in _clusters(client)
    assert _clusters(client, all="true")[who["alex_lacamoire"]]["ignored"] is True
    back = client.post(f"/api/unknowns/{who['alex_lacamoire']}/ignore", json={"ignored": False})
    assert back.json()["ignored"] is False and who["alex_lacamoire"] in _clusters(client)

    # "Not the same person": one of the merged records out; the rest stays together.
    records = client.get(f"/api/unknowns/{who['kit_harington']}").json()["record_list"]
    wrong = records[-1]["id"]
    removed = client.delete(f"/api/unknowns/records/{wrong}")
    assert removed.status_code == 200, removed.text
    assert removed.json()["deleted"] == wrong and removed.json()["cluster"]["records"] == 4
    assert wrong not in {r["id"] for r in client.get(f"/api/unknowns/{who['kit_harington']}").json()["record_list"]}
    assert client.delete(f"/api/unknowns/records/{wrong}").status_code == 404
    # The last record of a cluster: the cluster is gone.
    (only,) = client.get(f"/api/unknowns/{recorded['singleton']}").json()["record_list"]
    gone = client.delete(f"/api/unknowns/records/{only['id']}").json()
    assert gone["cluster"] is None and recorded["singleton"] not in _clusters(client, all="true")


def test_the_page_lists_the_clusters_with_their_forms(make_client: MakeClient, db: Path, recorded: dict[str, Any]) -> None:
    client = make_client(db=db)
    page = client.get("/unknowns")
    assert page.status_code == 200 and 'src="/static/unknowns.js"' in page.text
    for cid in recorded["who"].values():
        assert f'data-cluster-id="{cid}"' in page.text
    assert f'data-cluster-id="{recorded["singleton"]}"' not in page.text
    assert f'data-cluster-id="{recorded["singleton"]}"' in client.get("/unknowns?all=true").text
    assert 'href="/unknowns" aria-current="page"' in page.text
    script = client.get("/static/unknowns.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")


def test_no_store_yet_is_an_empty_list_and_creates_nothing(make_client: MakeClient, tmp_path: Path) -> None:
    client = make_client(db=tmp_path / "fresh.db")
    body = client.get("/api/unknowns").json()
    assert body == {"clusters": [], "total_records": 0, "min_size": 2}
    assert client.get("/api/unknowns/1").status_code == 404
    assert client.post("/api/unknowns/1/ignore", json={"ignored": True}).status_code == 404
    assert "No unknown faces recorded yet." in client.get("/unknowns?all=true").text
    assert "No recurring unknown faces." in client.get("/unknowns").text
    assert not (tmp_path / "fresh.unknowns.db").exists()


def test_a_corrupt_store_answers_503_and_the_page_says_so(make_client: MakeClient, tmp_path: Path) -> None:
    (tmp_path / "gallery.unknowns.db").write_bytes(b"not a database at all" * 100)
    client = make_client(db=tmp_path / "gallery.db")
    response = client.get("/api/unknowns")
    assert response.status_code == 503
    assert set(response.json()) == {"error"} and "unknowns" in response.json()["error"]
    page = client.get("/unknowns")
    assert page.status_code == 200 and "cannot read the unknowns" in page.text


def test_a_locked_store_answers_503_then_works_again(
    make_client: MakeClient, db: Path, recorded: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import facesense.gallery.sqlite_file as sqlite_file

    monkeypatch.setattr(sqlite_file, "BUSY_TIMEOUT_S", 0.2)  # SQLite's wait for a lock, 10 s by default
    client = make_client(db=db)
    cid = recorded["who"]["biden"]
    other = sqlite3.connect(db.with_name("gallery.unknowns.db"), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock (readers still read: WAL)
        assert client.get("/api/unknowns").status_code == 200
        locked = client.post(f"/api/unknowns/{cid}/ignore", json={"ignored": True})
        assert locked.status_code == 503, locked.text
        assert "locked" in locked.json()["error"]
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert client.post(f"/api/unknowns/{cid}/ignore", json={"ignored": True}).json()["ignored"] is True


def test_a_closed_store_answers_503(make_client: MakeClient, db: Path) -> None:
    client = make_client(db=db)
    assert client.get("/api/unknowns").status_code == 200
    client.app.state.facesense.unknowns.close()  # what shutdown does
    response = client.get("/api/unknowns")
    assert response.status_code == 503 and set(response.json()) == {"error"}


def test_the_token_and_the_origin_check_guard_the_routes(make_client: MakeClient, db: Path, recorded: dict[str, Any]) -> None:
    client = make_client(db=db, token=TOKEN)
    assert client.get("/api/unknowns").status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/api/unknowns", headers=auth).status_code == 200
    cid = recorded["who"]["biden"]
    forged = client.post(f"/api/unknowns/{cid}/ignore", json={"ignored": True}, headers={**auth, "Origin": "http://evil.example"})
    assert forged.status_code == 403
    login = client.get("/unknowns", follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == "/login?next=%2Funknowns"


def test_the_schema_documents_the_routes(make_client: MakeClient, db: Path) -> None:
    schema = make_client(db=db).get("/api/openapi.json").json()
    paths = schema["paths"]
    expected = {
        ("/api/unknowns", "get"), ("/api/unknowns/{cluster_id}", "get"),
        ("/api/unknowns/records/{record_id}/crops/{rank}", "get"), ("/api/unknowns/{cluster_id}/name", "post"),
        ("/api/unknowns/{cluster_id}/merge", "post"), ("/api/unknowns/{cluster_id}/ignore", "post"),
        ("/api/unknowns/records/{record_id}", "delete"),
    }  # fmt: skip
    for path, method in expected:
        assert paths[path][method]["summary"], (path, method)
    assert schema["components"]["schemas"]["ClusterOut"]["properties"]["records"]["description"]


def test_served_sources_record_unknowns_unless_told_not_to(make_client: MakeClient, tmp_path: Path, examples_dir: Path) -> None:
    from facesense.sinks.unknowns import SourceUnknownsSink

    clip = str(examples_dir / "short_hamilton_clip.mp4")
    on = make_client(db=tmp_path / "a.db", sources=(clip,), start_sources=False)
    (runner,) = on.app.state.facesense.runners
    assert [type(s) for s in runner.extra_sinks] == [SourceUnknownsSink]
    assert on.app.state.facesense.unknowns_writer is not None
    off = make_client(db=tmp_path / "b.db", sources=(clip,), start_sources=False, record_unknowns=False)
    (runner,) = off.app.state.facesense.runners
    assert runner.extra_sinks == [] and off.app.state.facesense.unknowns_writer is None


def test_every_request_sees_what_the_recorder_wrote_meanwhile(
    make_client: MakeClient, db: Path, recorded: dict[str, Any], analyzer: Any
) -> None:
    """Another writer (the sources' recorder, another server) changes the store between requests."""
    from facesense.gallery.sqlite_unknowns import SQLiteUnknownStore
    from facesense.gallery.unknowns import StoredUnknowns

    client = make_client(db=db)
    who = recorded["who"]
    assert who["rose_leslie"] in _clusters(client)
    with SQLiteUnknownStore(db.with_name("gallery.unknowns.db")) as store:
        StoredUnknowns(store, analyzer.model_id).merge(who["kit_harington"], who["rose_leslie"])
    stale = client.post(f"/api/unknowns/{who['rose_leslie']}/ignore", json={"ignored": True})
    assert stale.status_code == 404, stale.text  # merged away meanwhile: nothing is ignored
    listed = _clusters(client, all="true")
    assert who["rose_leslie"] not in listed and listed[who["kit_harington"]]["records"] == 5
    assert not any(c["ignored"] for c in listed.values())


def test_a_postgresql_gallery_keeps_its_unknowns_in_its_database(
    make_client: MakeClient, examples_dir: Path, analyzer: Any
) -> None:
    from facesense.gallery.postgres_unknowns import PostgresUnknownStore
    from facesense.gallery.unknowns import StoredUnknowns

    from ..pg import PG

    url = PG.new_database()
    client = make_client(db=url)
    assert client.get("/api/unknowns").json()["clusters"] == []
    train = examples_dir / "knn_examples" / "train"
    with PostgresUnknownStore(url) as store:
        book = StoredUnknowns(store, analyzer.model_id)
        for k, photo in enumerate(sorted((train / "rose_leslie").iterdir())):
            cid = book.add(_record(analyzer, photo, source="door", track=k, seen_at=time.time() - 100 + k)).cluster_id
    (cluster,) = client.get("/api/unknowns").json()["clusters"]
    assert cluster["id"] == cid and cluster["records"] == 2
    assert client.get(cluster["crop_urls"][0]).content.startswith(b"\xff\xd8")
    named = client.post(f"/api/unknowns/{cid}/name", json={"name": "rose"})
    assert named.status_code == 200, named.text
    assert named.json()["samples_added"] == 2
    assert client.get("/api/unknowns?all=true").json()["clusters"] == []
    assert [p["name"] for p in client.get("/api/people").json()["people"]] == ["rose"]
