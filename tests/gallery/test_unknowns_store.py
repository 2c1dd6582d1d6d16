"""The :class:`~facesense.gallery.unknowns.UnknownStore` contract, run over every store:
the SQLite file and PostgreSQL (a real server, see conftest), through
:class:`~facesense.gallery.unknowns.StoredUnknowns`.

Embeddings are synthetic unit vectors around a few "people" (the clustering itself is
tested on LFW in ``tests/test_unknowns.py``), with an explicit ``eps``; the crops are
real JPEG crops of ``obama.jpg``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import pytest

from facesense.errors import ConflictError, GalleryError, ModelMismatchError, NotFoundError
from facesense.gallery import parse_location
from facesense.gallery.sqlite_unknowns import SQLiteUnknownStore
from facesense.gallery.unknowns import StoredUnknowns, UnknownStore, diff_states, open_unknown_store
from facesense.unknowns import ClusterConfig, TrackRecorder, UnknownClusterer, UnknownRecord

if TYPE_CHECKING:
    from conftest import PgCluster

MODEL = "fake-model/v1"
DIM = 16
CONFIG = ClusterConfig(eps=0.5, keep_records=1000, keep_days=30.0, keep_ignored=2)
DAY = 86_400.0
NOW = 1_750_000_000.0

OpenStore = Callable[[], UnknownStore]


@pytest.fixture(params=["sqlite", "postgresql"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """Opens (and reopens) one unknowns store of the kind under test."""
    opened: list[UnknownStore] = []
    if request.param == "sqlite":
        target: Any = tmp_path / "gallery.unknowns.db"

        def factory() -> UnknownStore:
            store = SQLiteUnknownStore(target)
            opened.append(store)
            return store
    else:
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        url = cluster.new_database()

        def factory() -> UnknownStore:
            from facesense.gallery.postgres_unknowns import PostgresUnknownStore

            store = PostgresUnknownStore(url)
            opened.append(store)
            return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture(scope="module")
def face_image(examples_dir: Path) -> np.ndarray:
    image = cv2.imread(str(examples_dir / "obama.jpg"))
    assert image is not None
    return image


PEOPLE = np.linalg.qr(np.random.default_rng(7).standard_normal((DIM, DIM)))[0][:4]  # orthonormal "people"


def make_record(face_image: np.ndarray, person: int, seed: int, *, t: float = NOW, source: str = "door",
                model_id: str = MODEL) -> UnknownRecord:  # fmt: skip
    """One track of ``person``: three noisy faces, crops from a real photo."""
    rng = np.random.default_rng(seed)
    rec = TrackRecorder(source=source, model_id=model_id, track_id=seed)
    for k in range(3):
        e = PEOPLE[person] + 0.05 * rng.standard_normal(DIM)
        box = (380.0 + 4 * k, 120.0, 600.0 + 4 * k, 360.0)
        rec.add(e, seen_at=t + k, quality=0.5 + 0.1 * k, image=face_image, xyxy=box)
    return rec.record()


def same_state(a: UnknownClusterer, b: UnknownClusterer) -> None:
    sa, sb = a.state(), b.state()
    assert (sa.model_id, sa.ignored, sa.next_record_id, sa.next_cluster_id) == (
        sb.model_id, sb.ignored, sb.next_record_id, sb.next_cluster_id)  # fmt: skip
    assert [(r, c) for r, c, _ in sa.records] == [(r, c) for r, c, _ in sb.records]
    for (_, _, x), (_, _, y) in zip(sa.records, sb.records, strict=True):
        assert np.array_equal(x.embedding, y.embedding)
        assert (x.first_seen, x.last_seen, x.source, x.faces, x.track_id) == (
            y.first_seen, y.last_seen, y.source, y.faces, y.track_id)  # fmt: skip
        assert [(c.jpeg, c.quality, c.seen_at) for c in x.crops] == [(c.jpeg, c.quality, c.seen_at) for c in y.crops]


def test_it_is_an_unknown_store_and_starts_empty(open_store: OpenStore) -> None:
    store = open_store()
    assert isinstance(store, UnknownStore)
    assert store.load() == (None, 0)
    book = StoredUnknowns(store, MODEL, CONFIG)
    assert len(book.clusterer) == 0 and book.revision == 0


def test_records_persist_exactly_with_clusters_and_crops(open_store: OpenStore, face_image: np.ndarray) -> None:
    book = StoredUnknowns(open_store(), MODEL, CONFIG)
    assignments = [book.add(make_record(face_image, p, seed), now=NOW) for seed, p in enumerate([0, 1, 0, 2, 1, 0])]
    assert [a.record_id for a in assignments] == [1, 2, 3, 4, 5, 6]
    assert assignments[2].cluster_id == assignments[0].cluster_id and assignments[2].recurring
    assert assignments[3].cluster_id not in (assignments[0].cluster_id, assignments[1].cluster_id)
    reopened = StoredUnknowns(open_store(), MODEL, CONFIG)
    same_state(book.clusterer, reopened.clusterer)
    first = reopened.clusterer.record(1)
    assert len(first.crops) == 3 and all(c.jpeg.startswith(b"\xff\xd8") for c in first.crops)
    assert sum(len(c.jpeg) for c in first.crops) <= 32_000
    summary = reopened.clusterer.summary(assignments[0].cluster_id)
    assert summary.record_ids == (1, 3, 6) and summary.faces == 9 and summary.sources == ("door",)


def test_a_merge_caused_by_an_add_is_stored(open_store: OpenStore, face_image: np.ndarray) -> None:
    """Two clusters far apart, then a record between them that pulls them together."""
    book = StoredUnknowns(open_store(), MODEL, ClusterConfig(eps=0.62))
    mid = (PEOPLE[0] + PEOPLE[1]) / np.linalg.norm(PEOPLE[0] + PEOPLE[1])
    a = (PEOPLE[0] + mid) / np.linalg.norm(PEOPLE[0] + mid)
    b = (PEOPLE[1] + mid) / np.linalg.norm(PEOPLE[1] + mid)
    one = book.add(UnknownRecord(embedding=a, model_id=MODEL, first_seen=NOW, last_seen=NOW), now=NOW)
    two = book.add(UnknownRecord(embedding=b, model_id=MODEL, first_seen=NOW, last_seen=NOW), now=NOW)
    assert one.cluster_id != two.cluster_id
    three = book.add(UnknownRecord(embedding=mid, model_id=MODEL, first_seen=NOW, last_seen=NOW), now=NOW)
    assert three.merged, "the fixture must make the third record merge the two clusters"
    reopened = StoredUnknowns(open_store(), MODEL, ClusterConfig(eps=0.62))
    same_state(book.clusterer, reopened.clusterer)
    assert reopened.clusterer.summary(three.cluster_id).record_ids == (1, 2, 3)


def test_corrections_persist_and_ids_are_never_reused(open_store: OpenStore, face_image: np.ndarray) -> None:
    book = StoredUnknowns(open_store(), MODEL, CONFIG)
    ids = [book.add(make_record(face_image, p, seed), now=NOW) for seed, p in enumerate([0, 0, 1, 1, 2, 2, 3])]
    c0, c1, c2, c3 = ids[0].cluster_id, ids[2].cluster_id, ids[4].cluster_id, ids[6].cluster_id
    book.ignore(c1)
    assert book.merge(c0, c3) == c0
    assert book.remove(2) == c0
    named = book.name(c2, "ann", lambda n: (n.name, n.record_ids, len(n.crops)))
    assert named == ("ann", (5, 6), 6)

    reopened = StoredUnknowns(open_store(), MODEL, CONFIG)
    same_state(book.clusterer, reopened.clusterer)
    c = reopened.clusterer
    assert c.summary(c1).ignored and not c.summary(c0).ignored
    assert c.summary(c0).record_ids == (1, 7)
    with pytest.raises(NotFoundError):
        c.summary(c2)
    with pytest.raises(NotFoundError):
        c.record(2)
    # New records and clusters get new ids, after a reload too.
    later = reopened.add(make_record(face_image, 2, 99), now=NOW)
    assert later.record_id == 8 and later.cluster_id > c3
    # An ignored cluster's later records come back suppressed, from the stored flag.
    again = reopened.add(make_record(face_image, 1, 100), now=NOW)
    assert again.cluster_id == c1 and again.suppressed
    book.ignore(c1, False)  # a stale object: reloads on the conflict and applies the undo
    assert not StoredUnknowns(open_store(), MODEL, CONFIG).clusterer.summary(c1).ignored


def test_a_failed_enrollment_keeps_the_cluster(open_store: OpenStore, face_image: np.ndarray) -> None:
    book = StoredUnknowns(open_store(), MODEL, CONFIG)
    cid = book.add(make_record(face_image, 0, 1), now=NOW).cluster_id

    def refuse(_: object) -> None:
        raise GalleryError("no usable face")

    with pytest.raises(GalleryError):
        book.name(cid, "ann", refuse)
    assert book.clusterer.summary(cid).record_ids == (1,)
    assert StoredUnknowns(open_store(), MODEL, CONFIG).clusterer.summary(cid).record_ids == (1,)


def test_prune_by_age_and_count_on_add(open_store: OpenStore, face_image: np.ndarray) -> None:
    config = ClusterConfig(eps=0.5, keep_records=4, keep_days=10.0, keep_ignored=1)
    book = StoredUnknowns(open_store(), MODEL, config, prune_every=3)
    old = book.add(make_record(face_image, 0, 1, t=NOW - 20 * DAY), now=NOW)
    book.add(make_record(face_image, 1, 2, t=NOW - 1 * DAY), now=NOW)
    assert len(book.clusterer) == 2  # not due yet: the old record is still there
    book.add(make_record(face_image, 2, 3, t=NOW), now=NOW)  # the third add prunes by age
    assert len(book.clusterer) == 2
    with pytest.raises(NotFoundError):
        book.clusterer.record(old.record_id)
    for seed in range(4, 8):  # over the count: pruned at once, oldest singletons first
        book.add(make_record(face_image, 3, seed, t=NOW), now=NOW)
    assert len(book.clusterer) <= 4
    reopened = StoredUnknowns(open_store(), MODEL, config)
    same_state(book.clusterer, reopened.clusterer)
    assert book.prune(NOW + 100 * DAY) and len(StoredUnknowns(open_store(), MODEL, config).clusterer) == 0


def test_another_models_records_are_refused(open_store: OpenStore, face_image: np.ndarray) -> None:
    book = StoredUnknowns(open_store(), MODEL, CONFIG)
    book.add(make_record(face_image, 0, 1), now=NOW)
    with pytest.raises(ModelMismatchError, match="fake-model/v1"):
        StoredUnknowns(open_store(), "other-model/v2", CONFIG)
    with pytest.raises(ModelMismatchError):
        book.add(make_record(face_image, 0, 2, model_id="other-model/v2"), now=NOW)
    assert len(StoredUnknowns(open_store(), MODEL, CONFIG).clusterer) == 1


def test_a_stale_revision_is_a_conflict_and_writes_nothing(open_store: OpenStore, face_image: np.ndarray) -> None:
    store = open_store()
    book = StoredUnknowns(store, MODEL, CONFIG)
    book.add(make_record(face_image, 0, 1), now=NOW)
    c = UnknownClusterer(MODEL, CONFIG)
    c.add(make_record(face_image, 1, 2))
    with pytest.raises(ConflictError):
        store.apply(diff_states(None, c.state()), revision=0)
    assert [r for r, _, _ in store.load()[0].records] == [1]  # type: ignore[union-attr]


def test_two_writers_take_turns(open_store: OpenStore, face_image: np.ndarray) -> None:
    """Another process (a command) names a cluster while the recorder adds: neither write is lost."""
    recorder = StoredUnknowns(open_store(), MODEL, CONFIG)
    command = StoredUnknowns(open_store(), MODEL, CONFIG)
    first = recorder.add(make_record(face_image, 0, 1), now=NOW)
    command.reload()
    command.name(first.cluster_id, "ann", lambda n: None)
    second = recorder.add(make_record(face_image, 0, 2), now=NOW)  # conflict -> reload -> add again
    assert second.record_id == 2 and second.cluster_id != first.cluster_id
    final = StoredUnknowns(open_store(), MODEL, CONFIG).clusterer
    assert [s.record_ids for s in final.clusters(min_size=1)] == [(2,)]


def test_a_closed_store_raises(open_store: OpenStore) -> None:
    store = open_store()
    store.close()
    store.close()
    assert store.closed
    with pytest.raises(GalleryError, match="closed"):
        store.load()


def test_open_unknown_store_sits_beside_an_sqlite_gallery(tmp_path: Path) -> None:
    store = open_unknown_store(parse_location(str(tmp_path / "faces" / "gallery.db")))
    try:
        assert Path(store.location) == tmp_path / "faces" / "gallery.unknowns.db"
    finally:
        store.close()


def test_a_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(GalleryError, match="not a facesense unknowns file"):
        SQLiteUnknownStore(path)


def test_a_foreign_postgres_table_is_refused(pg_cluster: PgCluster) -> None:
    import psycopg

    from facesense.gallery.postgres_unknowns import PostgresUnknownStore

    url = pg_cluster.new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE facesense_unknowns_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO facesense_unknowns_meta VALUES ('application', 'something-else')")
    with pytest.raises(GalleryError, match="not a facesense unknowns store"):
        PostgresUnknownStore(url)


@pytest.mark.parametrize("kind", ["unknowns", "events"])
def test_a_new_side_file_opened_by_many_at_once_is_created_once_and_accepted_by_all(
    tmp_path: Path, kind: str, open_together: Callable[..., list[Exception]]
) -> None:
    """Connections opening a file that does not exist yet, at the same moment (a server and
    a camera process): one creates it, the others accept it. Reading its application id
    and its tables apart once gave "not a facesense unknowns file (some other database)"
    to a reader that looked between another connection's two steps."""
    from facesense.gallery.sqlite_events import SQLiteEventStore

    opener = SQLiteUnknownStore if kind == "unknowns" else SQLiteEventStore
    for n in range(15):
        errors = open_together(opener, tmp_path / f"side{n}.db")
        assert not errors, errors
    with opener(tmp_path / "side0.db") as store:  # still a good file of its kind
        assert store.path.is_file()
