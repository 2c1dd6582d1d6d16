"""The fleet tests share the gallery tests' real PostgreSQL (``tests/pg.py``): one server
per test process, a fresh database per test, skipped with the reason where it cannot start."""

from __future__ import annotations

import pytest

from ..pg import PG, PgCluster


@pytest.fixture(scope="session")
def pg_cluster() -> PgCluster:
    """The test PostgreSQL server (skips when it cannot start)."""
    PG.server()
    return PG


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> str:
    """The URL of a fresh, empty database of its own for this test."""
    return pg_cluster.new_database()
