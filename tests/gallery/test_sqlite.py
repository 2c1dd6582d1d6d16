"""The SQLite gallery: schema guard, transactions, invariants, export/import."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from facesense.errors import (
    ConfigError,
    EnrollmentError,
    GalleryError,
    ModelMismatchError,
)
from facesense.gallery import GalleryStore, NewSample, SQLiteGallery
from facesense.gallery.sqlite import APPLICATION_ID, FORMAT_VERSION

MODEL = "fake-model/v1"


def sample(seed: int, *, model: str = MODEL, dim: int = 8, sha: str | None = None) -> NewSample:
    rng = np.random.default_rng(seed)
    e = rng.normal(size=dim).astype(np.float32)
    return NewSample(
        embedding=e / np.linalg.norm(e),
        model_id=model,
        source_sha256=sha or hashlib.sha256(str(seed).encode()).hexdigest(),
        source_path=f"/photos/{seed}.jpg",
        xyxy=(1.0, 2.0, 30.0, 40.0),
        thumbnail_jpeg=b"\xff\xd8jpeg" + bytes([seed % 256]),
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "gallery.db"


@pytest.fixture
def gallery(db: Path):
    with SQLiteGallery(db) as g:
        yield g


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_is_a_gallery_store(gallery: SQLiteGallery) -> None:
    assert isinstance(gallery, GalleryStore)


def test_new_gallery_is_stamped_and_wal(gallery: SQLiteGallery, db: Path) -> None:
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert con.execute("PRAGMA user_version").fetchone()[0] == FORMAT_VERSION
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        meta = dict(con.execute("SELECT key, value FROM meta"))
    finally:
        con.close()
    assert meta["application"] == "facesense-gallery"
    assert meta["format_version"] == str(FORMAT_VERSION)


def test_add_list_get_embeddings(gallery: SQLiteGallery) -> None:
    assert gallery.model_id is None
    ids_a = gallery.add_samples("alice", [sample(1), sample(2)])
    ids_b = gallery.add_samples("bob", [sample(3)])
    assert len(ids_a) == 2 and len(ids_b) == 1
    assert [(p.name, p.n_samples) for p in gallery.people()] == [("alice", 2), ("bob", 1)]
    assert gallery.person("bob").n_samples == 1
    assert gallery.model_id == MODEL
    emb = gallery.embeddings(MODEL)
    assert emb.labels == ("alice", "alice", "bob")
    assert emb.matrix.shape == (3, 8) and emb.matrix.dtype == np.float32
    np.testing.assert_array_equal(emb.matrix[2], sample(3).embedding)
    assert list(emb.sample_ids) == [*ids_a, *ids_b]
    batches = list(gallery.iter_embeddings(MODEL, batch_size=2))
    assert [len(b) for b in batches] == [2, 1]
    s = gallery.samples("alice")[0]
    assert s.person == "alice" and s.xyxy == (1.0, 2.0, 30.0, 40.0) and s.thumbnail_jpeg.startswith(b"\xff\xd8")
    assert s.source_path == "/photos/1.jpg" and s.dim == 8


def test_empty_gallery_embeddings(gallery: SQLiteGallery) -> None:
    emb = gallery.embeddings(MODEL)
    assert len(emb) == 0 and emb.matrix.shape == (0, 0)


@pytest.mark.parametrize(
    ("action", "error"),
    [
        (lambda g: g.add_samples("carol", [sample(9)], create=False), EnrollmentError),
        (lambda g: g.add_samples("alice", []), EnrollmentError),
        (lambda g: g.add_samples("alice", [sample(1)]), GalleryError),  # duplicate source
        (lambda g: g.add_samples("alice", [sample(9), sample(1)]), GalleryError),  # second one duplicates
        (lambda g: g.add_samples("alice", [sample(9, model="other")]), ModelMismatchError),
        (lambda g: g.add_samples("zed", [sample(9, dim=16)]), ModelMismatchError),
        (lambda g: g.add_samples("unknown", [sample(9)]), ConfigError),
        (lambda g: g.add_samples("", [sample(9)]), ConfigError),
        (lambda g: g.person("nobody"), EnrollmentError),
        (lambda g: g.samples("nobody"), EnrollmentError),
        (lambda g: g.rename_person("nobody", "x"), EnrollmentError),
        (lambda g: g.rename_person("alice", "bob"), EnrollmentError),
        (lambda g: g.rename_person("alice", "unknown"), ConfigError),
        (lambda g: g.remove_person("nobody"), EnrollmentError),
        (lambda g: g.remove_sample(12345), EnrollmentError),
        (lambda g: g.embeddings("other"), ModelMismatchError),
    ],
)
def test_bad_writes_raise_and_change_nothing(gallery: SQLiteGallery, db: Path, action, error) -> None:
    gallery.add_samples("alice", [sample(1), sample(2)])
    gallery.add_samples("bob", [sample(3)])
    before = [(p.name, p.n_samples) for p in gallery.people()], [s.id for s in gallery.samples()]
    with pytest.raises(error):
        action(gallery)
    assert ([(p.name, p.n_samples) for p in gallery.people()], [s.id for s in gallery.samples()]) == before


def test_same_image_for_another_person_is_allowed(gallery: SQLiteGallery) -> None:
    # A group photo can enroll two people (each from their own face).
    gallery.add_samples("alice", [sample(1, sha="a" * 64)])
    gallery.add_samples("bob", [sample(2, sha="a" * 64)])
    assert gallery.has_source("alice", "a" * 64, MODEL)
    assert gallery.has_source("bob", "a" * 64, MODEL)
    assert not gallery.has_source("carol", "a" * 64, MODEL)


def test_rename_and_remove(gallery: SQLiteGallery) -> None:
    gallery.add_samples("alice", [sample(1), sample(2)])
    gallery.add_samples("bob", [sample(3)])
    assert gallery.rename_person("alice", "  Alice Liddell ").name == "Alice Liddell"
    assert gallery.embeddings(MODEL).labels == ("Alice Liddell", "Alice Liddell", "bob")
    assert gallery.remove_person("Alice Liddell") == 2
    assert [p.name for p in gallery.people()] == ["bob"]
    assert len(gallery.samples()) == 1


def test_removing_last_sample_removes_person(gallery: SQLiteGallery) -> None:
    a1, a2 = gallery.add_samples("alice", [sample(1), sample(2)])
    gallery.remove_sample(a1)
    assert gallery.person("alice").n_samples == 1
    gallery.remove_sample(a2)
    assert gallery.people() == []
    assert gallery.model_id is None


def test_reopen_keeps_data(db: Path) -> None:
    with SQLiteGallery(db) as g:
        g.add_samples("alice", [sample(1)])
    with SQLiteGallery(db, create=False) as g:
        assert [p.name for p in g.people()] == ["alice"]


def test_missing_file_without_create_is_an_error_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "g.db"
    with pytest.raises(GalleryError, match="no gallery"):
        SQLiteGallery(path, create=False)
    assert not path.exists() and not path.parent.exists()


def test_default_path_honours_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACESENSE_DB", str(tmp_path / "env.db"))
    with SQLiteGallery() as g:
        assert g.location == str(tmp_path / "env.db")
    assert (tmp_path / "env.db").is_file()


def _foreign_sqlite(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO people (name) VALUES ('x')")
    con.commit()
    con.close()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"\xff\xd8\xff\xe0 not a database at all" * 100), "not a facesense gallery"),
        (_foreign_sqlite, "not a facesense gallery"),
        (lambda p: p.write_text("hello"), "not a facesense gallery"),
    ],
)
@pytest.mark.parametrize("create", [True, False])
def test_foreign_files_are_refused_untouched(tmp_path: Path, make, message: str, create: bool) -> None:
    path = tmp_path / "other.db"
    make(path)
    digest = file_digest(path)
    with pytest.raises(GalleryError, match=message):
        SQLiteGallery(path, create=create)
    assert file_digest(path) == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


def test_newer_format_is_refused_untouched(db: Path) -> None:
    with SQLiteGallery(db) as g:
        g.add_samples("alice", [sample(1)])
    con = sqlite3.connect(db)
    con.execute("UPDATE meta SET value = ? WHERE key = 'format_version'", (str(FORMAT_VERSION + 1),))
    con.commit()
    con.close()
    digest = file_digest(db)
    with pytest.raises(GalleryError, match="newer facesense"):
        SQLiteGallery(db)
    assert file_digest(db) == digest


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GalleryError, match="directory"):
        SQLiteGallery(tmp_path)


def test_replace_samples_switches_model_and_drops_missing(gallery: SQLiteGallery) -> None:
    a1, _a2 = gallery.add_samples("alice", [sample(1), sample(2)])
    (b1,) = gallery.add_samples("bob", [sample(3)])
    new = {a1: sample(11, model="new/v2", dim=4), b1: sample(13, model="new/v2", dim=4)}
    removed = gallery.replace_samples(new)
    assert removed == 1
    assert gallery.model_id == "new/v2"
    emb = gallery.embeddings("new/v2")
    assert emb.labels == ("alice", "bob") and emb.matrix.shape == (2, 4)
    # The source hash is kept: it names the photo, not the embedding.
    assert gallery.samples("alice")[0].source_sha256 == sample(1).source_sha256
    with pytest.raises(ModelMismatchError):
        gallery.embeddings(MODEL)


def test_replace_samples_dropping_everyone_leaves_no_people(gallery: SQLiteGallery) -> None:
    gallery.add_samples("alice", [sample(1)])
    assert gallery.replace_samples({}) == 1
    assert gallery.people() == []


def test_replace_samples_bad_input_changes_nothing(gallery: SQLiteGallery) -> None:
    (a1,) = gallery.add_samples("alice", [sample(1)])
    with pytest.raises(ModelMismatchError):
        gallery.replace_samples({a1: sample(1, model="x"), 99: sample(2, model="y")})
    with pytest.raises(EnrollmentError):
        gallery.replace_samples({99: sample(2)})
    assert gallery.embeddings(MODEL).sample_ids.tolist() == [a1]


def test_export_import_roundtrip(tmp_path: Path, gallery: SQLiteGallery) -> None:
    gallery.add_samples("alice", [sample(1), sample(2)])
    gallery.add_samples("bob", [sample(3)])
    out = tmp_path / "export.npz"
    assert gallery.export_file(out) == 3
    with SQLiteGallery(tmp_path / "copy.db") as copy:
        result = copy.import_file(out)
        assert result.people_added == ("alice", "bob") and result.samples_added == 3
        assert copy.embeddings(MODEL).labels == gallery.embeddings(MODEL).labels
        np.testing.assert_array_equal(copy.embeddings(MODEL).matrix, gallery.embeddings(MODEL).matrix)
        assert [s.thumbnail_jpeg for s in copy.samples()] == [s.thumbnail_jpeg for s in gallery.samples()]
        assert copy.person("alice").created == gallery.person("alice").created
        again = copy.import_file(out)
        assert again.samples_added == 0 and again.samples_skipped == 3 and again.people_added == ()


def test_import_merges_into_existing_person(tmp_path: Path, gallery: SQLiteGallery) -> None:
    gallery.add_samples("alice", [sample(1), sample(2)])
    out = tmp_path / "export.npz"
    gallery.export_file(out)
    with SQLiteGallery(tmp_path / "other.db") as other:
        other.add_samples("alice", [sample(1)])
        result = other.import_file(out)
        assert result.samples_added == 1 and result.samples_skipped == 1
        assert other.person("alice").n_samples == 2


def test_import_of_other_model_is_refused(tmp_path: Path, gallery: SQLiteGallery) -> None:
    gallery.add_samples("alice", [sample(1)])
    out = tmp_path / "export.npz"
    gallery.export_file(out)
    with SQLiteGallery(tmp_path / "other.db") as other:
        other.add_samples("bob", [sample(5, model="other/v9")])
        with pytest.raises(ModelMismatchError):
            other.import_file(out)
        assert [p.name for p in other.people()] == ["bob"]


@pytest.mark.parametrize(
    "content",
    [b"", b"PK\x03\x04 broken zip", b"not a zip"],
)
def test_import_of_garbage_is_refused(tmp_path: Path, gallery: SQLiteGallery, content: bytes) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(content)
    with pytest.raises(GalleryError):
        gallery.import_file(bad)
    assert gallery.people() == []


def test_import_of_unrelated_npz_is_refused(tmp_path: Path, gallery: SQLiteGallery) -> None:
    bad = tmp_path / "weights.npz"
    np.savez(bad, w=np.zeros(3))
    with pytest.raises(GalleryError, match="not a facesense gallery export"):
        gallery.import_file(bad)


def test_export_of_empty_gallery(tmp_path: Path, gallery: SQLiteGallery) -> None:
    out = tmp_path / "empty.npz"
    assert gallery.export_file(out) == 0
    with SQLiteGallery(tmp_path / "copy.db") as copy:
        assert copy.import_file(out).samples_added == 0
        assert copy.people() == []


def test_a_second_connection_sees_committed_writes(db: Path) -> None:
    with SQLiteGallery(db) as writer, SQLiteGallery(db) as reader:
        writer.add_samples("alice", [sample(1)])
        assert [p.name for p in reader.people()] == ["alice"]


# --- revision, search cache, threads -------------------------------------------------


def _statements(gallery: SQLiteGallery) -> list[str]:
    """Start recording the SQL the gallery's connection runs; returns the live list."""
    seen: list[str] = []
    gallery._conn.set_trace_callback(seen.append)
    return seen


def test_polling_the_revision_costs_one_pragma(gallery: SQLiteGallery, db: Path) -> None:
    gallery.add_samples("alice", [sample(1)])
    gallery.revision()
    seen = _statements(gallery)
    for _ in range(5):
        gallery.revision()
    assert seen == ["PRAGMA data_version"] * 5
    with SQLiteGallery(db) as other:
        other.add_samples("bob", [sample(2)])
    seen.clear()
    gallery.revision()
    assert seen[0] == "PRAGMA data_version" and any("meta" in s for s in seen)  # reads the counter only now


def test_revision_is_kept_in_the_file(db: Path) -> None:
    with SQLiteGallery(db) as g:
        g.add_samples("alice", [sample(1)])
        g.rename_person("alice", "ann")
        revision = g.revision()
    with SQLiteGallery(db, create=False) as g:
        assert g.revision() == revision
    con = sqlite3.connect(db)
    assert con.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0] == str(revision)
    con.close()


def test_revision_sees_writers_that_do_not_keep_the_counter(gallery: SQLiteGallery, db: Path) -> None:
    gallery.add_samples("alice", [sample(1)])
    revision = gallery.revision()
    con = sqlite3.connect(db)  # an older facesense, or the sqlite3 shell
    con.execute("UPDATE people SET name = 'ann'")
    con.commit()
    con.close()
    assert gallery.revision() != revision
    assert gallery.search(sample(1).embedding, 1, model_id=MODEL).labels == (("ann",),)


def test_search_reuses_its_matrix_until_the_revision_changes(gallery: SQLiteGallery) -> None:
    gallery.add_samples("alice", [sample(1), sample(2)])
    gallery.search(sample(1).embedding, 1, model_id=MODEL)
    seen = _statements(gallery)
    gallery.search(sample(2).embedding, 1, model_id=MODEL)
    assert not any("samples" in s for s in seen)
    gallery.add_samples("bob", [sample(3)])
    seen.clear()
    assert gallery.search(sample(3).embedding, 1, model_id=MODEL).labels == (("bob",),)
    assert any("FROM samples" in s for s in seen)


def test_person_by_id_is_one_query(gallery: SQLiteGallery) -> None:
    gallery.add_samples("alice", [sample(1)])
    gallery.add_samples("bob", [sample(2)])
    bob = gallery.person("bob")
    seen = _statements(gallery)
    assert gallery.person_by_id(bob.id) == bob
    assert len(seen) == 1 and f"WHERE p.id = {bob.id} " in seen[0]  # by SQL, not a scan of people()


def test_one_gallery_can_be_shared_by_threads(gallery: SQLiteGallery) -> None:
    import threading

    gallery.add_samples("seed", [sample(0)])
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(1, 40):
                gallery.add_samples(f"p{i % 5}", [sample(i)])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(200):
                gallery.revision()
                result = gallery.search(sample(0).embedding, 2, model_id=MODEL)
                assert result.labels[0][0] == "seed"
                gallery.people()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sum(p.n_samples for p in gallery.people()) == 40


# --- open_gallery ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("g.db", "g.db"),
        ("sub/g.db", "sub/g.db"),
        ("sqlite:///g.db", "g.db"),
        ("sqlite:///sub/g.db", "sub/g.db"),
        ("sqlite:///my%20g.db", "my g.db"),
        ("notes:2024.db", "notes:2024.db"),  # a colon in a file name is no URL
    ],
)
def test_open_gallery_paths_and_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str, expected: str) -> None:
    from facesense.gallery import open_gallery

    monkeypatch.chdir(tmp_path)
    with open_gallery(given) as g:
        assert isinstance(g, SQLiteGallery)
        g.add_samples("alice", [sample(1)])
    with SQLiteGallery(tmp_path / expected, create=False) as g:
        assert [p.name for p in g.people()] == ["alice"]


def test_open_gallery_absolute_url_and_path_object(tmp_path: Path) -> None:
    from facesense.gallery import open_gallery

    target = tmp_path / "abs" / "g.db"
    with open_gallery(f"sqlite:///{target}") as g:  # sqlite:////tmp/...: four slashes
        assert g.location == str(target)
    with open_gallery(target, create=False) as g:
        assert g.location == str(target)


def test_open_gallery_default_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from facesense.gallery import open_gallery

    monkeypatch.setenv("FACESENSE_DB", f"sqlite:///{tmp_path / 'env.db'}")
    with open_gallery() as g:
        assert g.location == str(tmp_path / "env.db")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (Path("postgresql://u@h/db"), "not a well-formed PostgreSQL URL"),
        ("sqlit:///g.db", "unknown gallery URL scheme 'sqlit'.*did you mean 'sqlite'"),
        ("postgress://h/db", "did you mean 'postgres'"),
        ("mysql://h/db", "unknown gallery URL scheme 'mysql'"),
        ("http://example.com/g.db", "unknown gallery URL scheme 'http'"),
        ("sqlite:g.db", "not a well-formed sqlite URL"),
        ("sqlite://host/g.db", "take no host"),
        ("sqlite://", "names no file"),
        ("sqlite:///:memory:", "names no file"),
        ("sqlite:///g.db?mode=ro", r"no \?options"),
        (Path("sqlite:///g.db"), "lost its slashes"),
        ("", "empty"),
    ],
)
def test_open_gallery_refuses_other_urls_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str | Path, message: str
) -> None:
    from facesense.gallery import open_gallery

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message):
        open_gallery(given)
    with pytest.raises(ConfigError, match=message):
        open_gallery(given, create=False)
    assert list(tmp_path.iterdir()) == []


def test_event_log_sits_beside_its_gallery(tmp_path: Path) -> None:
    """An SQLite gallery's events go beside it; a database server's live in that database
    (an unreachable one is a one-line GalleryError); an explicit path wins."""
    from facesense.errors import GalleryError
    from facesense.gallery import open_event_log, parse_location

    with open_event_log(parse_location(str(tmp_path / "people.db"))) as log:
        assert log.path == tmp_path / "people.events.db"  # type: ignore[attr-defined]
    with pytest.raises(GalleryError, match=r"cannot connect to postgresql://u@127\.0\.0\.1:1/faces") as err:
        open_event_log(parse_location("postgresql://u:pw@127.0.0.1:1/faces"))
    assert "pw" not in str(err.value)
    with open_event_log(parse_location(str(tmp_path / "people.db")), path=tmp_path / "ev.db") as log:
        assert log.path == tmp_path / "ev.db"  # type: ignore[attr-defined]


def test_a_new_gallery_opened_by_many_at_once_is_created_once_and_accepted_by_all(
    tmp_path: Path, open_together: Callable[..., list[Exception]]
) -> None:
    """Connections creating the same gallery file at the same moment (several camera
    processes started together): one creates it, the others accept it, none is told
    "database is locked" (switching the new file to WAL) or "some other database"."""
    for n in range(15):
        errors = open_together(SQLiteGallery, tmp_path / f"g{n}.db")
        assert not errors, errors
