"""Fixtures for the web tests: one set of models for the whole folder, app builders, Chromium."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# The host TestClient talks to: a loopback name, as a browser on this machine would send.
BASE_URL = "http://127.0.0.1"

# Debian's Chromium (apt-get install chromium), never a Playwright download.
CHROMIUM = Path(os.environ.get("FACESENSE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

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


@pytest.fixture(scope="session")
def web_models(analyzer: Any) -> Any:
    """The server's models around the shared analyzer (the live detector is built once too)."""
    from facesense.web.models import WebModels

    return WebModels(analyzer=analyzer)


@pytest.fixture
def make_client(tmp_path: Path, web_models: Any) -> Iterator[MakeClient]:
    """``make_client(db=..., **config)``: a started TestClient on a fresh app."""
    from fastapi.testclient import TestClient

    from facesense.web.app import create_app
    from facesense.web.config import ServeConfig

    clients: list[TestClient] = []

    def make(*, db: Path | None = None, start_sources: bool = True, **settings: Any) -> TestClient:
        config = ServeConfig(db=db or tmp_path / "gallery.db", **settings)
        app = create_app(config, models=web_models, start_sources=start_sources)
        client = TestClient(app, base_url=BASE_URL)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture(scope="session")
def mistaken_db(tmp_path_factory: pytest.TempPathFactory, examples_dir: Path, analyzer: Any) -> Path:
    """A gallery where ``obama`` is alex's face (so alex's test photo is named obama), and
    ``biden`` is biden: the wrong name that corrections tests correct. Copy it before writing."""
    from facesense.enroll import Enroller
    from facesense.gallery.sqlite import SQLiteGallery

    train = examples_dir / "knn_examples" / "train"
    db = tmp_path_factory.mktemp("mistaken") / "mistaken.db"
    with SQLiteGallery(db) as gallery:
        enroller = Enroller(gallery, analyzer)
        assert enroller.enroll_person("obama", [train / "alex_lacamoire" / "img1.jpg"]).in_gallery == 1
        assert enroller.enroll_person("biden", [train / "biden"]).in_gallery == 2
    return db


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium driven by Playwright (skips when either is missing)."""
    playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
