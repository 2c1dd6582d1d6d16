"""The PostgreSQL + pgvector store beyond the contract suite: migrations, secrets,
search in the database, and durability under ``kill -9``. A real server (see conftest)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import numpy.typing as npt
import psycopg
import pytest

from facesense.errors import GalleryError, ReadOnlyGalleryError
from facesense.gallery import NewSample, open_gallery, parse_location
from facesense.gallery import postgres as pg
from facesense.gallery.postgres import FORMAT_VERSION, PostgresGallery, display_url

if TYPE_CHECKING:
    from conftest import PgCluster

MODEL = "fake-model/v1"


def _sample(emb: npt.NDArray[np.float32], i: int, model: str = MODEL) -> NewSample:
    return NewSample(embedding=emb.astype(np.float32), model_id=model, source_sha256=f"{i:064x}", source_path=f"/p/{i}.jpg")


def _unit(a: npt.ArrayLike) -> npt.NDArray[np.float32]:
    v = np.asarray(a, np.float64)
    return np.asarray(v / np.linalg.norm(v, axis=-1, keepdims=True), np.float32)


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user = parts.netloc.split("@", 1)[0].split(":", 1)[0]
    host = parts.netloc.split("@", 1)[1] if "@" in parts.netloc else parts.netloc
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


def _meta(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT key, value FROM facesense_meta").fetchall())


# --- migrations -----------------------------------------------------------------------


def test_a_fresh_database_is_migrated_to_the_current_version(pg_url: str) -> None:
    with PostgresGallery(pg_url) as g:
        assert g.people() == [] and g.revision() == 0
    meta = _meta(pg_url)
    assert meta["application"] == pg.APPLICATION and meta["format_version"] == str(FORMAT_VERSION)
    with psycopg.connect(pg_url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"facesense_meta", "facesense_people", "facesense_samples"} <= tables
    with PostgresGallery(pg_url, create=False) as g:  # opening again migrates nothing
        assert g.revision() == 0
    assert _meta(pg_url) == meta


def test_migrations_are_numbered_in_order() -> None:
    numbers = [n for n, _ in pg.MIGRATIONS]
    assert numbers == list(range(1, len(numbers) + 1)) and numbers[-1] == FORMAT_VERSION


def test_an_empty_database_is_not_a_gallery_without_create(pg_url: str) -> None:
    with pytest.raises(GalleryError, match="no gallery here"):
        PostgresGallery(pg_url, create=False)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('facesense_meta')").fetchone() == (None,)  # nothing created


def test_a_newer_schema_is_refused_and_left_alone(pg_url: str) -> None:
    with PostgresGallery(pg_url) as g:
        g.add_samples("alice", [_sample(_unit(np.ones(4)), 1)])
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE facesense_meta SET value = %s WHERE key = 'format_version'", (str(FORMAT_VERSION + 1),))
    for kwargs in ({}, {"create": False}, {"read_only": True}):
        with pytest.raises(GalleryError, match=f"format version {FORMAT_VERSION + 1} was written by a newer facesense"):
            PostgresGallery(pg_url, **kwargs)
    assert _meta(pg_url)["format_version"] == str(FORMAT_VERSION + 1)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM facesense_samples").fetchone() == (1,)


def test_a_foreign_meta_table_is_refused(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE facesense_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO facesense_meta VALUES ('application', 'something-else')")
    with pytest.raises(GalleryError, match="not a facesense gallery"):
        PostgresGallery(pg_url)


def test_two_processes_opening_a_fresh_database_at_once(pg_url: str) -> None:
    code = "import sys; from facesense.gallery import open_gallery; open_gallery(sys.argv[1]).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code, pg_url]) for _ in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    assert _meta(pg_url)["format_version"] == str(FORMAT_VERSION)


# --- locations and secrets ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:s3cret@h:5432/db", "postgresql://u@h:5432/db"),
        ("postgres://u@h/db", "postgres://u@h/db"),
        ("postgresql://h/db?password=s3cret&sslmode=require", "postgresql://h/db?sslmode=require"),
        ("postgresql://u:@/db?host=/tmp/sock", "postgresql://u@/db?host=/tmp/sock"),
    ],
)
def test_urls_are_shown_without_passwords(url: str, shown: str) -> None:
    assert display_url(url) == shown
    loc = parse_location(url)
    assert loc.kind == "postgresql" and loc.url == url and "s3cret" not in loc.display


def test_the_location_hides_the_password(pg_url: str) -> None:
    url = _with_password(pg_url, "s3cret")  # trust authentication: any password works
    g = open_gallery(url)
    assert isinstance(g, PostgresGallery)
    with g:
        assert "s3cret" not in g.location and "s3cret" not in repr(g)
        assert g.location.startswith("postgresql://postgres@/")


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_an_unreachable_server_is_one_line_without_the_password(scheme: str) -> None:
    started = time.monotonic()
    with pytest.raises(GalleryError) as info:
        open_gallery(f"{scheme}://me:s3cret@127.0.0.1:1/faces")
    message = str(info.value)
    assert message.startswith(f"cannot connect to {scheme}://me@127.0.0.1:1/faces: ")
    assert "\n" not in message and "s3cret" not in message
    assert time.monotonic() - started < 15


def test_a_missing_database_cannot_be_connected_to(pg_url: str) -> None:
    parts = urlsplit(pg_url)
    missing = urlunsplit(parts._replace(path="/no_such_database"))
    with pytest.raises(GalleryError, match=r"^cannot connect to postgresql://postgres@/no_such_database\?host=.*no_such_database"):
        open_gallery(missing)


def test_read_only_galleries_refuse_writes(pg_url: str) -> None:
    with PostgresGallery(pg_url) as g:
        g.add_samples("alice", [_sample(_unit(np.ones(4)), 1)])
        revision = g.revision()
    with PostgresGallery(pg_url, read_only=True) as ro:
        assert ro.read_only and [p.name for p in ro.people()] == ["alice"]
        for write in (
            lambda: ro.add_samples("bob", [_sample(_unit(np.ones(4)), 2)]),
            lambda: ro.rename_person("alice", "alicia"),
            lambda: ro.remove_person("alice"),
        ):
            with pytest.raises(ReadOnlyGalleryError, match="read-only"):
                write()
        assert ro.revision() == revision


def test_importing_facesense_does_not_import_psycopg() -> None:
    code = "import sys, facesense, facesense.gallery; sys.exit(int(any(m.startswith('psycopg') for m in sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# --- search in the database -----------------------------------------------------------


def _identities(rng: np.random.Generator, n_people: int, per_person: int, dim: int) -> np.ndarray:
    """Unit vectors that look like face embeddings: tight clusters around random identities."""
    centres = _unit(rng.normal(size=(n_people, 1, dim)))
    return _unit(centres + 0.35 / np.sqrt(dim) * rng.normal(size=(n_people, per_person, dim)) * np.sqrt(dim) / 4)


def test_hnsw_search_in_the_database_agrees_with_exact_search(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(12)
    n_people, per_person, dim = 400, 4, 128
    vectors = _identities(rng, n_people, per_person, dim)
    with PostgresGallery(pg_url) as g:
        for p in range(n_people):
            g.add_samples(f"person {p:03d}", [_sample(vectors[p, j], p * per_person + j) for j in range(per_person)])
        probes = _unit(vectors[:, 0] + 0.05 * rng.normal(size=(n_people, dim)) / np.sqrt(dim) * 4)[:200]
        exact = g.search(probes, 5, model_id=MODEL)  # 1,600 samples: in memory
        monkeypatch.setattr(pg, "DB_SEARCH_FROM_SAMPLES", 1_000)
        meanwhile = g.search(probes, 5, model_id=MODEL)  # above the threshold: starts building the index
        assert meanwhile.sample_ids.tolist() == exact.sample_ids.tolist()  # exact until it is built
        g.build_search_index(MODEL, dim)  # waits for the background build (advisory lock), or builds
        approx = g.search(probes, 5, model_id=MODEL)  # HNSW in PostgreSQL
        index = g._hnsw_name(MODEL, dim)  # the name, to look it up in the catalogue
    with psycopg.connect(pg_url) as conn:
        (indexdef,) = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", (index,)).fetchone() or ("",)
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                f"EXPLAIN SELECT id FROM facesense_samples WHERE model_id = '{MODEL}' "
                f"ORDER BY embedding::vector(128) <-> '{probes[0].tolist()}'::vector(128) LIMIT 5"
            ).fetchall()
        )
    assert "hnsw" in indexdef and "vector_l2_ops" in indexdef and "m='16'" in indexdef and "ef_construction='64'" in indexdef
    assert index in plan
    assert approx.distances.shape == exact.distances.shape == (200, 5)
    recall_at_1 = float(np.mean(approx.sample_ids[:, 0] == exact.sample_ids[:, 0]))
    assert recall_at_1 >= 0.98
    assert [row[0] for row in approx.labels] == [f"person {p:03d}" for p in range(200)]
    same = approx.sample_ids[:, 0] == exact.sample_ids[:, 0]
    np.testing.assert_allclose(approx.distances[same, 0], exact.distances[same, 0], atol=1e-4)
    assert np.all(np.diff(approx.distances, axis=1) >= 0)


# --- durability -----------------------------------------------------------------------

_ENROLLER = """
import sys
import numpy as np
from facesense.gallery import NewSample, open_gallery

rng = np.random.default_rng(0)
thumb = bytes(200_000)  # big rows: the kill lands inside a transaction now and then
with open_gallery(sys.argv[1]) as g:
    for i in range(100_000):
        def s(j):
            e = rng.normal(size=64).astype(np.float32)
            return NewSample(embedding=e / np.linalg.norm(e), model_id="m/v1", source_sha256=f"{i:032x}{j:032x}",
                             thumbnail_jpeg=thumb)
        g.add_samples(f"p{i}", [s(0), s(1), s(2)])
        if i:
            g.add_samples(f"p{i - 1}", [s(3), s(4)], create=False)
        print(i, flush=True)
"""


def _enroll_and_kill(url: str) -> None:
    with subprocess.Popen([sys.executable, "-c", _ENROLLER, url], stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            for _ in range(15):
                assert proc.stdout.readline(), "the enroller stopped early"
            time.sleep(0.037)  # somewhere inside the next calls
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()


def _check_whole(url: str) -> None:
    with PostgresGallery(url, create=False) as g:
        people = g.people()
        samples = g.samples()
        emb = g.embeddings("m/v1")
    assert len(people) >= 15
    assert all(p.n_samples in (3, 5) for p in people), [(p.name, p.n_samples) for p in people if p.n_samples not in (3, 5)]
    assert sum(p.n_samples for p in people) == len(samples) == len(emb)
    assert {s.person for s in samples} == {p.name for p in people}
    names = sorted(int(p.name[1:]) for p in people)
    assert names == list(range(len(names)))  # the people are 0..n-1: no gaps, no half-written ones
    # every person but the newest two got their second call
    assert all(p.n_samples == 5 for p in people if int(p.name[1:]) < len(names) - 2)


def _wait_for_the_dead_client(url: str, timeout_s: float = 15.0) -> None:
    """Until the server has ended every other session on the database (the killed
    enroller's), so the check reads one settled state."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
            if row is not None and row[0] == 0:
                return
            time.sleep(0.05)
    raise AssertionError("the killed enroller's session did not end")


def test_kill_9_mid_enrollment_leaves_whole_people_and_samples(pg_cluster: PgCluster) -> None:
    mid_transaction = 0
    for _ in range(5):  # until one kill lands inside an open transaction (most do)
        before = pg_cluster.log_text().count("unexpected EOF on client connection with an open transaction")
        url = pg_cluster.new_database()
        _enroll_and_kill(url)
        _wait_for_the_dead_client(url)  # its last COMMIT may still be in flight
        _check_whole(url)
        after = pg_cluster.log_text().count("unexpected EOF on client connection with an open transaction")
        mid_transaction += after - before
        if mid_transaction:
            break
    assert mid_transaction, "no kill landed inside a transaction in 5 tries"


def test_a_person_enrolled_on_another_machine_is_named_within_two_seconds(pg_url: str) -> None:
    """Two processes on one PostgreSQL gallery: what one enrolls, the other's LiveMatcher
    (as run by watch and serve) names within 2 s, without a restart."""
    from facesense.recognize import LiveMatcher

    rng = np.random.default_rng(7)
    faces = _unit(rng.normal(size=(2, 64)))
    with open_gallery(pg_url) as watcher_side:
        watcher_side.add_samples("first", [_sample(faces[0], 0)])
        matcher = LiveMatcher(watcher_side, MODEL, threshold=0.5)
        assert matcher.match(faces[1:]).names == (None,)
        enroll = (
            "import sys, numpy as np\n"
            "from facesense.gallery import NewSample, open_gallery\n"
            "e = np.array([float(v) for v in sys.argv[2].split(',')], np.float32)\n"
            "with open_gallery(sys.argv[1]) as g:\n"
            f"    g.add_samples('second', [NewSample(embedding=e, model_id={MODEL!r}, source_sha256='ab' * 32)])\n"
        )
        subprocess.run([sys.executable, "-c", enroll, pg_url, ",".join(map(str, faces[1]))], check=True, timeout=60)
        enrolled = time.monotonic()
        while matcher.match(faces[1:]).names != ("second",):
            assert time.monotonic() - enrolled < 2.0, "the other process's enrollment did not reach the matcher"
            time.sleep(0.05)
