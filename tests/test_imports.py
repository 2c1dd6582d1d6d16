"""Importing facesense must stay cheap: no OpenCV, no ONNX Runtime, no model loads."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_import_does_not_load_heavy_modules() -> None:
    code = (
        "import sys, facesense, facesense.cli;"
        "heavy = [m for m in ('cv2', 'onnxruntime', 'onnx', 'sklearn', 'torch') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_all_is_sorted_and_resolves() -> None:
    import facesense

    assert facesense.__all__ == sorted(facesense.__all__)
    for name in facesense.__all__:
        assert getattr(facesense, name) is not None


def test_unknown_attribute() -> None:
    import facesense

    with pytest.raises(AttributeError, match="no_such_thing"):
        facesense.no_such_thing  # noqa: B018
