"""A real PostgreSQL 16 + pgvector for the tests (gallery, fleet), started from the ``pgserver`` wheel.

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

import itertools
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

TEMPLATE = "facesense_template"


class PgCluster:
    """The lazily started server, and a fresh database per call of :meth:`new_database`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server: Any = None
        self._error: str | None = None
        self._counter = itertools.count(1)
        self._root: Path | None = None

    def _start(self) -> Any:
        import warnings

        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI).
            warnings.simplefilter("ignore")
            import pgserver
            import psycopg

            self._root = Path(tempfile.mkdtemp(prefix="facesense-pg-"))
            server = pgserver.get_server(self._root / "data", cleanup_mode="delete")  # type: ignore[attr-defined]
            with psycopg.connect(server.get_uri(), autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {TEMPLATE}")
            with psycopg.connect(server.get_uri(TEMPLATE), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        return server

    def server(self) -> Any:
        """The running server (skips the calling test when it cannot start)."""
        with self._lock:
            if self._server is None and self._error is None:
                try:
                    self._server = self._start()
                except Exception as exc:  # noqa: BLE001  # any failure to start means "cannot test here"
                    self._error = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
                    if self._root is not None:
                        shutil.rmtree(self._root, ignore_errors=True)
            if self._error is not None:
                pytest.skip(f"cannot start PostgreSQL from the pgserver wheel ({self._error})")
            return self._server

    def url(self, database: str = "postgres") -> str:
        """A URL of a database on the server (Unix socket, trust authentication)."""
        uri: str = self.server().get_uri(database)
        return uri

    def log_text(self) -> str:
        """The server's log so far."""
        self.server()
        assert self._root is not None
        return (self._root / "data" / "log").read_text(errors="replace")

    def new_database(self) -> str:
        """Create an empty database (pgvector installed, no gallery yet) and return its URL."""
        import psycopg

        name = f"facesense_test_{next(self._counter)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return self.url(name)


PG = PgCluster()


