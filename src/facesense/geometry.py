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
    "batched_nms",
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


def _overlap(a: np.ndarray, b: np.ndarray, mode: NmsMode) -> np.ndarray:
    """Overlap of validated same-dtype ``(N, 4)`` and ``(M, 4)`` boxes."""
    ac = np.ascontiguousarray(a.T)  # columns, so the outer products run on contiguous rows
    bc = np.ascontiguousarray(b.T)
    w = np.minimum.outer(ac[2], bc[2])
    w -= np.maximum.outer(ac[0], bc[0])
    h = np.minimum.outer(ac[3], bc[3])
    h -= np.maximum.outer(ac[1], bc[1])
    np.maximum(w, 0, out=w)
    np.maximum(h, 0, out=h)
    inter = w
    inter *= h
    area_a = np.maximum(ac[2] - ac[0], 0) * np.maximum(ac[3] - ac[1], 0)
    area_b = np.maximum(bc[2] - bc[0], 0) * np.maximum(bc[3] - bc[1], 0)
    if mode is NmsMode.UNION:
        denom = np.add.outer(area_a, area_b)
        denom -= inter
    else:
        denom = np.minimum.outer(area_a, area_b)
    positive = denom > 0
    np.divide(inter, denom, out=inter, where=positive)
    inter[~positive] = 0
    return inter


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
    return _overlap(a.astype(dtype, copy=False), b.astype(dtype, copy=False), NmsMode(mode))


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
    order = np.argsort(-s, kind="stable").astype(np.int64)
    n = order.size
    if n <= 1:
        return order
    ranked = boxes[order]
    if n <= NMS_MATRIX_MAX_BOXES:
        keep = _greedy_by_iteration(_overlap(ranked, ranked, mode) > iou_threshold)
        if keep is not None:
            return order[keep]
    return order[_greedy_by_picks(ranked, iou_threshold, mode)]


def batched_nms(
    xyxy: npt.ArrayLike,
    scores: npt.ArrayLike,
    groups: npt.ArrayLike,
    iou_threshold: float,
    mode: NmsMode | str = NmsMode.UNION,
) -> npt.NDArray[np.int64]:
    """:func:`nms` within each group independently (boxes of different groups never suppress).

    Args:
        xyxy: ``(N, 4)`` boxes.
        scores: ``(N,)`` scores.
        groups: ``(N,)`` integer group of each box (a class, a pyramid level, an image).
        iou_threshold: overlap above which the lower-scored box is dropped.
        mode: ``"union"`` or ``"min"``.

    Returns:
        ``(K,)`` int64 indices into the input of the kept boxes, best score first.
    """
    boxes = _as_boxes(xyxy).astype(np.float64)  # the shifted coordinates get large
    g = np.asarray(groups).reshape(-1)
    if g.shape[0] != boxes.shape[0]:
        raise ValueError(f"groups: expected {boxes.shape[0]} values to match xyxy, got {g.shape[0]}")
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    # Shift each group to its own region of the plane, so groups cannot overlap.
    lo = np.minimum(boxes[:, 0:2].min(), 0)
    span = np.maximum(boxes[:, 2:4].max(), 0) - lo + 1
    _, dense = np.unique(g, return_inverse=True)
    return nms(boxes - lo + dense.reshape(-1, 1) * span, scores, iou_threshold, mode)


# Greedy NMS as a fixed point: box i (in score order) is kept iff no kept box j < i
# suppresses it. Iterating that rule from "all kept" settles one more box per round
# at least, usually all of them in a few rounds; past this many we fall back to the
# one-pick-at-a-time loop.
_NMS_MAX_ROUNDS = 32


def _greedy_by_iteration(suppresses: np.ndarray) -> npt.NDArray[np.bool_] | None:
    """Kept mask for an ``(N, N)`` "row suppresses column" matrix in score order."""
    n = suppresses.shape[0]
    earlier = np.triu(suppresses, k=1).astype(np.float32)  # [j, i]: j < i and j suppresses i
    keep = np.ones(n, dtype=bool)
    for _ in range(_NMS_MAX_ROUNDS):
        new = (keep.astype(np.float32) @ earlier) == 0
        if np.array_equal(new, keep):
            return keep
        keep = new
    return None


def _greedy_by_picks(ranked: np.ndarray, iou_threshold: float, mode: NmsMode) -> npt.NDArray[np.int64]:
    """Greedy NMS on score-ordered boxes, one overlap row per kept box."""
    keep: list[int] = []
    remaining = np.arange(ranked.shape[0])
    while remaining.size:  # one iteration per kept box
        i = int(remaining[0])
        keep.append(i)
        rest = remaining[1:]
        over = _overlap(ranked[i : i + 1], ranked[rest], mode)[0]
        remaining = rest[over <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


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
