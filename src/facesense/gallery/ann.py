"""Approximate nearest-neighbour search for large galleries: an in-process HNSW index.

Exact search reads every stored embedding for every probe: its cost grows with the
gallery, 76 ms per probe (p50) at 100,000 640-d samples on a busy 2-core machine, and
ten times that at 1,000,000.
:class:`AnnIndex` answers the same question from an HNSW graph (Malkov & Yashunin)
built by `faiss <https://github.com/facebookresearch/faiss>`_ (``IndexHNSWFlat``) in
a millisecond or two; ``benchmarks/bench_search.py`` measured it against hnswlib and
usearch on synthetic identities made from real embeddings and chose it: the fastest
build and search of the three at 100,000 640-d samples for the same recall, with
wheels for every platform (hnswlib ships only a source archive) (see the README's
search table).

The SQLite store (:meth:`facesense.gallery.sqlite.SQLiteGallery.search`) uses one
once a model holds more than :data:`ANN_FROM_SAMPLES` samples, built per revision
from the matrix it already caches, and searches exactly until it is built.

The index stores its own copy of the vectors (float32, so distances are those of
exact search up to rounding); the candidates it returns are re-scored with
:func:`facesense.match.pairwise_distances` against the caller's matrix, so a sample
found by both paths gets the same distance, and ties go to the older (lower) row as
in exact search.

faiss (the ``faiss-cpu`` package) is imported on first build, never when this module
is imported.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import numpy as np
import numpy.typing as npt

from facesense.errors import ConfigError, GalleryError

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

__all__ = ["ANN_FROM_SAMPLES", "EF_CONSTRUCTION", "EF_SEARCH", "EF_SEARCH_LARGE", "HNSW_M", "LARGE_FROM_SAMPLES", "AnnIndex"]

ANN_FROM_SAMPLES = 100_000
"""A model with more samples than this is searched through an :class:`AnnIndex` (below it, exactly)."""
HNSW_M = 16  # graph neighbours per node (the paper's M; pgvector's default)
EF_CONSTRUCTION = 100  # candidate list while inserting
EF_SEARCH = 100  # candidate list while searching (at least k is used); recall@1 0.996 at 100,000
EF_SEARCH_LARGE = 200  # from LARGE_FROM_SAMPLES on: recall@1 0.993 at 1,000,000 (ef 100: 0.987), 0.82 ms p50
LARGE_FROM_SAMPLES = 500_000


class AnnIndex:
    """An HNSW index over the rows of one ``(N, D)`` float32 matrix of unit embeddings.

    Args:
        matrix: ``(N, D)`` float32, ``N >= 1``; kept by reference for re-scoring, so it
            must not be changed afterwards.
        m: graph neighbours per node.
        ef_construction: candidate list length while building.
        ef_search: candidate list length while searching (``max(ef_search, k)`` is used);
            ``None``: :data:`EF_SEARCH`, or :data:`EF_SEARCH_LARGE` from
            :data:`LARGE_FROM_SAMPLES` rows on (``benchmarks/bench_search.py``).
        threads: build threads (``None``: every core).

    Raises:
        ConfigError: a matrix that is not 2-D finite numbers with at least one row, or bad parameters.
        GalleryError: faiss is not installed, or it failed to build the index.

    Searching is thread-safe; :attr:`probes_searched` counts the probes answered.
    """

    def __init__(
        self,
        matrix: npt.NDArray[np.float32],
        *,
        m: int = HNSW_M,
        ef_construction: int = EF_CONSTRUCTION,
        ef_search: int | None = None,
        threads: int | None = None,
    ) -> None:
        x = np.asarray(matrix)
        if ef_search is None:
            ef_search = EF_SEARCH_LARGE if x.ndim == 2 and x.shape[0] >= LARGE_FROM_SAMPLES else EF_SEARCH
        if x.dtype != np.float32 or x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
            raise ConfigError(f"matrix: expected (N, D) float32 with N >= 1, got {x.shape} {x.dtype}")
        if not np.all(np.isfinite(x)):
            raise ConfigError("matrix: contains NaN or infinity")
        for name, value in (("m", m), ("ef_construction", ef_construction), ("ef_search", ef_search)):
            if int(value) < 2:
                raise ConfigError(f"{name} must be >= 2, got {value}")
        if threads is not None and int(threads) < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        self._matrix = np.ascontiguousarray(x)
        self._sq = np.einsum("ij,ij->i", self._matrix, self._matrix)
        self.m, self.ef_construction, self.ef_search = int(m), int(ef_construction), int(ef_search)
        self._lock = threading.Lock()
        self.probes_searched = 0
        try:
            import faiss
        except ImportError as exc:
            raise GalleryError("searching more than 100,000 samples quickly needs faiss (pip install faiss-cpu)") from exc
        n, dim = self._matrix.shape
        started = time.perf_counter()
        before = faiss.omp_get_max_threads()
        try:
            faiss.omp_set_num_threads(int(threads or os.cpu_count() or 1))
            self._index = faiss.IndexHNSWFlat(dim, self.m)
            self._index.hnsw.efConstruction = self.ef_construction
            self._index.add(self._matrix)
        except (RuntimeError, ValueError, MemoryError) as exc:
            raise GalleryError(f"cannot build the search index of {n} samples: {exc}") from exc
        finally:
            faiss.omp_set_num_threads(before)
        self.build_s = time.perf_counter() - started
        logger.info("built an HNSW index of %d %d-d samples in %.1f s", n, dim, self.build_s)

    def __len__(self) -> int:
        return int(self._matrix.shape[0])

    @property
    def dim(self) -> int:
        return int(self._matrix.shape[1])

    def describe(self) -> str:
        """The parameters, for logs and benchmark tables."""
        return f"faiss HNSW m={self.m} efc={self.ef_construction} ef={self.ef_search}"

    def search(self, probes: npt.ArrayLike, k: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The approximately ``k`` nearest rows of each probe, nearest first.

        Args:
            probes: ``(M, D)`` (or ``(D,)``) float32 finite numbers.
            k: neighbours per probe; ``min(k, N)`` columns are returned.

        Returns:
            ``(rows, distances)``: ``(M, k')`` int64 row indices into the matrix and
            ``(M, k')`` float32 Euclidean distances, ascending (ties: lower row first).

        Raises:
            ConfigError: ``k < 1``, or probes that are not finite ``(M, D)`` numbers.
        """
        from facesense.match import pairwise_distances

        q = np.asarray(probes, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ConfigError(f"probes: expected shape (M, {self.dim}), got {q.shape}")
        if not np.all(np.isfinite(q)):
            raise ConfigError("probes: contains NaN or infinity")
        if int(k) < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        kk = min(int(k), len(self))
        m = q.shape[0]
        rows = np.zeros((m, kk), np.int64)
        dist = np.zeros((m, kk), np.float32)
        if m == 0:
            return rows, dist
        with self._lock:
            # efSearch is index-wide state: set it and search under one lock.
            self._index.hnsw.efSearch = max(self.ef_search, kk)
            _, found = self._index.search(np.ascontiguousarray(q), kk)
            self.probes_searched += m
        for i in range(m):
            cand = found[i][found[i] >= 0].astype(np.int64)
            if len(cand) < kk:  # the graph gave fewer than asked for (cannot happen when connected): go exact
                cand = np.arange(len(self), dtype=np.int64)
            d = pairwise_distances(q[i : i + 1], self._matrix[cand], b_sq=self._sq[cand])[0]
            order = np.lexsort((cand, d))[:kk]  # by distance, then row (older sample first)
            rows[i] = cand[order]
            dist[i] = d[order]
        return rows, dist
