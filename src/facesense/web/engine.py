"""What the web app does, without HTTP: recognise, enroll uploads, manage people, name faces.

:class:`Engine` owns the models (shared by request threads and source threads: the
detector and embedder are thread-safe) and the fitted matcher. The gallery is opened
per operation (an :class:`~facesense.gallery.sqlite.SQLiteGallery` belongs to one
thread). The matcher is rebuilt when the gallery file changes, whoever changed it
(this server, or ``facesense enroll`` from a shell), so the live sources name a
person as soon as they are enrolled.

Uploads are bytes from the request; their client-side file names are only ever
echoed back in messages, and the samples they become record ``upload:<sha256>`` as
their source, never a path.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facesense.enroll import EnrollConfig, Enroller, Skipped
from facesense.errors import (
    ConfigError,
    EnrollmentError,
    FacesenseError,
    GalleryError,
    ModelMismatchError,
)
from facesense.gallery.base import NewSample, validate_name

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.analyzer import FaceAnalyzer
    from facesense.detect.base import Detector
    from facesense.gallery.base import Person, Sample
    from facesense.gallery.sqlite import SQLiteGallery
    from facesense.match import Matcher
    from facesense.web.config import ServeConfig
    from facesense.web.events import EventStore

logger = logging.getLogger(__name__)

__all__ = [
    "Conflict",
    "Engine",
    "GalleryMatcher",
    "NotFound",
    "PayloadTooLarge",
    "Upload",
    "UploadOutcome",
    "WebError",
    "clean_filename",
]

MATCHER_CHECK_S = 1.0  # how often the gallery file is checked for changes
MAX_CONCURRENT_ANALYSES = 2  # requests analysing images at once (2-core boxes)
MAX_FILENAME_CHARS = 120
MAX_UPLOAD_FILES = 50  # photos per request
THUMBNAIL_PX = 96


class WebError(FacesenseError):
    """An error with an HTTP status of its own."""

    status_code = 400


class NotFound(WebError):
    """No such person, sample, event or source."""

    status_code = 404


class Conflict(WebError):
    """The request clashes with what is stored (name taken, face already named...)."""

    status_code = 409


class PayloadTooLarge(WebError):
    """An upload is over the size limit."""

    status_code = 413


def clean_filename(name: str | None) -> str:
    """A client's file name fit for messages: base name, printable, at most 120 characters."""
    text = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(ch for ch in text if ch.isprintable()).strip()
    if len(text) > MAX_FILENAME_CHARS:
        text = text[: MAX_FILENAME_CHARS - 1] + "…"
    return text or "upload"


@dataclass(frozen=True)
class Upload:
    """One uploaded file: its bytes and the name the client gave it (display only)."""

    filename: str
    data: bytes


@dataclass(frozen=True)
class UploadOutcome:
    """What became of one uploaded photo.

    Attributes:
        filename: the client's file name (cleaned; for display).
        outcome: ``added`` or a :class:`~facesense.enroll.SkipReason` value
            (``unreadable``, ``duplicate``, ``no_face``, ``several_faces``,
            ``too_small``, ``too_blurry``).
        detail: a one-line explanation.
        sample_id: the new sample, when added.
    """

    filename: str
    outcome: str
    detail: str
    sample_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        return {"file": self.filename, "outcome": self.outcome, "detail": self.detail, "sample_id": self.sample_id}


class _UploadEnroller(Enroller):
    """The enrollment checks of :class:`~facesense.enroll.Enroller`, on bytes instead of paths."""

    def enroll_uploads(self, person: str, uploads: Sequence[Upload], *, create: bool) -> list[UploadOutcome]:
        person = validate_name(person)
        self._check_model()
        seen: set[tuple[str, str]] = set()
        prepared: list[NewSample | Skipped] = [self._prepare_upload(person, u, seen) for u in uploads]
        outcomes: list[UploadOutcome] = []
        for upload, item in zip(uploads, prepared, strict=True):
            name = clean_filename(upload.filename)
            if isinstance(item, Skipped):
                outcomes.append(UploadOutcome(name, item.reason.value, item.detail))
                continue
            (sid,) = self.gallery.add_samples(person, [item], create=create)
            create = False  # the person exists from the first sample on
            outcomes.append(UploadOutcome(name, "added", "added as a face sample", sid))
        return outcomes

    def _prepare_upload(self, person: str, upload: Upload, seen: set[tuple[str, str]]) -> NewSample | Skipped:
        return self.prepare_bytes(person, upload.data, name=clean_filename(upload.filename), seen=seen)


class _AllUnknown:
    """What a matcher says when the gallery is empty: nobody, with no distance."""

    def __init__(self, m: int) -> None:
        self.names: tuple[str | None, ...] = (None,) * m
        self.candidates: tuple[str | None, ...] = (None,) * m
        self.distances = np.full((m,), np.nan, np.float32)
        self.scores = self.distances.copy()
        self.confidences = np.zeros((m,), np.float32)


class GalleryMatcher:
    """The pipeline's matcher: always the engine's current one (all unknown while the
    gallery is empty or unusable), so enrolling takes effect on running sources."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def match(self, embeddings: npt.NDArray[np.float32]) -> Any:
        """Name each row of ``(M, D)`` embeddings (``None`` = unknown)."""
        matcher = self.engine.live_matcher()
        if matcher is None:
            return _AllUnknown(len(embeddings))
        return matcher.match(embeddings)


class Engine:
    """Models, gallery access and the matcher, shared by every request and source.

    Args:
        config: the server settings (gallery path, threshold, live detector size).
        analyzer: detects and embeds uploads; :class:`~facesense.analyzer.FaceAnalyzer` by default.
        live_detector: the sources' detector (its own minimum face size); an MTCNN by default.
        events: where named unknown faces come from (see :meth:`name_event`).
    """

    def __init__(
        self,
        config: ServeConfig,
        *,
        analyzer: FaceAnalyzer | None = None,
        live_detector: Detector | None = None,
        events: EventStore | None = None,
    ) -> None:
        if analyzer is None:
            from facesense.analyzer import FaceAnalyzer

            analyzer = FaceAnalyzer()
        self.config = config
        self.analyzer = analyzer
        self._live_detector = live_detector
        self.events = events
        self.gallery_path: Path = config.gallery_path
        self._analyses = threading.BoundedSemaphore(MAX_CONCURRENT_ANALYSES)
        self._matcher_lock = threading.Lock()
        self._detector_lock = threading.Lock()
        self._matcher: Matcher | None = None
        self._signature: tuple[Any, ...] | None = None
        self._checked_at = -float("inf")
        self._problem: FacesenseError | None = None
        self._warned_problem: str | None = None

    # --- models --------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        """The embedder's model id."""
        return self.analyzer.model_id

    @property
    def live_detector(self) -> Detector:
        """The detector the sources use (built on first use)."""
        with self._detector_lock:
            if self._live_detector is None:
                from facesense.detect.mtcnn import MTCNNConfig, MTCNNDetector

                self._live_detector = MTCNNDetector(MTCNNConfig(min_face_px=self.config.min_face_px))
            return self._live_detector

    def warm_up(self) -> None:
        """Load the models now (a detection and an embedding on a blank image)."""
        blank = np.zeros((64, 64, 3), np.uint8)
        self.analyzer.detect(blank)
        load = getattr(self.analyzer.embedder, "load", None)
        if load is not None:
            load()
        self.live_matcher()

    @contextlib.contextmanager
    def _analysis(self) -> Iterator[None]:
        with self._analyses:
            yield

    # --- gallery -------------------------------------------------------------------

    @contextlib.contextmanager
    def gallery(self, *, create: bool = False) -> Iterator[SQLiteGallery | None]:
        """An open gallery for one operation; ``None`` when there is no file yet (and not ``create``)."""
        from facesense.gallery.sqlite import SQLiteGallery

        if not create and not self.gallery_path.exists():
            yield None
            return
        with SQLiteGallery(self.gallery_path, create=create) as gallery:
            yield gallery

    def people(self) -> list[Person]:
        """Everybody, sorted by name."""
        with self.gallery() as g:
            return [] if g is None else g.people()

    def person(self, person_id: int) -> Person:
        """One person by id.

        Raises:
            NotFound: no such person.
        """
        for p in self.people():
            if p.id == person_id:
                return p
        raise NotFound(f"no person with id {person_id}")

    def samples(self, person_id: int) -> list[Sample]:
        """A person's samples, oldest first."""
        person = self.person(person_id)
        with self.gallery() as g:
            if g is None:
                raise NotFound(f"no person with id {person_id}")
            try:
                return g.samples(person.name)
            except EnrollmentError as exc:  # removed meanwhile
                raise NotFound(f"no person with id {person_id}") from exc

    def sample(self, person_id: int, sample_id: int) -> Sample:
        """One sample of one person.

        Raises:
            NotFound: no such person, or the sample is not theirs.
        """
        for s in self.samples(person_id):
            if s.id == sample_id:
                return s
        raise NotFound(f"person {person_id} has no face sample with id {sample_id}")

    def stats(self) -> dict[str, int]:
        """``people`` and ``samples`` counts."""
        people = self.people()
        return {"people": len(people), "samples": sum(p.n_samples for p in people)}

    def rename(self, person_id: int, new_name: str) -> Person:
        """Rename a person (events follow).

        Raises:
            NotFound: no such person.
            Conflict: the new name is taken.
            ConfigError: the new name is not valid.
        """
        person = self.person(person_id)
        clean = validate_name(new_name)
        with self.gallery() as g:
            if g is None:
                raise NotFound(f"no person with id {person_id}")
            if clean != person.name and any(p.name == clean for p in g.people()):
                raise Conflict(f"there is already a person named {clean!r}")
            renamed = g.rename_person(person.name, clean)
        if self.events is not None and clean != person.name:
            self.events.rename(person.name, clean)
        self.invalidate()
        return renamed

    def delete(self, person_id: int) -> int:
        """Remove a person and their samples; returns how many samples went."""
        person = self.person(person_id)
        with self.gallery() as g:
            if g is None:
                raise NotFound(f"no person with id {person_id}")
            n = g.remove_person(person.name)
        self.invalidate()
        return n

    def remove_sample(self, person_id: int, sample_id: int) -> bool:
        """Remove one of a person's samples; returns whether the person is still there
        (removing the last sample removes them)."""
        self.sample(person_id, sample_id)
        with self.gallery() as g:
            if g is None:
                raise NotFound(f"no person with id {person_id}")
            g.remove_sample(sample_id)
            still = any(p.id == person_id for p in g.people())
        self.invalidate()
        return still

    def create_person(self, name: str, uploads: Sequence[Upload]) -> tuple[Person | None, list[UploadOutcome]]:
        """Enroll a new person from photos.

        Returns:
            The person (``None`` when no photo was usable, and then nothing is stored)
            and one outcome per photo.

        Raises:
            Conflict: the name is taken.
            ConfigError: the name is not valid, or no photos.
        """
        clean = validate_name(name)
        _check_count(uploads)
        if any(p.name == clean for p in self.people()):
            raise Conflict(f"there is already a person named {clean!r}; add photos to them instead")
        outcomes = self._enroll(clean, uploads, create=True)
        person = next((p for p in self.people() if p.name == clean), None)
        return person, outcomes

    def add_faces(self, person_id: int, uploads: Sequence[Upload]) -> tuple[Person, list[UploadOutcome]]:
        """Add photos to an existing person; returns them (updated) and one outcome per photo."""
        person = self.person(person_id)
        _check_count(uploads)
        try:
            outcomes = self._enroll(person.name, uploads, create=False)
        except EnrollmentError as exc:  # removed meanwhile
            raise NotFound(f"no person with id {person_id}") from exc
        return self.person(person_id), outcomes

    def _enroll(self, name: str, uploads: Sequence[Upload], *, create: bool) -> list[UploadOutcome]:
        # Uploads are never strict: each photo gets its own outcome.
        config = EnrollConfig(strict=False)
        with self._analysis(), self.gallery(create=create) as g:
            if g is None:
                raise NotFound(f"no person named {name!r}")
            enroller = _UploadEnroller(g, self.analyzer, config)
            outcomes = enroller.enroll_uploads(name, uploads, create=create)
        if any(o.sample_id is not None for o in outcomes):
            self.invalidate()
        return outcomes

    def person_thumbnail(self, person_id: int) -> bytes:
        """The JPEG thumbnail of a person's first sample that has one."""
        for s in self.samples(person_id):
            if s.thumbnail_jpeg:
                return s.thumbnail_jpeg
        raise NotFound(f"person {person_id} has no thumbnail")

    # --- recognition ---------------------------------------------------------------

    def live_matcher(self) -> Matcher | None:
        """The fitted matcher for the current gallery, or ``None`` when nobody is enrolled
        (or the gallery is unusable: see :attr:`gallery_problem`)."""
        now = time.monotonic()
        if now - self._checked_at < MATCHER_CHECK_S:
            return self._matcher
        with self._matcher_lock:
            if time.monotonic() - self._checked_at < MATCHER_CHECK_S:
                return self._matcher
            self._checked_at = time.monotonic()
            signature = self._file_signature()
            if signature != self._signature:
                try:
                    self._matcher = self._build_matcher()
                    self._problem = None
                except FacesenseError as exc:
                    self._matcher = None
                    self._problem = exc
                    if self._warned_problem != str(exc):
                        logger.error("cannot name faces from the gallery: %s", exc)
                        self._warned_problem = str(exc)
                self._signature = signature
            return self._matcher

    @property
    def gallery_problem(self) -> str | None:
        """Why faces cannot be named from the gallery (a foreign or mismatched file), or ``None``."""
        return None if self._problem is None else str(self._problem)

    def invalidate(self) -> None:
        """Rebuild the matcher on its next use (after this server changed the gallery)."""
        with self._matcher_lock:
            self._signature = None
            self._checked_at = -float("inf")

    def _file_signature(self) -> tuple[Any, ...]:
        # The main file and a non-empty write-ahead log change with every commit; an
        # empty -wal only means somebody has the gallery open.
        parts: list[Any] = []
        for suffix in ("", "-wal"):
            try:
                st = Path(str(self.gallery_path) + suffix).stat()
            except OSError:
                parts.append(None)
                continue
            parts.append((st.st_mtime_ns, st.st_size) if st.st_size or not suffix else None)
        return tuple(parts)

    def _build_matcher(self) -> Matcher | None:
        from facesense.match import make_matcher
        from facesense.recognize import Recognizer

        with self.gallery() as g:
            if g is None or g.model_id is None:
                return None
            threshold: float | str = "auto" if self.config.threshold is None else self.config.threshold
            matcher = make_matcher("knn", model_id=self.model_id, threshold=threshold)
            recognizer = Recognizer(g, analyzer=self.analyzer, matcher=matcher)
        logger.info("naming faces from %s (%d people)", self.gallery_path, len(recognizer.people))
        return recognizer.matcher

    def detect(self, image: npt.NDArray[np.uint8]) -> list[dict[str, Any]]:
        """Records like ``facesense detect --json``: box, score, landmarks per face."""
        from facesense.cli.detect import face_records

        with self._analysis():
            faces = self.analyzer.detect(image)
        return face_records(faces)

    def recognize(self, image: npt.NDArray[np.uint8]) -> list[dict[str, Any]]:
        """Records like ``facesense recognize --json``: box, score, name, distance, confidence.

        Every face is ``unknown`` while the gallery is empty.

        Raises:
            GalleryError: the gallery cannot be used (``ModelMismatchError`` when it
                holds another model's embeddings).
        """
        from facesense.recognize import face_records

        matcher = self.live_matcher()
        problem = self._problem
        if matcher is None and problem is not None:
            raise type(problem)(str(problem))
        with self._analysis():
            faces = self.analyzer.detect(image)
            if matcher is None or len(faces) == 0:
                return face_records(faces)
            faces = self.analyzer.embed(image, faces)
        result = matcher.match(faces.embeddings)  # type: ignore[arg-type]
        named = faces.replace(names=result.names, distances=result.distances)
        return face_records(named, result.confidences)

    # --- naming unknown faces -----------------------------------------------------

    def name_event(self, event_id: int, name: str) -> tuple[Person, int]:
        """Enroll the face of an ``unknown`` event as ``name`` (a new or existing person).

        Returns:
            The person and the new sample's id.

        Raises:
            NotFound: no such event.
            Conflict: the event has no stored face, was named already, or the person
                already has this face.
            ModelMismatchError: the face was embedded by another model than the gallery's.
        """
        if self.events is None:
            raise NotFound("this server keeps no events")
        event = self.events.get(event_id)
        if event is None:
            raise NotFound(f"no event with id {event_id}")
        if event.sample_id is not None:
            raise Conflict(f"this face was already named {event.name!r}")
        if not event.can_name:
            raise Conflict(f"event {event_id} holds no unknown face to name")
        clean = validate_name(name)
        embedding = self.events.embedding(event_id)
        if embedding is None or event.model_id is None:
            raise Conflict(f"event {event_id} holds no unknown face to name")
        if event.model_id != self.model_id:
            raise ModelMismatchError(
                f"this face was embedded by model {event.model_id!r}, the server uses {self.model_id!r}"
            )
        crop = self.events.crop(event_id) or b""
        sha = hashlib.sha256(crop or embedding.tobytes()).hexdigest()
        sample = NewSample(
            embedding=embedding,
            model_id=event.model_id,
            source_sha256=sha,
            source_path=f"event:{event_id}",
            xyxy=event.xyxy or (0.0, 0.0, 0.0, 0.0),
            thumbnail_jpeg=_thumbnail(crop),
        )
        with self.gallery(create=True) as g:
            if g is None:  # pragma: no cover - create=True always opens
                raise GalleryError(f"{self.gallery_path}: cannot open the gallery")
            if g.has_source(clean, sha, sample.model_id):
                raise Conflict(f"{clean} already has this face")
            (sid,) = g.add_samples(clean, [sample], create=True)
            person = g.person(clean)
        self.events.mark_named(event_id, clean, sid)
        self.invalidate()
        return person, sid


def _check_count(uploads: Sequence[Upload]) -> None:
    if not uploads:
        raise ConfigError("add at least one photo")
    if len(uploads) > MAX_UPLOAD_FILES:
        raise ConfigError(f"at most {MAX_UPLOAD_FILES} photos at a time, got {len(uploads)}")


def _thumbnail(jpeg: bytes) -> bytes:
    """A ``96 x 96`` JPEG from an event crop (already a square face crop)."""
    if not jpeg:
        return b""
    import cv2

    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return b""
    small = cv2.resize(image, (THUMBNAIL_PX, THUMBNAIL_PX), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return buf.tobytes() if ok else b""
