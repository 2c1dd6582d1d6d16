"""The dashboard's pages: server-rendered HTML (Jinja2, autoescaped) plus ``app.js``.

With a token, a page request without a session cookie is sent to ``/login``, which
sets the cookie. The pages change things through the API with ``fetch``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from facesense.gallery.events import EVENT_TYPES, EventQuery
from facesense.types import EventType
from facesense.web.api import event_out, person_out, sample_out, state_of
from facesense.web.security import (
    SESSION_COOKIE,
    check_token,
    is_authorized,
    safe_next,
    session_value,
)

__all__ = ["PERIODS", "router"]

logger = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

PERIODS = {"15m": ("Last 15 minutes", 900), "1h": ("Last hour", 3600), "24h": ("Last 24 hours", 86400), "7d": ("Last 7 days", 604800)}
EVENTS_PER_PAGE = 48
LOGIN_FAILURE_DELAY_S = 0.5


def _render(request: Request, template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    state = state_of(request)
    html = state.templates.get_template(template).render(
        has_token=state.config.token is not None,
        path=request.url.path,
        **context,
    )
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})


def _login_redirect(request: Request) -> Response | None:
    """A redirect to the login page when the request is not logged in, else ``None``."""
    if is_authorized(request, state_of(request).config.token):
        return None
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


@router.get("/")
def index() -> Response:
    return RedirectResponse("/live", status_code=303)


@router.get("/static/{name}")
def static(request: Request, name: str) -> Response:
    item = state_of(request).static.get(name)
    if item is None:
        return Response(status_code=404)
    data, media = item
    return Response(content=data, media_type=media, headers={"Cache-Control": "no-cache"})


@router.get("/favicon.ico")
def favicon(request: Request) -> Response:
    data, media = state_of(request).static["favicon.svg"]
    return Response(content=data, media_type=media)


# --- login --------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    target = safe_next(next, "/live")
    if state_of(request).config.token is None or is_authorized(request, state_of(request).config.token):
        return RedirectResponse(target, status_code=303)
    return _render(request, "login.html", title="Log in", page="login", next=target, error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    state = state_of(request)
    form = await request.form()
    target = safe_next(str(form.get("next") or ""), "/live")
    token = state.config.token
    if token is None:
        return RedirectResponse(target, status_code=303)
    if not check_token(str(form.get("token") or ""), token):
        await asyncio.sleep(LOGIN_FAILURE_DELAY_S)
        return _render(request, "login.html", status_code=401, title="Log in", page="login", next=target, error="Wrong token.")
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_value(token),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- pages ----------------------------------------------------------------------------


@router.get("/live")
def live(request: Request) -> Response:
    if (redirect := _login_redirect(request)) is not None:
        return redirect
    state = state_of(request)
    sources = [r.info() for r in state.runners]
    fleet: list[dict[str, Any]] = []
    if state.config.gallery.kind == "postgresql":
        from facesense.errors import GalleryError
        from facesense.fleet.leases import camera_leases

        try:
            fleet = [c.to_dict() for c in camera_leases(state.config.gallery.url)]
        except GalleryError as exc:  # the page still shows this server's own sources
            logger.warning("cannot list the fleet's cameras: %s", exc)
    return _render(request, "live.html", title="Live", page="live", sources=sources, fleet=fleet)


@router.get("/people")
def people(request: Request) -> Response:
    if (redirect := _login_redirect(request)) is not None:
        return redirect
    state = state_of(request)
    everyone = state.people.people()
    by_name: dict[str, list[dict[str, Any]]] = {p.name: [] for p in everyone}
    ids = {p.name: p.id for p in everyone}
    for s in state.people.all_samples():
        if s.person in by_name:
            by_name[s.person].append(sample_out(ids[s.person], s))
    cards = [{**person_out(p), "faces": by_name.get(p.name, [])} for p in everyone]
    return _render(request, "people.html", title="People", page="people", people=cards, problem=state.gallery_problem)


@router.get("/unknowns")
def unknowns(request: Request, all: bool = False) -> Response:
    if (redirect := _login_redirect(request)) is not None:
        return redirect
    from facesense.errors import FacesenseError

    state = state_of(request)
    problem = None
    clusters: list[dict[str, Any]] = []
    total, min_size = 0, 2
    try:
        clusters, total, min_size = state.unknowns.clusters(show_all=all, records=True)
    except FacesenseError as exc:  # the page says so instead of a bare JSON error
        logger.warning("the unknowns page cannot read the unknowns: %s", exc)
        problem = f"cannot read the unknowns: {exc}"
    names = sorted(p.name for p in state.people.people())
    return _render(
        request,
        "unknowns.html",
        title="Unknowns",
        page="unknowns",
        clusters=clusters,
        total=total,
        min_size=min_size,
        show_all=all,
        names=names,
        problem=problem,
        recording=state.unknowns_writer is not None,
    )


@router.get("/events")
def events(
    request: Request,
    name: str | None = None,
    type: str | None = None,
    period: str | None = None,
    page: int = Query(1, ge=1),
) -> Response:
    if (redirect := _login_redirect(request)) is not None:
        return redirect
    state = state_of(request)
    name = name or None
    kind = EventType(type) if type in EVENT_TYPES else None
    span = PERIODS.get(period or "")
    since = time.time() - span[1] if span else None
    result = state.events.query(EventQuery(name=name, type=kind, since=since), page=page, per_page=EVENTS_PER_PAGE)
    shown = (("name", name), ("type", kind.value if kind else None), ("period", period if span else None))
    filters = {k: v for k, v in shown if v}

    def link(p: int) -> str:
        return "/events?" + urlencode({**filters, "page": p})

    names = sorted({p.name for p in state.people.people()} | ({name} if name and name != "unknown" else set()))
    return _render(
        request,
        "events.html",
        title="Events",
        page="events",
        events=[event_out(e) for e in result.events],
        result=result,
        names=names,
        types=EVENT_TYPES,
        periods=PERIODS,
        filters={"name": None, "type": None, "period": None, **filters},
        filtered=bool(filters),
        prev_link=link(result.page - 1) if result.page > 1 else None,
        next_link=link(result.page + 1) if result.page < result.pages else None,
    )


@router.get("/api-docs")
async def api_docs(request: Request) -> Response:
    if (redirect := _login_redirect(request)) is not None:
        return redirect
    schema = await run_in_threadpool(request.app.openapi)
    operations = []
    for path, methods in schema.get("paths", {}).items():
        for method, op in methods.items():
            params = [
                {"name": p.get("name"), "where": p.get("in"), "description": p.get("description", "")}
                for p in op.get("parameters", [])
            ]
            body = op.get("requestBody", {}).get("content", {})
            operations.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": op.get("summary", ""),
                    "description": op.get("description", "").replace("`", ""),
                    "params": params,
                    "body": ", ".join(body),
                }
            )
    return _render(request, "api.html", title="API", page="api", operations=operations, version=schema["info"]["version"])
