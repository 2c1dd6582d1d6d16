"""The fleet's cameras on any server: their live video, relayed from the worker running them.

A ``facesense worker --stream HOST:PORT`` serves its cameras' annotated video and
records each stream's address in the camera's lease row. ``GET /api/fleet/{camera}/stream``
(and ``/snapshot``) looks the camera up in the lease table (PostgreSQL gallery only),
opens the worker's stream with the fleet's token and passes the bytes on, so the
browser only ever talks to this server (same origin, same login), whichever machine
runs the camera. A camera that moves to another worker is followed on the next request.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException

from facesense.errors import NotFoundError
from facesense.web.api import ERRORS, image_response, require_auth, state_of

logger = logging.getLogger(__name__)

__all__ = ["fleet_stream_url", "router"]

UPSTREAM_TIMEOUT_S = 5.0
CHUNK_BYTES = 64 * 1024

router = APIRouter(prefix="/api/fleet", tags=["fleet"], dependencies=[Depends(require_auth)])


def fleet_stream_url(request: Request, camera: str) -> str:
    """The stream address the lease row of ``camera`` records.

    Raises:
        NotFoundError: no fleet (not a PostgreSQL gallery), no such camera, or it has
            no live video now (not running, or its worker runs without ``--stream``).
    """
    location = state_of(request).config.gallery
    if location.kind != "postgresql":
        raise NotFoundError("no fleet here: the gallery is not a PostgreSQL database")
    from facesense.fleet.leases import camera_leases

    for cam in camera_leases(location.url):
        if cam.name == camera:
            url = cam.stats.get("stream") if cam.live else None
            if not url:
                raise NotFoundError(f"camera {camera!r} has no live video now (not running, or its worker has no --stream)")
            return str(url)
    raise NotFoundError(f"no camera named {camera!r} in the fleet")


def _open(request: Request, url: str) -> Any:
    token = state_of(request).config.token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=UPSTREAM_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        raise HTTPException(status_code=502, detail=f"the worker's video answered {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HTTPException(status_code=502, detail=f"cannot reach the worker's video: {reason}") from None


@router.get("/{camera}/snapshot", responses={200: {"content": {"image/jpeg": {}}}, 502: {"description": "The worker cannot be reached."}, **ERRORS}, summary="A fleet camera's newest annotated frame")
def fleet_snapshot(request: Request, camera: str) -> Response:
    url = fleet_stream_url(request, camera).removesuffix("/stream") + "/snapshot"
    with _open(request, url) as upstream:
        return image_response(upstream.read(), cache="no-store")


@router.get(
    "/{camera}/stream",
    responses={200: {"content": {"multipart/x-mixed-replace": {}}}, 502: {"description": "The worker cannot be reached."}, **ERRORS},
    response_class=StreamingResponse,
    summary="A fleet camera's annotated video (MJPEG), relayed from its worker",
)
async def fleet_stream(request: Request, camera: str) -> StreamingResponse:
    """The worker's ``multipart/x-mixed-replace`` stream, passed on as it comes."""
    url = await run_in_threadpool(fleet_stream_url, request, camera)
    upstream = await run_in_threadpool(_open, request, url)
    state = state_of(request)
    state.relays.add(upstream)  # closed at shutdown even if the browser never leaves
    read = upstream.read1 if hasattr(upstream, "read1") else upstream.read

    async def chunks() -> AsyncIterator[bytes]:
        # An async generator: when the browser leaves, the cancellation lands here at
        # once and the worker's connection is closed (a blocked read ends with it).
        try:
            while not state.closing:
                data = await run_in_threadpool(read, CHUNK_BYTES)
                if not data:
                    return
                yield data
        except OSError as exc:
            logger.info("fleet camera %s: the worker's stream ended: %s", camera, exc)
        finally:
            _close(state, upstream)

    return StreamingResponse(
        chunks(),
        media_type=upstream.headers.get("Content-Type", "multipart/x-mixed-replace; boundary=frame"),
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        background=BackgroundTask(_close, state, upstream),  # also when the browser left before the first chunk
    )


def _close(state: Any, upstream: Any) -> None:
    state.relays.discard(upstream)
    upstream.close()
