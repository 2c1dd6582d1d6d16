"""The gallery contract: what every :class:`~facesense.gallery.base.GalleryStore` must do.

Every test runs over each entry of :data:`KINDS`: the SQLite store, and
:class:`MemoryStore`, a small in-memory store written here against the interface alone
(proof that the interface is complete). A PostgreSQL store plugs in by adding one
``pytest.param`` to :data:`KINDS`: a :class:`StoreKind` that makes a fresh, empty
location and opens a new connection to it.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from facesense.errors import ConfigError, EnrollmentError, GalleryError, ModelMismatchError
from facesense.gallery import (
    GalleryEmbeddings,
    GalleryStore,
    ImportSummary,
    NewSample,
    Person,
    Sample,
    SearchResult,
    open_gallery,
)
from facesense.gallery.base import (
    ExportData,
    GalleryNegatives,
    Negative,
    check_correction,
    negative_embedding,
    read_export,
    validate_name,
    validate_negative_source,
    write_export,
)
from facesense.match import pairwise_distances

MODEL = "fake-model/v1"
DIM = 8


# --- a store written against the interface alone ------------------------------------


@dataclass
class _MemoryData:
    """What a MemoryStore "database" holds; every connection to it shares one."""

    people: dict[int, tuple[str, str]] = field(default_factory=dict)  # id -> (name, created)
    samples: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> record (person_id, embedding, ...)
    negatives: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> record (person_id, embedding, source ...)
    revision: int = 0
    next_id: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    lock: threading.RLock = field(default_factory=threading.RLock)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class MemoryStore:
    """A GalleryStore in a dict: each write works on a copy and swaps it in (atomic)."""

    def __init__(self, data: _MemoryData, location: str) -> None:
        self._data = data
        self._location = location

    # plumbing
    @property
    def location(self) -> str:
        return self._location

    def close(self) -> None:
        pass

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, change: Callable[[dict[int, tuple[str, str]], dict[int, dict[str, Any]]], Any]) -> Any:
        return self._write_all(lambda people, samples, negatives: change(people, samples))

    def _write_all(
        self,
        change: Callable[[dict[int, tuple[str, str]], dict[int, dict[str, Any]], dict[int, dict[str, Any]]], Any],
    ) -> Any:
        with self._data.lock:
            people = dict(self._data.people)
            samples = copy.deepcopy(self._data.samples)
            negatives = copy.deepcopy(self._data.negatives)
            result = change(people, samples, negatives)  # raises -> nothing is swapped in
            for pid in [pid for pid in people if not any(s["person_id"] == pid for s in samples.values())]:
                del people[pid]
            models = self._models(samples)
            for nid in [n for n, r in negatives.items() if r["person_id"] not in people or
                        (r["model_id"], len(r["embedding"])) not in models]:
                del negatives[nid]  # ON DELETE CASCADE; and reembed drops other models' negatives
            self._data.people, self._data.samples, self._data.negatives = people, samples, negatives
            self._data.revision += 1
            return result

    @staticmethod
    def _pid(people: Mapping[int, tuple[str, str]], name: str) -> int | None:
        return next((pid for pid, (n, _) in people.items() if n == name), None)

    def _require(self, people: Mapping[int, tuple[str, str]], name: str) -> int:
        pid = self._pid(people, name)
        if pid is None:
            raise EnrollmentError(f"no person named {name!r}")
        return pid

    @staticmethod
    def _models(samples: Mapping[int, dict[str, Any]]) -> set[tuple[str, int]]:
        return {(s["model_id"], len(s["embedding"])) for s in samples.values()}

    def _check_model(self, samples: Mapping[int, dict[str, Any]], model_id: str, dim: int | None) -> None:
        for stored, stored_dim in self._models(samples):
            if stored != model_id or (dim is not None and stored_dim != dim):
                raise ModelMismatchError(f"the gallery holds {stored!r} ({stored_dim}-d), not {model_id!r}")

    # reads
    @property
    def model_id(self) -> str | None:
        models = {m for m, _ in self._models(self._data.samples)}
        return next(iter(models)) if models else None

    def revision(self) -> int:
        return self._data.revision

    def has_source(self, name: str, source_sha256: str, model_id: str) -> bool:
        pid = self._pid(self._data.people, name)
        return any(
            s["person_id"] == pid and s["model_id"] == model_id and s["source_sha256"] == source_sha256
            for s in self._data.samples.values()
        )

    def _person(self, pid: int) -> Person:
        name, created = self._data.people[pid]
        n = sum(1 for s in self._data.samples.values() if s["person_id"] == pid)
        return Person(id=pid, name=name, created=created, n_samples=n)

    def people(self) -> list[Person]:
        with self._data.lock:
            return sorted((self._person(pid) for pid in self._data.people), key=lambda p: p.name)

    def person(self, name: str) -> Person:
        with self._data.lock:
            return self._person(self._require(self._data.people, name))

    def person_by_id(self, person_id: int) -> Person:
        with self._data.lock:
            if person_id not in self._data.people:
                raise EnrollmentError(f"no person with id {person_id}")
            return self._person(person_id)

    def samples(self, name: str | None = None) -> list[Sample]:
        with self._data.lock:
            pid = None if name is None else self._require(self._data.people, name)
            return [
                Sample(
                    id=sid, person=self._data.people[s["person_id"]][0], model_id=s["model_id"], dim=len(s["embedding"]),
                    source_path=s["source_path"], source_sha256=s["source_sha256"], xyxy=s["xyxy"],
                    thumbnail_jpeg=s["thumbnail_jpeg"], added=s["added"],
                )
                for sid, s in sorted(self._data.samples.items())
                if pid is None or s["person_id"] == pid
            ]

    def embeddings(self, model_id: str) -> GalleryEmbeddings:
        with self._data.lock:
            self._check_model(self._data.samples, model_id, None)
            rows = sorted(self._data.samples.items())
            if not rows:
                return GalleryEmbeddings((), np.zeros((0, 0), np.float32), np.zeros((0,), np.int64), model_id)
            return GalleryEmbeddings(
                labels=tuple(self._data.people[s["person_id"]][0] for _, s in rows),
                matrix=np.stack([s["embedding"] for _, s in rows]).astype(np.float32),
                sample_ids=np.array([sid for sid, _ in rows], np.int64),
                model_id=model_id,
            )

    def iter_embeddings(self, model_id: str, *, batch_size: int = 10_000) -> Iterator[GalleryEmbeddings]:
        emb = self.embeddings(model_id)
        for start in range(0, len(emb), batch_size):
            end = start + batch_size
            yield GalleryEmbeddings(emb.labels[start:end], emb.matrix[start:end], emb.sample_ids[start:end], model_id)

    def search(self, embeddings: npt.ArrayLike, k: int, *, model_id: str) -> SearchResult:
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        q = np.atleast_2d(np.asarray(embeddings, np.float32))
        if q.ndim != 2 or not np.all(np.isfinite(q)):
            raise ConfigError(f"embeddings: expected finite (M, D) numbers, got shape {q.shape}")
        emb = self.embeddings(model_id)
        kk = min(k, len(emb))
        if len(emb) and q.shape[1] != emb.matrix.shape[1]:
            raise ModelMismatchError(f"probes are {q.shape[1]}-d, the gallery {emb.matrix.shape[1]}-d")
        if kk == 0:
            return SearchResult(((),) * len(q), np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64), model_id)
        d = pairwise_distances(q, emb.matrix)
        idx = np.argsort(d, axis=1, kind="stable")[:, :kk]
        return SearchResult(
            labels=tuple(tuple(emb.labels[j] for j in row) for row in idx.tolist()),
            distances=np.take_along_axis(d, idx, axis=1),
            sample_ids=emb.sample_ids[idx],
            model_id=model_id,
        )

    # writes
    def _record(self, pid: int, s: NewSample, added: str | None = None) -> dict[str, Any]:
        return {
            "person_id": pid, "model_id": s.model_id, "embedding": s.embedding.copy(), "source_path": s.source_path,
            "source_sha256": s.source_sha256, "xyxy": s.xyxy, "thumbnail_jpeg": s.thumbnail_jpeg,
            "added": added or _now(),
        }

    def _insert(self, samples: dict[int, dict[str, Any]], pid: int, s: NewSample, added: str | None = None) -> int | None:
        if any(
            r["person_id"] == pid and r["model_id"] == s.model_id and r["source_sha256"] == s.source_sha256
            for r in samples.values()
        ):
            return None
        sid = next(self._data.next_id)
        samples[sid] = self._record(pid, s, added)
        return sid

    def add_samples(self, name: str, samples: Sequence[NewSample], *, create: bool = True) -> tuple[int, ...]:
        if not samples:
            raise EnrollmentError(f"no samples to add for {name!r}")
        models = {(s.model_id, len(s.embedding)) for s in samples}
        if len(models) != 1:
            raise ModelMismatchError(f"samples mix models {sorted(models)}")
        model_id, dim = models.pop()

        def change(people: dict[int, tuple[str, str]], rows: dict[int, dict[str, Any]]) -> tuple[int, ...]:
            self._check_model(rows, model_id, dim)
            pid = self._pid(people, name)
            if pid is None:
                if not create:
                    raise EnrollmentError(f"no person named {name!r}")
                if validate_name(name) != name:
                    raise EnrollmentError(f"person names must not start or end with spaces: {name!r}")
                pid = next(self._data.next_id)
                people[pid] = (name, _now())
            ids = []
            for s in samples:
                sid = self._insert(rows, pid, s)
                if sid is None:
                    raise GalleryError(f"{name!r} already has a sample from this image")
                ids.append(sid)
            return tuple(ids)

        result: tuple[int, ...] = self._write(change)
        return result

    def rename_person(self, old: str, new: str) -> Person:
        clean = validate_name(new)

        def change(people: dict[int, tuple[str, str]], rows: dict[int, dict[str, Any]]) -> int:
            pid = self._require(people, old)
            other = self._pid(people, clean)
            if other is not None and other != pid:
                raise EnrollmentError(f"there is already a person named {clean!r}")
            people[pid] = (clean, people[pid][1])
            return pid

        return self.person_by_id(self._write(change))

    def remove_person(self, name: str) -> int:
        def change(people: dict[int, tuple[str, str]], rows: dict[int, dict[str, Any]]) -> int:
            pid = self._require(people, name)
            gone = [sid for sid, s in rows.items() if s["person_id"] == pid]
            for sid in gone:
                del rows[sid]
            return len(gone)

        n: int = self._write(change)
        return n

    def remove_sample(self, sample_id: int) -> None:
        def change(people: dict[int, tuple[str, str]], rows: dict[int, dict[str, Any]]) -> None:
            if sample_id not in rows:
                raise EnrollmentError(f"no sample with id {sample_id}")
            del rows[sample_id]

        self._write(change)

    def replace_samples(self, replacements: Mapping[int, NewSample], negatives: Mapping[int, np.ndarray] | None = None) -> int:
        models = {(s.model_id, len(s.embedding)) for s in replacements.values()}
        if len(models) > 1:
            raise ModelMismatchError(f"replacements mix models {sorted(models)}")

        def change(people: dict[int, tuple[str, str]], rows: dict[int, dict[str, Any]], negs: dict[int, dict[str, Any]]) -> int:
            unknown = set(replacements) - set(rows)
            if unknown:
                raise EnrollmentError(f"no samples with ids {sorted(unknown)}")
            gone = set(rows) - set(replacements)
            for sid, s in replacements.items():
                old = rows[sid]
                rows[sid] = {**old, "model_id": s.model_id, "embedding": s.embedding.copy(), "xyxy": s.xyxy,
                             "thumbnail_jpeg": s.thumbnail_jpeg}
            for sid in gone:
                del rows[sid]
            if models:
                model, dim = next(iter(models))
                for nid, e in (negatives or {}).items():
                    if nid in negs:
                        negs[nid] = {**negs[nid], "model_id": model, "embedding": negative_embedding(e, dim)}
            return len(gone)

        n: int = self._write_all(change)
        return n

    # negatives
    def negatives(self, model_id: str) -> GalleryNegatives:
        with self._data.lock:
            self._check_model(self._data.samples, model_id, None)
            rows = [(nid, r) for nid, r in sorted(self._data.negatives.items()) if r["model_id"] == model_id]
            if not rows:
                return GalleryNegatives.empty(model_id)
            return GalleryNegatives(
                labels=tuple(self._data.people[r["person_id"]][0] for _, r in rows),
                matrix=np.stack([r["embedding"] for _, r in rows]).astype(np.float32),
                negative_ids=np.array([nid for nid, _ in rows], np.int64),
                model_id=model_id,
            )

    def negative_records(self, name: str | None = None) -> list[Negative]:
        with self._data.lock:
            pid = None if name is None else self._require(self._data.people, name)
            return [
                Negative(
                    id=nid, person=self._data.people[r["person_id"]][0], model_id=r["model_id"], dim=len(r["embedding"]),
                    source=r["source"], source_sha256=r["source_sha256"], thumbnail_jpeg=r["thumbnail_jpeg"],
                    added=r["added"],
                )
                for nid, r in sorted(self._data.negatives.items())
                if pid is None or r["person_id"] == pid
            ]

    def _insert_negative(self, negatives: dict[int, dict[str, Any]], pid: int, name: str, s: NewSample, source: str) -> int:
        if any(
            r["person_id"] == pid and r["model_id"] == s.model_id and r["source_sha256"] == s.source_sha256
            for r in negatives.values()
        ):
            raise GalleryError(f"this face is already a negative of {name!r}")
        nid = next(self._data.next_id)
        negatives[nid] = {
            "person_id": pid, "model_id": s.model_id, "embedding": s.embedding.copy(), "source": source,
            "source_sha256": s.source_sha256, "thumbnail_jpeg": s.thumbnail_jpeg, "added": _now(),
        }
        return nid

    def add_negative(self, name: str, sample: NewSample, *, source: str) -> int:
        clean = validate_negative_source(source)

        def change(people: dict[int, tuple[str, str]], rows: dict[int, dict[str, Any]], negs: dict[int, dict[str, Any]]) -> int:
            self._check_model(rows, sample.model_id, len(sample.embedding))
            return self._insert_negative(negs, self._require(people, name), name, sample, clean)

        nid: int = self._write_all(change)
        return nid

    def correct(self, wrong: str, right: str, sample: NewSample, *, source: str) -> tuple[int, int]:
        check_correction(wrong, right)
        clean = validate_negative_source(source)

        def change(
            people: dict[int, tuple[str, str]], rows: dict[int, dict[str, Any]], negs: dict[int, dict[str, Any]]
        ) -> tuple[int, int]:
            self._check_model(rows, sample.model_id, len(sample.embedding))
            wrong_id, right_id = self._require(people, wrong), self._require(people, right)
            sid = self._insert(rows, right_id, sample)
            if sid is None:
                raise GalleryError(f"{right!r} already has a sample from this image")
            return sid, self._insert_negative(negs, wrong_id, wrong, sample, clean)

        ids: tuple[int, int] = self._write_all(change)
        return ids

    def remove_negative(self, negative_id: int) -> None:
        def change(people: dict[int, tuple[str, str]], rows: dict[int, dict[str, Any]], negs: dict[int, dict[str, Any]]) -> None:
            if negative_id not in negs:
                raise EnrollmentError(f"no negative with id {negative_id}")
            del negs[negative_id]

        self._write_all(change)

    def export_file(self, path: str | os.PathLike[str]) -> int:
        with self._data.lock:
            people = tuple(sorted(self._data.people.values()))
            rows = sorted(self._data.samples.items())
            samples = tuple(
                {"person": self._data.people[s["person_id"]][0], "model_id": s["model_id"], "source_path": s["source_path"],
                 "source_sha256": s["source_sha256"], "xyxy": list(s["xyxy"]), "added": s["added"]}
                for _, s in rows
            )
            dim = len(rows[0][1]["embedding"]) if rows else 0
            matrix = np.stack([s["embedding"] for _, s in rows]) if rows else np.zeros((0, dim), np.float32)
            thumbs = tuple(s["thumbnail_jpeg"] for _, s in rows)
        write_export(path, ExportData(people=people, samples=samples, matrix=matrix, thumbnails=thumbs))
        return len(rows)

    def import_file(self, path: str | os.PathLike[str]) -> ImportSummary:
        data = read_export(path)
        models = {(str(s["model_id"]), int(data.matrix.shape[1])) for s in data.samples}
        if len(models) > 1:
            raise ModelMismatchError(f"the export mixes models {sorted(models)}")
        created_at = dict(data.people)

        def change(people: dict[int, tuple[str, str]], rows: dict[int, dict[str, Any]]) -> ImportSummary:
            for model_id, dim in models:
                self._check_model(rows, model_id, dim)
            added_people: list[str] = []
            added = skipped = 0
            for i, s in enumerate(data.samples):
                name = validate_name(str(s["person"]))
                pid = self._pid(people, name)
                if pid is None:
                    pid = next(self._data.next_id)
                    people[pid] = (name, created_at[name])
                    added_people.append(name)
                box: Any = s.get("xyxy") or (0, 0, 0, 0)
                source_path: Any = s.get("source_path")
                new = NewSample(
                    embedding=data.matrix[i], model_id=str(s["model_id"]), source_sha256=str(s["source_sha256"]),
                    source_path=source_path, xyxy=tuple(float(v) for v in box),
                    thumbnail_jpeg=data.thumbnails[i],
                )
                if self._insert(rows, pid, new, str(s.get("added") or _now())) is None:
                    skipped += 1
                else:
                    added += 1
            return ImportSummary(tuple(added_people), added, skipped)

        summary: ImportSummary = self._write(change)
        return summary


_MEMORY: dict[str, _MemoryData] = {}


# --- the store kinds under test -------------------------------------------------------


@dataclass(frozen=True)
class StoreKind:
    """How the contract suite makes and opens one kind of store.

    Attributes:
        name: the test id.
        new_location: a fresh, empty store's location (a URL or path) under a temporary folder.
        connect: a new, independent connection to the store at a location.
        other_process: whether another process can open the location (SQLite, PostgreSQL).
    """

    name: str
    new_location: Callable[[Path], str]
    connect: Callable[[str], GalleryStore]
    other_process: bool


def _memory_location(tmp_path: Path) -> str:
    location = f"memory:{tmp_path}"
    _MEMORY[location] = _MemoryData()
    return location


SQLITE = StoreKind("sqlite", lambda tmp: f"sqlite:///{tmp / 'gallery.db'}", open_gallery, other_process=True)
MEMORY = StoreKind("memory", _memory_location, lambda loc: MemoryStore(_MEMORY[loc], loc), other_process=False)


_PG_CLUSTER: list[Any] = []  # the conftest's PgCluster, once a PostgreSQL test asked for it


def _postgres_location(tmp_path: Path) -> str:
    return str(_PG_CLUSTER[0].new_database())  # a fresh database on a real server (tests/gallery/conftest.py)


POSTGRES = StoreKind("postgresql", _postgres_location, open_gallery, other_process=True)

KINDS = [pytest.param(SQLITE, id="sqlite"), pytest.param(MEMORY, id="memory"), pytest.param(POSTGRES, id="postgresql")]


@pytest.fixture(autouse=True)
def _postgres_server(request: pytest.FixtureRequest) -> None:
    """Start (or skip without) the test PostgreSQL server for the tests that use the PostgreSQL kind."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and any(v is POSTGRES for v in callspec.params.values()):
        _PG_CLUSTER[:] = [request.getfixturevalue("pg_cluster")]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> StoreKind:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _forget_memory_stores() -> Iterator[None]:
    yield
    _MEMORY.clear()


@pytest.fixture
def location(kind: StoreKind, tmp_path: Path) -> str:
    return kind.new_location(tmp_path)


@pytest.fixture
def store(kind: StoreKind, location: str) -> Iterator[GalleryStore]:
    s = kind.connect(location)
    yield s
    s.close()


@pytest.fixture
def other(kind: StoreKind, location: str, store: GalleryStore) -> Iterator[GalleryStore]:
    """A second, independent connection to the same store."""
    s = kind.connect(location)
    yield s
    s.close()


def unit(v: npt.ArrayLike) -> npt.NDArray[np.float32]:
    a = np.asarray(v, np.float32)
    return a / np.linalg.norm(a)


def sample(seed: int, *, model: str = MODEL, dim: int = DIM, sha: str | None = None, emb: npt.ArrayLike | None = None) -> NewSample:
    e = np.random.default_rng(seed).normal(size=dim) if emb is None else emb
    return NewSample(
        embedding=unit(e),
        model_id=model,
        source_sha256=sha or hashlib.sha256(f"{seed}".encode()).hexdigest(),
        source_path=f"/photos/{seed}.jpg",
        xyxy=(1.0, 2.0, 30.0 + seed, 40.0),
        thumbnail_jpeg=b"\xff\xd8jpeg" + bytes([seed % 256]),
    )


def state(s: GalleryStore) -> tuple[object, ...]:
    """Everything a store shows, for "nothing changed" checks."""
    return (
        [(p.id, p.name, p.n_samples) for p in s.people()],
        [(x.id, x.person, x.model_id, x.source_sha256) for x in s.samples()],
        [(n.id, n.person, n.model_id, n.source) for n in s.negative_records()],
        s.model_id,
    )


@pytest.fixture
def filled(store: GalleryStore) -> GalleryStore:
    """alice (samples 1, 2) and bob (sample 3)."""
    store.add_samples("alice", [sample(1), sample(2)])
    store.add_samples("bob", [sample(3)])
    return store


# --- the contract ---------------------------------------------------------------------


def test_is_a_gallery_store(store: GalleryStore) -> None:
    assert isinstance(store, GalleryStore)
    assert isinstance(store.location, str) and store.location


def test_empty_store(store: GalleryStore) -> None:
    assert store.model_id is None
    assert store.people() == [] and store.samples() == []
    assert len(store.embeddings(MODEL)) == 0
    assert list(store.iter_embeddings(MODEL)) == []
    result = store.search(np.stack([sample(1).embedding, sample(2).embedding]), 3, model_id=MODEL)
    assert result.labels == ((), ()) and result.distances.shape == (2, 0) and result.sample_ids.shape == (2, 0)


def test_add_and_read_back(store: GalleryStore) -> None:
    ids_a = store.add_samples("alice", [sample(1), sample(2)])
    ids_b = store.add_samples("bob", [sample(3)], create=True)
    assert len(set(ids_a + ids_b)) == 3
    assert [(p.name, p.n_samples) for p in store.people()] == [("alice", 2), ("bob", 1)]
    assert store.model_id == MODEL
    bob = store.person("bob")
    assert store.person_by_id(bob.id) == bob
    assert bob.created
    samples = store.samples()
    assert [s.id for s in samples] == [*ids_a, *ids_b]  # oldest first
    assert [s.id for s in store.samples("alice")] == list(ids_a)
    first = samples[0]
    assert (first.person, first.model_id, first.dim, first.source_path) == ("alice", MODEL, DIM, "/photos/1.jpg")
    assert first.xyxy == (1.0, 2.0, 31.0, 40.0) and first.thumbnail_jpeg == sample(1).thumbnail_jpeg
    assert first.source_sha256 == sample(1).source_sha256 and first.added
    emb = store.embeddings(MODEL)
    assert emb.labels == ("alice", "alice", "bob") and emb.model_id == MODEL
    assert emb.matrix.dtype == np.float32 and emb.matrix.shape == (3, DIM)
    assert emb.sample_ids.tolist() == [*ids_a, *ids_b]
    np.testing.assert_array_equal(emb.matrix[2], sample(3).embedding)
    batches = list(store.iter_embeddings(MODEL, batch_size=2))
    assert [len(b) for b in batches] == [2, 1]
    np.testing.assert_array_equal(np.concatenate([b.matrix for b in batches]), emb.matrix)
    assert sum((b.labels for b in batches), ()) == emb.labels


@pytest.mark.parametrize(
    ("action", "error"),
    [
        (lambda g: g.add_samples("carol", [sample(9)], create=False), EnrollmentError),
        (lambda g: g.add_samples("alice", []), EnrollmentError),
        (lambda g: g.add_samples("alice", [sample(1)]), GalleryError),  # same person, model and sha256
        (lambda g: g.add_samples("alice", [sample(9), sample(1)]), GalleryError),  # the second one duplicates
        (lambda g: g.add_samples("carol", [sample(9), sample(9)]), GalleryError),  # a new person, not created
        (lambda g: g.add_samples("alice", [sample(9, model="other/v2")]), ModelMismatchError),
        (lambda g: g.add_samples("zed", [sample(9, dim=DIM * 2)]), ModelMismatchError),
        (lambda g: g.add_samples("zed", [sample(9), sample(10, model="other/v2")]), ModelMismatchError),
        (lambda g: g.add_samples("unknown", [sample(9)]), ConfigError),
        (lambda g: g.add_samples(" ", [sample(9)]), ConfigError),
        (lambda g: g.person("nobody"), EnrollmentError),
        (lambda g: g.person_by_id(987654), EnrollmentError),
        (lambda g: g.samples("nobody"), EnrollmentError),
        (lambda g: g.rename_person("nobody", "x"), EnrollmentError),
        (lambda g: g.rename_person("alice", "bob"), EnrollmentError),
        (lambda g: g.rename_person("alice", "unknown"), ConfigError),
        (lambda g: g.remove_person("nobody"), EnrollmentError),
        (lambda g: g.remove_sample(987654), EnrollmentError),
        (lambda g: g.replace_samples({987654: sample(9)}), EnrollmentError),
        (lambda g: g.embeddings("other/v2"), ModelMismatchError),
        (lambda g: list(g.iter_embeddings("other/v2")), ModelMismatchError),
        (lambda g: g.search(sample(9).embedding, 1, model_id="other/v2"), ModelMismatchError),
        (lambda g: g.search(sample(9, dim=DIM * 2).embedding, 1, model_id=MODEL), ModelMismatchError),
        (lambda g: g.search(sample(9).embedding, 0, model_id=MODEL), ConfigError),
        (lambda g: g.search(np.full(DIM, np.nan, np.float32), 1, model_id=MODEL), ConfigError),
        (lambda g: g.search(np.zeros((1, 1, DIM), np.float32), 1, model_id=MODEL), ConfigError),
        (lambda g: g.add_negative("nobody", sample(9), source="event 1"), EnrollmentError),
        (lambda g: g.add_negative("alice", sample(9, model="other/v2"), source="event 1"), ModelMismatchError),
        (lambda g: g.add_negative("alice", sample(9, dim=DIM * 2), source="event 1"), ModelMismatchError),
        (lambda g: g.add_negative("alice", sample(9), source=" "), ConfigError),
        (lambda g: g.add_negative("alice", sample(9), source="two\nlines"), ConfigError),
        (lambda g: g.correct("alice", "nobody", sample(9), source="event 1"), EnrollmentError),
        (lambda g: g.correct("nobody", "bob", sample(9), source="event 1"), EnrollmentError),
        (lambda g: g.correct("alice", "alice", sample(9), source="event 1"), EnrollmentError),
        (lambda g: g.correct("alice", "bob", sample(3), source="event 1"), GalleryError),  # bob has this image
        (lambda g: g.correct("alice", "bob", sample(9, model="other/v2"), source="event 1"), ModelMismatchError),
        (lambda g: g.remove_negative(987654), EnrollmentError),
        (lambda g: g.negatives("other/v2"), ModelMismatchError),
        (lambda g: g.negative_records("nobody"), EnrollmentError),
    ],
)
def test_refused_calls_change_nothing(filled: GalleryStore, action: Callable[[GalleryStore], object], error: type[Exception]) -> None:
    before, revision = state(filled), filled.revision()
    with pytest.raises(error):
        action(filled)
    assert state(filled) == before
    assert filled.revision() == revision


def test_a_person_exists_only_with_samples(filled: GalleryStore) -> None:
    with pytest.raises(GalleryError):
        filled.add_samples("carol", [sample(7), sample(7)])
    assert [p.name for p in filled.people()] == ["alice", "bob"]
    a1, a2 = (s.id for s in filled.samples("alice"))
    filled.remove_sample(a1)
    assert filled.person("alice").n_samples == 1
    filled.remove_sample(a2)
    assert [p.name for p in filled.people()] == ["bob"]
    with pytest.raises(EnrollmentError):
        filled.person("alice")
    (b1,) = (s.id for s in filled.samples("bob"))
    filled.remove_sample(b1)
    assert filled.people() == [] and filled.model_id is None


def test_the_same_image_may_enrol_two_people(store: GalleryStore) -> None:
    store.add_samples("alice", [sample(1, sha="a" * 64)])
    store.add_samples("bob", [sample(2, sha="a" * 64)])
    assert store.has_source("alice", "a" * 64, MODEL) and store.has_source("bob", "a" * 64, MODEL)
    assert not store.has_source("carol", "a" * 64, MODEL)
    assert not store.has_source("alice", "a" * 64, "other/v2")
    assert not store.has_source("alice", "b" * 64, MODEL)


def test_rename_keeps_the_id_and_relabels(filled: GalleryStore) -> None:
    alice = filled.person("alice")
    renamed = filled.rename_person("alice", "  Alice Liddell ")
    assert renamed.name == "Alice Liddell" and renamed.id == alice.id and renamed.n_samples == 2
    assert filled.person_by_id(alice.id).name == "Alice Liddell"
    assert filled.embeddings(MODEL).labels == ("Alice Liddell", "Alice Liddell", "bob")
    assert filled.search(sample(1).embedding, 1, model_id=MODEL).labels == (("Alice Liddell",),)
    assert filled.rename_person("bob", "bob").name == "bob"  # to itself: allowed


def test_remove_person(filled: GalleryStore) -> None:
    assert filled.remove_person("alice") == 2
    assert [p.name for p in filled.people()] == ["bob"] and len(filled.samples()) == 1


def test_replace_samples_switches_model_and_drops_the_rest(filled: GalleryStore) -> None:
    a1, _a2 = (s.id for s in filled.samples("alice"))
    (b1,) = (s.id for s in filled.samples("bob"))
    removed = filled.replace_samples({a1: sample(11, model="new/v2", dim=4), b1: sample(13, model="new/v2", dim=4)})
    assert removed == 1
    assert filled.model_id == "new/v2"
    emb = filled.embeddings("new/v2")
    assert emb.labels == ("alice", "bob") and emb.matrix.shape == (2, 4) and emb.sample_ids.tolist() == [a1, b1]
    assert filled.samples("alice")[0].source_sha256 == sample(1).source_sha256  # the photo's hash stays
    with pytest.raises(ModelMismatchError):
        filled.embeddings(MODEL)
    assert filled.replace_samples({}) == 2
    assert filled.people() == []


WRITES: list[tuple[str, Callable[[GalleryStore], object]]] = [
    ("add to a new person", lambda g: g.add_samples("carol", [sample(5)])),
    ("add to a person", lambda g: g.add_samples("alice", [sample(5)], create=False)),
    ("rename", lambda g: g.rename_person("alice", "alicia")),
    ("remove a sample", lambda g: g.remove_sample(g.samples("alice")[0].id)),
    ("remove the last sample", lambda g: g.remove_sample(g.samples("bob")[0].id)),
    ("remove a person", lambda g: g.remove_person("bob")),
    ("replace samples", lambda g: g.replace_samples({s.id: sample(20 + s.id, model="new/v2") for s in g.samples()})),
    ("add a negative", lambda g: g.add_negative("alice", sample(5), source="event 5")),
    ("correct", lambda g: g.correct("alice", "bob", sample(5), source="event 5")),
    ("remove a negative", lambda g: g.remove_negative(g.add_negative("bob", sample(6), source="event 6"))),
]


@pytest.mark.parametrize("write", [w for _, w in WRITES], ids=[n for n, _ in WRITES])
def test_revision_changes_on_every_write_and_only_then(filled: GalleryStore, other: GalleryStore, write: Callable[[GalleryStore], object]) -> None:
    revision, seen_by_other = filled.revision(), other.revision()
    for read in (filled.people, filled.samples, lambda: filled.embeddings(MODEL), lambda: filled.model_id):
        read()
    filled.search(sample(1).embedding, 2, model_id=MODEL)
    assert filled.revision() == revision  # reads change nothing
    write(filled)
    after = filled.revision()
    assert after != revision
    assert other.revision() != seen_by_other  # another connection sees it too
    assert filled.revision() == after  # and it stays put until the next write


def test_revision_changes_on_import(tmp_path: Path, filled: GalleryStore, kind: StoreKind) -> None:
    out = tmp_path / "export.npz"
    filled.export_file(out)
    target = kind.connect(kind.new_location(tmp_path / "target"))
    try:
        before = target.revision()
        target.import_file(out)
        assert target.revision() != before
    finally:
        target.close()


def test_writes_by_another_connection_are_seen(store: GalleryStore, other: GalleryStore) -> None:
    store.add_samples("alice", [sample(1)])
    assert store.search(sample(2).embedding, 5, model_id=MODEL).labels == (("alice",),)  # fills any cache
    revision = store.revision()
    other.add_samples("bob", [sample(2)])
    assert store.revision() != revision
    assert [p.name for p in store.people()] == ["alice", "bob"]
    assert store.search(sample(2).embedding, 5, model_id=MODEL).labels[0][0] == "bob"  # no stale cache
    other.rename_person("bob", "robert")
    assert store.search(sample(2).embedding, 1, model_id=MODEL).labels == (("robert",),)


_WRITER = """
import sys
import numpy as np
from facesense.gallery import NewSample, open_gallery
with open_gallery(sys.argv[1], create=False) as g:
    e = np.ones(int(sys.argv[2]), np.float32)
    g.add_samples("from another process", [NewSample(embedding=e / np.linalg.norm(e), model_id=sys.argv[3],
                                                     source_sha256="c" * 64)])
"""


def test_writes_by_another_process_are_seen(store: GalleryStore, location: str, kind: StoreKind) -> None:
    if not kind.other_process:
        pytest.skip(f"the {kind.name} store lives inside one process")
    store.add_samples("alice", [sample(1)])
    revision = store.revision()
    subprocess.run([sys.executable, "-c", _WRITER, location, str(DIM), MODEL], check=True, timeout=60)
    assert store.revision() != revision
    result = store.search(np.ones(DIM, np.float32) / np.sqrt(DIM), 1, model_id=MODEL)
    assert result.labels == (("from another process",),)


def test_search_is_exact_nearest_first(store: GalleryStore) -> None:
    rng = np.random.default_rng(7)
    names = ["ann", "ben", "cat", "dan"]
    for i, name in enumerate(names):
        store.add_samples(name, [sample(100 + 10 * i + j) for j in range(3)])
    emb = store.embeddings(MODEL)
    probes = np.stack([unit(v) for v in rng.normal(size=(5, DIM))])
    expected = pairwise_distances(probes, emb.matrix)
    result = store.search(probes, 4, model_id=MODEL)
    assert len(result) == 5 and result.model_id == MODEL
    assert result.distances.shape == (5, 4) and result.sample_ids.shape == (5, 4)
    assert np.all(np.diff(result.distances, axis=1) >= 0)  # nearest first
    order = np.argsort(expected, axis=1, kind="stable")[:, :4]
    np.testing.assert_allclose(result.distances, np.take_along_axis(expected, order, axis=1), atol=1e-5)
    assert result.sample_ids.tolist() == emb.sample_ids[order].tolist()
    label_of = dict(zip(emb.sample_ids.tolist(), emb.labels, strict=True))
    assert result.labels == tuple(tuple(label_of[s] for s in row) for row in result.sample_ids.tolist())


def test_search_finds_each_sample_itself_and_clips_k(filled: GalleryStore) -> None:
    emb = filled.embeddings(MODEL)
    result = filled.search(emb.matrix, 10, model_id=MODEL)  # k above the 3 samples: clipped
    assert result.distances.shape == (3, 3)
    assert result.sample_ids[:, 0].tolist() == emb.sample_ids.tolist()
    assert [row[0] for row in result.labels] == ["alice", "alice", "bob"]
    np.testing.assert_allclose(result.distances[:, 0], 0.0, atol=1e-3)
    one = filled.search(emb.matrix[2], 1, model_id=MODEL)  # a single (D,) probe
    assert one.labels == (("bob",),) and one.distances.shape == (1, 1)
    none = filled.search(np.zeros((0, DIM), np.float32), 2, model_id=MODEL)
    assert len(none) == 0 and none.distances.shape == (0, 2)


def test_export_import_round_trip(tmp_path: Path, filled: GalleryStore, kind: StoreKind) -> None:
    out = tmp_path / "export.npz"
    assert filled.export_file(out) == 3
    copy_store = kind.connect(kind.new_location(tmp_path / "copy"))
    try:
        summary = copy_store.import_file(out)
        assert summary.people_added == ("alice", "bob") and summary.samples_added == 3 and summary.samples_skipped == 0
        assert [(p.name, p.n_samples, p.created) for p in copy_store.people()] == [
            (p.name, p.n_samples, p.created) for p in filled.people()
        ]
        src, dst = filled.embeddings(MODEL), copy_store.embeddings(MODEL)
        assert dst.labels == src.labels
        np.testing.assert_array_equal(dst.matrix, src.matrix)
        keep = ("person", "model_id", "source_path", "source_sha256", "xyxy", "thumbnail_jpeg", "added")
        assert [[getattr(s, f) for f in keep] for s in copy_store.samples()] == [
            [getattr(s, f) for f in keep] for s in filled.samples()
        ]
        again = copy_store.import_file(out)
        assert again == ImportSummary(people_added=(), samples_added=0, samples_skipped=3)
    finally:
        copy_store.close()


@pytest.mark.parametrize("target", KINDS)
def test_exports_move_between_store_kinds(tmp_path: Path, filled: GalleryStore, target: StoreKind) -> None:
    out = tmp_path / "export.npz"
    filled.export_file(out)
    other_store = target.connect(target.new_location(tmp_path / "other"))
    try:
        other_store.add_samples("alice", [sample(1)])  # already there: skipped, the rest merged
        summary = other_store.import_file(out)
        assert summary.people_added == ("bob",) and summary.samples_added == 2 and summary.samples_skipped == 1
        assert [(p.name, p.n_samples) for p in other_store.people()] == [("alice", 2), ("bob", 1)]
    finally:
        other_store.close()


def test_import_of_another_model_is_refused(tmp_path: Path, filled: GalleryStore, kind: StoreKind) -> None:
    out = tmp_path / "export.npz"
    filled.export_file(out)
    other_store = kind.connect(kind.new_location(tmp_path / "other"))
    try:
        other_store.add_samples("zoe", [sample(5, model="other/v9")])
        before = state(other_store)
        with pytest.raises(ModelMismatchError):
            other_store.import_file(out)
        assert state(other_store) == before
    finally:
        other_store.close()


def test_import_of_garbage_is_refused(tmp_path: Path, filled: GalleryStore) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 broken zip")
    before = state(filled)
    with pytest.raises(GalleryError):
        filled.import_file(bad)
    assert state(filled) == before


# --- negatives (corrections: "not X", "this is Y") --------------------------------------


def test_empty_store_has_no_negatives(store: GalleryStore) -> None:
    negs = store.negatives(MODEL)
    assert len(negs) == 0 and negs.matrix.shape == (0, 0) and negs.negative_ids.shape == (0,)
    assert store.negative_records() == []


def test_add_negative_and_read_back(filled: GalleryStore) -> None:
    face = sample(7)
    nid = filled.add_negative("alice", face, source=" event 12 ")
    (rec,) = filled.negative_records("alice")
    assert rec.id == nid and rec.person == "alice" and rec.model_id == MODEL and rec.dim == DIM
    assert rec.source == "event 12" and rec.source_sha256 == face.source_sha256
    assert rec.thumbnail_jpeg == face.thumbnail_jpeg and rec.added
    assert filled.negative_records("bob") == []
    assert [n.id for n in filled.negative_records()] == [nid]
    negs = filled.negatives(MODEL)
    assert negs.labels == ("alice",) and negs.negative_ids.tolist() == [nid] and negs.model_id == MODEL
    assert negs.matrix.dtype == np.float32
    np.testing.assert_array_equal(negs.matrix[0], face.embedding)
    # A negative is not a sample: it is neither searched nor counted.
    assert filled.person("alice").n_samples == 2 and len(filled.embeddings(MODEL)) == 3
    with pytest.raises(GalleryError, match="already a negative"):
        filled.add_negative("alice", face, source="event 13")
    filled.add_negative("bob", face, source="event 12")  # the same face may be not-bob too
    assert filled.negatives(MODEL).labels == ("alice", "bob")


def test_correct_is_one_transaction(filled: GalleryStore) -> None:
    face = sample(8)
    sid, nid = filled.correct("alice", "bob", face, source="event 3")
    assert [s.id for s in filled.samples("bob")][-1] == sid
    assert filled.samples("bob")[-1].source_sha256 == face.source_sha256
    assert [n.id for n in filled.negative_records("alice")] == [nid]
    # A second "this is bob" of the same face: bob has it already, and nothing else is written.
    before = state(filled)
    with pytest.raises(GalleryError):
        filled.correct("alice", "bob", face, source="event 3")
    assert state(filled) == before


def test_negatives_follow_renames_and_go_with_their_person(filled: GalleryStore) -> None:
    filled.add_negative("alice", sample(7), source="event 1")
    filled.add_negative("bob", sample(8), source="event 2")
    filled.rename_person("alice", "alicia")
    assert filled.negatives(MODEL).labels == ("alicia", "bob")
    assert [n.person for n in filled.negative_records("alicia")] == ["alicia"]
    filled.remove_person("alicia")
    assert [n.person for n in filled.negative_records()] == ["bob"]
    filled.remove_sample(filled.samples("bob")[0].id)  # bob's last sample: bob and his negatives go
    assert filled.negative_records() == [] and len(filled.negatives(MODEL)) == 0


def test_remove_negative(filled: GalleryStore) -> None:
    keep = filled.add_negative("alice", sample(7), source="event 1")
    gone = filled.add_negative("alice", sample(8), source="event 2")
    filled.remove_negative(gone)
    assert [n.id for n in filled.negative_records()] == [keep]
    with pytest.raises(EnrollmentError):
        filled.remove_negative(gone)


def test_reembed_keeps_negatives_of_its_model_and_drops_the_others(filled: GalleryStore) -> None:
    filled.add_negative("alice", sample(7), source="event 1")
    same = {s.id: sample(30 + s.id) for s in filled.samples()}  # the same model: negatives stay valid
    filled.replace_samples(same)
    assert len(filled.negatives(MODEL)) == 1
    new = {s.id: sample(40 + s.id, model="new/v2", dim=4) for s in filled.samples()}
    filled.replace_samples(new)  # another model: the old negatives cannot be re-embedded, they go
    assert filled.negative_records() == [] and len(filled.negatives("new/v2")) == 0
    filled.add_negative("bob", sample(9, model="new/v2", dim=4), source="event 9")
    assert filled.negatives("new/v2").labels == ("bob",)


def test_reembed_can_carry_negatives_to_the_new_model(filled: GalleryStore) -> None:
    """A negative re-embedded with the new model (``reembed`` does it from its thumbnail) stays, the others go."""
    kept = filled.add_negative("alice", sample(7), source="event 1")
    filled.add_negative("bob", sample(8), source="event 2")
    new = {s.id: sample(40 + s.id, model="new/v2", dim=4) for s in filled.samples()}
    vector = sample(50, model="new/v2", dim=4).embedding
    with pytest.raises(ModelMismatchError):
        filled.replace_samples(new, {kept: np.ones(3, np.float32)})  # not the samples' length
    assert len(filled.negatives(MODEL)) == 2  # nothing changed
    filled.replace_samples(new, {kept: vector})
    assert [(n.id, n.person, n.model_id, n.dim) for n in filled.negative_records()] == [(kept, "alice", "new/v2", 4)]
    negs = filled.negatives("new/v2")
    assert negs.labels == ("alice",)
    np.testing.assert_allclose(negs.matrix[0], vector, atol=1e-6)


def test_negatives_written_by_another_connection_are_seen(filled: GalleryStore, other: GalleryStore) -> None:
    revision = filled.revision()
    nid = other.add_negative("bob", sample(7), source="event 1")
    assert filled.revision() != revision
    assert filled.negatives(MODEL).negative_ids.tolist() == [nid]
