"""A fleet worker records the tracks that stay unknown in the PostgreSQL unknowns store, as
``watch`` and ``serve`` do: a camera of the Hamilton clip (played in a loop at its own
frame rate) against an empty gallery, stopped while it still follows people; what it
recorded is listed by ``facesense unknowns``."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import psycopg
from click.testing import CliRunner

from facesense.cli import main
from facesense.config import load_config
from facesense.fleet.worker import Worker
from facesense.gallery.postgres import PostgresGallery

FRAMES = 60  # processed frames before the stop: people are in view, some settled as unknown


def _frames(pg_url: str) -> int:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('facesense_camera_leases') IS NULL").fetchone() == (True,):
            return 0
        row = conn.execute("SELECT stats FROM facesense_camera_leases WHERE name = 'door'").fetchone()
    return int((row[0] or {}).get("frames", 0)) if row is not None else 0


def test_a_worker_records_unknowns_in_the_fleet_database(pg_url: str, examples_dir: Path, tmp_path: Path) -> None:
    PostgresGallery(pg_url).close()  # an empty gallery: every face stays unknown
    clip = examples_dir / "short_hamilton_clip.mp4"
    config = tmp_path / "facesense.toml"
    config.write_text(
        "[recognition]\nevery = 2\nmin_face_px = 40\n\n[worker]\nlease_s = 4\nheartbeat_s = 0.5\n\n"
        f'[[cameras]]\nname = "door"\nurl = "{clip}"\n'
    )
    worker = Worker(load_config(config), pg_url, worker_id="w1", threads=1)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=run, name="worker", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 90
        while _frames(pg_url) < FRAMES and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.2)
        assert _frames(pg_url) >= FRAMES, errors
    finally:
        worker.stop()  # the camera stops, its tracks leave, the writer stores them, then closes
        thread.join(timeout=60)
    assert not thread.is_alive() and not errors, errors

    listed = CliRunner().invoke(main, ["unknowns", "list", "--all", "--json", "--db", pg_url])
    assert listed.exit_code == 0, listed.output
    clusters = [json.loads(line) for line in listed.output.splitlines() if line.startswith("{")]
    assert clusters and all(c["sources"] == ["door"] for c in clusters), clusters
    assert sum(c["records"] for c in clusters) >= 1
