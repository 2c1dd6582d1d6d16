"""A worker's live video (facesense.fleet.stream) and its relay by ``facesense serve``
(/api/fleet/{camera}/stream), on real frames of the clip and a real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesense.errors import ConfigError
from facesense.fleet.stream import LatestFrames, StreamServer, parse_bind

TOKEN = "fleet-secret-0123456789"


@pytest.fixture(scope="module")
def results(examples_dir: Path) -> list:
    """Three processed frames of the clip (faces detected and drawn)."""
    from facesense.capture import open_source
    from facesense.detect import make_detector
    from facesense.pipeline import Pipeline, PipelineConfig

    pipeline = Pipeline(open_source(examples_dir / "short_hamilton_clip.mp4"), detector=make_detector(use="video"), config=PipelineConfig(max_frames=3))
    return list(pipeline)


def _get(url: str, token: str | None = TOKEN, timeout: float = 10) -> tuple[int, str, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read(200_000) if "multipart" in resp.headers.get("Content-Type", "") else resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def test_a_camera_is_served_as_snapshot_and_mjpeg_with_the_token(results: list) -> None:
    frames = LatestFrames()
    server = StreamServer(frames, "127.0.0.1", 0, token=TOKEN).start()
    try:
        sink = frames.sink("door")
        sink.write(results[0])
        status, kind, body = _get(server.url_for("door").removesuffix("/stream") + "/snapshot")
        assert (status, kind) == (200, "image/jpeg")
        image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (360, 640, 3)
        assert not np.array_equal(image, results[0].frame.image)  # annotated (boxes drawn), and JPEG

        assert _get(server.url_for("door"), token=None)[0] == 401
        assert _get(server.url_for("door"), token="wrong-token-0123456789")[0] == 401
        assert _get(server.url_for("hall"))[0] == 404

        req = urllib.request.Request(server.url_for("door"), headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
            first = resp.read1(100_000)
            for r in results[1:]:
                sink.write(r)  # new frames reach an open stream
                time.sleep(0.2)
            data = first + resp.read1(100_000)
            deadline = time.monotonic() + 5
            while data.count(b"--frame") < 2 and time.monotonic() < deadline:
                data += resp.read1(100_000)
        assert data.count(b"--frame") >= 2 and data.count(b"\xff\xd8") >= 2
        sink.close()  # the camera stopped here: its video is gone
        assert _get(server.url_for("door"))[0] == 404
    finally:
        server.close()


def test_bind_addresses_are_checked() -> None:
    assert parse_bind("0.0.0.0:8090") == ("0.0.0.0", 8090)
    assert parse_bind(":8090") == ("0.0.0.0", 8090)
    assert parse_bind("[::1]:9") == ("::1", 9)
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_bind("localhost")
    busy = StreamServer(LatestFrames(), "127.0.0.1", 0)
    try:
        with pytest.raises(ConfigError, match=r"cannot serve video on 127\.0\.0\.1"):
            StreamServer(LatestFrames(), "127.0.0.1", busy.port)
    finally:
        busy.close()


@pytest.mark.slow
def test_serve_on_another_machine_relays_a_workers_camera(pg_url: str, examples_dir: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from facesense.gallery.postgres import PostgresGallery
    from facesense.web.app import create_app
    from facesense.web.config import ServeConfig

    PostgresGallery(pg_url).close()
    config = tmp_path / "facesense.toml"
    clip = examples_dir / "short_hamilton_clip.mp4"
    config.write_text(f'[recognition]\nevery = 3\nmin_face_px = 40\n\n[[cameras]]\nname = "door"\nurl = "{clip}"\n')
    env = {**{k: v for k, v in os.environ.items() if k != "FACESENSE_DB"}, "FACESENSE_TOKEN": TOKEN}
    cmd = [sys.executable, "-m", "facesense.cli", "worker", "--config", str(config), "--db", pg_url, "--threads", "1", "--stream", "127.0.0.1:0"]
    worker = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    app = create_app(ServeConfig(db=pg_url, token=TOKEN), start_sources=False)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with TestClient(app, base_url="http://127.0.0.1") as client:
            deadline = time.monotonic() + 240
            camera: dict = {}
            while time.monotonic() < deadline:
                assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
                fleet = client.get("/api/sources", headers=auth).json()["fleet"]
                camera = fleet[0] if fleet else {}
                if camera.get("live") and camera["stats"].get("stream") and camera["stats"].get("frames", 0) > 5:
                    break
                time.sleep(0.5)
            assert camera.get("stats", {}).get("stream", "").startswith("http://127.0.0.1:"), camera
            snap = client.get("/api/fleet/door/snapshot", headers=auth)
            assert snap.status_code == 200 and snap.headers["content-type"] == "image/jpeg"
            assert cv2.imdecode(np.frombuffer(snap.content, np.uint8), cv2.IMREAD_COLOR).shape == (360, 640, 3)
            with client.stream("GET", "/api/fleet/door/stream", headers=auth) as stream:
                assert stream.headers["content-type"].startswith("multipart/x-mixed-replace")
                got = b""
                for chunk in stream.iter_bytes():
                    got += chunk
                    if got.count(b"\xff\xd8") >= 2:
                        break
            assert got.count(b"--frame") >= 2
            missing = client.get("/api/fleet/nope/snapshot", headers=auth)
            assert missing.status_code == 404 and "no camera named 'nope'" in missing.json()["error"]
            assert client.get("/api/fleet/door/snapshot").status_code == 401
            page = client.get("/live", headers=auth).text
            assert 'data-fleet-camera="door"' in page and "/api/fleet/door/stream" in page
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        finally:
            if worker.stderr is not None:
                worker.stderr.close()
