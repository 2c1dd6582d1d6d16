"""LISTEN/NOTIFY on a real PostgreSQL: a write on one "machine" (its own store and pool)
reaches a watcher on another well within 2 s, a LiveMatcher refits without polling, and
the listener comes back after its connection is killed (falling back to polling meanwhile)."""

from __future__ import annotations

import hashlib
import threading
import time

import numpy as np
import psycopg
import pytest

from facesense.gallery.base import NewSample
from facesense.gallery.postgres import PostgresGallery
from facesense.recognize import LiveMatcher

MODEL = "test-model-v1"
DIM = 16
BUDGET_S = 2.0  # the limit, generous on a loaded 2-core machine (typically milliseconds)


def _sample(seed: int) -> NewSample:
    e = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return NewSample(
        embedding=e / np.linalg.norm(e), model_id=MODEL,
        source_sha256=hashlib.sha256(str(seed).encode()).hexdigest(), source_path=f"/p/{seed}.jpg",
    )  # fmt: skip


def _wait(predicate, timeout_s: float) -> float | None:
    """Seconds until ``predicate()`` is true, or ``None`` after ``timeout_s``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.005)
    return None


def test_a_write_on_one_store_is_heard_by_another_within_2_s(pg_url: str) -> None:
    writer, watcher = PostgresGallery(pg_url), PostgresGallery(pg_url)
    heard: list[int | None] = []
    try:
        listener = watcher.watch_changes(heard.append)
        assert listener.wait_connected(5.0)
        latencies = []
        for i in range(3):
            before = len(heard)
            writer.add_samples(f"person{i}", [_sample(i)])
            waited = _wait(lambda before=before: len(heard) > before, 5.0)
            assert waited is not None, "no notification within 5 s"
            latencies.append(waited)
            assert heard[-1] == writer.revision()  # the payload is the committed revision
        writer.rename_person("person0", "renamed")
        assert _wait(lambda: heard[-1] == writer.revision(), 5.0) is not None
        writer.remove_person("renamed")
        assert _wait(lambda: heard[-1] == writer.revision(), 5.0) is not None
        print("notification latencies, s:", [round(x, 4) for x in latencies])
        assert max(latencies) < BUDGET_S, latencies
    finally:
        writer.close()
        watcher.close()
    assert not listener.connected  # closing the gallery stopped its listener


def test_live_matcher_refits_on_notify_without_polling(pg_url: str) -> None:
    writer, watched = PostgresGallery(pg_url), PostgresGallery(pg_url)
    # A poll interval of an hour: only the notification can make it refit in time.
    matcher = LiveMatcher(watched, MODEL, check_interval_s=3600, threshold=None)
    try:
        matcher.refresh()
        assert matcher.people == ()
        assert _wait(lambda: matcher.watching, 5.0) is not None
        writer.add_samples("ada", [_sample(1), _sample(2)])
        started = time.monotonic()
        waited = _wait(lambda: matcher.people == ("ada",), 5.0)
        assert waited is not None, "the matcher never refitted"
        assert time.monotonic() - started < BUDGET_S
        assert matcher.match(_sample(1).embedding[None, :]).names == ("ada",)
        writer.rename_person("ada", "grace")
        assert _wait(lambda: matcher.people == ("grace",), BUDGET_S) is not None
        writer.remove_person("grace")
        assert _wait(lambda: matcher.people == (), BUDGET_S) is not None
        assert matcher.match(_sample(1).embedding[None, :]).names == (None,)
    finally:
        matcher.close()
        writer.close()
        watched.close()


def test_the_listener_reconnects_and_a_change_meanwhile_is_not_missed(pg_url: str) -> None:
    writer, watched = PostgresGallery(pg_url), PostgresGallery(pg_url)
    matcher = LiveMatcher(watched, MODEL, check_interval_s=0.2, threshold=None)
    try:
        matcher.refresh()
        assert _wait(lambda: matcher.watching, 5.0) is not None
        with psycopg.connect(pg_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'facesense-listen' AND datname = current_database()"
            ).fetchone()
        assert killed is not None and killed[0] == 1
        # A write right after the listener lost its connection is still seen: by
        # polling while it is down, or by the look it takes when it is back.
        writer.add_samples("ada", [_sample(1)])
        done = threading.Event()

        def keep_matching() -> None:
            while not done.is_set():
                matcher.match(_sample(1).embedding[None, :])
                time.sleep(0.02)

        thread = threading.Thread(target=keep_matching, daemon=True)
        thread.start()
        try:
            assert _wait(lambda: matcher.people == ("ada",), 5.0) is not None
        finally:
            done.set()
            thread.join()
        assert _wait(lambda: matcher.watching, 10.0) is not None  # reconnected
        writer.add_samples("bob", [_sample(3)])
        assert _wait(lambda: matcher.people == ("ada", "bob"), BUDGET_S) is not None
    finally:
        matcher.close()
        writer.close()
        watched.close()


@pytest.mark.parametrize("payload", ["17", None])
def test_callback_receives_the_revision_or_none(pg_url: str, payload: str | None) -> None:
    """``None`` (after a reconnection) and a revision both reach the callback as ints or None."""
    store = PostgresGallery(pg_url)
    got: list[int | None] = []
    try:
        listener = store.watch_changes(got.append)
        assert listener.wait_connected(5.0)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("SELECT pg_notify('facesense_gallery', %s)", (payload or "",))
        assert _wait(lambda: len(got) == 1, 5.0) is not None
        assert got == [17 if payload else None]
    finally:
        store.close()
