"""``facesense worker`` with ``[sinks.mqtt]``: a fleet camera's events, state, Home Assistant
discovery and availability reach a real mosquitto broker (Debian's, started on a free port)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from facesense.gallery.postgres import PostgresGallery

from ..sinks.mosquitto import Mosquitto, Recorder
from .procs import LoggedProcess


@pytest.mark.slow
def test_a_workers_camera_publishes_over_mqtt(pg_url: str, examples_dir: Path, tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    recorder = Recorder(broker)
    PostgresGallery(pg_url).close()  # an empty gallery: every face unknown, events still flow
    clip = examples_dir / "short_hamilton_clip.mp4"
    config = tmp_path / "facesense.toml"
    config.write_text(
        "[recognition]\nevery = 3\nmin_face_px = 40\n\n"
        f'[[cameras]]\nname = "door"\nurl = "{clip}"\n\n[sinks.mqtt]\nurl = "{broker.url}"\nprefix = "fleet"\n'
    )
    env = {k: v for k, v in os.environ.items() if k != "FACESENSE_DB"}
    worker = LoggedProcess(
        [sys.executable, "-m", "facesense.cli", "worker", "--config", str(config), "--db", pg_url, "--threads", "1"], env
    )
    try:
        got = recorder.wait_for(
            lambda msgs: any(m.topic == "fleet/door/events" for m in msgs)
            and any(m.topic == "homeassistant/sensor/fleet_door/config" for m in msgs),
            timeout_s=240,
        )
        events = [m.json() for m in got if m.topic == "fleet/door/events"]
        assert events and all(e["camera"] == "door" for e in events), events[:3]
        assert {e["type"] for e in events} <= {"appeared", "recognized", "unknown", "left", "status"}
        online = recorder.last("fleet/availability")
        assert online is not None and online.text == "online"
        recorder.wait_for(lambda msgs: any(m.topic == "fleet/door/state" for m in msgs), timeout_s=30)
        started = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.finish(timeout=60) == 0, worker.text()[-2000:]
        recorder.wait_for(
            lambda msgs: any(m.topic == "fleet/availability" and m.text == "offline" for m in msgs), timeout_s=15
        )
        assert time.monotonic() - started < 30
    finally:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.finish()
        recorder.close()
        broker.stop()
