"""A CompreFace-compatible recognition API, under ``/api/v1/recognition``.

Clients written for `CompreFace <https://github.com/exadel-inc/CompreFace>`_'s
recognition service (its Python SDK ``compreface-sdk``, Double Take, Home Assistant
integrations) talk to ``facesense serve`` unchanged. The endpoints, their JSON and
their statuses follow CompreFace's ``docs/Rest-API-description.md``:

==========================================  =============================================
``GET    /subjects``                        ``{"subjects": [name, ...]}``
``POST   /subjects``  ``{"subject": name}``  ``{"subject": name}`` (201)
``PUT    /subjects/{subject}``              ``{"updated": true}``; an existing new name merges
``DELETE /subjects/{subject}``              ``{"subject": name}``
``DELETE /subjects``                        ``{"deleted": <subjects>}``
``POST   /faces?subject=&det_prob_threshold=``  multipart ``file``: ``{"image_id", "subject"}`` (201)
``GET    /faces?subject=&page=&size=``       ``{"faces": [{"image_id", "subject"}], "page_number",
                                            "page_size", "total_pages", "total_elements"}``
``DELETE /faces/{image_id}``                ``{"image_id", "subject"}``
``DELETE /faces?subject=``                  ``{"deleted": <faces>}`` (no subject: every face)
``POST   /faces/delete``  ``[image_id, ...]``  ``[{"image_id", "subject"}, ...]`` (unknown ids ignored)
``GET    /faces/{image_id}/img``            the face's JPEG thumbnail (96 x 96)
``POST   /recognize?limit=&det_prob_threshold=&prediction_count=&face_plugins=&status=``
                                            ``{"result": [{"box": {"probability", "x_min", "y_min",
                                            "x_max", "y_max"}, "subjects": [{"subject",
                                            "similarity"}]}]}``
==========================================  =============================================

**API key.** CompreFace clients send ``x-api-key``. When the server has a token
(``--token`` / ``$FACESENSE_TOKEN``), the key must be that token; ``Authorization:
Bearer`` and the dashboard's session cookie are accepted too, as on ``/api``. A missing
key is ``401 {"message": "Missing header: x-api-key", "code": 20}``, a wrong one 401
too. Without a token the server listens on loopback only and the rest of its API is
open; so is this one: any ``x-api-key`` (CompreFace clients always send one; Double
Take refuses an empty setting), or none, is accepted.

**Subjects and faces.** A subject is a facesense person, a face (an "example") one of
their samples, enrolled through :class:`facesense.enroll.Enroller` with the same gates
as ``facesense enroll`` (exactly one face, at least 40 px, sharp enough). The gallery
keeps only people with at least one sample, while CompreFace keeps empty subjects; so
a subject added with ``POST /subjects``, or left without faces by ``DELETE /faces``,
is held in this server's memory until a face is added to it: it is listed, renamed and
deleted like the others, but is not seen by other processes and is gone after a
restart. An ``image_id`` is a UUID holding the person's and the sample's store ids
(``00000000-0000-0007-0000-00000000002a`` is sample 42 of person 7: the ids of
``facesense people`` and ``/api/people``). Uploading a photo the subject already
has returns the existing ``image_id`` instead of storing it twice.

**Similarity.** Each face's first subject is the matcher's candidate (the same
:class:`~facesense.recognize.LiveMatcher` the live sources use, so faces enrolled a
moment ago are recognised at once), and::

    similarity = 1 / (1 + exp((score - threshold) / CONFIDENCE_SCALE))    # CONFIDENCE_SCALE = 0.05

(:func:`facesense.match.distance_to_confidence`), where ``score`` is what facesense's
open-set rule compares with ``threshold``
(the distance, corrected for a crowded gallery: :mod:`facesense.match`) and
``threshold`` the calibrated one (``facesense serve --threshold`` overrides it). It is
facesense's own ``confidence``: monotone, **0.5 exactly at the acceptance threshold**,
about 0.88 at 0.1 below it and 0.12 at 0.1 above. facesense names a face if and only if
its first subject's similarity is >= 0.5 (enforced after rounding), which is also the
boundary CompreFace documents for its own similarity ("most correct guesses ... more
than 0.5"). A face facesense calls ``unknown`` still gets its nearest candidate, below
0.5, like CompreFace, which always returns the most similar subjects and leaves the
decision to the client; a client that wants facesense's decision sets its threshold to
0.5 (Double Take: ``match.confidence: 50``). The further subjects of
``prediction_count > 1`` are the next nearest people by their nearest sample's raw
distance, on the same scale, capped below the first subject and below 0.5 (facesense
named at most the first). An empty gallery gives ``"subjects": []``.

**Parameters.** ``det_prob_threshold`` (0-1) drops detections scoring under it; the
detector already drops those under its own score threshold (0.7 for YuNet, the default;
0.8 for MTCNN's last stage), so lower values change nothing. When adding a face it can only make the
enrollment gate stricter (:class:`~facesense.enroll.EnrollConfig`'s
``min_detection_score`` stays the floor). ``limit`` keeps the largest faces
(0: all). ``face_plugins``: ``landmarks`` adds the five ``[x, y]`` landmarks (eyes, nose,
mouth corners), ``calculator`` the ``embedding`` (facesense's, not comparable with
CompreFace's); every other slug (``age``, ``gender``, ``mask``, ``pose``: no such
models) is ignored. ``status=true`` adds per-face ``execution_time`` in milliseconds
(``detector``: finding every face of the image; ``calculator``: embedding this face,
the image's embedding time shared out) and ``plugins_versions``. Base64 JSON uploads and the
verification endpoint are not offered.

**Errors** are ``{"message": "...", "code": <int>}`` with the status CompreFace uses;
the codes are CompreFace's ``CommonExceptionCode`` values where one fits (11 image not
found, 20 missing header, 21 not an image it can read, 26 invalid value, 28 no face,
31 too many faces, 33 missing parameter, 0 other), and facesense's own 42 (subject not
found, 404) and 43 (subject exists, 400) where the CompreFace source at hand named the
exception but not its number.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from fastapi import APIRouter, Body, Depends, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from facesense.errors import (
    ConfigError,
    ConflictError,
    EnrollmentError,
    FacesenseError,
    GalleryError,
    ImageError,
    ModelError,
    ModelMismatchError,
    NotFoundError,
    PayloadTooLargeError,
)
from facesense.gallery.base import NewSample, validate_name
from facesense.web.api import read_upload, state_of
from facesense.web.security import check_token, is_authorized

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.enroll import Skipped
    from facesense.gallery.base import GalleryStore, Sample
    from facesense.gallery.events import EventLog
    from facesense.recognize import LiveMatcher
    from facesense.types import Faces
    from facesense.web.models import WebModels
    from facesense.web.people import PeopleService, Upload

logger = logging.getLogger(__name__)

__all__ = [
    "ACCEPT_SIMILARITY",
    "PREFIX",
    "TAG",
    "CompreFaceService",
    "PendingSubjects",
    "image_id",
    "router",
    "sample_id_of",
]

PREFIX = "/api/v1/recognition"
TAG = "CompreFace-compatible recognition"
ACCEPT_SIMILARITY = 0.5
"""The similarity of a face at facesense's acceptance threshold: named iff >= this."""
SIMILARITY_DECIMALS = 5
_BELOW_ACCEPT = ACCEPT_SIMILARITY - 10.0**-SIMILARITY_DECIMALS

CODE_UNDEFINED = 0
CODE_IMAGE_NOT_FOUND = 11
CODE_MISSING_HEADER = 20
CODE_BAD_IMAGE = 21
CODE_INVALID = 26
CODE_NO_FACES = 28
CODE_TOO_MANY_FACES = 31
CODE_MISSING_PARAMETER = 33
CODE_SUBJECT_NOT_FOUND = 42
CODE_SUBJECT_EXISTS = 43

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 1000
ANSWERED_PLUGINS = frozenset({"landmarks", "calculator"})
RUNNER_UP_SEARCH = 8  # gallery samples searched per further subject wanted (prediction_count > 1)
API_KEY_HEADER = "x-api-key"


class CompreFaceError(Exception):
    """An answer in CompreFace's error shape: ``status`` with ``{"message", "code"}``.

    The HTTP adapter's own signal, like Starlette's ``HTTPException`` on ``/api``: raised
    by this module's routes and the service below them, answered by
    :class:`CompreFaceRoute`, never seen outside this router. The library's errors stay
    :class:`~facesense.errors.FacesenseError` and are translated at the same place.
    """

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """CompreFace's error body."""
    return JSONResponse({"message": message, "code": code}, status_code=status, headers=headers)


def _from_facesense(exc: FacesenseError) -> CompreFaceError:
    """facesense's errors as CompreFace answers them (a one-line message each)."""
    text = str(exc)
    if isinstance(exc, NotFoundError):
        return CompreFaceError(404, CODE_UNDEFINED, text)
    if isinstance(exc, PayloadTooLargeError):
        return CompreFaceError(413, CODE_INVALID, text)
    if isinstance(exc, ImageError):
        return CompreFaceError(400, CODE_BAD_IMAGE, text)
    if isinstance(exc, ModelMismatchError):
        return CompreFaceError(409, CODE_UNDEFINED, text)
    if isinstance(exc, (ConfigError, ConflictError)):
        return CompreFaceError(400, CODE_INVALID, text)
    if isinstance(exc, EnrollmentError):
        return CompreFaceError(400, CODE_UNDEFINED, text)
    if isinstance(exc, (GalleryError, ModelError)):
        return CompreFaceError(503, CODE_UNDEFINED, text)
    return CompreFaceError(500, CODE_UNDEFINED, text)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path", "form", "header")]
        where = ".".join(loc)
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return "; ".join(parts) or "invalid request"


class CompreFaceRoute(APIRoute):
    """A route whose every error is answered in CompreFace's shape, not ``/api``'s."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except CompreFaceError as exc:
                return error_response(exc.status, exc.code, exc.message)
            except RequestValidationError as exc:
                return error_response(400, CODE_INVALID, _validation_message(exc))
            except FacesenseError as exc:
                err = _from_facesense(exc)
                if err.status >= 500:
                    logger.error("%s %s: %s", request.method, request.url.path, exc)
                return error_response(err.status, err.code, err.message)
            except StarletteHTTPException as exc:  # the body limit's 413
                detail = exc.detail if isinstance(exc.detail, str) else "request failed"
                return error_response(exc.status_code, CODE_UNDEFINED, detail)

        return answer


# --- ids, similarity ------------------------------------------------------------------


_ID_BITS = 64


def image_id(person_id: int, sample_id: int) -> str:
    """A sample as a CompreFace ``image_id``: a UUID whose high 64 bits are the person's
    store id and low 64 bits the sample's (a lookup reads one person's samples)."""
    return str(uuid.UUID(int=(int(person_id) << _ID_BITS) | int(sample_id)))


def sample_id_of(text: str) -> tuple[int, int]:
    """``(person id, sample id)`` of an ``image_id``; a plain sample number gives person 0
    (unknown: the whole gallery is searched).

    Raises:
        CompreFaceError: not such an id (400).
    """
    raw = text.strip()
    try:
        value = int(raw) if raw.isdigit() else uuid.UUID(raw).int
    except ValueError:
        raise CompreFaceError(400, CODE_INVALID, f"invalid image_id {text[:80]!r}: expected a UUID") from None
    person, sample = value >> _ID_BITS, value & ((1 << _ID_BITS) - 1)
    if not (0 < sample < 2**63 and 0 <= person < 2**63):
        raise CompreFaceError(400, CODE_INVALID, f"invalid image_id {text[:80]!r}: no face has this id")
    return person, sample


def similarity(confidence: float, *, accepted: bool) -> float:
    """A facesense confidence as CompreFace's ``similarity``, rounded, on the right side of 0.5.

    ``confidence`` is 0.5 at the threshold already; rounding must not move a rejected
    face up to 0.5 nor an accepted one under it.
    """
    value = round(float(confidence), SIMILARITY_DECIMALS)
    if accepted:
        return max(value, ACCEPT_SIMILARITY)
    return min(value, _BELOW_ACCEPT)


# --- subjects held in memory ------------------------------------------------------------


@dataclass(eq=False)
class PendingSubjects:
    """Subjects without faces (the gallery keeps only people with samples): this
    server's memory, until a face is added to them."""

    _names: dict[str, None] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._names)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._names

    def add(self, name: str) -> None:
        with self._lock:
            self._names[name] = None

    def discard(self, name: str) -> bool:
        """Forget ``name``; whether it was held."""
        with self._lock:
            held = name in self._names
            self._names.pop(name, None)
            return held

    def clear(self) -> int:
        with self._lock:
            n = len(self._names)
            self._names.clear()
            return n


_PENDING_LOCK = threading.Lock()


def pending_subjects(request: Request) -> PendingSubjects:
    """The app's :class:`PendingSubjects` (created on first use)."""
    app_state = request.app.state
    with _PENDING_LOCK:
        pending = getattr(app_state, "compreface_pending", None)
        if pending is None:
            pending = PendingSubjects()
            app_state.compreface_pending = pending
    return pending


# --- the work, without HTTP -------------------------------------------------------------


def _subject_not_found(name: str) -> CompreFaceError:
    return CompreFaceError(404, CODE_SUBJECT_NOT_FOUND, f"Subject {name} not found")


def _skip_error(item: Skipped) -> CompreFaceError:
    from facesense.enroll import SkipReason

    if item.reason is SkipReason.UNREADABLE:
        return CompreFaceError(400, CODE_BAD_IMAGE, item.detail)
    if item.reason is SkipReason.NO_FACE:
        return CompreFaceError(400, CODE_NO_FACES, "No face is found in the given image")
    if item.reason is SkipReason.SEVERAL_FACES:
        return CompreFaceError(400, CODE_TOO_MANY_FACES, f"Too many faces in the image: {item.detail}")
    return CompreFaceError(400, CODE_INVALID, f"the face cannot be enrolled: {item.detail} ({item.reason.value})")


def parse_plugins(text: str | None) -> frozenset[str]:
    """The ``face_plugins`` slugs facesense answers (``landmarks``, ``calculator``).

    Every other slug is ignored, not refused: CompreFace's own ``age``, ``gender``,
    ``mask`` and ``pose`` need models facesense does not have, and Double Take sends
    ``face_plugins=undefined`` when its configuration sets none.
    """
    slugs = frozenset(s.strip().lower() for s in (text or "").split(",") if s.strip())
    ignored = sorted(slugs - ANSWERED_PLUGINS)
    if ignored:
        logger.debug("face_plugins: ignoring %s", ", ".join(ignored))
    return slugs & ANSWERED_PLUGINS


def _check_probability(value: float | None, what: str) -> None:
    if value is not None and not (0.0 <= value <= 1.0):
        raise CompreFaceError(400, CODE_INVALID, f"{what} must be between 0.0 and 1.0, got {value}")


class CompreFaceService:
    """The CompreFace endpoints' work on the server's gallery, models and matcher.

    Args:
        store: the gallery.
        models: the server's detector and embedder.
        matcher: names faces (the one the sources use).
        people: renames (the events follow) and removals.
        events: the events log (follows a merge).
        pending: subjects without faces.
    """

    def __init__(
        self,
        *,
        store: GalleryStore,
        models: WebModels,
        matcher: LiveMatcher,
        people: PeopleService,
        events: EventLog,
        pending: PendingSubjects,
    ) -> None:
        self.store = store
        self.models = models
        self.matcher = matcher
        self.people = people
        self.events = events
        self.pending = pending

    @classmethod
    def of(cls, request: Request) -> CompreFaceService:
        """The service for a request's app."""
        state = state_of(request)
        return cls(
            store=state.store,
            models=state.models,
            matcher=state.matcher,
            people=state.people,
            events=state.events,
            pending=pending_subjects(request),
        )

    # --- subjects ----------------------------------------------------------------------

    def _enrolled(self, name: str) -> bool:
        try:
            self.store.person(name)
        except EnrollmentError:
            return False
        return True

    def subjects(self) -> list[str]:
        """Every subject: enrolled people and the pending ones, sorted."""
        enrolled = {p.name for p in self.store.people()}
        for name in self.pending.names():
            if name in enrolled:  # enrolled meanwhile (facesense enroll, /api/people)
                self.pending.discard(name)
        return sorted(enrolled | set(self.pending.names()))

    def add_subject(self, subject: str) -> str:
        """A new subject without faces.

        Raises:
            CompreFaceError: the name is invalid (400) or taken (400, code 43).
        """
        name = validate_name(subject)
        if self._enrolled(name) or name in self.pending:
            raise CompreFaceError(400, CODE_SUBJECT_EXISTS, "Subject already exists")
        self.pending.add(name)
        return name

    def rename_subject(self, subject: str, new_name: str) -> bool:
        """Rename a subject; an existing new name gets the old one's faces (CompreFace merges).

        Raises:
            CompreFaceError: no such subject (404), or an invalid new name (400).
        """
        old = subject.strip()
        new = validate_name(new_name)
        if old == new:
            if self._enrolled(old) or old in self.pending:
                return True
            raise _subject_not_found(old)
        try:
            person = self.store.person(old)
        except EnrollmentError:
            if not self.pending.discard(old):
                raise _subject_not_found(old) from None
            if not self._enrolled(new):
                self.pending.add(new)
            return True
        if self._enrolled(new):
            self._merge(old, new)
        else:
            self.people.rename(person.id, new)
        self.pending.discard(new)
        return True

    def _merge(self, old: str, new: str) -> None:
        """Move ``old``'s samples to ``new`` (copied in one transaction, then ``old`` removed).

        A crash between the two leaves the faces under both names, never under none.
        """
        model_id = self.models.model_id
        samples = {s.id: s for s in self.store.samples(old) if s.model_id == model_id}
        stored = self.store.embeddings(model_id)
        moved = []
        for row, sid in enumerate(stored.sample_ids.tolist()):
            s = samples.get(int(sid))
            if s is None or self.store.has_source(new, s.source_sha256, model_id):
                continue
            moved.append(
                NewSample(
                    embedding=stored.matrix[row],
                    model_id=model_id,
                    source_sha256=s.source_sha256,
                    source_path=s.source_path,
                    xyxy=s.xyxy,
                    thumbnail_jpeg=s.thumbnail_jpeg,
                )
            )
        if moved:
            self.store.add_samples(new, moved, create=False)
        self.store.remove_person(old)
        self.events.rename(old, new)
        logger.info("merged subject %r into %r (%d faces)", old, new, len(moved))

    def delete_subject(self, subject: str) -> str:
        """Remove a subject and all their faces.

        Raises:
            CompreFaceError: no such subject (404).
        """
        name = subject.strip()
        held = self.pending.discard(name)
        try:
            self.store.remove_person(name)
        except EnrollmentError:
            if not held:
                raise _subject_not_found(name) from None
        return name

    def delete_all_subjects(self) -> int:
        """Remove every subject; returns how many there were."""
        names = self.subjects()
        for person in self.store.people():
            try:
                self.store.remove_person(person.name)
            except EnrollmentError:  # removed meanwhile
                continue
        self.pending.clear()
        return len(names)

    # --- faces ------------------------------------------------------------------------

    def add_face(self, subject: str, upload: Upload, *, det_prob_threshold: float | None = None) -> dict[str, str]:
        """Enroll one photo as a face of ``subject`` (created when new).

        Raises:
            CompreFaceError: an invalid name, or a photo the enrollment gates refuse (400).
            ModelMismatchError: the gallery holds another model's embeddings.
        """
        from facesense.enroll import EnrollConfig, Enroller, Skipped, SkipReason

        name = validate_name(subject)
        _check_probability(det_prob_threshold, "det_prob_threshold")
        model_id = self.models.model_id
        stored = self.store.model_id
        if stored is not None and stored != model_id:
            raise ModelMismatchError(
                f"the gallery holds embeddings from model {stored!r}, not {model_id!r}; "
                f"run `facesense reembed --db {self.store.location}` first"
            )
        gate = EnrollConfig()
        config = EnrollConfig(min_detection_score=max(gate.min_detection_score, det_prob_threshold or 0.0))
        enroller = Enroller(self.store, self.models.analyzer, config)
        with self.models.analysis():
            item = enroller.prepare_bytes(name, upload.data, name=upload.filename)
        if isinstance(item, Skipped):
            if item.reason is SkipReason.DUPLICATE:
                sha = item.path.removeprefix("upload:")
                for s in self.store.samples(name):
                    if s.source_sha256 == sha and s.model_id == model_id:
                        return {"image_id": image_id(self.store.person(name).id, s.id), "subject": name}
            raise _skip_error(item)
        (sid,) = self.store.add_samples(name, [item], create=True)
        self.pending.discard(name)
        return {"image_id": image_id(self.store.person(name).id, sid), "subject": name}

    def _samples(self, subject: str | None) -> list[Sample]:
        if subject is None:
            return self.store.samples()
        try:
            return self.store.samples(subject)
        except EnrollmentError:
            return []

    def list_faces(self, *, subject: str | None, page: int, size: int) -> dict[str, Any]:
        """One page of faces (oldest first), optionally of one subject.

        Raises:
            CompreFaceError: a negative page or a size outside 1-1000 (400).
        """
        if page < 0:
            raise CompreFaceError(400, CODE_INVALID, f"page must be >= 0, got {page}")
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise CompreFaceError(400, CODE_INVALID, f"size must be in 1-{MAX_PAGE_SIZE}, got {size}")
        samples = self._samples(subject.strip() if subject else None)
        chunk = samples[page * size : (page + 1) * size]
        ids = {p.name: p.id for p in self.store.people()} if chunk else {}
        return {
            "faces": [{"image_id": image_id(ids.get(s.person, 0), s.id), "subject": s.person} for s in chunk],
            "page_number": page,
            "page_size": size,
            "total_pages": math.ceil(len(samples) / size),
            "total_elements": len(samples),
        }

    def _sample(self, ids: tuple[int, int]) -> tuple[int, Sample] | None:
        """``(person id, sample)`` of :func:`sample_id_of`'s ids, ``None`` when there is no such face."""
        person_id, sample_id = ids
        if person_id:
            try:
                person = self.store.person_by_id(person_id)
                samples = self.store.samples(person.name)
            except EnrollmentError:
                return None
        else:
            samples = self.store.samples()
        for s in samples:
            if s.id == sample_id:
                return (person_id or self.store.person(s.person).id), s
        return None

    def _remove(self, sample: Sample) -> bool:
        """Remove one sample; a subject left without faces stays as a pending subject."""
        try:
            self.store.remove_sample(sample.id)
        except EnrollmentError:
            return False
        if not self._enrolled(sample.person):
            self.pending.add(sample.person)
        return True

    def delete_face(self, text_id: str) -> dict[str, str]:
        """Remove one face by ``image_id``.

        Raises:
            CompreFaceError: a malformed id (400) or no such face (404, code 11).
        """
        found = self._sample(sample_id_of(text_id))
        if found is None or not self._remove(found[1]):
            raise CompreFaceError(404, CODE_IMAGE_NOT_FOUND, f"Image {text_id} not found")
        person_id, sample = found
        return {"image_id": image_id(person_id, sample.id), "subject": sample.person}

    def delete_faces(self, text_ids: Iterable[str]) -> list[dict[str, str]]:
        """Remove several faces; ids of faces that do not exist are ignored.

        Raises:
            CompreFaceError: a malformed id (400; nothing is removed).
        """
        wanted = [sample_id_of(t) for t in text_ids]
        done = []
        for ids in dict.fromkeys(wanted):
            found = self._sample(ids)
            if found is not None and self._remove(found[1]):
                done.append({"image_id": image_id(found[0], found[1].id), "subject": found[1].person})
        return done

    def delete_subject_faces(self, subject: str | None) -> int:
        """Remove every face of ``subject`` (every face when ``None``); the subjects stay.

        Raises:
            ConfigError: ``subject`` is given but blank (``?subject=`` is not "everybody").
        """
        names = [p.name for p in self.store.people()] if subject is None else [validate_name(subject)]
        removed = 0
        for name in names:
            try:
                removed += self.store.remove_person(name)
            except EnrollmentError:
                continue
            self.pending.add(name)
        return removed

    def thumbnail(self, text_id: str) -> bytes:
        """A face's JPEG thumbnail.

        Raises:
            CompreFaceError: a malformed id (400), or no such face or no thumbnail (404).
        """
        found = self._sample(sample_id_of(text_id))
        if found is None or not found[1].thumbnail_jpeg:
            raise CompreFaceError(404, CODE_IMAGE_NOT_FOUND, f"Image {text_id} not found")
        return found[1].thumbnail_jpeg

    # --- recognition ------------------------------------------------------------------

    def recognize(
        self,
        image: npt.NDArray[np.uint8],
        *,
        limit: int = 0,
        det_prob_threshold: float | None = None,
        prediction_count: int = 1,
        plugins: frozenset[str] = frozenset(),
        status: bool = False,
    ) -> dict[str, Any]:
        """CompreFace's ``/recognize`` answer for a BGR ``(H, W, 3)`` uint8 image.

        Raises:
            CompreFaceError: a bad parameter (400), or no face in the image (400, code 28).
            GalleryError: the gallery cannot be used (``ModelMismatchError``: another model's).
        """
        if limit < 0:
            raise CompreFaceError(400, CODE_INVALID, f"limit must be >= 0, got {limit}")
        if prediction_count < 1:
            raise CompreFaceError(400, CODE_INVALID, f"prediction_count must be >= 1, got {prediction_count}")
        _check_probability(det_prob_threshold, "det_prob_threshold")
        fitted = self.matcher.refresh()  # fails here when the gallery cannot be used
        analyzer = self.models.analyzer
        with self.models.analysis():
            start = time.perf_counter()
            faces = analyzer.detect(image)
            detected = time.perf_counter()
            faces = _select(faces, det_prob_threshold, limit)
            if len(faces) == 0:
                raise CompreFaceError(400, CODE_NO_FACES, "No face is found in the given image")
            faces = analyzer.embed(image, faces)
            embedded = time.perf_counter()
        if faces.embeddings is None:  # pragma: no cover - every embedder fills them in
            raise ModelError("the embedder returned no embeddings")
        subjects: list[list[dict[str, Any]]] = [[] for _ in range(len(faces))]
        if fitted is not None:
            from facesense.match import distance_to_confidence

            result = fitted.match(faces.embeddings)
            runners = self._runners(faces.embeddings, result.candidates, prediction_count - 1)
            for i in range(len(faces)):
                candidate = result.candidates[i]
                if candidate is None:
                    continue
                top = similarity(float(result.confidences[i]), accepted=result.names[i] is not None)
                subjects[i].append({"subject": candidate, "similarity": top})
                cap = min(top, _BELOW_ACCEPT)
                for name, distance in runners[i]:
                    value = float(distance_to_confidence(np.float32(distance), fitted.threshold))
                    subjects[i].append({"subject": name, "similarity": min(similarity(value, accepted=False), cap)})
        n = len(faces)
        timing = {
            "detector": round((detected - start) * 1000.0, 1),  # one detection for the whole image
            "calculator": round((embedded - detected) * 1000.0 / n, 1),
        }
        out = []
        for i in range(n):
            x1, y1, x2, y2 = (max(0, round(float(v))) for v in faces.xyxy[i])
            face: dict[str, Any] = {
                "box": {
                    "probability": round(float(faces.scores[i]), SIMILARITY_DECIMALS),
                    "x_min": x1,
                    "y_min": y1,
                    "x_max": x2,
                    "y_max": y2,
                },
                "subjects": subjects[i],
            }
            if "landmarks" in plugins:
                face["landmarks"] = [[round(float(x)), round(float(y))] for x, y in faces.landmarks[i]]
            if "calculator" in plugins:
                face["embedding"] = [round(float(v), 6) for v in faces.embeddings[i]]
            if status:
                face["execution_time"] = dict(timing)
            out.append(face)
        answer: dict[str, Any] = {"result": out}
        if status:
            answer["plugins_versions"] = {
                "detector": f"facesense.{type(analyzer.detector).__name__}",
                "calculator": f"facesense.{self.models.model_id}",
            }
        return answer

    def _runners(
        self, embeddings: npt.NDArray[np.float32], candidates: tuple[str | None, ...], wanted: int
    ) -> list[list[tuple[str, float]]]:
        """For each face, up to ``wanted`` other people nearest by their nearest sample."""
        if wanted <= 0:
            return [[] for _ in candidates]
        found = self.store.search(embeddings, wanted * RUNNER_UP_SEARCH + 1, model_id=self.models.model_id)
        out: list[list[tuple[str, float]]] = []
        for labels, distances, candidate in zip(found.labels, found.distances, candidates, strict=True):
            seen = {candidate}
            row: list[tuple[str, float]] = []
            for name, distance in zip(labels, distances.tolist(), strict=True):
                if name not in seen and len(row) < wanted:
                    seen.add(name)
                    row.append((name, float(distance)))
            out.append(row)
        return out


def _select(faces: Faces, det_prob_threshold: float | None, limit: int) -> Faces:
    """The faces scoring at least ``det_prob_threshold``, the ``limit`` largest (0: all)."""
    if det_prob_threshold is not None and len(faces):
        faces = faces[faces.scores >= det_prob_threshold]
    if limit and len(faces) > limit:
        wh = faces.xyxy[:, 2:] - faces.xyxy[:, :2]
        area = wh[:, 0] * wh[:, 1]
        keep = np.sort(np.argsort(-area, kind="stable")[:limit])
        faces = faces[keep]
    return faces


# --- HTTP ---------------------------------------------------------------------------------

_api_key = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="facesense's token (`--token`); any value when the server has none.",
)


def require_api_key(request: Request, key: Annotated[str | None, Depends(_api_key)]) -> None:
    """A dependency: the ``x-api-key`` must be the server's token (when it has one)."""
    token = state_of(request).config.token
    if token is None:
        return
    if key is None:
        if is_authorized(request, token):  # Authorization: Bearer, or the pages' session cookie
            return
        raise CompreFaceError(401, CODE_MISSING_HEADER, f"Missing header: {API_KEY_HEADER}")
    if not check_token(key, token):
        raise CompreFaceError(401, CODE_UNDEFINED, f"invalid {API_KEY_HEADER}")


router = APIRouter(
    prefix=PREFIX,
    tags=[TAG],
    dependencies=[Depends(require_api_key)],
    route_class=CompreFaceRoute,
)


class ErrorOut(BaseModel):
    message: str
    code: int = Field(description="CompreFace's error code (see the module docs).")


class SubjectIn(BaseModel):
    subject: str = Field(description="The subject's name (any text but `unknown`, up to 200 characters).")


class SubjectOut(BaseModel):
    subject: str


class SubjectsOut(BaseModel):
    subjects: list[str]


class UpdatedOut(BaseModel):
    updated: bool


class DeletedOut(BaseModel):
    deleted: int


class FaceOut(BaseModel):
    image_id: str = Field(description="The face sample's id, as a UUID.")
    subject: str


class FacesPage(BaseModel):
    faces: list[FaceOut]
    page_number: int
    page_size: int
    total_pages: int
    total_elements: int


class BoxOut(BaseModel):
    probability: float = Field(description="The detector's score.")
    x_min: int
    y_min: int
    x_max: int
    y_max: int


class SubjectSimilarity(BaseModel):
    subject: str
    similarity: float = Field(description="0.5 at facesense's acceptance threshold; >= 0.5 only for a named face.")


class RecognizedFace(BaseModel):
    box: BoxOut
    subjects: list[SubjectSimilarity]
    landmarks: list[list[int]] | None = Field(None, description="With face_plugins=landmarks.")
    embedding: list[float] | None = Field(None, description="With face_plugins=calculator.")
    execution_time: dict[str, float] | None = Field(None, description="With status=true, milliseconds.")


class RecognizeOut(BaseModel):
    result: list[RecognizedFace]
    plugins_versions: dict[str, str] | None = Field(None, description="With status=true.")


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "Invalid request, image or face."},
    401: {"model": ErrorOut, "description": "Missing or wrong x-api-key."},
    404: {"model": ErrorOut, "description": "No such subject or face."},
    413: {"model": ErrorOut, "description": "Upload too large."},
}

DetProb = Annotated[
    float | None,
    Query(description="Minimum detector score of a face, 0.0-1.0 (the detector's own minimum applies anyway)."),
]


def _upload(request: Request, file: UploadFile | None) -> Upload:
    if file is None:
        raise CompreFaceError(400, CODE_MISSING_PARAMETER, "Required request part 'file' is not present")
    return read_upload(file, state_of(request).config.max_upload_bytes)


@router.get("/subjects", response_model=SubjectsOut, responses=ERRORS, summary="List subjects")
@router.get("/subjects/", response_model=SubjectsOut, include_in_schema=False)  # as CompreFace's docs spell it
def list_subjects(request: Request) -> dict[str, Any]:
    return {"subjects": CompreFaceService.of(request).subjects()}


@router.post("/subjects", response_model=SubjectOut, status_code=201, responses=ERRORS, summary="Add a subject")
def add_subject(request: Request, body: SubjectIn) -> dict[str, Any]:
    """A subject without faces is kept in this server's memory until its first face."""
    return {"subject": CompreFaceService.of(request).add_subject(body.subject)}


@router.put("/subjects/{subject}", response_model=UpdatedOut, responses=ERRORS, summary="Rename a subject")
def rename_subject(request: Request, subject: str, body: SubjectIn) -> dict[str, Any]:
    """When the new name exists, the subject's faces move to it (CompreFace merges)."""
    return {"updated": CompreFaceService.of(request).rename_subject(subject, body.subject)}


@router.delete("/subjects/{subject}", response_model=SubjectOut, responses=ERRORS, summary="Delete a subject")
def delete_subject(request: Request, subject: str) -> dict[str, Any]:
    return {"subject": CompreFaceService.of(request).delete_subject(subject)}


@router.delete("/subjects", response_model=DeletedOut, responses=ERRORS, summary="Delete all subjects")
def delete_all_subjects(request: Request) -> dict[str, Any]:
    return {"deleted": CompreFaceService.of(request).delete_all_subjects()}


@router.post("/faces", response_model=FaceOut, status_code=201, responses=ERRORS, summary="Add an example of a subject")
def add_face(
    request: Request,
    subject: Annotated[str | None, Query(description="Whose face; created when new.")] = None,
    det_prob_threshold: DetProb = None,
    file: Annotated[UploadFile | None, File(description="A photo with exactly this subject's face.")] = None,
) -> dict[str, Any]:
    """The photo passes the same checks as `facesense enroll` (one face, >= 40 px, sharp)."""
    if not subject:
        raise CompreFaceError(400, CODE_MISSING_PARAMETER, "Required request parameter 'subject' is not present")
    upload = _upload(request, file)
    return CompreFaceService.of(request).add_face(subject, upload, det_prob_threshold=det_prob_threshold)


@router.get("/faces", response_model=FacesPage, responses=ERRORS, summary="List examples")
def list_faces(
    request: Request,
    subject: Annotated[str | None, Query(description="Only this subject's faces.")] = None,
    page: Annotated[int, Query(description="Page number, from 0.")] = 0,
    size: Annotated[int, Query(description="Faces per page.")] = DEFAULT_PAGE_SIZE,
) -> dict[str, Any]:
    return CompreFaceService.of(request).list_faces(subject=subject or None, page=page, size=size)


@router.delete("/faces", response_model=DeletedOut, responses=ERRORS, summary="Delete all examples of a subject")
def delete_subject_faces(
    request: Request,
    subject: Annotated[str | None, Query(description="Whose faces; every face when absent.")] = None,
) -> dict[str, Any]:
    """The subjects stay (without faces), as in CompreFace. Only a missing `subject`
    means every face; an empty one is refused."""
    return {"deleted": CompreFaceService.of(request).delete_subject_faces(subject)}


@router.post("/faces/delete", response_model=list[FaceOut], responses=ERRORS, summary="Delete several examples")
def delete_faces(request: Request, ids: Annotated[list[str], Body(description="image_id values.")]) -> Any:
    """Ids of faces that do not exist are ignored."""
    return CompreFaceService.of(request).delete_faces(ids)


@router.delete("/faces/{image_id}", response_model=FaceOut, responses=ERRORS, summary="Delete an example")
def delete_face(request: Request, image_id: str) -> dict[str, Any]:
    return CompreFaceService.of(request).delete_face(image_id)


@router.get(
    "/faces/{image_id}/img",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, **ERRORS},
    summary="Download an example (its face thumbnail)",
)
def face_image(request: Request, image_id: str) -> Response:
    """facesense keeps a 96 x 96 JPEG of the face, not the uploaded photo."""
    data = CompreFaceService.of(request).thumbnail(image_id)
    return Response(content=data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@router.post(
    "/recognize",
    response_model=RecognizeOut,
    response_model_exclude_none=True,
    responses=ERRORS,
    summary="Recognize faces from a given image",
)
def recognize(
    request: Request,
    limit: Annotated[int, Query(description="Recognize at most this many faces, the largest first; 0: all.")] = 0,
    det_prob_threshold: DetProb = None,
    prediction_count: Annotated[int, Query(description="Subjects per face, most similar first.")] = 1,
    face_plugins: Annotated[
        str | None, Query(description="landmarks, calculator; other slugs (age, gender, mask, pose) are ignored.")
    ] = None,
    status: Annotated[bool, Query(description="Add execution_time and plugins_versions.")] = False,
    file: Annotated[UploadFile | None, File(description="An image (JPEG, PNG, ...).")] = None,
) -> dict[str, Any]:
    """`similarity` is facesense's confidence: 0.5 at the acceptance threshold, so a face
    is named by facesense exactly when its first subject's similarity is >= 0.5."""
    from facesense.imageio import decode_image

    plugins = parse_plugins(face_plugins)
    upload = _upload(request, file)
    image = decode_image(upload.data, name=upload.filename)
    return CompreFaceService.of(request).recognize(
        image,
        limit=limit,
        det_prob_threshold=det_prob_threshold,
        prediction_count=prediction_count,
        plugins=plugins,
        status=status,
    )
