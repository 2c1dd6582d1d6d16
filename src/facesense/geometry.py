"""Box maths shared by the detector, the tracker and the evaluation: pure numpy.

Boxes are ``(N, 4)`` ``xyxy`` arrays in continuous pixel coordinates (see
:mod:`facesense.types`): ``x2 - x1`` is the width, with no ``+ 1``. Functions never
modify their inputs. Floating-point inputs keep their precision (float32 stays
float32, so the detector never pays for float64); anything else becomes float32.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = [
    "NmsMode",
    "box_area",
    "clip_boxes",
    "iou_matrix",
    "nms",
    "overlap_matrix",
    "regress_boxes",
    "scale_boxes",
    "square_boxes",
    "xywh_to_xyxy",
    "xyxy_to_xywh",
]

# Greedy NMS precomputes the full (N, N) overlap matrix up to this many boxes (16 MB
# as float32) and computes one row per kept box beyond it, so memory stays bounded.
NMS_MATRIX_MAX_BOXES = 2048


class NmsMode(str, enum.Enum):
    """How two boxes' overlap is measured.

    ``UNION`` is intersection over union (IoU). ``MIN`` is intersection over the
    smaller box's area, which also suppresses a box nested inside a larger one.
    """

    UNION = "union"
    MIN = "min"


def _as_boxes(xyxy: npt.ArrayLike, name: str = "xyxy") -> np.ndarray:
    arr = np.asarray(xyxy)
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float32)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name}: expected shape (N, 4), got {arr.shape}")
    return arr


def box_area(xyxy: npt.ArrayLike) -> np.ndarray:
    """Area of each box; boxes with ``x2 < x1`` or ``y2 < y1`` have area 0.

    Args:
        xyxy: ``(N, 4)`` boxes.

    Returns:
        ``(N,)`` areas, in the boxes' float dtype.
    """
    b = _as_boxes(xyxy)
    return np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    wh = np.minimum(a[:, None, 2:4], b[None, :, 2:4]) - np.maximum(a[:, None, 0:2], b[None, :, 0:2])
    np.maximum(wh, 0, out=wh)
    return wh[..., 0] * wh[..., 1]


def overlap_matrix(
    a_xyxy: npt.ArrayLike, b_xyxy: npt.ArrayLike, mode: NmsMode | str = NmsMode.UNION
) -> np.ndarray:
    """Pairwise overlap of two box sets: IoU, or intersection over the smaller area.

    Args:
        a_xyxy: ``(N, 4)`` boxes.
        b_xyxy: ``(M, 4)`` boxes.
        mode: ``"union"`` (IoU) or ``"min"`` (intersection / min(area_a, area_b)).

    Returns:
        ``(N, M)`` values in [0, 1]; 0 where the denominator is 0 (degenerate boxes).
    """
    a = _as_boxes(a_xyxy, "a_xyxy")
    b = _as_boxes(b_xyxy, "b_xyxy")
    dtype = np.result_type(a.dtype, b.dtype)
    a, b = a.astype(dtype, copy=False), b.astype(dtype, copy=False)
    inter = _intersection(a, b)
    area_a, area_b = box_area(a), box_area(b)
    if NmsMode(mode) is NmsMode.UNION:
        denom = area_a[:, None] + area_b[None, :] - inter
    else:
        denom = np.minimum(area_a[:, None], area_b[None, :])
    out = np.zeros_like(inter)
    np.divide(inter, denom, out=out, where=denom > 0)
    return out


def iou_matrix(a_xyxy: npt.ArrayLike, b_xyxy: npt.ArrayLike) -> np.ndarray:
    """Pairwise intersection over union.

    Args:
        a_xyxy: ``(N, 4)`` boxes.
        b_xyxy: ``(M, 4)`` boxes.

    Returns:
        ``(N, M)`` IoU in [0, 1] (0 for pairs involving a zero-area box).
    """
    return overlap_matrix(a_xyxy, b_xyxy, NmsMode.UNION)


def nms(
    xyxy: npt.ArrayLike,
    scores: npt.ArrayLike,
    iou_threshold: float,
    mode: NmsMode | str = NmsMode.UNION,
) -> npt.NDArray[np.int64]:
    """Greedy non-maximum suppression.

    Boxes are visited by descending score (ties keep input order); a box is kept
    unless its overlap with an already kept box is strictly greater than
    ``iou_threshold``.

    Args:
        xyxy: ``(N, 4)`` boxes.
        scores: ``(N,)`` scores.
        iou_threshold: overlap above which the lower-scored box is dropped.
        mode: ``"union"`` (IoU) or ``"min"`` (intersection over the smaller area).

    Returns:
        ``(K,)`` int64 indices into the input of the kept boxes, best score first.
    """
    boxes = _as_boxes(xyxy)
    s = np.asarray(scores).reshape(-1)
    if s.shape[0] != boxes.shape[0]:
        raise ValueError(f"scores: expected {boxes.shape[0]} values to match xyxy, got {s.shape[0]}")
    mode = NmsMode(mode)
    n = boxes.shape[0]
    order = np.argsort(-s, kind="stable")
    if n <= 1:
        return order.astype(np.int64)
    ranked = boxes[order]
    matrix = overlap_matrix(ranked, ranked, mode) if n <= NMS_MATRIX_MAX_BOXES else None
    keep: list[int] = []
    remaining = np.arange(n)
    while remaining.size:  # one iteration per kept box
        i = int(remaining[0])
        keep.append(i)
        rest = remaining[1:]
        if matrix is not None:
            over = matrix[i, rest]
        else:
            over = overlap_matrix(ranked[i : i + 1], ranked[rest], mode)[0]
        remaining = rest[over <= iou_threshold]
    return order[np.asarray(keep, dtype=np.int64)]


def regress_boxes(xyxy: npt.ArrayLike, deltas: npt.ArrayLike) -> np.ndarray:
    """Apply MTCNN-style box regression (calibration).

    Each edge moves by its delta times the box's width (x edges) or height (y edges):
    ``x1 + dx1 * w, y1 + dy1 * h, x2 + dx2 * w, y2 + dy2 * h``.

    Args:
        xyxy: ``(N, 4)`` boxes.
        deltas: ``(N, 4)`` offsets ``(dx1, dy1, dx2, dy2)`` relative to the box size.

    Returns:
        ``(N, 4)`` calibrated boxes.
    """
    b = _as_boxes(xyxy)
    d = _as_boxes(deltas, "deltas").astype(b.dtype, copy=False)
    if d.shape != b.shape:
        raise ValueError(f"deltas: expected shape {b.shape}, got {d.shape}")
    wh = b[:, 2:4] - b[:, 0:2]
    return b + d * np.concatenate([wh, wh], axis=1)


def square_boxes(xyxy: npt.ArrayLike) -> np.ndarray:
    """Grow each box to a square of side ``max(w, h)`` about its centre.

    Args:
        xyxy: ``(N, 4)`` boxes.

    Returns:
        ``(N, 4)`` square boxes.
    """
    b = _as_boxes(xyxy)
    centre = (b[:, 0:2] + b[:, 2:4]) * 0.5
    half = np.max(b[:, 2:4] - b[:, 0:2], axis=1, keepdims=True) * 0.5
    return np.concatenate([centre - half, centre + half], axis=1)


def clip_boxes(xyxy: npt.ArrayLike, size_wh: tuple[float, float]) -> np.ndarray:
    """Clip boxes to an image of ``(width, height)`` pixels.

    Args:
        xyxy: ``(N, 4)`` boxes.
        size_wh: image width and height.

    Returns:
        ``(N, 4)`` boxes with x in [0, width] and y in [0, height].
    """
    b = _as_boxes(xyxy)
    w, h = size_wh
    upper = np.array([w, h, w, h], dtype=b.dtype)
    return np.clip(b, 0, upper)


def scale_boxes(xyxy: npt.ArrayLike, scale: float | tuple[float, float]) -> np.ndarray:
    """Multiply coordinates by a factor, e.g. to map boxes between image resolutions.

    Args:
        xyxy: ``(N, 4)`` boxes.
        scale: one factor, or ``(sx, sy)`` for x and y separately.

    Returns:
        ``(N, 4)`` scaled boxes.
    """
    b = _as_boxes(xyxy)
    sx, sy = (scale, scale) if np.isscalar(scale) else scale  # type: ignore[misc]
    return b * np.array([sx, sy, sx, sy], dtype=b.dtype)


def xywh_to_xyxy(xywh: npt.ArrayLike) -> np.ndarray:
    """``(x, y, width, height)`` boxes to ``(x1, y1, x2, y2)``."""
    b = _as_boxes(xywh, "xywh")
    return np.concatenate([b[:, 0:2], b[:, 0:2] + b[:, 2:4]], axis=1)


def xyxy_to_xywh(xyxy: npt.ArrayLike) -> np.ndarray:
    """``(x1, y1, x2, y2)`` boxes to ``(x, y, width, height)``."""
    b = _as_boxes(xyxy)
    return np.concatenate([b[:, 0:2], b[:, 2:4] - b[:, 0:2]], axis=1)
