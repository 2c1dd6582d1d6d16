"""The HNSW index of large galleries (``facesense.gallery.ann``) and the search benchmark.

The data are synthetic identities built from real LFW embeddings by the benchmark's
own :class:`FaceModel` (``benchmarks/bench_search.py``): a few hundred real photos are
embedded once per test session, and the gallery and probes drawn from them have real
genuine and impostor distances.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from facesense.errors import ConfigError
from facesense.gallery import SQLiteGallery
from facesense.gallery.ann import ANN_FROM_SAMPLES, AnnIndex
from facesense.gallery.base import ExportData, write_export

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks" / "bench_search.py"
LFW_IMAGES = 300  # the real photos the synthetic identities are modelled on (--quick uses as many)


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_search", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_search"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def bench() -> ModuleType:
    return _load_bench()


@pytest.fixture(scope="session")
def embeddings_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "bench-embeddings"


@pytest.fixture(scope="session")
def face_model(bench: ModuleType, lfw_dir: Path, shared_cache: Path, embeddings_cache: Path) -> tuple[Any, str]:
    """The benchmark's Gaussian face model fitted to real embeddings, and their model id."""
    names, real, model_id = bench.real_embeddings(lfw_dir, limit=LFW_IMAGES, cache=embeddings_cache)
    assert real.shape[0] >= 250 and len(set(names)) < len(names)  # some people with several photos
    return bench.FaceModel.fit(names, real), model_id


def _exact(gallery: np.ndarray, probes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    d = np.sqrt(np.clip(2.0 - 2.0 * probes.astype(np.float64) @ gallery.T.astype(np.float64), 0.0, None))
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(d, order, axis=1)


def test_synthetic_faces_look_real(bench: ModuleType, face_model: tuple[Any, str], lfw_dir: Path, embeddings_cache: Path) -> None:
    """Synthetic genuine and impostor distances land where the real ones do (medians within 0.1)."""
    names, real, _ = bench.real_embeddings(lfw_dir, limit=LFW_IMAGES, cache=embeddings_cache)
    like = bench.likeness(names, real, face_model[0])
    for what in ("genuine", "impostor"):
        r, s = like[what]
        assert abs(np.median(r) - np.median(s)) < 0.1, (what, np.median(r), np.median(s))
    gen, imp = like["genuine"][1], like["impostor"][1]
    assert np.median(gen) < np.median(imp) - 0.3  # mates are much nearer than strangers


def test_index_finds_the_exact_nearest_neighbour(bench: ModuleType, face_model: tuple[Any, str]) -> None:
    ds = bench.make_dataset(face_model[0], 20_000, 300, seed=3)
    index = AnnIndex(ds.gallery)
    rows, dist = index.search(ds.probes, 5)
    assert rows.shape == dist.shape == (300, 5) and rows.dtype == np.int64 and dist.dtype == np.float32
    truth, truth_d = _exact(ds.gallery, ds.probes, 5)
    recall = float(np.mean(rows[:, 0] == truth[:, 0]))
    assert recall >= 0.99, recall
    same = rows[:, 0] == truth[:, 0]
    np.testing.assert_allclose(dist[same, 0], truth_d[same, 0], atol=1e-4)
    assert np.all(np.diff(dist, axis=1) >= 0)
    # Identification (top-1 is the probe's mate) is as good as exact search's.
    assert float(np.mean(rows[:, 0] == ds.mates)) >= float(np.mean(truth[:, 0] == ds.mates)) - 0.01
    assert index.probes_searched == 300
    one_rows, _ = index.search(ds.probes[0], 1)  # one (D,) probe
    assert one_rows.shape == (1, 1) and one_rows[0, 0] == rows[0, 0]


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (np.zeros((0, 8), np.float32), "N >= 1"),
        (np.zeros((4, 8), np.float64), "float32"),
        (np.zeros(8, np.float32), r"\(N, D\)"),
        (np.full((4, 8), np.inf, np.float32), "NaN or infinity"),
    ],
)
def test_index_refuses_bad_matrices(matrix: np.ndarray, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AnnIndex(matrix)


@pytest.mark.parametrize(
    ("probes", "k", "message"),
    [
        (np.full((1, 16), np.nan, np.float32), 1, "NaN"),
        (np.zeros((1, 15), np.float32), 1, r"expected shape \(M, 16\)"),
        (np.zeros((1, 16), np.float32), 0, "k must be >= 1"),
    ],
)
def test_index_refuses_bad_probes(probes: np.ndarray, k: int, message: str) -> None:
    rng = np.random.default_rng(0)
    index = AnnIndex(rng.standard_normal((50, 16), dtype=np.float32))
    with pytest.raises(ConfigError, match=message):
        index.search(probes, k)


def test_index_with_fewer_rows_than_k() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 16), dtype=np.float32)
    rows, dist = AnnIndex(x).search(x[1], 10)
    assert rows.tolist() == [[1, *sorted({0, 2}, key=lambda j: float(np.linalg.norm(x[j] - x[1])))]]
    assert dist[0, 0] == pytest.approx(0.0, abs=1e-3)


def _fill(path: Path, gallery: np.ndarray, model_id: str) -> None:
    """One person per row, imported in one transaction."""
    n = len(gallery)
    data = ExportData(
        people=tuple((f"p{i:06d}", "2026-01-01T00:00:00+00:00") for i in range(n)),
        samples=tuple(
            {"person": f"p{i:06d}", "model_id": model_id, "source_sha256": f"{i:064x}", "xyxy": [0, 0, 1, 1]}
            for i in range(n)
        ),
        matrix=gallery,
        thumbnails=(b"",) * n,
    )
    export = path.with_suffix(".npz")
    write_export(export, data)
    with SQLiteGallery(path) as g:
        g.import_file(export)


def test_sqlite_search_past_the_threshold_uses_the_index(bench: ModuleType, face_model: tuple[Any, str], tmp_path: Path) -> None:
    model, model_id = face_model
    ds = bench.make_dataset(model, 3_000, 200, seed=5)
    db = tmp_path / "big.db"
    _fill(db, ds.gallery, model_id)
    with SQLiteGallery(db, ann_from_samples=1_000) as g, SQLiteGallery(db) as exact:
        assert exact.build_search_index(model_id) is None  # 3,000 <= the default 100,000: exact
        index = g.build_search_index(model_id)
        assert index is not None and len(index) == 3_000
        assert g.build_search_index(model_id) is index  # one per revision
        got = g.search(ds.probes, 3, model_id=model_id)
        assert index.probes_searched == 200  # answered by the index
        want = exact.search(ds.probes, 3, model_id=model_id)
        assert got.distances.shape == want.distances.shape == (200, 3)
        agree = np.array([a[0] == b[0] for a, b in zip(got.labels, want.labels, strict=True)])
        assert agree.mean() >= 0.99
        np.testing.assert_allclose(got.distances[agree, 0], want.distances[agree, 0], atol=1e-5)
        np.testing.assert_array_equal(got.sample_ids[agree, 0], want.sample_ids[agree, 0])
        assert got.model_id == want.model_id == model_id


def test_sqlite_index_is_rebuilt_after_a_write(bench: ModuleType, face_model: tuple[Any, str], tmp_path: Path) -> None:
    from facesense.gallery.base import NewSample

    model, model_id = face_model
    ds = bench.make_dataset(model, 2_000, 50, seed=7)
    db = tmp_path / "g.db"
    _fill(db, ds.gallery, model_id)
    with SQLiteGallery(db, ann_from_samples=1_000) as g:
        old = g.build_search_index(model_id)
        assert old is not None
        newcomer = ds.probes[0]
        g.add_samples("newcomer", [NewSample(embedding=newcomer, model_id=model_id, source_sha256="f" * 64)])
        # Right after the write the old index is never used (it lacks the newcomer);
        # search is exact while the new one builds in the background.
        first = g.search(newcomer, 1, model_id=model_id)
        assert first.labels == (("newcomer",),)
        new = g.build_search_index(model_id)  # waits for the background build
        assert new is not None and new is not old and len(new) == 2_001
        before_old = old.probes_searched
        again = g.search(newcomer, 1, model_id=model_id)
        assert again.labels == (("newcomer",),) and again.distances[0, 0] == pytest.approx(0.0, abs=1e-3)
        assert new.probes_searched >= 1 and old.probes_searched == before_old
        mate = ds.mates[1]
        g.remove_person(f"p{mate:06d}")
        assert g.build_search_index(model_id) is not new
        after = g.search(ds.probes[1], 5, model_id=model_id)
        assert f"p{mate:06d}" not in after.labels[0]


def test_threshold_parameter_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ann_from_samples must be >= 1"):
        SQLiteGallery(tmp_path / "x.db", ann_from_samples=0)
    assert ANN_FROM_SAMPLES == 100_000


@pytest.mark.slow
def test_benchmark_quick_run_prints_the_table(
    bench: ModuleType, face_model: tuple[Any, str], lfw_dir: Path, shared_cache: Path, embeddings_cache: Path
) -> None:
    env = {**os.environ, "FACESENSE_DATA": str(lfw_dir.parent), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--sizes", "2000", "--queries", "30", "--ef-search", "40",
         "--cache", str(embeddings_cache), "--exact-probes", "5"],
        capture_output=True, text=True, timeout=600, env=env, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert out.startswith("CPU: ")
    assert "genuine" in out and "nearest other" in out
    table = [line for line in out.splitlines() if line.startswith("|")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header == list(bench.COLUMNS)
    rows = {}
    for line in table[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows.setdefault(cells[0], cells)
    # 2,000 samples are searched in memory by PostgresGallery: its SQL is timed directly.
    expected = {"exact", "pgvector SQL", "pgvector exact", "faiss", "hnswlib", "usearch", "store-ann"}
    if "pgvector" in rows:  # only where the pgserver wheel cannot start here, and the table says so
        assert rows["pgvector"][-1].startswith("skipped: cannot start PostgreSQL"), rows["pgvector"]
        expected = expected - {"pgvector SQL", "pgvector exact"} | {"pgvector"}
    assert set(rows) == expected, rows
    recall = header.index("recall@1")
    assert rows["exact"][recall] == "1.000"
    assert float(rows["store-ann"][recall]) >= 0.95


def test_benchmark_refuses_bad_options() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--sizes", "ten"], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert proc.returncode == 2
    assert "expected comma-separated whole numbers" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--engines", "exact,annoy"], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert proc.returncode == 2 and "unknown engine(s) ['annoy']" in proc.stderr
