"""A real PostgreSQL 16 + pgvector for the gallery tests, started from the ``pgserver`` wheel.

One server per test process (started on first use, deleted at exit); every test gets
a database of its own, copied from a template that already has ``CREATE EXTENSION
vector``, which takes a few tens of milliseconds. Tests that need it are skipped,
with the reason, only where the server cannot start (no ``pgserver`` wheel for this
platform, say).

Run as root (as CI does), pgserver runs PostgreSQL as a system user ``pgserver`` it
creates with ``useradd`` (PostgreSQL refuses to run as root), and opens the folders
above its data directory and its binaries to other users (``o+rx``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ..pg import PG, TEMPLATE, PgCluster

__all__ = ["PG", "TEMPLATE", "PgCluster"]


@pytest.fixture(scope="session")
def pg_cluster() -> PgCluster:
    """The test PostgreSQL server (skips when it cannot start)."""
    PG.server()
    return PG


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> str:
    """The URL of a fresh, empty database of its own for this test."""
    return pg_cluster.new_database()


def _open_together(opener: Callable[[Path], Any], path: Path, count: int = 6) -> list[Exception]:
    """Open ``path`` with ``opener`` from ``count`` threads released at the same moment (then close it); the errors."""
    barrier = threading.Barrier(count)
    errors: list[Exception] = []

    def open_it() -> None:
        barrier.wait()
        try:
            opener(path).close()
        except Exception as exc:  # noqa: BLE001 - collected for the caller's assertion
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


@pytest.fixture
def open_together() -> Callable[..., list[Exception]]:
    """``open_together(opener, path, count=6)``: open a file from several threads at once; the errors."""
    return _open_together
