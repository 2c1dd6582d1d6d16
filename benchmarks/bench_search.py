"""Top-1 search over 100,000 and 1,000,000 identities: exact, pgvector HNSW, in-process HNSW.

    python benchmarks/bench_search.py [--sizes 100000,1000000] [--queries 1000] [--quick]
        [--engines exact,pgvector,faiss,hnswlib,usearch] [--ef-search 40,100,200]

Data. Real faces first: the LFW images of ``../shared/data/lfw`` (or ``--lfw DIR``) are
embedded once by the default embedder (``make_embedder()``, 640-d fusion) and cached in
the user cache directory (``<cache>/bench/``), never in the repository. From them
:class:`FaceModel` estimates two covariances: between people (the spread of identity
centres) and within a person (photo-to-photo residuals of people with several
photos). A synthetic identity is a centre drawn from the first Gaussian; its gallery
sample and its probe are that centre plus two independent draws of the second, each
normalised to unit length like a real embedding. So probe-to-mate distances are
real genuine distances, and the distance to the nearest other identity shrinks with
N as it would in a real gallery of N people. The header prints real against synthetic
distance quantiles (genuine pairs, impostor pairs, nearest other person among as many
people as LFW has) so the likeness can be judged.

Engines, one row each, timing one probe at a time (a camera face) for top-1:

* ``exact``: NumPy/BLAS over the whole matrix, the SQLite store's search below the
  ANN threshold; it is also the ground truth of recall@1.
* ``pgvector``: a PostgreSQL 16 + pgvector server started from the ``pgserver`` wheel
  (as the tests do), a :class:`~facesense.gallery.postgres.PostgresGallery` whose tables
  are bulk-loaded with binary ``COPY``, its own ``build_search_index`` (the store's
  m and ef_construction; ``maintenance_work_mem`` raised) and its own ``search`` with
  ``hnsw_ef_search`` set per row. An exact in-database row (sequential scan) is timed
  on a few probes.
* ``faiss`` / ``hnswlib`` / ``usearch``: in-process HNSW (m 16, ef_construction 100)
  from each library, the candidates for the SQLite store's index; faiss won on build
  time and latency at equal recall and is what :mod:`facesense.gallery.ann` ships
  (hnswlib and usearch come with ``pip install -e '.[search-bench]'``; a missing one
  is a "skipped" row), and ``store-ann``: that shipped class itself, with its defaults.

Columns: build s (index build, wall clock), memory MB (index size: RSS growth of this
process for in-process indexes, ``pg_relation_size`` for pgvector, the matrix for
exact), p50 / p99 ms of one top-1 search, recall@1 (the engine's top-1 is exact search's
top-1) and ident@1 (the top-1 is the probe's mate). Sizes that do not fit in memory, or
an engine that would take longer than ``--max-build-s`` to build (estimated from the
previous size), are skipped with a note, never silently. Numbers depend on the machine
and on what else runs on it; BLAS threads follow OMP_NUM_THREADS.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import io
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from facesense.cpu import cpu_info

logger = logging.getLogger("bench_search")

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SIZES = (100_000, 1_000_000)
QUICK_SIZES = (2_000, 5_000)
ENGINES = ("exact", "pgvector", "faiss", "hnswlib", "usearch", "store-ann")
COLUMNS = ("engine", "N", "params", "build s", "memory MB", "p50 ms", "p99 ms", "recall@1", "ident@1", "note")
QUANTILES = (0.01, 0.05, 0.5, 0.95, 0.99)
HNSW_M = 16
CANDIDATE_EF_CONSTRUCTION = 100
GEN_CHUNK = 50_000


# ----------------------------------------------------------------------------- real faces


def _default_lfw() -> Path:
    env = os.environ.get("FACESENSE_DATA")
    return (Path(env) if env else REPO.parent / "shared" / "data") / "lfw"


def _default_cache() -> Path:
    from facesense.models.registry import cache_dir

    return cache_dir() / "bench"


def lfw_keys(lfw_dir: Path, limit: int | None) -> list[tuple[str, int]]:
    """The LFW images named by the pairs file, sorted (so a person's photos are adjacent); the first ``limit``."""
    from facesense.eval.lfw import read_pairs

    keys = read_pairs(lfw_dir / "pairs_folds1-5.txt").images
    return keys[:limit] if limit else keys


def real_embeddings(lfw_dir: Path, *, limit: int | None, cache: Path) -> tuple[tuple[str, ...], F32, str]:
    """Person names and ``(n, D)`` unit embeddings of real LFW faces, embedded once and cached.

    Returns:
        ``(names, embeddings, model_id)``; images without a readable face are left out.
    """
    from facesense.embed import make_embedder

    embedder = make_embedder()
    keys = lfw_keys(lfw_dir, limit)
    digest = hashlib.sha256(repr((embedder.model_id, keys)).encode()).hexdigest()[:16]
    path = cache / f"lfw-embeddings-{digest}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as npz:
            return tuple(str(s) for s in npz["names"]), np.asarray(npz["embeddings"], np.float32), embedder.model_id
    from facesense.analyzer import FaceAnalyzer
    from facesense.eval.lfw import embed_lfw_images
    from facesense.models.registry import write_atomic

    started = time.perf_counter()
    logger.info("embedding %d LFW images once (cached in %s)", len(keys), cache)
    done = embed_lfw_images(FaceAnalyzer(embedder=embedder), lfw_dir, keys)
    bad = set(done.unreadable)
    keep = [i for i, k in enumerate(done.keys) if k not in bad]
    names = tuple(done.keys[i][0] for i in keep)
    emb = np.ascontiguousarray(done.embeddings[keep], dtype=np.float32)
    buf = io.BytesIO()
    np.savez(buf, names=np.array(names), embeddings=emb)
    cache.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buf.getvalue())
    logger.info("embedded %d images in %.0f s", len(names), time.perf_counter() - started)
    return names, emb, embedder.model_id


# ----------------------------------------------------------------------------- synthetic identities


def _factor(cov: npt.NDArray[np.float64]) -> F32:
    """``L`` with ``L @ L.T == cov`` (negative eigenvalues of an estimate clipped to 0)."""
    w, v = np.linalg.eigh((cov + cov.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))).astype(np.float32)


def _unit(x: F32) -> F32:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


@dataclass(frozen=True, eq=False)
class FaceModel:
    """A model of real face embeddings: identity centres plus per-photo noise.

    ``photo = normalise(centre + s * L_within z)``: ``L_within`` is the covariance of the
    photo-to-photo residuals of people with several photos (each residual scaled by
    ``sqrt(n / (n - 1))`` for the mean it was taken from), and ``s`` a per-photo scale
    drawn from those residuals' own norms (some photos are much worse than others).
    A centre is a smoothed bootstrap of the real people: ``mean + shrink * (x_i - mean)
    + L_kernel z`` for a random real person's photo ``x_i``, with ``L_kernel`` making up
    the rest of the between-person covariance, so synthetic people keep the real ones'
    clusters. ``shrink`` is chosen at fit time so that the distance from each person to
    the nearest other one matches the real set's (median) at the real set's size.
    """

    mean: F32
    anchors: F32
    shrink: float
    kernel: F32
    within: F32
    scales: F32

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @classmethod
    def fit(cls, names: Sequence[str], embeddings: F32, seed: int = 0) -> FaceModel:
        """Fit to real ``(n, D)`` embeddings with a person name each (some people with several photos)."""
        emb = np.asarray(embeddings, np.float64)
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            groups.setdefault(name, []).append(i)
        residuals = []
        for rows in groups.values():
            if len(rows) > 1:
                x = emb[rows]
                residuals.append((x - x.mean(axis=0)) * np.sqrt(len(rows) / (len(rows) - 1)))
        if not residuals:
            raise ValueError("FaceModel.fit needs people with at least two photos")
        res = np.concatenate(residuals)
        within = res.T @ res / len(res)
        norms = np.linalg.norm(res, axis=1)
        scales = (norms / np.sqrt(np.mean(norms**2))).astype(np.float32)
        firsts = emb[[rows[0] for rows in groups.values()]]
        mean = firsts.mean(axis=0)
        photo_cov = np.cov(firsts, rowvar=False)
        between = photo_cov - within
        anchors = (firsts - mean).astype(np.float32)
        target = float(np.median(nn_distances(firsts.astype(np.float32))))
        best: FaceModel | None = None
        best_gap = np.inf
        for shrink in (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9):
            model = cls(mean.astype(np.float32), anchors, shrink, _factor(between - shrink**2 * photo_cov),
                        _factor(within), scales)
            rng = np.random.default_rng(seed)
            got = float(np.median(nn_distances(model.photos(model.centres(len(firsts), rng), rng))))
            if abs(got - target) < best_gap:
                best, best_gap = model, abs(got - target)
        assert best is not None
        return best

    def centres(self, n: int, rng: np.random.Generator) -> F32:
        """``(n, D)`` identity centres (not normalised)."""
        out = np.empty((n, self.dim), np.float32)
        for s in range(0, n, GEN_CHUNK):
            m = min(GEN_CHUNK, n - s)
            z = rng.standard_normal((m, self.dim), dtype=np.float32)
            pick = rng.integers(0, len(self.anchors), m)
            out[s : s + m] = self.mean + self.shrink * self.anchors[pick] + z @ self.kernel.T
        return out

    def photos(self, centres: F32, rng: np.random.Generator) -> F32:
        """One unit-length photo embedding per centre (fresh within-person noise each call)."""
        out = np.empty_like(centres)
        for s in range(0, len(centres), GEN_CHUNK):
            c = centres[s : s + GEN_CHUNK]
            z = rng.standard_normal(c.shape, dtype=np.float32)
            scale = rng.choice(self.scales, size=(len(c), 1))
            out[s : s + len(c)] = _unit(c + scale * (z @ self.within.T))
        return out


@dataclass(frozen=True, eq=False)
class Dataset:
    """A synthetic gallery (one sample per identity) and probes that are mates of gallery identities."""

    gallery: F32
    probes: F32
    mates: I64


def make_dataset(model: FaceModel, n: int, queries: int, seed: int = 0) -> Dataset:
    """``n`` identities with one gallery sample each, and ``queries`` probes (another photo of a random identity)."""
    rng = np.random.default_rng(seed)
    centres = model.centres(n, rng)
    gallery = model.photos(centres, rng)
    mates = rng.choice(n, size=min(queries, n), replace=False).astype(np.int64)
    probes = model.photos(centres[mates], rng)
    del centres
    return Dataset(gallery, probes, mates)


def _pair_distances(a: F32, b: F32) -> npt.NDArray[np.float64]:
    return np.sqrt(np.clip(2.0 - 2.0 * np.einsum("ij,ij->i", a, b, dtype=np.float64), 0.0, None))


def nn_distances(x: F32) -> npt.NDArray[np.float64]:
    """Distance from each row to its nearest other row."""
    d = 2.0 - 2.0 * (x @ x.T).astype(np.float64)
    np.fill_diagonal(d, np.inf)
    return np.sqrt(np.clip(d.min(axis=1), 0.0, None))


def likeness(names: Sequence[str], real: F32, model: FaceModel, seed: int = 1) -> dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]:
    """Real against synthetic distance samples: ``{what: (real, synthetic)}``.

    ``genuine``: two photos of one person; ``impostor``: photos of two people;
    ``nearest other``: from one photo per person to the nearest other person's photo,
    among as many people as the real set has.
    """
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(name, []).append(i)
    gen_a = [rows[0] for rows in groups.values() if len(rows) > 1]
    gen_b = [rows[1] for rows in groups.values() if len(rows) > 1]
    firsts = np.array([rows[0] for rows in groups.values()])
    people = len(firsts)
    perm = rng.permutation(people)
    centres = model.centres(people, rng)
    photo_a, photo_b = model.photos(centres, rng), model.photos(centres, rng)
    return {
        "genuine": (_pair_distances(real[gen_a], real[gen_b]), _pair_distances(photo_a, photo_b)),
        "impostor": (
            _pair_distances(real[firsts], real[firsts[perm]]),
            _pair_distances(photo_a, photo_a[perm]),
        ),
        "nearest other": (nn_distances(real[firsts]), nn_distances(photo_a)),
    }


# ----------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    engine: str
    n: int
    params: str
    build_s: float
    memory_mb: float
    p50_ms: float
    p99_ms: float
    recall: float
    ident: float
    note: str = ""

    def cells(self) -> tuple[str, ...]:
        def num(v: float, fmt: str) -> str:
            return "-" if not np.isfinite(v) else format(v, fmt)

        return (
            self.engine, f"{self.n:,}", self.params, num(self.build_s, ".1f"), num(self.memory_mb, ".0f"),
            num(self.p50_ms, ".2f"), num(self.p99_ms, ".2f"), num(self.recall, ".3f"), num(self.ident, ".3f"), self.note,
        )


def format_table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table (the README's form)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)


def rss_mb() -> float:
    """This process's resident set, MB (Linux ``/proc``)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def available_mb() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("inf")


def time_queries(search_one: Callable[[F32], int], probes: F32) -> tuple[I64, npt.NDArray[np.float64]]:
    """Run ``search_one`` (top-1 row index of one probe) on every probe: answers and milliseconds."""
    search_one(probes[0])  # warm-up
    top = np.empty(len(probes), np.int64)
    ms = np.empty(len(probes), np.float64)
    for i, q in enumerate(probes):
        t = time.perf_counter()
        top[i] = search_one(q)
        ms[i] = (time.perf_counter() - t) * 1000
    return top, ms


def make_row(engine: str, n: int, params: str, build_s: float, memory_mb: float, top: I64, ms: npt.NDArray[np.float64],
             truth: I64, mates: I64, note: str = "") -> Row:
    k = len(top)
    return Row(
        engine, n, params, build_s, memory_mb, float(np.percentile(ms, 50)), float(np.percentile(ms, 99)),
        float(np.mean(top == truth[:k])), float(np.mean(top == mates[:k])), note,
    )


def exact_top1(gallery: F32, probes: F32, block: int = 256) -> I64:
    """Ground truth: the nearest gallery row of every probe (squared L2 on unit vectors = 2 - 2 dot)."""
    out = np.empty(len(probes), np.int64)
    for s in range(0, len(probes), block):
        out[s : s + block] = np.argmax(probes[s : s + block] @ gallery.T, axis=1)
    return out


# ----------------------------------------------------------------------------- in-process candidates


class Candidate:
    """An in-process HNSW library under test: build, set ef, search one probe."""

    name = ""

    def __init__(self, ef_construction: int = CANDIDATE_EF_CONSTRUCTION) -> None:
        self.efc = ef_construction

    def build(self, data: F32, threads: int) -> None:
        raise NotImplementedError

    def set_ef(self, ef: int) -> None:
        raise NotImplementedError

    def top1(self, q: F32) -> int:
        raise NotImplementedError


class FaissHNSW(Candidate):
    name = "faiss"

    def build(self, data: F32, threads: int) -> None:
        import faiss

        faiss.omp_set_num_threads(threads)
        self.index = faiss.IndexHNSWFlat(data.shape[1], HNSW_M)
        self.index.hnsw.efConstruction = self.efc
        self.index.add(data)
        faiss.omp_set_num_threads(1)

    def set_ef(self, ef: int) -> None:
        self.index.hnsw.efSearch = ef

    def top1(self, q: F32) -> int:
        _, ids = self.index.search(q[None], 1)
        return int(ids[0, 0])


class Hnswlib(Candidate):
    name = "hnswlib"

    def build(self, data: F32, threads: int) -> None:
        import hnswlib

        self.index = hnswlib.Index(space="l2", dim=data.shape[1])
        self.index.init_index(max_elements=len(data), ef_construction=self.efc, M=HNSW_M)
        self.index.add_items(data, np.arange(len(data)), num_threads=threads)
        self.index.set_num_threads(1)

    def set_ef(self, ef: int) -> None:
        self.index.set_ef(ef)

    def top1(self, q: F32) -> int:
        ids, _ = self.index.knn_query(q[None], k=1)
        return int(ids[0, 0])


class USearch(Candidate):
    name = "usearch"

    def build(self, data: F32, threads: int) -> None:
        from usearch.index import Index

        self.index = Index(ndim=data.shape[1], metric="l2sq", dtype="f32", connectivity=HNSW_M,
                           expansion_add=self.efc)
        self.index.add(np.arange(len(data)), data, threads=threads)

    def set_ef(self, ef: int) -> None:
        self.index.expansion_search = ef

    def top1(self, q: F32) -> int:
        m = self.index.search(q, 1, threads=1)
        return int(m.keys[0])


CANDIDATES: dict[str, type[Candidate]] = {"faiss": FaissHNSW, "hnswlib": Hnswlib, "usearch": USearch}


def bench_candidate(cls: type[Candidate], ds: Dataset, truth: I64, efs: Sequence[int], threads: int,
                    ef_construction: int = CANDIDATE_EF_CONSTRUCTION) -> Iterator[Row]:
    cand = cls(ef_construction)
    gc.collect()
    before = rss_mb()
    t, cpu = time.perf_counter(), time.process_time()
    try:
        cand.build(ds.gallery, threads)
    except ImportError as exc:
        yield Row(cand.name, len(ds.gallery), "-", *(float("nan"),) * 6,
                  f"skipped: {exc.name or cand.name} not installed (pip install -e '.[search-bench]')")
        return
    build_s, cpu_s = time.perf_counter() - t, time.process_time() - cpu
    mem = rss_mb() - before
    n = len(ds.gallery)
    for ef in efs:
        cand.set_ef(ef)
        top, ms = time_queries(cand.top1, ds.probes)
        yield make_row(cand.name, n, f"m={HNSW_M} efc={cand.efc} ef={ef}", build_s, mem, top, ms, truth, ds.mates,
                       f"build CPU {cpu_s:.0f} s")
    del cand
    gc.collect()


def bench_store_ann(ds: Dataset, truth: I64, threads: int) -> Row:
    """The class the SQLite store uses, with its own defaults."""
    from facesense.gallery import ann

    gc.collect()
    before = rss_mb()
    t, cpu = time.perf_counter(), time.process_time()
    index = ann.AnnIndex(ds.gallery, threads=threads)
    build_s, cpu_s = time.perf_counter() - t, time.process_time() - cpu
    mem = rss_mb() - before

    def one(q: F32) -> int:
        return int(index.search(q[None], 1)[0][0, 0])

    top, ms = time_queries(one, ds.probes)
    return make_row("store-ann", len(ds.gallery), index.describe(), build_s, mem, top, ms, truth, ds.mates,
                    f"build CPU {cpu_s:.0f} s; SQLiteGallery's index")


# ----------------------------------------------------------------------------- pgvector


@contextmanager
def pg_server(root: Path) -> Iterator[Any]:
    """A PostgreSQL 16 + pgvector from the ``pgserver`` wheel, in ``root`` (started as the tests start it)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pgserver

        server = pgserver.get_server(root / "data", cleanup_mode="delete")  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.cleanup()


def load_postgres(url: str, gallery: F32, model_id: str) -> None:
    """Bulk-load one person and one sample per row into a fresh gallery's tables (binary COPY)."""
    import psycopg
    from pgvector.psycopg import register_vector

    n, dim = gallery.shape
    with psycopg.connect(url) as conn:
        register_vector(conn)
        with conn.cursor() as cur:
            with cur.copy("COPY facesense_people (id, name, created) FROM STDIN") as copy:
                for i in range(n):
                    copy.write_row((i + 1, f"id{i:07d}", "2026-01-01T00:00:00+00:00"))
            cols = "(person_id, model_id, dim, embedding, source_sha256, x1, y1, x2, y2, thumbnail, added)"
            with cur.copy(f"COPY facesense_samples {cols} FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "text", "int4", "vector", "text", "float8", "float8", "float8", "float8", "bytea", "text"])
                for i in range(n):
                    copy.write_row((i + 1, model_id, dim, gallery[i], f"{i:064x}", 0.0, 0.0, 1.0, 1.0, b"", "2026-01-01"))
            cur.execute("SELECT setval(pg_get_serial_sequence('facesense_people', 'id'), %s)", (n,))
            cur.execute("UPDATE facesense_meta SET value = (value::bigint + 1)::text WHERE key = 'revision'")
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE facesense_samples")


def bench_pgvector(server: Any, ds: Dataset, truth: I64, efs: Sequence[int], model_id: str, exact_probes: int) -> Iterator[Row]:
    import psycopg

    from facesense.gallery import postgres

    n, dim = ds.gallery.shape
    db = f"bench_{n}"
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {db}")
        conn.execute(f"CREATE DATABASE {db}")
        # For the build: the graph fits in memory, and both cores help (pgvector >= 0.6).
        mem_gb = max(1, min(8, int(n * dim * 4 * 2.2 / 2**30) + 1))
        conn.execute(f"ALTER DATABASE {db} SET maintenance_work_mem = '{mem_gb}GB'")
        conn.execute(f"ALTER DATABASE {db} SET max_parallel_maintenance_workers = 1")
    url = server.get_uri(db)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    gallery = postgres.PostgresGallery(url)
    try:
        t = time.perf_counter()
        load_postgres(url, ds.gallery, model_id)
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        gallery.build_search_index(model_id, dim)
        build_s = time.perf_counter() - t
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT sum(pg_relation_size(c.oid)) FROM pg_class c JOIN pg_am a ON a.oid = c.relam "
                "WHERE a.amname = 'hnsw'"
            ).fetchone()
        index_mb = float(row[0] if row and row[0] is not None else float("nan")) / 2**20
        base = f"pgvector {version[0] if version else '?'}: m={postgres.HNSW_M} efc={postgres.HNSW_EF_CONSTRUCTION}"
        row_of = {f"id{i:07d}": i for i in range(n)}
        in_db = n > postgres.DB_SEARCH_FROM_SAMPLES

        def one(q: F32) -> int:
            return row_of[gallery.search(q, 1, model_id=model_id).labels[0][0]]

        # Below DB_SEARCH_FROM_SAMPLES the store searches in memory: time its SQL directly then.
        sql_conn = psycopg.connect(url)
        try:
            from pgvector.psycopg import register_vector

            register_vector(sql_conn)
            hnsw_sql = (
                f"SELECT person_id FROM facesense_samples WHERE model_id = '{model_id}' "
                f"ORDER BY embedding::vector({dim}) <-> %s::vector({dim}) LIMIT 1"
            )

            def direct(q: F32) -> int:
                r = sql_conn.execute(hnsw_sql, (q,)).fetchone()
                return int(r[0]) - 1 if r else -1

            for ef in efs:
                gallery.hnsw_ef_search = ef
                sql_conn.execute(f"SET hnsw.ef_search = {int(ef)}")
                if in_db:
                    top, ms = time_queries(one, ds.probes)
                    note = "PostgresGallery.search (revision check + query + names)"
                    if ef == efs[0]:
                        note += f"; COPY load {load_s:.0f} s"
                    yield make_row("pgvector", n, f"{base} ef={ef}", build_s, index_mb, top, ms, truth, ds.mates, note)
                # The bare query, one round trip: what the database itself costs.
                top, ms = time_queries(direct, ds.probes)
                yield make_row("pgvector SQL", n, f"{base} ef={ef}", build_s, index_mb, top, ms, truth, ds.mates,
                               "the store's query alone, one round trip")
        finally:
            sql_conn.close()
        # Exact in the database (no index): a sequential scan, on a few probes.
        with psycopg.connect(url) as conn:
            from pgvector.psycopg import register_vector

            register_vector(conn)
            conn.execute("SET enable_indexscan = off")
            sql = (
                f"SELECT person_id FROM facesense_samples WHERE model_id = %s "
                f"ORDER BY embedding::vector({dim}) <-> %s::vector({dim}) LIMIT 1"
            )

            def seq(q: F32) -> int:
                r = conn.execute(sql, (model_id, q)).fetchone()
                return int(r[0]) - 1 if r else -1

            top, ms = time_queries(seq, ds.probes[:exact_probes])
        table_mb = float("nan")
        with psycopg.connect(url) as conn:
            r = conn.execute("SELECT pg_table_size('facesense_samples')").fetchone()
            table_mb = (r[0] if r else float("nan")) / 2**20
        yield make_row("pgvector exact", n, "sequential scan", float("nan"), table_mb, top, ms, truth, ds.mates,
                       f"{len(top)} probes; memory = table size")
    finally:
        gallery.close()
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {db}")


# ----------------------------------------------------------------------------- main


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v.replace("_", "")) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def _engines(text: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    bad = [v for v in names if v not in ENGINES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown engine(s) {bad}; choose from {', '.join(ENGINES)}")
    return names


def _quantile_line(what: str, real: npt.NDArray[np.float64], synth: npt.NDArray[np.float64]) -> str:
    r = " ".join(f"{v:.3f}" for v in np.quantile(real, QUANTILES))
    s = " ".join(f"{v:.3f}" for v in np.quantile(synth, QUANTILES))
    return f"  {what:14s} real {r}   synthetic {s}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=_ints, default=None, help="gallery sizes (default 100000,1000000)")
    parser.add_argument("--queries", type=int, default=None, help="probes per size (default 1000; --quick 100)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: small sizes, few probes, few LFW images")
    parser.add_argument("--engines", type=_engines, default=ENGINES, help=f"comma-separated, from {', '.join(ENGINES)}")
    parser.add_argument("--ef-search", type=_ints, default=(40, 100, 200), help="HNSW ef_search values to time")
    parser.add_argument("--ef-construction", type=int, default=CANDIDATE_EF_CONSTRUCTION,
                        help="ef_construction of the in-process candidates (pgvector and store-ann use their own)")
    parser.add_argument("--lfw", type=Path, default=None, help="LFW folder (default ../shared/data/lfw)")
    parser.add_argument("--lfw-images", type=int, default=None, help="embed only the first N LFW images (default all; --quick 300)")
    parser.add_argument("--cache", type=Path, default=None, help="where the real embeddings are cached (default <user cache>/bench)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for index builds")
    parser.add_argument("--max-build-s", type=float, default=1800.0, help="skip a build estimated to take longer")
    parser.add_argument("--exact-probes", type=int, default=50, help="probes for the in-database exact row")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    queries = args.queries or (100 if args.quick else 1000)
    limit = args.lfw_images or (300 if args.quick else None)
    if queries < 1:
        parser.error(f"--queries must be >= 1, got {queries}")
    lfw = args.lfw or _default_lfw()
    if not (lfw / "pairs_folds1-5.txt").is_file():
        parser.error(f"no LFW pairs file in {lfw} (give --lfw DIR or set FACESENSE_DATA)")

    names, real, model_id = real_embeddings(lfw, limit=limit, cache=args.cache or _default_cache())
    model = FaceModel.fit(names, real)
    print(f"CPU: {cpu_info().describe()}")
    print(f"search benchmark: top-1, one probe at a time; {queries} probes per size; model {model_id} ({model.dim}-d)")
    people = len(set(names))
    print(f"synthetic centres: shrink {model.shrink:g} towards a random real person (fitted: nearest-other median)")
    print(f"real faces: {len(names)} LFW photos of {people} people; distance quantiles {', '.join(f'{q:g}' for q in QUANTILES)}:")
    for what, (r, s) in likeness(names, real, model).items():
        print(_quantile_line(what, r, s))
    print()

    rows: list[Row] = []
    pg_root: Path | None = None
    server_cm: Any = None
    server: Any = None
    pg_error: str | None = None
    last_build: dict[str, tuple[int, float]] = {}
    try:
        for n in sizes:
            need_mb = n * model.dim * 4 * 2 / 2**20  # the gallery and the candidate's copy
            if need_mb > available_mb() * 0.8:
                rows.append(Row("all", n, "-", *(float("nan"),) * 6, f"skipped: needs ~{need_mb:.0f} MB, {available_mb():.0f} MB free"))
                continue
            t = time.perf_counter()
            ds = make_dataset(model, n, queries)
            truth = exact_top1(ds.gallery, ds.probes)
            logger.info("N=%d: data and ground truth in %.1f s", n, time.perf_counter() - t)

            def too_slow(engine: str, n: int = n) -> str | None:
                if engine not in last_build:
                    return None
                n0, s0 = last_build[engine]
                est = s0 * (n / n0) * np.log(n) / np.log(n0)  # HNSW builds grow ~ N log N
                return f"skipped: build estimated {est / 60:.0f} min > --max-build-s" if est > args.max_build_s else None

            for engine in args.engines:
                skip = too_slow(engine)
                if skip:
                    rows.append(Row(engine, n, "-", *(float("nan"),) * 6, skip))
                    continue
                logger.info("N=%d: %s", n, engine)
                if engine == "exact":
                    matrix = ds.gallery

                    def one(q: F32, matrix: F32 = matrix) -> int:
                        return int(np.argmax(matrix @ q))

                    top, ms = time_queries(one, ds.probes)
                    rows.append(make_row("exact", n, "NumPy BLAS", 0.0, matrix.nbytes / 2**20, top, ms, truth, ds.mates,
                                         "ground truth; memory = the matrix"))
                elif engine == "pgvector":
                    if server is None and pg_error is None:
                        pg_root = Path(tempfile.mkdtemp(prefix="facesense-bench-pg-"))
                        try:
                            server_cm = pg_server(pg_root)
                            server = server_cm.__enter__()
                        except Exception as exc:  # noqa: BLE001  # any failure to start: say so in the table
                            server_cm = None
                            pg_error = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
                    if server is None:
                        rows.append(Row(engine, n, "-", *(float("nan"),) * 6, f"skipped: cannot start PostgreSQL ({pg_error})"))
                        continue
                    got = list(bench_pgvector(server, ds, truth, args.ef_search, model_id, args.exact_probes))
                    last_build[engine] = (n, got[0].build_s)
                    rows.extend(got)
                elif engine == "store-ann":
                    got1 = bench_store_ann(ds, truth, args.threads)
                    last_build[engine] = (n, got1.build_s)
                    rows.append(got1)
                else:
                    got = list(bench_candidate(CANDIDATES[engine], ds, truth, args.ef_search, args.threads, args.ef_construction))
                    last_build[engine] = (n, got[0].build_s)
                    rows.extend(got)
                print(format_table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
            del ds, truth
            gc.collect()
    finally:
        if server_cm is not None:
            server_cm.__exit__(None, None, None)
        if pg_root is not None:
            shutil.rmtree(pg_root, ignore_errors=True)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
