"""``facesense worker`` end to end: two worker processes on one PostgreSQL database with two
cameras (the Hamilton clip, played in a loop at its own frame rate, standing in for two
cameras). Each runs one; ``kill -9`` of one hands its camera to the other within 15 s;
SIGTERM releases at once. A sampler reads the lease table from outside all along, and
the workers' logs give each pipeline's life under its fencing token: no camera is
ever owned twice, nor run by two pipelines at once."""

from __future__ import annotations

import itertools
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from facesense.gallery.postgres import PostgresGallery

from .procs import LoggedProcess

TAKEOVER_BUDGET_S = 15.0
START_TIMEOUT_S = 240.0
_START = re.compile(r"worker (\S+): camera (\S+): running under lease token (\d+)")
_STOP = re.compile(r"worker (\S+): camera (\S+): stopped \(lease token (\d+)")


def _rows(conn: psycopg.Connection) -> dict[str, tuple]:
    rows = conn.execute(
        "SELECT name, owner, token, expires_at > now(), state, stats FROM facesense_camera_leases ORDER BY name"
    ).fetchall()
    return {r[0]: r[1:] for r in rows}


@pytest.mark.slow
def test_two_workers_share_fail_over_and_release(pg_url: str, examples_dir: Path, tmp_path: Path) -> None:
    PostgresGallery(pg_url).close()  # an empty gallery: every face unknown, events still flow
    clip = examples_dir / "short_hamilton_clip.mp4"
    config = tmp_path / "facesense.toml"
    config.write_text(
        "[recognition]\nevery = 3\nmin_face_px = 40\n\n"
        f'[[cameras]]\nname = "cam1"\nurl = "{clip}"\n\n[[cameras]]\nname = "cam2"\nurl = "{clip}"\n'
    )  # default leases: 10 s, heartbeat every 3 s
    env = {k: v for k, v in os.environ.items() if k != "FACESENSE_DB"}
    cmd = [sys.executable, "-m", "facesense.cli", "-v", "worker", "--config", str(config), "--db", pg_url, "--threads", "1"]
    workers = {wid: LoggedProcess([*cmd, "--worker-id", wid], env) for wid in ("A", "B")}

    samples: list[tuple[float, dict[str, tuple]]] = []
    stop_sampling = threading.Event()

    def sample() -> None:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            while not stop_sampling.is_set():
                if conn.execute("SELECT to_regclass('facesense_camera_leases') IS NOT NULL").fetchone() == (True,):
                    samples.append((time.monotonic(), _rows(conn)))
                time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    killed_at: float | None = None
    try:
        # 1. Both start; each ends up running one camera (a fair share), with figures.
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert all(w.proc.poll() is None for w in workers.values()), {k: w.text()[-3000:] for k, w in workers.items()}
            assert time.monotonic() < deadline, f"never balanced: {samples[-1:] if samples else None}"
            latest = samples[-1][1] if samples else {}
            owners = {name: row[0] for name, row in latest.items() if row[2]}
            running = all(row[3] == "running" and (row[4] or {}).get("fps", 0) > 0 for row in latest.values())
            if len(owners) == 2 and set(owners.values()) == {"A", "B"} and running:
                break
            time.sleep(0.2)
        for owner, token, _live, _state, stats in latest.values():
            assert stats["token"] == token and stats["worker"] == owner  # the token its pipeline runs under
            assert stats["frames"] > 0 and stats["lag_ms"] >= 0 and "dropped" in stats
        with psycopg.connect(pg_url, autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                sources = {r[0] for r in conn.execute("SELECT DISTINCT source FROM facesense_events").fetchall()}
                if sources >= {"cam1", "cam2"}:
                    break
                time.sleep(0.5)
        assert sources >= {"cam1", "cam2"}  # both cameras' events in the one database
        with psycopg.connect(pg_url, autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                nameable = conn.execute(
                    "SELECT count(*) FROM facesense_events WHERE type = 'unknown' AND crop IS NOT NULL"
                    " AND embedding IS NOT NULL AND model_id IS NOT NULL"
                ).fetchone()
                if nameable is not None and nameable[0] > 0:
                    break
                time.sleep(0.5)
            crops = conn.execute("SELECT count(*) FROM facesense_events WHERE type = 'appeared' AND crop IS NOT NULL").fetchone()
        # An unknown track's best face, with its embedding, can be named from any server's events page.
        assert nameable is not None and nameable[0] > 0
        assert crops is not None and crops[0] > 0

        # 2. kill -9 the owner of cam1: the other worker runs it within 15 s.
        victim = owners["cam1"]
        survivor = "B" if victim == "A" else "A"
        os.kill(workers[victim].proc.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        workers[victim].finish()
        taken_at = None
        while time.monotonic() - killed_at < TAKEOVER_BUDGET_S + 10:
            t, rows = samples[-1]
            if t > killed_at and rows["cam1"][0] == survivor and rows["cam1"][2]:
                taken_at = t
                break
            time.sleep(0.05)
        assert taken_at is not None, "cam1 was never taken over"
        takeover_s = taken_at - killed_at
        print(f"cam1 taken over {takeover_s:.2f} s after kill -9 of worker {victim}")
        assert takeover_s < TAKEOVER_BUDGET_S
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (samples[-1][1]["cam1"][3] != "running"):
            time.sleep(0.1)
        assert samples[-1][1]["cam1"][3] == "running"

        # 3. SIGTERM the survivor: it releases both cameras at once, and exits 0.
        termed_at = time.monotonic()
        workers[survivor].proc.send_signal(signal.SIGTERM)
        assert workers[survivor].finish() == 0, workers[survivor].text()[-3000:]
        exited_s = time.monotonic() - termed_at
        with psycopg.connect(pg_url, autocommit=True) as conn:
            rows = _rows(conn)
        assert {name: (row[0], row[3]) for name, row in rows.items()} == {
            "cam1": (None, "released"), "cam2": (None, "released"),
        }  # fmt: skip
        print(f"survivor exited and released {exited_s:.2f} s after SIGTERM")
        assert exited_s < 10.0  # well before its 10 s leases could have expired
    finally:
        stop_sampling.set()
        sampler.join(timeout=10)
        for w in workers.values():
            if w.proc.poll() is None:
                w.proc.kill()
                w.finish()

    # From outside: per camera the token only grows, and one token has one owner.
    owner_of: dict[tuple[str, int], str] = {}
    last: dict[str, int] = {}
    for _t, rows in samples:
        for name, (owner, token, _live, _state, _stats) in rows.items():
            assert token >= last.get(name, 0)
            last[name] = token
            if owner is not None:
                assert owner_of.setdefault((name, token), owner) == owner, (name, token)
    assert len(samples) > 100

    # From the workers' logs: one camera's pipelines never overlap in time.
    spans: dict[str, list[tuple[float, float, str, int]]] = {}
    for wid, w in workers.items():
        open_spans: dict[tuple[str, int], float] = {}
        for t, line in w.lines:
            if m := _START.search(line):
                assert m.group(1) == wid
                open_spans[(m.group(2), int(m.group(3)))] = t
            elif m := _STOP.search(line):
                start = open_spans.pop((m.group(2), int(m.group(3))))
                spans.setdefault(m.group(2), []).append((start, t, wid, int(m.group(3))))
        assert not open_spans or (wid == victim and killed_at is not None)
        for (camera, token), start in open_spans.items():  # the killed worker's pipelines died with it
            spans.setdefault(camera, []).append((start, killed_at or start, wid, token))
    assert set(spans) == {"cam1", "cam2"}
    for camera, runs in spans.items():
        runs.sort()
        for (_s1, e1, w1, t1), (s2, _e2, w2, t2) in itertools.pairwise(runs):
            assert t2 > t1 and s2 >= e1, f"{camera}: {w2} (token {t2}) started before {w1} (token {t1}) stopped"
    assert any(w == survivor for _s, _e, w, _t in spans["cam1"]) and any(w == victim for _s, _e, w, _t in spans["cam1"])


@pytest.mark.parametrize(
    ("config_text", "db", "code", "message"),
    [
        (None, "postgresql://u@127.0.0.1:1/x", 2, "cannot read the config file"),
        ('[[cameras]]\nname = "a"\nurl = "x.mp4"\n', "people.db", 2, "a worker needs a PostgreSQL database"),
        ('[[cameras]]\nname = "a"\nurl = "x.mp4"\n', "mysql://u@h/db", 2, "unknown gallery URL scheme 'mysql'"),
        ("[recognition]\nevery = 2\n", "postgresql://u@127.0.0.1:1/x", 2, "no [[cameras]] to run"),
        ('[[cameras]]\nname = "a"\nurl = "x.mp4"\nevry = 3\n', "postgresql://u@h/x", 2, "(did you mean 'every'?)"),
        ('[[cameras]]\nname = "a"\nurl = "x.mp4"\n', None, 2, "no database: give --db postgresql://"),
        ('[[cameras]]\nname = "a"\nurl = "x.mp4"\n', "postgresql://u:pw@127.0.0.1:1/x", 6, "lease database error"),
        ('[[cameras]]\nname = "a"\nurl = "x.mp4"\n[sinks.mqtt]\nurl = "http://broker"\n', "postgresql://u@h/x", 2,
         "[sinks.mqtt]: MQTT broker URL must start with mqtt://"),
    ],
)
def test_bad_input_gives_one_line_and_an_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config_text: str | None, db: str | None, code: int, message: str
) -> None:
    from click.testing import CliRunner

    from facesense.cli import main

    monkeypatch.delenv("FACESENSE_DB", raising=False)
    config = tmp_path / "facesense.toml"
    if config_text is not None:
        config.write_text(config_text)
    args = ["worker", "--config", str(config), *(["--db", db] if db else [])]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == code, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.output and "pw" not in result.output
