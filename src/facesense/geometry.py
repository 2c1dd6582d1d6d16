"""Box maths shared by the detector, the tracker and the evaluation: pure numpy.

Boxes are ``(N, 4)`` ``xyxy`` arrays in continuous pixel coordinates (see
:mod:`facesense.types`): ``x2 - x1`` is the width, with no ``+ 1``. Functions never
modify their inputs. Floating-point inputs keep their precision (float32 stays
float32, so the detector never pays for float64); anything else becomes float32.
"""

from __future__ import annotations

import enum
import math
from typing import TYPE_CHECKING

import numpy as np

from facesense.choices import parse_choice
from facesense.errors import ConfigError

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = [
    "NmsMode",
    "invert_affine",
    "rotate_image",
    "rotation_matrix",
    "transform_points",
    "batched_nms",
    "box_area",
    "clip_boxes",
    "iou_matrix",
    "nms",
    "overlap_matrix",
    "regress_boxes",
    "roll_degrees",
    "scale_boxes",
    "square_boxes",
    "xywh_to_xyxy",
    "xyxy_to_xywh",
]

# Greedy NMS computes the full (N, N) overlap matrix up to this many boxes (16 MB as
# float32); beyond, only the pairs that can overlap, so memory stays bounded.
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
        raise ConfigError(f"{name}: expected shape (N, 4), got {arr.shape}")
    return arr


def box_area(xyxy: npt.ArrayLike) -> np.ndarray:
    """Area of each box; boxes with ``x2 < x1`` or ``y2 < y1`` have area 0.

    Args:
        xyxy: ``(N, 4)`` boxes.

    Returns:
        ``(N,)`` areas, in the boxes' float dtype.
    """
    b = _as_boxes(xyxy)
    area: np.ndarray = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
    return area


def _overlap(a: np.ndarray, b: np.ndarray, mode: NmsMode) -> np.ndarray:
    """Overlap of validated same-dtype ``(N, 4)`` and ``(M, 4)`` boxes."""
    # columns, so the outer products run on contiguous rows
    ac = np.ascontiguousarray(a.T)
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
    result: np.ndarray = inter
    return result


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
    return _overlap(
        a.astype(dtype, copy=False), b.astype(dtype, copy=False), NmsMode(mode)
    )


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
        raise ConfigError(
            f"scores: expected {boxes.shape[0]} values to match xyxy, got {s.shape[0]}"
        )
    mode = parse_choice(NmsMode, mode, "NMS mode")
    order = np.argsort(-s, kind="stable").astype(np.int64)
    n = order.size
    if n <= 1:
        return order
    ranked = boxes[order]
    if n <= NMS_MATRIX_MAX_BOXES:
        earlier, later = np.nonzero(
            np.triu(_overlap(ranked, ranked, mode) > iou_threshold, k=1)
        )
    else:
        earlier, later = _suppression_pairs(ranked, iou_threshold, mode)
    return order[_greedy(n, earlier, later)]


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
    boxes = _as_boxes(xyxy)
    s = np.asarray(scores).reshape(-1)
    g = np.asarray(groups).reshape(-1)
    if g.shape[0] != boxes.shape[0]:
        raise ConfigError(
            f"groups: expected {boxes.shape[0]} values to match xyxy, got {g.shape[0]}"
        )
    if s.shape[0] != boxes.shape[0]:
        raise ConfigError(
            f"scores: expected {boxes.shape[0]} values to match xyxy, got {s.shape[0]}"
        )
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    # One call per group rather than one shifted problem: coordinates stay exact, so
    # overlaps that equal the threshold are judged the same as by nms() on the group.
    keep = []
    for group in np.unique(g):
        members = np.flatnonzero(g == group)
        keep.append(members[nms(boxes[members], s[members], iou_threshold, mode)])
    kept = np.concatenate(keep)
    return kept[np.argsort(-s[kept], kind="stable")]


# Greedy NMS as a fixed point: box i (in score order) is kept iff no kept box j < i
# suppresses it. Iterating that rule from "all kept" settles at least one more box per
# round, usually all of them in a few rounds; past this many rounds (long chains of
# boxes each suppressing the next) we finish one kept box at a time.
_NMS_MAX_ROUNDS = 32
# Above NMS_MATRIX_MAX_BOXES, overlapping pairs are found by a sweep over x, this many
# candidate pairs at a time.
_NMS_PAIR_CHUNK = 1 << 21


def _greedy(n: int, earlier: np.ndarray, later: np.ndarray) -> npt.NDArray[np.int64]:
    """Indices kept by greedy NMS, given every pair where box ``earlier[k]`` (better
    score) suppresses box ``later[k]``."""
    keep = np.ones(n, dtype=bool)
    for _ in range(_NMS_MAX_ROUNDS):
        suppressed = np.zeros(n, dtype=bool)
        suppressed[later[keep[earlier]]] = True
        if np.array_equal(~suppressed, keep):
            return np.flatnonzero(keep)
        keep = ~suppressed
    by_source = np.argsort(earlier, kind="stable")
    targets = later[by_source]
    bounds = np.searchsorted(earlier[by_source], np.arange(n + 1))
    alive = np.ones(n, dtype=bool)
    kept = []
    i = 0
    while i < n and alive[i:].any():  # one iteration per kept box
        i += int(np.argmax(alive[i:]))
        kept.append(i)
        alive[targets[bounds[i] : bounds[i + 1]]] = False
        i += 1
    return np.asarray(kept, dtype=np.int64)


def _suppression_pairs(
    ranked: np.ndarray, iou_threshold: float, mode: NmsMode
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(earlier, later)`` of score-ordered boxes overlapping more than the
    threshold, without an ``(N, N)`` matrix: after sorting by ``x1``, a box can only
    overlap the boxes that start before its right edge."""
    n = ranked.shape[0]
    by_x = np.argsort(ranked[:, 0], kind="stable")
    starts = ranked[by_x, 0]
    ends = np.searchsorted(starts, ranked[by_x, 2], side="left")
    # number of partners after each box in x order
    counts = np.maximum(ends - np.arange(n) - 1, 0)
    cumulative = np.cumsum(counts)
    earlier_parts, later_parts = [], []
    first = 0
    while first < n:
        budget = (cumulative[first - 1] if first else 0) + _NMS_PAIR_CHUNK
        last = max(int(np.searchsorted(cumulative, budget, side="right")), first + 1)
        span = np.arange(first, min(last, n))
        own = np.repeat(span, counts[span])
        if own.size:
            offsets = np.arange(own.size) - np.repeat(
                np.cumsum(counts[span]) - counts[span], counts[span]
            )
            a, b = by_x[own], by_x[own + 1 + offsets]
            hit = _pair_overlap(ranked[a], ranked[b], mode) > iou_threshold
            a, b = a[hit], b[hit]
            earlier_parts.append(np.minimum(a, b))
            later_parts.append(np.maximum(a, b))
        first = int(span[-1]) + 1
    if not earlier_parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(earlier_parts), np.concatenate(later_parts)


def _pair_overlap(a: np.ndarray, b: np.ndarray, mode: NmsMode) -> np.ndarray:
    """Overlap of ``a[k]`` with ``b[k]`` for two ``(K, 4)`` box arrays."""
    w = np.maximum(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0)
    h = np.maximum(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0)
    inter = w * h
    area_a = np.maximum(a[:, 2] - a[:, 0], 0) * np.maximum(a[:, 3] - a[:, 1], 0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
    denom = (
        area_a + area_b - inter if mode is NmsMode.UNION else np.minimum(area_a, area_b)
    )
    out: np.ndarray = np.zeros_like(inter)
    np.divide(inter, denom, out=out, where=denom > 0)
    return out


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
        raise ConfigError(f"deltas: expected shape {b.shape}, got {d.shape}")
    wh = b[:, 2:4] - b[:, 0:2]
    moved: np.ndarray = b + d * np.concatenate([wh, wh], axis=1)
    return moved


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
    clipped: np.ndarray = np.clip(b, 0, upper)
    return clipped


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
    scaled: np.ndarray = b * np.array([sx, sy, sx, sy], dtype=b.dtype)
    return scaled


def xywh_to_xyxy(xywh: npt.ArrayLike) -> np.ndarray:
    """``(x, y, width, height)`` boxes to ``(x1, y1, x2, y2)``."""
    b = _as_boxes(xywh, "xywh")
    return np.concatenate([b[:, 0:2], b[:, 0:2] + b[:, 2:4]], axis=1)


def xyxy_to_xywh(xyxy: npt.ArrayLike) -> np.ndarray:
    """``(x1, y1, x2, y2)`` boxes to ``(x, y, width, height)``."""
    b = _as_boxes(xyxy)
    return np.concatenate([b[:, 0:2], b[:, 2:4] - b[:, 0:2]], axis=1)


# --------------------------------------------------------------------------- rotation

# Canvas sides are rounded up, but float noise (cos 90 = 6e-17) must not add a pixel.
_SIZE_EPS = 1e-6


def rotation_matrix(size_wh: tuple[int, int], angle_deg: float) -> tuple[npt.NDArray[np.float64], tuple[int, int]]:
    """The affine map rotating an image about its centre onto a canvas that holds it all.

    Args:
        size_wh: the image's ``(width, height)`` in pixels.
        angle_deg: rotation, degrees counter-clockwise as displayed.

    Returns:
        ``(matrix, canvas_wh)``: a ``(2, 3)`` float64 matrix taking continuous pixel
        coordinates of the image to those of the canvas (the image centre goes to the
        canvas centre), and the canvas ``(width, height)``.

    Raises:
        ConfigError: a side is not positive or the angle is not finite.
    """
    w, h = size_wh
    if w <= 0 or h <= 0:
        raise ConfigError(f"size_wh: expected positive sides, got {size_wh}")
    if not math.isfinite(angle_deg):
        raise ConfigError(f"angle_deg: expected a finite angle, got {angle_deg}")
    theta = math.radians(angle_deg)
    cos, sin = math.cos(theta), math.sin(theta)
    canvas_w = max(1, math.ceil(abs(w * cos) + abs(h * sin) - _SIZE_EPS))
    canvas_h = max(1, math.ceil(abs(w * sin) + abs(h * cos) - _SIZE_EPS))
    # y points down, so a counter-clockwise turn on screen is [[c, s], [-s, c]]
    linear = np.array([[cos, sin], [-sin, cos]], dtype=np.float64)
    centre = np.array([w / 2.0, h / 2.0])
    offset = np.array([canvas_w / 2.0, canvas_h / 2.0]) - linear @ centre
    return np.concatenate([linear, offset[:, None]], axis=1), (canvas_w, canvas_h)


def transform_points(points: npt.ArrayLike, matrix: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Apply a ``(2, 3)`` affine matrix to points.

    Args:
        points: ``(..., 2)`` ``(x, y)`` points.
        matrix: ``(2, 3)`` affine matrix.

    Returns:
        The mapped points, same shape, float64.

    Raises:
        ConfigError: wrong shapes.
    """
    p = np.asarray(points, dtype=np.float64)
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3):
        raise ConfigError(f"matrix: expected shape (2, 3), got {m.shape}")
    if p.ndim == 0 or p.shape[-1] != 2:
        raise ConfigError(f"points: expected shape (..., 2), got {p.shape}")
    mapped: npt.NDArray[np.float64] = p @ m[:, :2].T + m[:, 2]
    return mapped


def invert_affine(matrix: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The inverse of a ``(2, 3)`` affine matrix (maps rotated points back to the original).

    Raises:
        ConfigError: wrong shape or a singular matrix.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3):
        raise ConfigError(f"matrix: expected shape (2, 3), got {m.shape}")
    linear = m[:, :2]
    if abs(np.linalg.det(linear)) < 1e-12:
        raise ConfigError("matrix: singular, cannot be inverted")
    inv = np.linalg.inv(linear)
    return np.concatenate([inv, (-inv @ m[:, 2])[:, None]], axis=1)


def rotate_image(
    image: npt.NDArray[np.uint8], angle_deg: float
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float64]]:
    """Rotate an image about its centre onto a canvas large enough for all of it.

    Multiples of 90 degrees are exact pixel permutations; other angles are bilinear,
    with black corners.

    Args:
        image: ``(H, W, 3)`` (or ``(H, W)``) uint8 image, any colour order.
        angle_deg: rotation, degrees counter-clockwise as displayed.

    Returns:
        ``(rotated, matrix)``: the canvas, and the ``(2, 3)`` matrix taking continuous
        pixel coordinates of ``image`` to those of ``rotated`` (see
        :func:`transform_points`, :func:`invert_affine`).

    Raises:
        ConfigError: not an image, or a non-finite angle.
    """
    import cv2

    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ConfigError(f"image: expected (H, W) or (H, W, C), got shape {image.shape}")
    h, w = image.shape[:2]
    matrix, (canvas_w, canvas_h) = rotation_matrix((w, h), angle_deg)
    quarter = angle_deg / 90.0
    if quarter == round(quarter):
        # np.rot90 turns counter-clockwise as displayed, like the matrix
        rotated = np.ascontiguousarray(np.rot90(image, k=round(quarter) % 4))
        return rotated, matrix
    # cv2 puts pixel i's centre at coordinate i, facesense at i + 0.5
    cv_matrix = matrix.copy()
    cv_matrix[:, 2] = transform_points(np.array([0.5, 0.5]), matrix) - 0.5
    warped = np.asarray(
        cv2.warpAffine(
            image,
            cv_matrix,
            (canvas_w, canvas_h),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        ),
        dtype=np.uint8,
    )
    return np.ascontiguousarray(warped), matrix


def roll_degrees(landmarks: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Each face's roll from its eye line.

    Args:
        landmarks: ``(N, 5, 2)`` (or one ``(5, 2)``) points in facesense's order (left
            eye, right eye, ... in the face's own upright frame; see :mod:`facesense.detect.rotate`).

    Returns:
        ``(N,)`` float32 degrees in (-180, 180], counter-clockwise as displayed: the
        angle from the image's x axis to the line from the left eye to the right eye.
        0 is upright; 90 is a face turned a quarter counter-clockwise (its eyes one
        above the other, the right eye on top); 180 is upside down. Rotating the image
        by ``-roll`` makes the face upright.

    Raises:
        ConfigError: wrong shape.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim == 2:
        pts = pts[None]
    if pts.ndim != 3 or pts.shape[1:] != (5, 2):
        raise ConfigError(f"landmarks: expected shape (N, 5, 2), got {pts.shape}")
    d = pts[:, 1] - pts[:, 0]
    # y grows downwards, so counter-clockwise on screen is -dy
    roll = np.degrees(np.arctan2(-d[:, 1], d[:, 0]))
    roll = np.where(roll <= -180.0, roll + 360.0, roll)
    return roll.astype(np.float32)
