"""The REST API under ``/api`` (OpenAPI schema at ``/api/openapi.json``).

Every route but ``GET /api/health`` needs the token when the server has one
(``Authorization: Bearer <token>``, or the pages' session cookie). Errors are JSON
``{"error": "..."}``. Images are uploaded as ``multipart/form-data`` (field ``file``,
or ``files`` for several) and checked by decoding them, whatever their name says.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from facesense.errors import ConfigError, NotFoundError, PayloadTooLargeError
from facesense.gallery.events import EVENT_TYPES, EventQuery, StoredEvent
from facesense.types import EventType
from facesense.web.people import Upload, clean_filename
from facesense.web.security import is_authorized

__all__ = ["STREAM_INTERVAL_S", "health_router", "router", "state_of"]

STREAM_INTERVAL_S = 0.04  # the MJPEG stream checks for a new frame this often (at most 25 fps)
JPEG = "image/jpeg"


def state_of(request: Request) -> Any:
    """The app's :class:`facesense.web.app.WebState`."""
    return request.app.state.facesense


def require_auth(request: Request) -> None:
    """A dependency: 401 unless the request carries the token (or a session cookie)."""
    from starlette.exceptions import HTTPException

    if not is_authorized(request, state_of(request).config.token):
        raise HTTPException(
            status_code=401,
            detail="missing or invalid token (send Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": "Bearer"},
        )


router = APIRouter(prefix="/api", dependencies=[Depends(require_auth)])
health_router = APIRouter(prefix="/api")


# --- schemas (for the OpenAPI document) -----------------------------------------------


class ErrorBody(BaseModel):
    error: str = Field(description="What went wrong, in one line.")


class RecognizedFace(BaseModel):
    box: list[float] = Field(description="[x1, y1, x2, y2] in pixels.")
    score: float = Field(description="Detector confidence.")
    name: str = Field(description='The person, or "unknown".')
    distance: float | None = Field(description="Distance to the matched identity (None when nobody is enrolled).")
    confidence: float = Field(description="How sure the name is, 0-1.")
    # Only with ?correctable=true (absent otherwise, so the plain answer stays that of the CLI).
    event_id: int | None = Field(
        default=None,
        description=(
            "Only with ?correctable=true: the event this face was kept as (`recognized` when it is named, "
            "`unknown` otherwise, source `upload`); null when it could not be stored."
        ),
    )
    can_correct: bool = Field(
        default=False,
        description='Only with ?correctable=true: the name can be corrected ("not X" / "this is Y") with POST /api/events/{event_id}/correct.',
    )
    can_name: bool = Field(
        default=False,
        description="Only with ?correctable=true: an unknown face that can be named (enrolled) with POST /api/events/{event_id}/name.",
    )


class RecognizeResponse(BaseModel):
    faces: list[RecognizedFace]


class DetectedFace(BaseModel):
    box: list[float] = Field(description="[x1, y1, x2, y2] in pixels.")
    score: float
    landmarks: list[list[float]] = Field(description="Five (x, y) points: eyes, nose, mouth corners.")


class DetectResponse(BaseModel):
    width: int
    height: int
    faces: list[DetectedFace]


class PersonOut(BaseModel):
    id: int
    name: str
    created: str
    samples: int
    thumbnail_url: str


class SampleOut(BaseModel):
    id: int
    added: str
    source: str | None = Field(description="Where the photo came from (a file name, upload:<sha256>, event:<id>).")
    box: list[float]
    thumbnail_url: str


class PersonDetail(PersonOut):
    faces: list[SampleOut]


class PeopleResponse(BaseModel):
    people: list[PersonOut]


class Outcome(BaseModel):
    file: str = Field(description="The uploaded file's name, as sent.")
    outcome: str = Field(
        description="added, unreadable, duplicate, no_face, several_faces, too_small or too_blurry."
    )
    detail: str
    sample_id: int | None


class EnrollResponse(BaseModel):
    person: PersonOut | None
    results: list[Outcome]


class RenameRequest(BaseModel):
    name: str = Field(description="The new name.", min_length=1, max_length=200)


class NameFaceRequest(BaseModel):
    name: str = Field(description="Who this is (a new or an enrolled person).", min_length=1, max_length=200)


class NameFaceResponse(BaseModel):
    person: PersonOut
    sample_id: int


class EventOut(BaseModel):
    id: int
    time: str = Field(description="When the server saw it, ISO 8601 UTC.")
    timestamp: float = Field(description="The same, epoch seconds.")
    source: str
    type: str = Field(description=f"One of {', '.join(EVENT_TYPES)}.")
    track_id: int | None
    name: str | None
    confidence: float | None
    box: list[float] | None
    frame: int | None
    media_time: float | None
    status: str | None
    message: str | None
    has_crop: bool
    can_name: bool = Field(description="An unknown face that can be named (enrolled).")
    sample_id: int | None
    can_correct: bool = Field(
        default=False, description='A face named somebody that can be corrected ("not X" / "this is Y").'
    )
    correction: str | None = Field(default=None, description='What was said about the face: "not X" or "is Y".')
    crop_url: str | None


class CorrectRequest(BaseModel):
    """Exactly one of ``not`` and ``is``."""

    model_config = ConfigDict(populate_by_name=True)

    not_: str | None = Field(
        default=None, alias="not", min_length=1, max_length=200,
        description="Who the face is not (an enrolled person; need not be the name it was recognised as).",
    )
    is_: str | None = Field(
        default=None, alias="is", min_length=1, max_length=200,
        description="Who the face is (an enrolled person): it becomes their sample and a negative of the name it was recognised as.",
    )  # fmt: skip


class CorrectionResponse(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    event_id: int
    correction: str = Field(description='"not X" or "is Y", as the event now records it.')
    not_: str = Field(alias="not", description="Whom the face is not (they got a negative).")
    is_: str | None = Field(alias="is", description='Whom the face is ("this is Y"), or null.')
    negative_id: int | None = Field(description="The new negative (null: the person had this face as a negative already).")
    sample_id: int | None = Field(description='The new sample of the "is" person, or null.')
    event: EventOut


class TrackCorrectionResponse(CorrectionResponse):
    source_id: int
    track_id: int = Field(description="The corrected track: it is identified again from its next detection.")


class NegativeOut(BaseModel):
    id: int
    person_id: int
    source: str = Field(description='Where the correction came from, e.g. "event 12".')
    model_id: str
    added: str
    thumbnail_url: str | None


class NegativesResponse(BaseModel):
    negatives: list[NegativeOut]


class EventsResponse(BaseModel):
    events: list[EventOut]
    page: int
    per_page: int
    total: int
    pages: int


class TrackOut(BaseModel):
    track_id: int | None
    name: str | None
    confidence: float
    box: list[float]
    state: str = Field(description="known, unknown, or pending (not identified yet).")
    event_id: int | None = Field(
        default=None,
        description="The recognized event the track's current name comes from (null while it is not named, or not stored).",
    )
    can_correct: bool = Field(
        default=False,
        description='The name can be corrected ("not X" / "this is Y"): POST /api/sources/{source_id}/tracks/{track_id}/correct.',
    )


class SourceOut(BaseModel):
    id: int
    name: str | None = Field(default=None, description="The camera's name (facesense.toml), or null for a --source.")
    source: str
    kind: str | None
    status: str = Field(description="starting, live, reconnecting, ended or error.")
    message: str | None
    fps: float
    frames: int
    dropped: int = Field(default=0, description="Frames dropped because processing was slower than the source.")
    lag_ms: float = Field(default=0.0, description="Newest frame: milliseconds from its decoding to the end of its processing.")
    tracks: list[TrackOut]
    stream_url: str
    snapshot_url: str


class FleetWorkerOut(BaseModel):
    id: str
    host: str | None
    pid: int | None


class FleetCameraOut(BaseModel):
    name: str
    url: str = Field(description="Without its password.")
    owner: str | None = Field(description="The worker id holding a live lease, or null.")
    token: int = Field(description="Fencing token of the current (or last) lease; 0: never claimed.")
    live: bool = Field(description="The lease has not expired (database clock).")
    state: str = Field(description="free, starting, running, failed, released or expired.")
    worker: FleetWorkerOut | None
    expires_at: str | None
    heartbeat_at: str | None
    claimed_at: str | None
    stats: dict[str, Any] = Field(description="What its worker last reported: fps, lag_ms, dropped, frames, token ...")


class SourcesResponse(BaseModel):
    sources: list[SourceOut]
    fleet: list[FleetCameraOut] = Field(
        default_factory=list,
        description="With a PostgreSQL gallery: every camera of the fleet's lease table (facesense worker), on any machine.",
    )


class HealthResponse(BaseModel):
    status: str
    version: str
    uptime_s: float


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or invalid token."},
    404: {"model": ErrorBody, "description": "No such thing."},
    413: {"model": ErrorBody, "description": "Upload too large."},
    415: {"model": ErrorBody, "description": "Not a readable image."},
    422: {"model": ErrorBody, "description": "Invalid request."},
}


# --- helpers ----------------------------------------------------------------------------


def person_out(p: Any) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "created": p.created,
        "samples": p.n_samples,
        "thumbnail_url": f"/api/people/{p.id}/thumbnail?v={p.n_samples}",
    }


def sample_out(person_id: int, s: Any) -> dict[str, Any]:
    source = s.source_path
    if source and not source.startswith(("upload:", "event:", "camera:")):
        source = clean_filename(source)  # a server path: show the file name only
    return {
        "id": s.id,
        "added": s.added,
        "source": source,
        "box": [round(float(v), 1) for v in s.xyxy],
        "thumbnail_url": f"/api/people/{person_id}/faces/{s.id}/thumbnail",
    }


def negative_out(person_id: int, n: Any) -> dict[str, Any]:
    return {
        "id": n.id,
        "person_id": person_id,
        "source": n.source,
        "model_id": n.model_id,
        "added": n.added,
        "thumbnail_url": f"/api/people/{person_id}/negatives/{n.id}/thumbnail" if n.thumbnail_jpeg else None,
    }


def _negative(request: Request, person_id: int, negative_id: int) -> Any:
    """One negative of one person (NotFoundError otherwise)."""
    state = state_of(request)
    person = state.people.person(person_id)
    for n in state.store.negative_records(person.name):
        if n.id == negative_id:
            return n
    raise NotFoundError(f"person {person_id} has no negative with id {negative_id}")


def event_out(e: StoredEvent) -> dict[str, Any]:
    out = e.to_dict()
    out["crop_url"] = f"/api/events/{e.id}/crop" if e.has_crop else None
    return out


def read_upload(upload: UploadFile, limit: int) -> Upload:
    """The bytes of one uploaded file, refusing more than ``limit``."""
    name = clean_filename(upload.filename)
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLargeError(f"{name}: over the {limit / (1024 * 1024):g} MB upload limit")
    return Upload(name, data)


def decode_upload(upload: UploadFile, limit: int) -> Any:
    from facesense.imageio import decode_image

    up = read_upload(upload, limit)
    return decode_image(up.data, name=up.filename)


def parse_time(value: str | None, what: str) -> float | None:
    """Epoch seconds from epoch seconds or ISO 8601 (UTC when no offset is given)."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"{what}: expected epoch seconds or an ISO 8601 time, got {value!r}") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def image_response(data: bytes, *, cache: str = "no-cache") -> Response:
    return Response(content=data, media_type=JPEG, headers={"Cache-Control": cache})


# --- health -------------------------------------------------------------------------------


@health_router.get("/health", response_model=HealthResponse, summary="Is the server up?")
def health(request: Request) -> dict[str, Any]:
    """Always answers (no token needed); says nothing about the gallery."""
    from facesense import __version__

    state = state_of(request)
    return {"status": "ok", "version": __version__, "uptime_s": round(time.monotonic() - state.started, 1)}


# --- the schema ------------------------------------------------------------------------------


@router.get("/openapi.json", include_in_schema=False)
async def openapi_schema(request: Request) -> JSONResponse:
    """The OpenAPI document of this API (behind the token, like the ``/api-docs`` page)."""
    schema = await run_in_threadpool(request.app.openapi)
    return JSONResponse(schema)


# --- recognition ----------------------------------------------------------------------------


@router.post(
    "/recognize",
    response_model=RecognizeResponse,
    response_model_exclude_unset=True,  # event_id & co. only when asked for
    responses=ERRORS,
    summary="Name every face in an image",
)
def recognize(
    request: Request,
    file: Annotated[UploadFile, File(description="An image (JPEG, PNG, ...).")],
    correctable: Annotated[
        bool,
        Query(
            description=(
                "Keep every face as an event of the events log (source `upload`: the face's crop and "
                "embedding, not the image), so that a wrong name can be corrected with "
                "POST /api/events/{event_id}/correct and an unknown face named from the events page. "
                "Each face then also has `event_id`, `can_correct` and `can_name`. Off: nothing is stored."
            )
        ),
    ] = False,
) -> dict[str, Any]:
    """The same JSON as `facesense recognize --json` (without the path): one record per
    face with its box, detector score, name (`"unknown"` for strangers), distance and
    confidence. Every face is unknown while nobody is enrolled. With `?correctable=true`
    each face is also kept as an event (`recognized` or `unknown`) and its record says
    which (`event_id`); the events log's limits (how many, how old) apply to them."""
    state = state_of(request)
    image = decode_upload(file, state.config.max_upload_bytes)
    return {"faces": state.recognition.recognize(image, events=state.events if correctable else None)}


@router.post("/detect", response_model=DetectResponse, responses=ERRORS, summary="Find faces in an image")
def detect(request: Request, file: Annotated[UploadFile, File(description="An image (JPEG, PNG, ...).")]) -> dict[str, Any]:
    """Boxes, scores and five landmarks per face, as `facesense detect --json`."""
    state = state_of(request)
    image = decode_upload(file, state.config.max_upload_bytes)
    return {"width": int(image.shape[1]), "height": int(image.shape[0]), "faces": state.recognition.detect(image)}


# --- people -------------------------------------------------------------------------------------


@router.get("/people", response_model=PeopleResponse, summary="Everybody in the gallery")
def list_people(request: Request) -> dict[str, Any]:
    return {"people": [person_out(p) for p in state_of(request).people.people()]}


@router.post(
    "/people",
    response_model=EnrollResponse,
    status_code=201,
    responses={**ERRORS, 409: {"model": ErrorBody, "description": "The name is taken."}},
    summary="Enroll a new person from photos",
)
def create_person(
    request: Request,
    name: Annotated[str, Form(description="The person's name.")],
    files: Annotated[list[UploadFile], File(description="One or more photos, each with exactly this person's face.")],
) -> Any:
    """Each photo gets an outcome: `added`, or why not (`unreadable`, `duplicate`,
    `no_face`, `several_faces`, `too_small`, `too_blurry`). When no photo is
    usable nobody is created and the answer is 422 with the outcomes."""
    state = state_of(request)
    uploads = [read_upload(f, state.config.max_upload_bytes) for f in files]
    person, outcomes = state.people.create_person(name, uploads)
    results = [o.to_dict() for o in outcomes]
    if person is None:
        return JSONResponse(
            status_code=422,
            content={"error": "none of the photos could be enrolled; nobody was added", "results": results},
        )
    return {"person": person_out(person), "results": results}


@router.get("/people/{person_id}", response_model=PersonDetail, responses=ERRORS, summary="One person and their face samples")
def get_person(request: Request, person_id: int) -> dict[str, Any]:
    people = state_of(request).people
    person = people.person(person_id)
    return {**person_out(person), "faces": [sample_out(person_id, s) for s in people.samples(person_id)]}


@router.patch(
    "/people/{person_id}",
    response_model=PersonOut,
    responses={**ERRORS, 409: {"model": ErrorBody, "description": "The name is taken."}},
    summary="Rename a person",
)
def rename_person(request: Request, person_id: int, body: RenameRequest) -> dict[str, Any]:
    return person_out(state_of(request).people.rename(person_id, body.name))


@router.delete("/people/{person_id}", responses=ERRORS, summary="Remove a person and all their samples")
def delete_person(request: Request, person_id: int) -> dict[str, Any]:
    removed = state_of(request).people.delete(person_id)
    return {"deleted": person_id, "samples_removed": removed}


@router.get(
    "/people/{person_id}/thumbnail",
    responses={200: {"content": {JPEG: {}}}, **ERRORS},
    response_class=Response,
    summary="A person's thumbnail (JPEG)",
)
def person_thumbnail(request: Request, person_id: int) -> Response:
    return image_response(state_of(request).people.thumbnail(person_id))


@router.post("/people/{person_id}/faces", response_model=EnrollResponse, responses=ERRORS, summary="Add photos to a person")
def add_faces(
    request: Request,
    person_id: int,
    files: Annotated[list[UploadFile], File(description="One or more photos of this person.")],
) -> dict[str, Any]:
    """Outcomes as for `POST /api/people`."""
    state = state_of(request)
    uploads = [read_upload(f, state.config.max_upload_bytes) for f in files]
    person, outcomes = state.people.add_faces(person_id, uploads)
    return {"person": person_out(person), "results": [o.to_dict() for o in outcomes]}


@router.get(
    "/people/{person_id}/faces/{sample_id}/thumbnail",
    responses={200: {"content": {JPEG: {}}}, **ERRORS},
    response_class=Response,
    summary="One face sample's thumbnail (JPEG)",
)
def sample_thumbnail(request: Request, person_id: int, sample_id: int) -> Response:
    sample = state_of(request).people.sample(person_id, sample_id)
    if not sample.thumbnail_jpeg:
        raise NotFoundError(f"sample {sample_id} has no thumbnail")
    return image_response(sample.thumbnail_jpeg, cache="private, max-age=3600")


@router.delete("/people/{person_id}/faces/{sample_id}", responses=ERRORS, summary="Remove one face sample")
def delete_sample(request: Request, person_id: int, sample_id: int) -> dict[str, Any]:
    """Removing a person's last sample removes the person (`person_removed`)."""
    still = state_of(request).people.remove_sample(person_id, sample_id)
    return {"deleted": sample_id, "person_removed": not still}


@router.get(
    "/people/{person_id}/negatives",
    response_model=NegativesResponse,
    responses=ERRORS,
    summary='Faces that are not this person (corrections: "not X")',
)
def list_negatives(request: Request, person_id: int) -> dict[str, Any]:
    state = state_of(request)
    person = state.people.person(person_id)
    return {"negatives": [negative_out(person_id, n) for n in state.store.negative_records(person.name)]}


@router.get(
    "/people/{person_id}/negatives/{negative_id}/thumbnail",
    responses={200: {"content": {JPEG: {}}}, **ERRORS},
    response_class=Response,
    summary="One negative's thumbnail (JPEG)",
)
def negative_thumbnail(request: Request, person_id: int, negative_id: int) -> Response:
    negative = _negative(request, person_id, negative_id)
    if not negative.thumbnail_jpeg:
        raise NotFoundError(f"negative {negative_id} has no thumbnail")
    return image_response(negative.thumbnail_jpeg, cache="private, max-age=3600")


@router.delete(
    "/people/{person_id}/negatives/{negative_id}",
    responses=ERRORS,
    summary="Remove one negative (take a correction back)",
)
def delete_negative(request: Request, person_id: int, negative_id: int) -> dict[str, Any]:
    _negative(request, person_id, negative_id)
    state = state_of(request)
    state.store.remove_negative(negative_id)
    state.matcher.invalidate()
    return {"deleted": negative_id}


# --- events -----------------------------------------------------------------------------------------


@router.get("/events", response_model=EventsResponse, responses=ERRORS, summary="Recent events, newest first")
def list_events(
    request: Request,
    page: int = Query(1, ge=1, description="Page number, from 1."),
    per_page: int = Query(50, ge=1, le=500, description="Events per page."),
    name: str | None = Query(None, description='Only this person ("unknown": faces nobody was named for).'),
    type: str | None = Query(None, description=f"Only this type: {', '.join(EVENT_TYPES)}."),
    source: str | None = Query(None, description="Only this source."),
    since: str | None = Query(None, description="From this time (epoch seconds or ISO 8601)."),
    until: str | None = Query(None, description="Up to this time (epoch seconds or ISO 8601)."),
) -> dict[str, Any]:
    from facesense.choices import parse_choice

    store = state_of(request).events
    query = EventQuery(
        name=name or None,
        type=parse_choice(EventType, type, "event type") if type else None,
        source=source or None,
        since=parse_time(since, "since"),
        until=parse_time(until, "until"),
    )
    result = store.query(query, page=page, per_page=per_page)
    return {
        "events": [event_out(e) for e in result.events],
        "page": result.page,
        "per_page": result.per_page,
        "total": result.total,
        "pages": result.pages,
    }


@router.get("/events/{event_id}", response_model=EventOut, responses=ERRORS, summary="One event")
def get_event(request: Request, event_id: int) -> dict[str, Any]:
    event = state_of(request).events.get(event_id)
    if event is None:
        raise NotFoundError(f"no event with id {event_id}")
    return event_out(event)


@router.get(
    "/events/{event_id}/crop",
    responses={200: {"content": {JPEG: {}}}, **ERRORS},
    response_class=Response,
    summary="The face crop of an event (JPEG)",
)
def event_crop(request: Request, event_id: int) -> Response:
    data = state_of(request).events.crop(event_id)
    if data is None:
        raise NotFoundError(f"event {event_id} has no face crop")
    return image_response(data, cache="private, max-age=3600")


@router.post(
    "/events/{event_id}/name",
    response_model=NameFaceResponse,
    responses={**ERRORS, 409: {"model": ErrorBody, "description": "Nothing to name, or named already."}},
    summary="Name an unknown face (enrolls it)",
)
def name_face(request: Request, event_id: int, body: NameFaceRequest) -> dict[str, Any]:
    """The face stored with an `unknown` event becomes a sample of `name`; a new
    name creates the person."""
    person, sample_id = state_of(request).naming.name_event(event_id, body.name)
    return {"person": person_out(person), "sample_id": sample_id}


@router.post(
    "/events/{event_id}/correct",
    response_model=CorrectionResponse,
    responses={
        **ERRORS,
        409: {"model": ErrorBody, "description": "No face to correct, corrected already, or the face fails the enrollment checks."},
    },
    summary='Correct a recognised face: {"not": "X"} or {"is": "Y"}',
)
def correct_face(request: Request, event_id: int, body: CorrectRequest) -> dict[str, Any]:
    """`{"not": "X"}` stores the face as a negative of X (it is not X; X must be
    enrolled). `{"is": "Y"}` makes it a sample of Y (after the enrollment checks on
    its crop) and a negative of the name it was recognised as, in one transaction.
    Matching applies the correction as soon as the gallery is re-read."""
    state = state_of(request)
    correction = state.naming.correct_event(event_id, not_name=body.not_, is_name=body.is_)
    state.matcher.invalidate()
    for runner in state.runners:  # a track still on screen under this name is identified again
        runner.event_corrected(event_id)
    event = state.events.get(event_id)
    if event is None:
        raise NotFoundError(f"no event with id {event_id}")
    return {**correction.to_dict(), "event": event_out(event)}


# --- sources --------------------------------------------------------------------------------------------


@router.get("/sources", response_model=SourcesResponse, summary="The watched sources and what they see")
def list_sources(request: Request) -> dict[str, Any]:
    state = state_of(request)
    fleet: list[dict[str, Any]] = []
    location = state.config.gallery
    if location.kind == "postgresql":
        from facesense.fleet.leases import camera_leases

        fleet = [camera.to_dict() for camera in camera_leases(location.url)]
    return {"sources": [r.info() for r in state.runners], "fleet": fleet}


def _runner(request: Request, source_id: int) -> Any:
    runners = state_of(request).runners
    if not 0 <= source_id < len(runners):
        raise NotFoundError(f"no source with id {source_id}")
    return runners[source_id]


@router.get("/sources/{source_id}", response_model=SourceOut, responses=ERRORS, summary="One source")
def get_source(request: Request, source_id: int) -> dict[str, Any]:
    return dict(_runner(request, source_id).info())


@router.get(
    "/sources/{source_id}/snapshot",
    responses={200: {"content": {JPEG: {}}}, **ERRORS, 503: {"model": ErrorBody, "description": "No frame yet."}},
    response_class=Response,
    summary="The newest annotated frame (JPEG)",
)
def source_snapshot(request: Request, source_id: int) -> Response:
    from starlette.exceptions import HTTPException

    latest = _runner(request, source_id).latest_jpeg()
    if latest is None:
        raise HTTPException(status_code=503, detail="no frame yet")
    return image_response(latest[1], cache="no-store")


@router.get(
    "/sources/{source_id}/stream",
    responses={200: {"content": {"multipart/x-mixed-replace": {}}}, **ERRORS},
    response_class=StreamingResponse,
    summary="The annotated video as an MJPEG stream",
)
async def source_stream(request: Request, source_id: int) -> StreamingResponse:
    """`multipart/x-mixed-replace` JPEG frames, for an `<img>` element."""
    runner = _runner(request, source_id)
    state = state_of(request)

    async def frames() -> Any:
        last = -1
        while not state.closing:
            if runner.seq != last:
                latest = await run_in_threadpool(runner.latest_jpeg)
                if latest is not None and latest[0] != last:
                    last, jpeg = latest
                    yield (
                        b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                        + str(len(jpeg)).encode("ascii")
                        + b"\r\n\r\n"
                        + jpeg
                        + b"\r\n"
                    )
            await asyncio.sleep(STREAM_INTERVAL_S)

    return StreamingResponse(
        frames(),
        media_type="multipart/x-mixed-replace; boundary=frame",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.post(
    "/sources/{source_id}/tracks/{track_id}/correct",
    response_model=TrackCorrectionResponse,
    responses={
        **ERRORS,
        409: {
            "model": ErrorBody,
            "description": "The track left or is not named anybody, its name was corrected already, or the face fails the enrollment checks.",
        },
    },
    summary='Correct the name of a face on screen: {"not": "X"} or {"is": "Y"}',
)
def correct_track(
    request: Request,
    source_id: int,
    track_id: int,
    body: CorrectRequest,
    event_id: int | None = Query(
        None, description="The track's event_id as the client saw it: 409 when the track has been named anew since."
    ),
) -> dict[str, Any]:
    """The correction of `POST /api/events/{event_id}/correct`, applied to the event the
    track's current name came from (its `event_id` in `GET /api/sources`). The track is
    then identified again with the corrected gallery: it shows as `pending` at once and
    gets its new name from its next detection. 404: no such source or track; 409: the
    track left (the answer names its event, which the events page can still correct),
    is not named anybody, is being identified again after a correction, or (`event_id`
    given) has been named anew since the client looked."""
    state = state_of(request)
    runner = _runner(request, source_id)
    target = runner.correctable_event(track_id, expected=event_id)
    correction = state.naming.correct_event(target, not_name=body.not_, is_name=body.is_)
    state.matcher.invalidate()
    runner.reidentify(track_id)
    event = state.events.get(target)
    if event is None:
        raise NotFoundError(f"no event with id {target}")
    return {**correction.to_dict(), "event": event_out(event), "source_id": source_id, "track_id": track_id}
