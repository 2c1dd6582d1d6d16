"""A worker's cameras as live video: the newest annotated frame of each, over HTTP.

``facesense worker --stream HOST:PORT`` serves ``/cameras/<name>/stream`` (MJPEG,
``multipart/x-mixed-replace``) and ``/cameras/<name>/snapshot`` (one JPEG) for the
cameras it runs, and writes each camera's stream address into its lease row, so a
``facesense serve`` on any machine can relay it (``/api/fleet/<name>/stream``) to the
browser. With a token (``$FACESENSE_TOKEN``, the fleet's shared secret), requests
need ``Authorization: Bearer <token>``.

:class:`LatestFrames` keeps one frame per camera (never a queue), and encodes it to
JPEG on demand, once per frame, whoever asks; so a worker nobody watches spends
nothing on video.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from facesense.errors import ConfigError

if TYPE_CHECKING:
    from facesense.types import FrameResult

logger = logging.getLogger(__name__)

__all__ = ["FrameSink", "LatestFrames", "StreamServer", "parse_bind"]

JPEG_QUALITY = 80
STREAM_MAX_FPS = 15.0
BOUNDARY = "frame"


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``:PORT`` / ``PORT`` for every address) as ``(host, port)``.

    Raises:
        ConfigError: not ``HOST:PORT`` with a port in 0-65535.
    """
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--stream takes HOST:PORT (e.g. 0.0.0.0:8090), got {text!r}")
    return (host.strip("[]") or "0.0.0.0"), int(port)


@dataclass
class _Latest:
    result: FrameResult
    seq: int
    jpeg: bytes | None = None


class LatestFrames:
    """The newest frame of each camera, JPEG-encoded on demand (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frames: dict[str, _Latest] = {}

    def put(self, camera: str, result: FrameResult) -> None:
        """Make ``result`` the newest frame of ``camera``."""
        with self._lock:
            old = self._frames.get(camera)
            self._frames[camera] = _Latest(result, (old.seq + 1) if old is not None else 1)

    def drop(self, camera: str) -> None:
        """Forget ``camera`` (it stopped here)."""
        with self._lock:
            self._frames.pop(camera, None)

    def cameras(self) -> tuple[str, ...]:
        """The cameras with a frame."""
        with self._lock:
            return tuple(self._frames)

    def jpeg(self, camera: str) -> tuple[int, bytes] | None:
        """``(seq, JPEG)`` of ``camera``'s newest annotated frame; ``None`` when it has none."""
        with self._lock:
            latest = self._frames.get(camera)
            if latest is None:
                return None
            if latest.jpeg is not None:
                return latest.seq, latest.jpeg
            result, seq = latest.result, latest.seq
        import cv2

        from facesense.recognize import draw_faces

        ok, buf = cv2.imencode(".jpg", draw_faces(result.frame.image, result.faces), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:  # pragma: no cover - OpenCV encodes any uint8 BGR image
            return None
        data = buf.tobytes()
        with self._lock:
            if self._frames.get(camera) is latest:
                latest.jpeg = data
        return seq, data

    def sink(self, camera: str) -> FrameSink:
        """A sink that feeds ``camera``'s frames here."""
        return FrameSink(self, camera)


class FrameSink:
    """Hands each frame of one camera to a :class:`LatestFrames` (cheap: no encoding)."""

    def __init__(self, frames: LatestFrames, camera: str) -> None:
        self.frames = frames
        self.camera = camera

    def write(self, result: FrameResult) -> None:
        """Keep the frame as the camera's newest."""
        self.frames.put(self.camera, result)

    def close(self) -> None:
        """The camera stopped: its video is gone."""
        self.frames.drop(self.camera)


class StreamServer:
    """The HTTP server of a worker's live video (a daemon thread).

    Args:
        frames: where the cameras' newest frames are.
        host, port: where to listen (port 0: any free port).
        token: required as ``Authorization: Bearer <token>`` (``None``: open).
        advertise: the host name other machines reach this one by (default: ``host``,
            or this machine's name when ``host`` is every address).

    Raises:
        ConfigError: the address cannot be bound.
    """

    def __init__(
        self, frames: LatestFrames, host: str, port: int, *, token: str | None = None, advertise: str | None = None
    ) -> None:
        self.frames = frames
        self.token = token
        self._closed = threading.Event()
        handler = _handler(self)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigError(f"cannot serve video on {host}:{port}: {exc.strerror or exc}") from None
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        if advertise is None:
            import socket

            advertise = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
        self.base_url = f"http://{advertise}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="facesense-worker-video", daemon=True)

    def __repr__(self) -> str:
        return f"StreamServer({self.base_url})"

    def start(self) -> StreamServer:
        """Start serving (returns at once)."""
        self._thread.start()
        logger.info("live video of this worker's cameras at %s/cameras/<name>/stream", self.base_url)
        return self

    def url_for(self, camera: str) -> str:
        """The MJPEG stream address of ``camera`` (what the lease row records)."""
        return f"{self.base_url}/cameras/{quote(camera, safe='')}/stream"

    def close(self) -> None:
        """Stop serving; open streams end within a frame. Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    # -- the handler's work ---------------------------------------------------------
    def authorized(self, header: str | None) -> bool:
        if self.token is None:
            return True
        expected = f"Bearer {self.token}"
        return header is not None and hmac.compare_digest(header.encode(), expected.encode())

    def stream(self, camera: str, write: Any) -> None:
        """Write ``camera``'s frames as MJPEG parts until the client leaves or the server stops."""
        last = 0
        period = 1.0 / STREAM_MAX_FPS
        while not self._closed.is_set():
            got = self.frames.jpeg(camera)
            if got is not None and got[0] != last:
                last, data = got
                write(
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                    + data
                    + b"\r\n"
                )
            elif got is None and camera not in self.frames.cameras():
                return
            time.sleep(period)


def _handler(owner: StreamServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "facesense-worker"

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("video %s: " + format, self.address_string(), *args)

        def _fail(self, status: int, message: str) -> None:
            body = json.dumps({"error": message}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if not owner.authorized(self.headers.get("Authorization")):
                self._fail(401, "missing or wrong token")
                return
            parts = self.path.split("?", 1)[0].strip("/").split("/")
            if len(parts) != 3 or parts[0] != "cameras" or parts[2] not in ("stream", "snapshot"):
                self._fail(404, "no such page: use /cameras/<name>/stream or /snapshot")
                return
            camera = unquote(parts[1])
            got = owner.frames.jpeg(camera)
            if got is None:
                self._fail(404, f"camera {camera!r} has no video on this worker")
                return
            try:
                if parts[2] == "snapshot":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(got[1])))
                    self.send_header("Cache-Control", "no-store")
                    self.end_headers()
                    self.wfile.write(got[1])
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                owner.stream(camera, self.wfile.write)
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler
