"""Shared fixtures: where the real test data lives.

Test images are never committed: they are read from ``../shared/data`` beside the
repository, or from ``$FACESENSE_DATA``. Tests that need them skip cleanly when the
folder is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path:
    env = os.environ.get("FACESENSE_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared test data folder (skips the test when it is absent)."""
    root = _data_root()
    if not root.is_dir():
        pytest.skip(f"test data not found at {root} (set FACESENSE_DATA to its path)")
    return root


@pytest.fixture(scope="session")
def examples_dir(data_dir: Path) -> Path:
    """face_recognition's example images and clip."""
    path = data_dir / "face_recognition_examples"
    if not path.is_dir():
        pytest.skip(f"{path} is missing")
    return path


@pytest.fixture(scope="session")
def lfw_dir(data_dir: Path) -> Path:
    """The LFW deep-funneled images and pairs (folds 1-5)."""
    path = data_dir / "lfw"
    if not path.is_dir():
        pytest.skip(f"{path} is missing")
    return path
