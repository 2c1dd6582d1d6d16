"""A real ``facesense serve`` (a subprocess) under attack and under faults.

* Cross-site request forgery: pages on a second local origin (another port of
  127.0.0.1) try every way a browser lets them write to the dashboard without CORS
  permission: a ``no-cors`` multipart ``fetch`` from their own page and from a
  sandboxed iframe (``Origin: null``), and a form post from both, in real Chromium,
  against a server without a token (the default). Nothing may be written.
* A decompression bomb (a 2.6 MB PNG declaring 30000 x 30000 pixels) gets a plain
  one-line error, never OpenCV's internals, and the server carries on.
* SIGTERM with sources that cannot be reached (a closed port, a port that accepts
  connections and never answers) and a client watching a stream stops within the
  3 s graceful-shutdown period.
"""

from __future__ import annotations

import base64
import re
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from .serving import ServeProcess, bomb_png, free_port, multipart, serve

GRACE_S = 3.5  # serve's graceful shutdown period (3 s) and a little for the process to go
# What the size check says (with the sides, or the pixel count when only that is known).
BOMB_MESSAGE = re.compile(r"bomb\.png: image (is 30000x30000|has 900,000,000 pixels), over the 100,000,000-pixel limit")
OPENCV_TEXT = ("cv::", "OpenCV", "opencv", "imgcodecs", "Assertion", "error: (-")


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """``facesense serve`` as a new user starts it: no token, 127.0.0.1, no sources."""
    with serve(tmp_path_factory.mktemp("serve-open")) as srv:
        yield srv


def _people(server: ServeProcess) -> list[tuple[str, int]]:
    return [(p["name"], p["samples"]) for p in server.api("/api/people")["people"]]


# --- cross-site request forgery -----------------------------------------------------------------


ATTACK_SCRIPT = """
const PHOTO = Uint8Array.from(atob("%(photo)s"), c => c.charCodeAt(0));
const TARGET = "%(target)s";
function photoFile() { return new File([PHOTO], "m.jpg", {type: "image/jpeg"}); }
async function fetchAttack() {
  const create = new FormData();
  create.append("name", "mallory");
  create.append("files", photoFile());
  await fetch(TARGET + "/api/people", {method: "POST", mode: "no-cors", body: create, credentials: "include"});
  const more = new FormData();
  more.append("files", photoFile());
  await fetch(TARGET + "/api/people/%(victim)d/faces", {method: "POST", mode: "no-cors", body: more, credentials: "include"});
}
function formAttack() {
  const form = document.createElement("form");
  form.method = "post";
  form.enctype = "multipart/form-data";
  form.action = TARGET + "/api/people";
  const name = document.createElement("input");
  name.name = "name";
  name.value = "mallory";
  const files = document.createElement("input");
  files.type = "file";
  files.name = "files";
  const list = new DataTransfer();
  list.items.add(photoFile());
  files.files = list.files;
  form.append(name, files);
  document.body.append(form);
  form.submit();
}
"""

PAGES = {
    # A page of the attacker's own origin: Origin http://127.0.0.1:<other port>, Sec-Fetch-Site same-site.
    "/fetch.html": "<script>{script}\nfetchAttack().then(() => document.title = 'done', e => document.title = 'failed ' + e);</script>",
    "/form.html": "<script>{script}\nwindow.onload = formAttack;</script>",
    # Sandboxed frames have an opaque origin: Origin null (what the old check let through).
    "/sandbox-fetch.html": (
        "<iframe sandbox='allow-scripts' src='/frame-fetch.html'></iframe>"
        "<script>window.onmessage = e => document.title = e.data;</script>"
    ),
    "/frame-fetch.html": "<script>{script}\nfetchAttack().then(() => parent.postMessage('done', '*'), e => parent.postMessage('failed ' + e, '*'));</script>",
    "/sandbox-form.html": "<iframe sandbox='allow-scripts allow-forms' src='/frame-form.html'></iframe>",
    "/frame-form.html": "<script>{script}\nwindow.onload = formAttack;</script>",
}


class AttackerSite:
    """The attacker's web site: another origin on this machine (127.0.0.1, another port)."""

    def __init__(self, target: str, photo: bytes, victim_id: int) -> None:
        script = ATTACK_SCRIPT % {"photo": base64.b64encode(photo).decode(), "target": target, "victim": victim_id}
        pages = {path: html.replace("{script}", script).encode() for path, html in PAGES.items()}

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = pages.get(self.path.split("?", 1)[0])
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(body or b"not here")

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="attacker-site", daemon=True)

    def __enter__(self) -> AttackerSite:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_pages_of_another_origin_cannot_write(
    browser: Any, open_server: ServeProcess, examples_dir: Path
) -> None:
    server = open_server
    # A client without Origin (curl, scripts) enrolls the victim: no browser, no forgery check.
    body, kind = multipart({"name": "victim"}, [("files", "obama.jpg", (examples_dir / "obama.jpg").read_bytes())])
    created = server.request("/api/people", method="POST", body=body, headers={"Content-Type": kind})
    assert created.status == 201, created.body
    victim = created.json()["person"]["id"]
    before = _people(server)
    assert before == [("victim", 1)]

    photo = (examples_dir / "knn_examples" / "test" / "obama1.jpg").read_bytes()
    context = browser.new_context()
    writes: list[tuple[str, str, int]] = []

    def seen(response: Any) -> None:
        request = response.request
        if request.url.startswith(server.url) and request.method != "GET":
            writes.append((request.method, request.url[len(server.url) :], response.status))

    context.on("response", seen)
    try:
        with AttackerSite(server.url, photo, victim) as site:
            page = context.new_page()
            for path in ("/fetch.html", "/sandbox-fetch.html"):
                page.goto(site.url + path)
                page.wait_for_function("document.title !== ''", timeout=30_000)
                assert page.title() == "done", (path, page.title())
            for path in ("/form.html", "/sandbox-form.html"):
                n = len(writes)
                # A page of its own: the last form's own navigation (to the 403 answer) may
                # still be under way, and would interrupt this one.
                page.close()
                page = context.new_page()
                page.goto(site.url + path)
                deadline = time.monotonic() + 30
                while len(writes) == n:  # the form's post reaches the server
                    assert time.monotonic() < deadline, f"{path}: the form was not sent"
                    page.wait_for_timeout(100)
    finally:
        context.close()

    # Every write reached the server, and each one was refused.
    assert sorted(writes) == sorted(
        [("POST", "/api/people", 403), ("POST", f"/api/people/{victim}/faces", 403)] * 2
        + [("POST", "/api/people", 403)] * 2
    ), writes
    assert _people(server) == before
    assert server.api(f"/api/people/{victim}")["samples"] == 1

    # The dashboard's own pages still write (same origin), and clients without Origin too.
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(server.url + "/people")
        status = page.evaluate(
            """async (b64) => {
                const photo = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                const form = new FormData();
                form.append("name", "friend");
                form.append("files", new File([photo], "friend.jpg", {type: "image/jpeg"}));
                return (await fetch("/api/people", {method: "POST", body: form})).status;
            }""",
            base64.b64encode(photo).decode(),
        )
    finally:
        context.close()
    assert status == 201
    assert _people(server) == [("friend", 1), ("victim", 1)]
    for person in server.api("/api/people")["people"]:
        assert server.request(f"/api/people/{person['id']}", method="DELETE").status == 200


# --- decompression bombs ------------------------------------------------------------------------


def test_a_decompression_bomb_gets_a_plain_error(open_server: ServeProcess) -> None:
    server = open_server
    bomb = bomb_png(30000, 30000)
    assert len(bomb) < 3_000_000
    for path in ("/api/recognize", "/api/detect"):
        body, kind = multipart({}, [("file", "bomb.png", bomb)])
        start = time.monotonic()
        response = server.request(path, method="POST", body=body, headers={"Content-Type": kind})
        assert time.monotonic() - start < 10  # refused from the header, not after decoding 2.7 GB
        assert response.status == 415, response.body
        assert set(response.json()) == {"error"} and BOMB_MESSAGE.fullmatch(response.json()["error"]), response.body
    body, kind = multipart({"name": "bomb"}, [("files", "bomb.png", bomb)])
    enroll = server.request("/api/people", method="POST", body=body, headers={"Content-Type": kind})
    assert enroll.status == 422, enroll.body
    (result,) = enroll.json()["results"]
    assert result["outcome"] == "unreadable" and BOMB_MESSAGE.fullmatch(result["detail"]), result
    log = server.text()
    assert not any(s in log for s in OPENCV_TEXT), log
    assert server.api("/api/health")["status"] == "ok"


# --- shutdown -----------------------------------------------------------------------------------


def _read_stream(url: str, opened: threading.Event) -> None:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            opened.set()
            while response.read(1024):
                pass
    except OSError:
        pass


class SilentCamera:
    """A TCP port that accepts connections and never answers (FFmpeg waits its open timeout).

    :attr:`hanging_since` is when the connection FFmpeg holds open now was made.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/cam.mjpg"
        self._open: dict[int, float] = {}
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, name="silent-camera", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            self._open[id(conn)] = time.monotonic()
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn: socket.socket) -> None:
        try:
            while conn.recv(4096):
                pass
        except OSError:
            pass
        self._open.pop(id(conn), None)

    @property
    def hanging_since(self) -> float | None:
        return max(self._open.values(), default=None)

    def close(self) -> None:
        self._sock.close()
        for conn in self._conns:
            conn.close()


@pytest.mark.parametrize("kinds", [("closed", "closed"), ("silent", "closed")])
def test_sigterm_with_unreachable_sources_stops_within_the_grace_period(kinds: tuple[str, str], tmp_path: Path) -> None:
    """Sources that cannot be reached, one of them stuck in OpenCV's blocking open (a
    port that accepts and never answers: FFmpeg waits its 10 s open timeout, holding
    OpenCV's open lock meanwhile), and a Live page left open on a stream."""
    silent = SilentCamera()
    urls = {"closed": f"http://127.0.0.1:{free_port()}/cam.mjpg", "silent": silent.url}
    try:
        with serve(tmp_path, "--source", urls[kinds[0]], "--source", urls[kinds[1]]) as server:
            deadline = time.monotonic() + 60
            while "models ready" not in server.text():  # a server that has been up a while
                assert time.monotonic() < deadline, server.text()
                time.sleep(0.2)
            opened = threading.Event()
            watcher = threading.Thread(target=_read_stream, args=(server.url + "/api/sources/0/stream", opened), daemon=True)
            watcher.start()
            assert opened.wait(10)
            while True:
                if "silent" in kinds:  # SIGTERM while FFmpeg sits in the open, with seconds of it left
                    since = silent.hanging_since
                    ready = since is not None and time.monotonic() - since < 5
                else:  # SIGTERM while both are refused and retried
                    ready = {s["status"] for s in server.api("/api/sources")["sources"]} == {"error"}
                if ready:
                    break
                assert time.monotonic() < deadline, server.text()
                time.sleep(0.1)
            code, seconds = server.terminate()
            watcher.join(5)
    finally:
        silent.close()
    text = server.text()
    assert code in (0, -signal.SIGTERM), text
    assert seconds < GRACE_S, f"took {seconds:.2f} s:\n{text}"
    assert "Application shutdown complete" in text and "Traceback" not in text, text
    assert not watcher.is_alive()  # the stream ended with the server
    if "silent" in kinds:
        assert re.search(r"not waiting for [12] source\(s\) still opening", text), text
