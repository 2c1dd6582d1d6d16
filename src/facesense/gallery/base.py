"""The gallery store interface and the records it deals in.

A gallery holds *people* (a unique name each) and their face *samples*: one
embedding per sample plus where it came from (source file and its sha256, the face
box, a small JPEG thumbnail of the crop). Every sample records the ``model_id`` of
the embedder that produced it (model *and* preprocessing); embeddings of different
models are never mixed: a store refuses to add or hand out embeddings of a model other
than the one it already holds and raises :class:`~facesense.errors.ModelMismatchError`
(``facesense reembed`` recomputes them).

:class:`GalleryStore` is deliberately small and says nothing about SQL, so that a
PostgreSQL + pgvector store can slot in beside :mod:`facesense.gallery.sqlite`.
Invariants every store keeps:

* a person always has at least one sample: a person is created together with their
  first samples in one transaction, and removing a person's last sample removes them;
* ``(person, model_id, source_sha256)`` is unique: the same image is never added twice
  to one person;
* each write call is atomic: it happens completely or not at all;
* :meth:`GalleryStore.revision` changes with every committed write, whoever made it.

Corrections live beside the samples as *negatives*: faces somebody said were *not* a
person ("not X"; "this is Y" makes the face Y's sample and X's negative in one
transaction, :meth:`GalleryStore.correct`). A negative belongs to a person (it goes
when they go, and follows a rename), carries the ``model_id`` of its embedding under
the same guard as samples, and changes :meth:`GalleryStore.revision` like any write,
so live matchers refit. :meth:`GalleryStore.negatives` hands a model's negatives to
the matcher (``fit(..., negatives=..., negative_labels=...)``). Negatives are not part
of the export format; ``replace_samples`` (``facesense reembed``) keeps the negatives
of the model it re-embeds with, takes new embeddings for those of another model
(``reembed`` computes them from each negative's thumbnail) and drops, with a logged
warning, the others.

``tests/gallery/test_contract.py`` checks all of this for every store (and for a small
in-memory store written against this interface alone); a new store joins that suite.

The portable export format (``.npz``, see :func:`write_export` / :func:`read_export`)
lives here too, so every store reads and writes the same files.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from facesense.errors import EnrollmentError, GalleryError, ModelMismatchError

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "ExportData",
    "GalleryEmbeddings",
    "GalleryStore",
    "GalleryNegatives",
    "ImportSummary",
    "Negative",
    "NewSample",
    "Person",
    "Sample",
    "SearchResult",
    "read_export",
    "validate_name",
    "ImportRow",
    "plan_import",
    "samples_model",
    "check_correction",
    "negative_embedding",
    "validate_negative_source",
    "write_export",
]

EXPORT_FORMAT = "facesense-gallery-export"
EXPORT_VERSION = 1
MAX_NAME_LEN = 200
MAX_NEGATIVE_SOURCE_LEN = 500


def validate_name(name: str) -> str:
    """Return ``name`` stripped, or raise :class:`~facesense.errors.ConfigError`.

    A person's name is any non-empty text up to 200 characters without control
    characters; ``unknown`` is reserved (it is what recognition prints for strangers).
    """
    from facesense.errors import ConfigError

    if not isinstance(name, str):
        raise ConfigError(f"a person's name must be text, got {type(name).__name__}")
    cleaned = name.strip()
    if not cleaned:
        raise ConfigError("a person's name must not be empty")
    if len(cleaned) > MAX_NAME_LEN:
        raise ConfigError(f"a person's name must be at most {MAX_NAME_LEN} characters, got {len(cleaned)}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in cleaned):
        raise ConfigError(f"a person's name must not contain control characters: {cleaned!r}")
    if cleaned.lower() == "unknown":
        raise ConfigError("'unknown' is reserved for faces that match nobody; pick another name")
    return cleaned


@dataclass(frozen=True, kw_only=True)
class NewSample:
    """A face sample about to be added to a gallery.

    Attributes:
        embedding: ``(D,)`` float32, L2-normalised.
        model_id: the embedder's model and preprocessing id.
        source_sha256: hex sha256 of the source (the image file's bytes, or a camera frame's).
        source_path: where the image came from (a path, or ``camera:0``); ``None`` if unknown.
        xyxy: the face box in the source image, pixels.
        thumbnail_jpeg: a small JPEG of the face crop, or ``b""``.
    """

    embedding: npt.NDArray[np.float32]
    model_id: str
    source_sha256: str
    source_path: str | None = None
    xyxy: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    thumbnail_jpeg: bytes = b""

    def __post_init__(self) -> None:
        emb = np.asarray(self.embedding, dtype=np.float32)
        if emb.ndim != 1 or emb.size == 0:
            raise ValueError(f"embedding: expected shape (D,), got {emb.shape}")
        if not np.all(np.isfinite(emb)):
            raise ValueError("embedding: contains NaN or infinity")
        object.__setattr__(self, "embedding", emb)
        if not self.model_id:
            raise ValueError("model_id must not be empty")
        if len(self.source_sha256) != 64:
            raise ValueError(f"source_sha256: expected 64 hex digits, got {self.source_sha256!r}")
        box = tuple(float(v) for v in self.xyxy)
        if len(box) != 4:
            raise ValueError(f"xyxy: expected 4 numbers, got {len(box)}")
        object.__setattr__(self, "xyxy", box)


@dataclass(frozen=True, kw_only=True)
class Person:
    """One enrolled person.

    Attributes:
        id: the store's id (stable while the person exists).
        name: unique name.
        created: when the person was enrolled, ISO 8601 UTC.
        n_samples: how many samples they have (all models).
    """

    id: int
    name: str
    created: str
    n_samples: int


@dataclass(frozen=True, kw_only=True)
class Sample:
    """One stored face sample (without its embedding; see :meth:`GalleryStore.embeddings`).

    Attributes:
        id: the store's id.
        person: the person's name.
        model_id: the embedder's model and preprocessing id.
        dim: embedding length.
        source_path: where the image came from, or ``None``.
        source_sha256: hex sha256 of the source.
        xyxy: face box in the source image, pixels.
        thumbnail_jpeg: small JPEG of the face crop (may be empty).
        added: when it was added, ISO 8601 UTC.
    """

    id: int
    person: str
    model_id: str
    dim: int
    source_path: str | None
    source_sha256: str
    xyxy: tuple[float, float, float, float]
    thumbnail_jpeg: bytes
    added: str


@dataclass(frozen=True, kw_only=True)
class Negative:
    """One stored negative ("this face is not ``person``"), without its embedding.

    Attributes:
        id: the store's id.
        person: whom the face is not.
        model_id: the embedder's model and preprocessing id.
        dim: embedding length.
        source: where the correction came from, e.g. ``event 12``.
        source_sha256: hex sha256 of the source photo or crop, or ``None``.
        thumbnail_jpeg: small JPEG of the face (may be empty).
        added: when it was added, ISO 8601 UTC.
    """

    id: int
    person: str
    model_id: str
    dim: int
    source: str
    source_sha256: str | None
    thumbnail_jpeg: bytes
    added: str

    def to_dict(self) -> dict[str, object]:
        """A JSON-able form (without the thumbnail bytes)."""
        return {
            "id": self.id, "person": self.person, "model_id": self.model_id, "dim": self.dim,
            "source": self.source, "source_sha256": self.source_sha256, "added": self.added,
            "has_thumbnail": bool(self.thumbnail_jpeg),
        }  # fmt: skip


@dataclass(frozen=True, eq=False)
class GalleryNegatives:
    """Every negative of one model, as parallel arrays for a matcher's ``fit``.

    Attributes:
        labels: ``(K,)`` whom each row is not.
        matrix: ``(K, D)`` float32 embeddings (``(0, 0)`` when there are none).
        negative_ids: ``(K,)`` int64 store ids.
        model_id: the model the rows belong to.
    """

    labels: tuple[str, ...]
    matrix: npt.NDArray[np.float32]
    negative_ids: npt.NDArray[np.int64]
    model_id: str

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.matrix.ndim != 2 or self.matrix.shape[0] != n:
            raise ValueError(f"matrix: expected shape ({n}, D), got {self.matrix.shape}")
        if self.negative_ids.shape != (n,):
            raise ValueError(f"negative_ids: expected shape ({n},), got {self.negative_ids.shape}")

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def empty(cls, model_id: str) -> GalleryNegatives:
        """No negatives."""
        return cls((), np.zeros((0, 0), np.float32), np.zeros((0,), np.int64), model_id)


def validate_negative_source(source: str) -> str:
    """``source`` stripped, or :class:`~facesense.errors.ConfigError` (empty, too long, control characters)."""
    from facesense.errors import ConfigError

    cleaned = source.strip() if isinstance(source, str) else ""
    if not cleaned:
        raise ConfigError("a negative needs a source description (e.g. 'event 12')")
    if len(cleaned) > MAX_NEGATIVE_SOURCE_LEN or any(ord(ch) < 32 or ord(ch) == 127 for ch in cleaned):
        raise ConfigError(f"a negative's source must be one line of at most {MAX_NEGATIVE_SOURCE_LEN} characters")
    return cleaned


@dataclass(frozen=True, eq=False)
class GalleryEmbeddings:
    """Every embedding of one model, as parallel arrays for a matcher.

    Attributes:
        labels: ``(N,)`` person names, one per row.
        matrix: ``(N, D)`` float32 embeddings.
        sample_ids: ``(N,)`` int64 store ids of the samples.
        model_id: the model the rows belong to.
    """

    labels: tuple[str, ...]
    matrix: npt.NDArray[np.float32]
    sample_ids: npt.NDArray[np.int64]
    model_id: str

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.matrix.ndim != 2 or self.matrix.shape[0] != n:
            raise ValueError(f"matrix: expected shape ({n}, D), got {self.matrix.shape}")
        if self.sample_ids.shape != (n,):
            raise ValueError(f"sample_ids: expected shape ({n},), got {self.sample_ids.shape}")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True, eq=False)
class SearchResult:
    """The ``k`` nearest stored samples of each probe embedding, nearest first.

    Attributes:
        labels: ``M`` tuples of ``k'`` person names (``k' = min(k, samples)``).
        distances: ``(M, k')`` float32 Euclidean distances between unit vectors, ascending.
        sample_ids: ``(M, k')`` int64 store ids of the samples.
        model_id: the model the searched rows belong to.
    """

    labels: tuple[tuple[str, ...], ...]
    distances: npt.NDArray[np.float32]
    sample_ids: npt.NDArray[np.int64]
    model_id: str

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class ImportSummary:
    """What an import did.

    Attributes:
        people_added: names of people created by the import.
        samples_added: how many samples were added.
        samples_skipped: how many were already there (same person and source sha256).
    """

    people_added: tuple[str, ...] = ()
    samples_added: int = 0
    samples_skipped: int = 0


@runtime_checkable
class GalleryStore(Protocol):
    """Where people and their face samples live.

    Names are the public handle for a person; unknown names raise
    :class:`~facesense.errors.EnrollmentError`. Write calls are atomic.
    """

    @property
    def location(self) -> str:
        """A human-readable place (file path or URL without secrets)."""
        ...

    @property
    def model_id(self) -> str | None:
        """The model id of the stored embeddings, or ``None`` while the gallery is empty."""
        ...

    def add_samples(self, name: str, samples: Sequence[NewSample], *, create: bool = True) -> tuple[int, ...]:
        """Add samples to a person in one transaction and return their new ids.

        Args:
            name: the person; created in the same transaction when missing and ``create``.
            samples: at least one sample, all with the gallery's model id.
            create: allow creating a new person.

        Raises:
            EnrollmentError: unknown person and ``create`` is false, or no samples.
            ModelMismatchError: a sample's model id differs from the gallery's.
            GalleryError: a sample duplicates a stored one (same person, model and sha256),
                or the store failed. Nothing is written in either case.
        """
        ...

    def has_source(self, name: str, source_sha256: str, model_id: str) -> bool:
        """Whether ``name`` already has a sample from this source and model."""
        ...

    def people(self) -> list[Person]:
        """Every person, sorted by name."""
        ...

    def person(self, name: str) -> Person:
        """One person by name (raises EnrollmentError when unknown)."""
        ...

    def person_by_id(self, person_id: int) -> Person:
        """One person by store id (raises EnrollmentError when unknown)."""
        ...

    def revision(self) -> int:
        """A number that changes with every committed write, through this connection or
        another (another process included), and not on reads or refused writes. Compare
        it for equality only (hot reload: a matcher refits when it differs from the one it
        was fitted at). Called per frame batch, so it must be cheap."""
        ...

    def search(self, embeddings: npt.ArrayLike, k: int, *, model_id: str) -> SearchResult:
        """The ``k`` nearest samples of ``model_id`` to each row of ``(M, D)`` (or one ``(D,)``)
        unit embeddings, nearest first; ``min(k, samples)`` columns (none for an empty gallery).

        Raises:
            ConfigError: ``k < 1``, or probes that are not finite ``(M, D)`` numbers.
            ModelMismatchError: the gallery holds embeddings of another model, or of another ``D``.
        """
        ...

    def samples(self, name: str | None = None) -> list[Sample]:
        """The samples of one person (or everybody's), oldest first."""
        ...

    def rename_person(self, old: str, new: str) -> Person:
        """Rename a person (raises EnrollmentError if ``old`` is unknown or ``new`` is taken)."""
        ...

    def remove_person(self, name: str) -> int:
        """Remove a person and all their samples (and negatives); returns how many samples went."""
        ...

    def remove_sample(self, sample_id: int) -> None:
        """Remove one sample; removing a person's last sample removes the person too."""
        ...

    def embeddings(self, model_id: str) -> GalleryEmbeddings:
        """Every embedding made by ``model_id`` (raises ModelMismatchError if the gallery holds another model)."""
        ...

    def iter_embeddings(self, model_id: str, *, batch_size: int = 10_000) -> Iterator[GalleryEmbeddings]:
        """The same rows as :meth:`embeddings`, in batches, for galleries too big for one array."""
        ...

    def replace_samples(
        self, replacements: Mapping[int, NewSample], negatives: Mapping[int, npt.NDArray[np.float32]] | None = None
    ) -> int:
        """Atomically swap every sample for a recomputed one (``facesense reembed``).

        Args:
            replacements: sample id -> its new sample, all with one model id. Stored
                samples missing from the mapping are removed, and so are people left
                without samples.
            negatives: negative id -> its embedding recomputed with the replacements'
                model (from the negative's thumbnail). Other negatives of another model
                than the replacements' are dropped (logged as a warning).

        Returns:
            How many samples were removed.
        """
        ...

    def add_negative(self, name: str, sample: NewSample, *, source: str) -> int:
        """Store a face that is *not* ``name`` ("not X"); returns the negative's id.

        Args:
            name: an enrolled person.
            sample: the face (its ``source_sha256``, box and thumbnail are kept; the
                ``source_path`` is not).
            source: where the correction came from, e.g. ``event 12``.

        Raises:
            EnrollmentError: no such person.
            ModelMismatchError: the face's model (or length) differs from the gallery's.
            ConfigError: an empty or multi-line ``source``.
        """
        ...

    def correct(self, wrong: str, right: str, sample: NewSample, *, source: str) -> tuple[int, int]:
        """Say "this is ``right``, not ``wrong``" in one transaction: ``sample`` becomes a
        sample of ``right`` and a negative of ``wrong``.

        Returns:
            ``(sample id, negative id)``.

        Raises:
            EnrollmentError: either person is unknown, or both are the same person.
            ModelMismatchError: as for :meth:`add_negative`.
            GalleryError: ``right`` already has a sample from this source. Nothing is
                written in any case.
        """
        ...

    def negatives(self, model_id: str) -> GalleryNegatives:
        """Every negative of ``model_id`` (for ``fit(negatives=..., negative_labels=...)``), by id.

        Raises:
            ModelMismatchError: the gallery holds another model's embeddings.
        """
        ...

    def negative_records(self, name: str | None = None) -> list[Negative]:
        """The negatives of one person (everybody's for ``None``), oldest first (EnrollmentError: unknown name)."""
        ...

    def remove_negative(self, negative_id: int) -> None:
        """Remove one negative (EnrollmentError: no such negative)."""
        ...

    def export_file(self, path: str | os.PathLike[str]) -> int:
        """Write the whole gallery to a portable ``.npz`` file; returns the sample count."""
        ...

    def import_file(self, path: str | os.PathLike[str]) -> ImportSummary:
        """Merge an export file into this gallery in one transaction."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


# --- portable export -------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ExportData:
    """The content of an export file.

    Attributes:
        people: ``(name, created)`` pairs.
        samples: sample metadata, in the order of the matrix rows (``person`` is a name).
        matrix: ``(N, D)`` float32 embeddings (one ``D`` per file).
        thumbnails: one JPEG byte string per sample.
    """

    people: tuple[tuple[str, str], ...]
    samples: tuple[dict[str, object], ...]
    matrix: npt.NDArray[np.float32]
    thumbnails: tuple[bytes, ...] = field(default=())


def write_export(path: str | os.PathLike[str], data: ExportData) -> None:
    """Write an export ``.npz``: plain arrays plus one JSON header, no pickles.

    Layout: ``header`` (uint8 JSON bytes: format, version, people, per-sample metadata),
    ``embeddings`` ``(N, D)`` float32, ``thumbnails`` (all JPEGs concatenated, uint8)
    and ``thumbnail_offsets`` ``(N + 1,)`` int64.
    """
    from facesense.models.registry import write_atomic

    header = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "people": [{"name": n, "created": c} for n, c in data.people],
        "samples": list(data.samples),
    }
    thumbs = list(data.thumbnails) or [b""] * len(data.samples)
    offsets = np.zeros(len(thumbs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(t) for t in thumbs])
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        header=np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8),
        embeddings=np.asarray(data.matrix, dtype="<f4"),
        thumbnails=np.frombuffer(b"".join(thumbs), dtype=np.uint8),
        thumbnail_offsets=offsets,
    )
    try:
        write_atomic(Path(path), buf.getvalue())
    except OSError as exc:
        raise GalleryError(f"{path}: cannot write export ({exc.strerror or exc})") from exc


def read_export(path: str | os.PathLike[str]) -> ExportData:
    """Read and validate an export file written by :func:`write_export`.

    Raises:
        GalleryError: missing, not an export, written by a newer version, or inconsistent.
    """
    p = Path(path)
    if not p.is_file():
        raise GalleryError(f"{p}: no such export file")
    try:
        # Read the bytes ourselves: np.load leaks its file handle on a corrupt zip.
        with np.load(io.BytesIO(p.read_bytes()), allow_pickle=False) as npz:
            names = set(npz.files)
            needed = {"header", "embeddings", "thumbnails", "thumbnail_offsets"}
            if not needed <= names:
                raise GalleryError(f"{p}: not a facesense gallery export (missing {sorted(needed - names)})")
            header = json.loads(npz["header"].tobytes().decode("utf-8"))
            matrix = np.asarray(npz["embeddings"], dtype=np.float32)
            blob = npz["thumbnails"].tobytes()
            offsets = np.asarray(npz["thumbnail_offsets"], dtype=np.int64)
    except GalleryError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, UnicodeDecodeError, EOFError) as exc:
        raise GalleryError(f"{p}: not a facesense gallery export ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
        raise GalleryError(f"{p}: not a facesense gallery export")
    version = header.get("version")
    if not isinstance(version, int) or version > EXPORT_VERSION:
        raise GalleryError(
            f"{p}: export format version {version} is newer than this facesense reads "
            f"(up to {EXPORT_VERSION}); upgrade facesense"
        )
    try:
        people = tuple((str(d["name"]), str(d["created"])) for d in header["people"])
        samples = tuple(dict(s) for s in header["samples"])
        for s in samples:
            for key in ("person", "model_id", "source_sha256"):
                if not isinstance(s.get(key), str):
                    raise TypeError(f"sample without a text {key}")
    except (KeyError, TypeError, ValueError) as exc:
        raise GalleryError(f"{p}: corrupt gallery export header ({exc})") from exc
    n = len(samples)
    if matrix.ndim != 2 or matrix.shape[0] != n or offsets.shape != (n + 1,) or offsets[-1] != len(blob):
        raise GalleryError(f"{p}: corrupt gallery export (array sizes disagree with the header)")
    names_known = {name for name, _ in people}
    if any(s["person"] not in names_known for s in samples):
        raise GalleryError(f"{p}: corrupt gallery export (a sample names an unlisted person)")
    thumbs = tuple(blob[offsets[i] : offsets[i + 1]] for i in range(n))
    return ExportData(people=people, samples=samples, matrix=matrix, thumbnails=thumbs)


# --- what every store checks the same way ------------------------------------------


def negative_embedding(embedding: npt.ArrayLike, dim: int) -> npt.NDArray[np.float32]:
    """A negative's recomputed embedding for ``replace_samples``, checked: ``(dim,)``, finite.

    Raises:
        ModelMismatchError: another length than the replacement samples'.
        EnrollmentError: NaN or infinity in it.
    """
    e = np.asarray(embedding, dtype=np.float32).reshape(-1)
    if e.shape != (dim,):
        raise ModelMismatchError(f"a re-embedded negative has {e.shape[0]} values, the samples {dim}")
    if not np.all(np.isfinite(e)):
        raise EnrollmentError("a re-embedded negative contains NaN or infinity")
    return e


def check_correction(wrong: str, right: str) -> None:
    """Refuse "this is ``right``, not ``wrong``" when both name the same person (EnrollmentError)."""
    if wrong == right:
        raise EnrollmentError(f"a face cannot be both {right!r} and not {wrong!r}")


def samples_model(name: str, samples: Sequence[NewSample]) -> tuple[str, int]:
    """The one ``(model_id, dim)`` of samples about to be added to ``name``.

    Raises:
        EnrollmentError: no samples.
        ModelMismatchError: the samples mix models or embedding lengths.
    """
    if not samples:
        raise EnrollmentError(f"no samples to add for {name!r}")
    models = {(s.model_id, int(s.embedding.shape[0])) for s in samples}
    if len(models) != 1:
        raise ModelMismatchError(f"samples for {name!r} mix models or lengths: {sorted(models)}")
    return models.pop()


@dataclass(frozen=True)
class ImportRow:
    """One sample of an export file, ready for a store's insert.

    Attributes:
        person: the person's name.
        created: when the person was enrolled (ISO 8601), for a person the store lacks.
        sample: the sample.
        added: when the sample was added (ISO 8601), or ``None`` when the file does not say.
    """

    person: str
    created: str
    sample: NewSample
    added: str | None


def _export_box(value: object) -> tuple[float, float, float, float]:
    """An export's ``xyxy`` entry as four floats (``(0, 0, 0, 0)`` when absent)."""
    if value is None:
        return (0.0, 0.0, 0.0, 0.0)
    if not isinstance(value, list | tuple) or len(value) != 4:
        raise ValueError(f"xyxy: expected 4 numbers, got {value!r}")
    x1, y1, x2, y2 = (float(v) for v in value)
    return (x1, y1, x2, y2)


def plan_import(path: str | os.PathLike[str]) -> tuple[tuple[str, int] | None, list[ImportRow]]:
    """Read and check an export file before a store merges it (:meth:`GalleryStore.import_file`).

    Returns:
        The file's ``(model_id, dim)`` (``None`` for an export without samples) and its
        rows, in file order.

    Raises:
        GalleryError: the file is not a valid export, or a sample in it is corrupt.
        ModelMismatchError: the export mixes models.
        ConfigError: a person's name in it is not a valid name.
    """
    data = read_export(path)
    models = {(str(s["model_id"]), int(data.matrix.shape[1])) for s in data.samples}
    if len(models) > 1:
        raise ModelMismatchError(f"{path}: the export mixes models {sorted(models)}")
    for name, _ in data.people:
        validate_name(name)
    created_at = dict(data.people)
    rows: list[ImportRow] = []
    for i, s in enumerate(data.samples):
        try:
            sample = NewSample(
                embedding=data.matrix[i],
                model_id=str(s["model_id"]),
                source_sha256=str(s["source_sha256"]),
                source_path=None if s.get("source_path") is None else str(s["source_path"]),
                xyxy=_export_box(s.get("xyxy")),
                thumbnail_jpeg=data.thumbnails[i],
            )
        except (TypeError, ValueError) as exc:
            raise GalleryError(f"{path}: corrupt sample {i} in the export ({exc})") from exc
        name = str(s["person"])
        added = s.get("added")
        rows.append(ImportRow(name, created_at[name], sample, None if not added else str(added)))
    return (next(iter(models)) if models else None), rows

