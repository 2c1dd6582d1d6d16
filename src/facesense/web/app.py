"""The FastAPI application behind ``facesense serve``: :func:`create_app`.

Routes:

* ``/api/...``: the REST API (:mod:`facesense.web.api`), schema at ``/api/openapi.json``;
* ``/api/unknowns/...``: recurring unknowns and their corrections (:mod:`facesense.web.api_unknowns`);
* ``/live``, ``/people``, ``/unknowns``, ``/events``, ``/api-docs``, ``/login``: server-rendered pages
  (:mod:`facesense.web.pages`) with a little plain JavaScript;
* ``/static/<name>``: the pages' CSS, script and icon, served from memory (a fixed
  list; no request path ever reaches the file system).

Errors are always JSON ``{"error": "..."}``: facesense's exceptions map to statuses
(:func:`status_for`), anything unexpected is logged with its traceback and answered
with a bare 500.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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
from facesense.gallery.events import EventLog
from facesense.sinks.unknowns import SourceUnknownsSink, make_writer
from facesense.web.config import ServeConfig, is_loopback
from facesense.web.live import SourceRunner
from facesense.web.models import WebModels
from facesense.web.naming import EventNaming
from facesense.web.people import PeopleService
from facesense.web.recognition import RecognitionService
from facesense.web.security import (
    BodyLimitMiddleware,
    HostCheckMiddleware,
    SecurityHeadersMiddleware,
)
from facesense.web.unknowns import UnknownsService

if TYPE_CHECKING:
    from facesense.gallery.base import GalleryStore
    from facesense.recognize import LiveMatcher
    from facesense.sinks.unknowns import UnknownsWriter

logger = logging.getLogger(__name__)

__all__ = ["WebState", "create_app", "status_for"]

STATIC_FILES = {
    "style.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "unknowns.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
SOURCES_STOP_S = 1.0  # how long shutdown waits for the sources' threads, in all (a frame takes ~0.1 s)


@dataclass(eq=False)
class WebState:
    """Everything the routes share (``app.state.facesense``), one object per job.

    Attributes:
        config: the server settings.
        models: the shared detector and embedder.
        store: the gallery, open for the server's life.
        matcher: names faces from the gallery, refitting when it changes.
        people: people and samples (the People page, ``/api/people``).
        recognition: ``/api/detect`` and ``/api/recognize``.
        naming: naming unknown faces from the events page.
        events: the events log.
        runners: the watched sources.
        unknowns: the recurring unknowns (the Unknowns page, ``/api/unknowns``).
        unknowns_writer: stores the unknown tracks the sources record (``None``: not
            recording), closed after the sources stopped.
        relays: open connections to workers' video (``/api/fleet/{camera}/stream``),
            closed at shutdown.
    """

    config: ServeConfig
    models: WebModels
    store: GalleryStore
    matcher: LiveMatcher
    people: PeopleService
    recognition: RecognitionService
    naming: EventNaming
    events: EventLog
    runners: list[SourceRunner]
    unknowns: UnknownsService
    unknowns_writer: UnknownsWriter | None
    templates: Any
    static: dict[str, tuple[bytes, str]]
    started: float = field(default_factory=time.monotonic)
    closing: bool = False
    relays: set[Any] = field(default_factory=set)

    def begin_shutdown(self) -> None:
        """The server is stopping: end the MJPEG streams and ask every source to stop.

        Returns at once. ``facesense serve`` calls it as soon as uvicorn starts shutting
        down, so open streams do not hold the graceful shutdown for its whole period;
        the app's lifespan calls it again (it is idempotent) before waiting for the sources.
        """
        self.closing = True
        for runner in self.runners:
            runner.request_stop()
        for relay in list(self.relays):
            relay.close()

    @property
    def gallery_problem(self) -> str | None:
        """Why faces cannot be named from the gallery (a mismatched or broken file), or ``None``."""
        problem = self.matcher.problem
        return None if problem is None else str(problem)

    def close(self) -> None:
        """Close the unknowns, the events log and the gallery (after the sources stopped)."""
        try:
            if self.unknowns_writer is not None:
                self.unknowns_writer.close()  # what the sources recorded last is written first
            self.unknowns.close()
        finally:
            self.events.close()
            self.store.close()


def status_for(exc: FacesenseError) -> int:
    """The HTTP status of a facesense error."""
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, PayloadTooLargeError):
        return 413
    if isinstance(exc, ModelMismatchError):
        return 409
    if isinstance(exc, ImageError):
        return 415
    if isinstance(exc, ConfigError):
        return 422
    if isinstance(exc, EnrollmentError):
        return 409
    if isinstance(exc, (GalleryError, ModelError)):
        return 503
    return 500


def _load_static() -> dict[str, tuple[bytes, str]]:
    base = resources.files("facesense.web") / "static"
    return {name: ((base / name).read_bytes(), media) for name, media in STATIC_FILES.items()}


def _templates() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("facesense.web", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["short_source"] = short_source
    return env


def short_source(source: str) -> str:
    """A source id for display: the file or folder name of a path, a URL or camera as is."""
    if "://" in source or source.startswith("camera:"):
        return source
    return source.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1] or source


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path", "form")]
        where = ".".join(loc)
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return "; ".join(parts) or "invalid request"


def create_app(
    config: ServeConfig,
    *,
    models: WebModels | None = None,
    start_sources: bool = True,
    warm_up: bool = False,
) -> FastAPI:
    """Build the web app.

    Opens the gallery (created when missing) and the events log for the app's life;
    they are closed when the app shuts down.

    Args:
        config: the server settings.
        models: the detector and embedder; built from ``config`` (on first use) by default.
        start_sources: start watching ``config.sources`` when the app starts (its lifespan).
        warm_up: load the models in the background as the app starts.

    Raises:
        GalleryError: the gallery or the events file cannot be opened.
        ConfigError: bad settings, or a gallery URL facesense does not support.
    """
    from facesense import __version__
    from facesense.gallery import open_event_log, open_gallery
    from facesense.recognize import LiveMatcher

    if models is None:
        models = WebModels(min_face_px=config.min_face_px, detector=config.detector)
    with contextlib.ExitStack() as on_error:
        store = open_gallery(config.db, create=True)
        on_error.callback(store.close)
        events = open_event_log(
            config.gallery, path=config.events_path, keep_events=config.keep_events, keep_days=config.keep_days
        )
        on_error.callback(events.close)
        threshold: float | str = "auto" if config.threshold is None else config.threshold
        matcher = LiveMatcher(store, models.model_id, threshold=threshold)
        on_error.pop_all()  # the app owns them now (closed by its lifespan)
    runners = _runners(config, models, matcher, events)
    writer = None
    if config.record_unknowns and runners:
        writer = make_writer(config.gallery, models.model_id)
        for runner in runners:
            runner.extra_sinks.append(SourceUnknownsSink(writer, models.model_id))
    state = WebState(
        config=config,
        models=models,
        store=store,
        matcher=matcher,
        people=PeopleService(store, models, on_rename=events.rename),
        recognition=RecognitionService(models, matcher),
        naming=EventNaming(store, events, models.model_id, analyzer=lambda: models.analyzer),
        events=events,
        runners=runners,
        unknowns=UnknownsService(config.gallery, store, models, on_enrolled=matcher.invalidate),
        unknowns_writer=writer,
        templates=_templates(),
        static=_load_static(),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if warm_up:
            threading.Thread(target=_warm, args=(models, matcher), name="facesense-warm-up", daemon=True).start()
        if start_sources:
            for runner in runners:
                runner.start()
        try:
            yield
        finally:
            state.begin_shutdown()
            await run_in_threadpool(_join_all, runners, SOURCES_STOP_S)
            for broker in {id(r.broker): r.broker for r in runners if r.broker is not None}.values():
                broker.close()
            state.close()

    app = FastAPI(
        title="facesense",
        version=__version__,
        summary="Face detection and recognition: REST API of facesense serve",
        lifespan=lifespan,
        openapi_url=None,  # served by facesense.web.api behind the token check
        docs_url=None,
        redoc_url=None,
    )
    app.state.facesense = state

    # Outermost last: security headers wrap everything, including the 413s.
    allowed = None if config.token is not None else frozenset({*LOOPBACK_NAMES, config.host})
    if config.token is None and not is_loopback(config.host):  # pragma: no cover - ServeConfig refuses it
        raise ConfigError("a non-loopback host needs a token")
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_request_bytes)
    app.add_middleware(HostCheckMiddleware, allowed_hosts=allowed)
    app.add_middleware(SecurityHeadersMiddleware)

    @app.exception_handler(FacesenseError)
    async def _facesense_error(request: Request, exc: FacesenseError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            logger.error("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"error": str(exc)}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such page: {request.url.path}"
        return JSONResponse({"error": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _validation_message(exc)}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal server error"}, status_code=500)

    from facesense.web import api, api_unknowns, compreface, fleet, pages

    app.include_router(api.health_router)
    app.include_router(api.router)
    app.include_router(api_unknowns.router)
    app.include_router(compreface.router)
    app.include_router(fleet.router)
    app.include_router(pages.router)
    return app


def _runners(config: ServeConfig, models: WebModels, matcher: LiveMatcher, events: Any) -> list[SourceRunner]:
    """One runner per ``--source`` and per configured camera.

    With several, they share one :class:`~facesense.multicam.InferenceBroker`: one
    inference thread runs every model call (one thread budget, embeddings batched
    across sources). A camera with its own detector kind or minimum face size gets its
    own detector, built once per distinct setting.
    """
    count = len(config.sources) + len(config.cameras)
    broker = None
    if count > 1:
        from facesense.multicam import InferenceBroker

        broker = InferenceBroker()
    common: dict[str, Any] = {"loop": config.loop, "unknown_after_frames": config.unknown_after_frames, "broker": broker}
    runners = [
        SourceRunner(i, spec, models, matcher, events, every=config.every, **common)
        for i, spec in enumerate(config.sources)
    ]
    detectors: dict[tuple[str, float | None], Any] = {}
    for cam in config.cameras:
        kind = cam.detector or config.detector
        min_face = cam.min_face_px if cam.min_face_px is not None else config.min_face_px
        detector = None
        if (kind, min_face) != (config.detector, config.min_face_px):
            if (kind, min_face) not in detectors:
                from facesense.detect import make_detector

                detectors[kind, min_face] = make_detector(kind, use="video", min_face_px=min_face)
            detector = detectors[kind, min_face]
        runners.append(
            SourceRunner(len(runners), cam.url, models, matcher, events, every=cam.every, name=cam.name, detector=detector, **common)
        )
    return runners


def _warm(models: WebModels, matcher: LiveMatcher) -> None:
    start = time.monotonic()
    try:
        models.warm_up()
    except FacesenseError as exc:
        logger.error("cannot load the models: %s", exc)
    else:
        logger.info("models ready (%.1f s)", time.monotonic() - start)
    try:
        matcher.refresh()
    except FacesenseError as exc:  # the matcher logs it and keeps it for the pages
        logger.debug("the gallery cannot name faces yet: %s", exc)


def _join_all(runners: list[SourceRunner], timeout_s: float) -> None:
    """Wait up to ``timeout_s`` in all for the sources' threads (already asked to stop).

    A source still opening a stream sits in OpenCV's blocking open for up to its open
    timeout (10 s) and cannot be interrupted; it is left behind (its thread is a
    daemon), so a server whose cameras are unreachable still stops at once.
    """
    deadline = time.monotonic() + timeout_s
    for runner in runners:
        runner.join(max(0.0, deadline - time.monotonic()))
    stuck = [runner.source_id for runner in runners if runner.alive]
    if stuck:
        logger.info("not waiting for %d source(s) still opening: %s", len(stuck), ", ".join(stuck))
