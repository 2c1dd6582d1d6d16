"""Camera leases on a real PostgreSQL: claims up to a fair share, heartbeats, take-over
only after expiry (by the database's clock), fencing tokens, release, and a fight
between workers sampled from outside in which no camera ever has two running owners."""

from __future__ import annotations

import contextlib
import itertools
import random
import threading
import time
from collections import defaultdict

import psycopg
import pytest

from facesense.errors import ConfigError, GalleryError
from facesense.fleet.leases import FORMAT_VERSION, LeaseState, LeaseTable, camera_leases, redact_url

CAMERAS = {"cam1": "rtsp://user:secret@10.0.0.1/s", "cam2": "/videos/two.mp4"}


def _owners(url: str) -> dict[str, str | None]:
    return {c.name: (c.owner if c.live else None) for c in camera_leases(url)}


def test_two_workers_split_the_cameras_and_report_stats(pg_url: str) -> None:
    a, b = LeaseTable(pg_url, worker_id="A", lease_s=5), LeaseTable(pg_url, worker_id="B", lease_s=5)
    try:
        a.register(CAMERAS)
        b.register(CAMERAS)
        assert a.share() == 1 == b.share()  # ceil(2 cameras / 2 live workers)
        got_a, got_b = a.claim(), b.claim()
        assert len(got_a) == 1 and len(got_b) == 1
        assert {got_a[0].camera, got_b[0].camera} == set(CAMERAS)
        assert got_a[0].token == 1 and got_b[0].token == 1
        assert a.claim() == () and b.claim() == ()  # each holds its share
        beat = a.heartbeat({got_a[0].camera: {"fps": 14.9, "lag_ms": 31.5, "dropped": 2}})
        assert [lease.camera for lease in beat.renewed] == [got_a[0].camera] and beat.lost == ()
        rows = {c.name: c for c in camera_leases(pg_url)}
        row = rows[got_a[0].camera]
        assert (row.owner, row.live, row.state, row.host, row.pid) == ("A", True, LeaseState.RUNNING, a.host, a.pid)
        assert row.stats == {"fps": 14.9, "lag_ms": 31.5, "dropped": 2}
        assert rows["cam1"].url == "rtsp://user:***@10.0.0.1/s"  # no password for readers
        assert rows[got_b[0].camera].state == LeaseState.STARTING  # B has not beaten since its claim
        assert row.to_dict()["worker"] == {"id": "A", "host": a.host, "pid": a.pid}
    finally:
        a.close()
        b.close()


def test_take_over_only_after_expiry_and_the_old_owner_learns_it_lost(pg_url: str) -> None:
    a, b = LeaseTable(pg_url, worker_id="A", lease_s=1.5), LeaseTable(pg_url, worker_id="B", lease_s=1.5)
    try:
        a.register(CAMERAS)
        (mine,) = a.claim(limit=1)
        b.register(CAMERAS)
        b.claim()
        assert _owners(pg_url)[mine.camera] == "A"
        # A stops beating (as if frozen): until its lease expires nobody may take the camera.
        started = time.monotonic()
        while time.monotonic() - started < 1.0:
            assert b.claim() == ()
            b.heartbeat()  # B stays alive and keeps its own camera
            time.sleep(0.1)
        assert a.still_holds(mine.camera, mine.token)
        time.sleep(0.8)  # now past 1.5 s since the claim
        b.heartbeat()
        assert not a.still_holds(mine.camera, mine.token)  # A's own clock already told it to stop
        assert a.expired_locally() == (mine.camera,)
        taken = b.claim()
        assert [(t.camera, t.token) for t in taken] == [(mine.camera, mine.token + 1)]
        beat = a.heartbeat()
        assert beat.lost == (mine.camera,) and beat.renewed == ()
        assert mine.camera not in a.held
        assert _owners(pg_url) == {"cam1": "B", "cam2": "B"}
    finally:
        a.close()
        b.close()


def test_a_changed_fencing_token_means_the_lease_is_lost(pg_url: str) -> None:
    a = LeaseTable(pg_url, worker_id="A", lease_s=10)
    try:
        a.register(CAMERAS)
        leases = a.claim()
        assert len(leases) == 2  # the only live worker takes everything
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("UPDATE facesense_camera_leases SET owner = 'thief', token = token + 1 WHERE name = 'cam1'")
        beat = a.heartbeat()
        assert beat.lost == ("cam1",) and [lease.camera for lease in beat.renewed] == ["cam2"]
        assert not a.still_holds("cam1", leases[0].token)
        assert a.release(["cam1"]) == ()  # not ours any more: left alone
        assert _owners(pg_url)["cam1"] == "thief"
    finally:
        a.close()


def test_release_hands_over_at_once(pg_url: str) -> None:
    a, b = LeaseTable(pg_url, worker_id="A", lease_s=30), LeaseTable(pg_url, worker_id="B", lease_s=30)
    try:
        a.register(CAMERAS)
        assert len(a.claim()) == 2
        b.register(CAMERAS)
        assert b.claim() == ()  # A holds them, live
        assert sorted(a.release_all()) == ["cam1", "cam2"]
        assert {c.state for c in camera_leases(pg_url)} == {LeaseState.RELEASED}
        assert len(b.claim()) == 2  # A's row is gone: B is the only live worker
        assert b.held["cam1"].token == 2
    finally:
        a.close()
        b.close()


def test_schema_is_versioned_and_a_newer_one_refused(pg_url: str) -> None:
    LeaseTable(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT value FROM facesense_fleet_meta WHERE key = 'format_version'").fetchone() == (
            str(FORMAT_VERSION),
        )
        conn.execute("UPDATE facesense_fleet_meta SET value = '99' WHERE key = 'format_version'")
    with pytest.raises(GalleryError, match=r"format version 99 .* newer facesense"):
        LeaseTable(pg_url)


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="need a postgresql:// database"):
        LeaseTable("sqlite:///x.db")
    with pytest.raises(ConfigError, match="lease_s must be a positive number"):
        LeaseTable("postgresql://u@h/db", lease_s=0)
    with pytest.raises(GalleryError, match="lease database error"):
        LeaseTable("postgresql://nobody@127.0.0.1:1/nothing")
    assert redact_url("rtsp://u:pw@h/x") == "rtsp://u:***@h/x" and redact_url("0") == "0"


def test_workers_fighting_never_run_one_camera_twice(pg_url: str) -> None:
    """Four workers claim, beat, stall (longer than the lease) and quit at random over
    6 cameras for ~8 s. Each "pipeline" ticks every 5 ms while its lease guard says it
    still holds the camera; the ticks of two tenures of one camera never interleave.
    A sampler reads the table from outside every 10 ms: tokens only grow, and a token
    always belongs to one worker."""
    lease_s, margin_s = 0.8, 0.2
    cameras = {f"c{i}": f"/v/{i}.mp4" for i in range(6)}
    ticks: dict[str, list[tuple[float, int, str]]] = defaultdict(list)  # camera -> (time, token, worker)
    tick_lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []

    def pipeline(table: LeaseTable, camera: str, token: int) -> None:
        while not stop.is_set() and table.still_holds(camera, token, margin_s=margin_s):
            with tick_lock:
                ticks[camera].append((time.monotonic(), token, table.worker_id))
            time.sleep(0.005)

    def worker(wid: str, seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                table = LeaseTable(pg_url, worker_id=f"{wid}-{rng.randrange(1 << 30)}", lease_s=lease_s)
                table.register(cameras)
                threads: list[threading.Thread] = []
                until = time.monotonic() + rng.uniform(1.0, 3.0)
                while not stop.is_set() and time.monotonic() < until:
                    for lease in table.claim():
                        t = threading.Thread(target=pipeline, args=(table, lease.camera, lease.token), daemon=True)
                        t.start()
                        threads.append(t)
                    if rng.random() < 0.08:
                        time.sleep(rng.uniform(0.5, 1.5))  # a stall: no heartbeat, maybe past the lease
                    with contextlib.suppress(GalleryError):  # a failed beat is what the stall tests
                        table.heartbeat()
                    time.sleep(0.1)
                if rng.random() < 0.5:
                    stop_local = list(table.held)
                    table.forget(stop_local)  # the pipelines stop ...
                    for t in threads:
                        t.join()
                    table.release(stop_local)  # ... before the leases go back
                else:
                    table.forget(list(table.held))  # a crash: leases left to expire
                    for t in threads:
                        t.join()
                table.close()
        except Exception as exc:  # noqa: BLE001 - reported by the main thread's assertion
            errors.append(exc)

    samples: list[dict[str, tuple[str | None, int, bool]]] = []

    def sampler() -> None:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            while not stop.is_set():
                rows = conn.execute("SELECT name, owner, token, expires_at > now() FROM facesense_camera_leases").fetchall()
                samples.append({r[0]: (r[1], int(r[2]), bool(r[3])) for r in rows})
                time.sleep(0.01)

    threads = [threading.Thread(target=worker, args=(f"w{i}", i), daemon=True) for i in range(4)]
    threads.append(threading.Thread(target=sampler, daemon=True))
    LeaseTable(pg_url).close()  # create the tables before the sampler reads them
    for t in threads:
        t.start()
    time.sleep(8.0)
    stop.set()
    for t in threads:
        t.join(timeout=20)
    assert not errors, errors

    # From outside: per camera, the token never goes back and a token has one owner.
    owner_of: dict[tuple[str, int], str] = {}
    last_token: dict[str, int] = {}
    for sample in samples:
        for name, (owner, token, _live) in sample.items():
            assert token >= last_token.get(name, 0), (name, token)
            last_token[name] = token
            if owner is not None:
                assert owner_of.setdefault((name, token), owner) == owner
    assert len(samples) > 100
    assert sum(last_token.values()) >= 2 * len(cameras)  # cameras did change hands

    # From the pipelines: one camera's tenures never overlap in time.
    tenures = 0
    for name, marks in ticks.items():
        spans: dict[int, list[float]] = {}
        for t, token, _wid in marks:
            span = spans.setdefault(token, [t, t])
            span[1] = max(span[1], t)
        ordered = sorted(spans.items(), key=lambda kv: kv[1][0])
        tenures += len(ordered)
        for (tok1, (_s1, e1)), (tok2, (s2, _e2)) in itertools.pairwise(ordered):
            assert tok2 > tok1 and s2 > e1, f"{name}: token {tok2} ran from {s2} while token {tok1} ran until {e1}"
    assert tenures > len(cameras)


def test_a_worker_claims_only_the_cameras_it_knows(pg_url: str) -> None:
    a, b = LeaseTable(pg_url, worker_id="A", lease_s=30), LeaseTable(pg_url, worker_id="B", lease_s=30)
    try:
        a.register({"cam1": "a.mp4"})
        b.register(CAMERAS)  # cam1 and cam2
        assert [lease.camera for lease in a.claim()] == ["cam1"]
        assert a.claim() == ()  # cam2 is free, but not in A's configuration
        assert [lease.camera for lease in b.claim()] == ["cam2"]
    finally:
        a.close()
        b.close()
