"""A real ``facesense serve`` for the end-to-end tests: a subprocess on a free 127.0.0.1 port."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STARTUP_TIMEOUT_S = 90.0


def free_port() -> int:
    """A TCP port nobody listens on (right now) on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ServeProcess:
    """A running ``facesense serve``."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    token: str | None

    def request(
        self,
        path: str,
        *,
        method: str = "GET",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> Response:
        """One HTTP request (with the bearer token when the server has one and ``auth``);
        never raises on 4xx/5xx."""
        sent = dict(headers or {})
        if self.token is not None and auth:
            sent.setdefault("Authorization", f"Bearer {self.token}")
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return Response(response.status, response.read())
        except urllib.error.HTTPError as exc:
            return Response(exc.code, exc.read())

    def api(self, path: str) -> Any:
        """``GET path`` as JSON (it must answer 200)."""
        response = self.request(path)
        assert response.status == 200, (path, response.status, response.body[:300])
        return response.json()

    def text(self) -> str:
        """What the server wrote so far (stdout and stderr)."""
        return self.log.read_text(errors="replace")

    def terminate(self, timeout_s: float = 30.0) -> tuple[int, float]:
        """Send SIGTERM; returns the exit code and the seconds the process took to exit."""
        start = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"facesense serve did not stop on SIGTERM within {timeout_s:g} s:\n{self.text()}") from None
        return code, time.monotonic() - start


def multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body and its content type: text ``fields``, ``(field, filename, data)`` files."""
    boundary = "facesense-test-boundary"
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for field, filename, data in files:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


@contextmanager
def serve(tmp: Path, *args: str, token: str | None = None, wait: bool = True) -> Iterator[ServeProcess]:
    """Run ``facesense -v serve --db tmp/gallery.db --port <free> [--token] *args`` until the block ends.

    Waits for ``/api/health`` unless ``wait`` is false; SIGTERMs the server at the end
    if it is still running.
    """
    port = free_port()
    log = tmp / f"serve-{port}.log"
    command = [
        sys.executable, "-c", "from facesense.cli import main; main()", "-v", "serve",
        "--db", str(tmp / "gallery.db"), "--port", str(port), *args,
    ]  # fmt: skip
    if token is not None:
        command += ["--token", token]
    env = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    env.pop("FACESENSE_TOKEN", None)
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    server = ServeProcess(f"http://127.0.0.1:{port}", process, log, token)
    try:
        if wait:
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while True:
                if process.poll() is not None:
                    raise AssertionError(f"facesense serve exited with {process.returncode}:\n{server.text()}")
                try:
                    urllib.request.urlopen(server.url + "/api/health", timeout=5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise AssertionError(
                            f"facesense serve did not answer within {STARTUP_TIMEOUT_S:g} s:\n{server.text()}"
                        ) from None
                    time.sleep(0.25)
        yield server
    finally:
        if process.poll() is None:
            server.terminate()


def bomb_png(width: int, height: int) -> bytes:
    """A valid all-black RGB PNG of ``width x height`` pixels that compresses to a few MB.

    A decompression bomb: 30000 x 30000 is 2.7 GB of pixels in about 2.7 MB. The zlib
    stream is built from one compressed block of rows repeated (each block ends with a
    full flush, so blocks do not depend on each other), in well under a second.
    """
    row = bytes(1 + 3 * width)  # filter byte 0 + black pixels
    rows_per_block = max(1, (1 << 22) // len(row))
    blocks, rest = divmod(height, rows_per_block)

    def block(n_rows: int) -> bytes:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: no header, no checksum
        return c.compress(row * n_rows) + c.flush(zlib.Z_FULL_FLUSH)

    total = len(row) * height
    adler = ((total % 65521) << 16) | 1  # adler32 of `total` zero bytes
    stream = b"\x78\xda" + block(rows_per_block) * blocks + (block(rest) if rest else b"") + b"\x03\x00"
    stream += struct.pack(">I", adler)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")


@contextmanager
def served(tmp: Path, *args: str, token: str | None = None) -> Iterator[ServeProcess]:
    """:func:`serve` for a module's tests: at the end the server must stop cleanly (SIGTERM
    honoured, no traceback in its log)."""
    with serve(tmp, *args, token=token) as srv:
        yield srv
        code, _ = srv.terminate()
    text = srv.text()
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught.
    assert code in (0, -signal.SIGTERM), text
    assert "Application shutdown complete" in text and "Traceback" not in text, text


@contextmanager
def browser_page(
    browser: Any, url: str | None = None, *, token: str | None = None, errors: list[str] | None = None
) -> Iterator[Any]:
    """A Chromium page (1280x900, 30 s timeouts) whose script errors are collected in
    ``errors`` and must be none when the block ends; with ``url`` it is opened first,
    through the login form when ``token`` is given."""
    errors = [] if errors is None else errors
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.set_default_timeout(30_000)
    try:
        if url is not None:
            page.goto(url)
            if token is not None:
                assert "/login" in page.url, page.url
                page.fill("input[name=token]", token)
                page.click("button[type=submit]")
                page.wait_for_url(url)
        yield page
    finally:
        context.close()
    assert not errors, errors


def artifacts_dir() -> Path:
    """Where browser tests leave their screenshots (``$FACESENSE_ARTIFACTS/web`` or ``artifacts/web``)."""
    folder = Path(os.environ.get("FACESENSE_ARTIFACTS", Path(__file__).resolve().parents[2] / "artifacts")) / "web"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
