"""Fixtures for the web tests: one set of models for the whole folder, and app builders."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# The host TestClient talks to: a loopback name, as a browser on this machine would send.
BASE_URL = "http://127.0.0.1"

MakeClient = Callable[..., Any]


@pytest.fixture(scope="session")
def analyzer() -> Any:
    """One FaceAnalyzer (models loaded once) for every web test."""
    import numpy as np

    from facesense.analyzer import FaceAnalyzer

    analyzer = FaceAnalyzer()
    analyzer.detect(np.zeros((64, 64, 3), np.uint8))
    analyzer.embedder.load()
    return analyzer


@pytest.fixture
def make_client(tmp_path: Path, analyzer: Any) -> Iterator[MakeClient]:
    """``make_client(db=..., **config)``: a started TestClient on a fresh app."""
    from fastapi.testclient import TestClient

    from facesense.web.app import create_app
    from facesense.web.config import ServeConfig
    from facesense.web.engine import Engine

    clients: list[TestClient] = []

    def make(*, db: Path | None = None, start_sources: bool = True, **settings: Any) -> TestClient:
        config = ServeConfig(db=db or tmp_path / "gallery.db", **settings)
        engine = Engine(config, analyzer=analyzer)
        app = create_app(config, engine=engine, start_sources=start_sources)
        client = TestClient(app, base_url=BASE_URL)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
