"""Assigning tracks to detections: one-to-one pairs by IoU, then by centre distance.

Pure functions on ``xyxy`` pixel boxes; the Hungarian algorithm comes from SciPy
(``scipy.optimize.linear_sum_assignment``) when it is installed, greedy assignment by
descending gain otherwise (or on request).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import numpy as np

from facesense.geometry import iou_matrix

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = [
    "SIZE_RATIO_MAX",
    "Matching",
    "assign",
    "centre_gain",
    "match_boxes",
    "to_cxcywh",
    "to_xyxy",
]

SIZE_RATIO_MAX = 1.5
""":func:`centre_gain` pairs boxes whose longer sides differ by at most this factor."""


class Matching(str, enum.Enum):
    """How tracks are assigned to detections."""

    AUTO = "auto"  # Hungarian when SciPy is installed, greedy otherwise
    HUNGARIAN = "hungarian"
    GREEDY = "greedy"


def _has_scipy() -> bool:
    try:
        import scipy.optimize  # noqa: F401
    except ImportError:
        return False
    return True


def to_cxcywh(xyxy: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """``(N, 4)`` ``xyxy`` boxes as ``(cx, cy, w, h)``, float64."""
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def to_xyxy(cxcywh: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """``(N, 4)`` ``(cx, cy, w, h)`` boxes as ``xyxy``, float64."""
    b = np.asarray(cxcywh, np.float64).reshape(-1, 4)
    half = b[:, 2:] / 2
    return np.concatenate([b[:, :2] - half, b[:, :2] + half], axis=1)


def assign(gain: npt.ArrayLike, *, min_gain: float, matching: Matching | str = Matching.AUTO) -> npt.NDArray[np.int64]:
    """One-to-one assignment of rows to columns maximising a gain matrix.

    Args:
        gain: ``(N, M)`` pair scores, higher is better.
        min_gain: pairs scoring lower never match.
        matching: Hungarian (maximum total gain) or greedy (highest gain first).

    Returns:
        ``(K, 2)`` int64 pairs ``(i, j)``, sorted by ``i``.
    """
    g = np.asarray(gain, np.float64)
    if g.size == 0:
        return np.zeros((0, 2), np.int64)
    mode = Matching(matching)
    if mode is Matching.AUTO:
        mode = Matching.HUNGARIAN if _has_scipy() else Matching.GREEDY
    pairs: list[tuple[int, int]] = []
    if mode is Matching.HUNGARIAN:
        from scipy.optimize import linear_sum_assignment

        # Pairs under the threshold get no credit so they never displace a real match.
        masked = np.where(g >= min_gain, g, 0.0)
        rows, cols = linear_sum_assignment(masked, maximize=True)
        pairs = [(int(i), int(j)) for i, j in zip(rows, cols, strict=True) if g[i, j] >= min_gain]
    else:
        order = np.argsort(-g, axis=None, kind="stable")
        used_a: set[int] = set()
        used_b: set[int] = set()
        for flat in order:
            i, j = divmod(int(flat), g.shape[1])
            if g[i, j] < min_gain:
                break
            if i in used_a or j in used_b:
                continue
            used_a.add(i)
            used_b.add(j)
            pairs.append((i, j))
    pairs.sort()
    return np.array(pairs, np.int64).reshape(-1, 2)


def match_boxes(
    a_xyxy: npt.ArrayLike,
    b_xyxy: npt.ArrayLike,
    *,
    iou_threshold: float,
    matching: Matching | str = Matching.AUTO,
) -> npt.NDArray[np.int64]:
    """Assign boxes of ``a`` to boxes of ``b`` one-to-one by IoU.

    Args:
        a_xyxy: ``(N, 4)`` boxes (tracks).
        b_xyxy: ``(M, 4)`` boxes (detections).
        iou_threshold: pairs with a lower IoU never match.
        matching: Hungarian (maximum total IoU) or greedy (highest IoU first).

    Returns:
        ``(K, 2)`` int64 pairs ``(i, j)`` of matched rows, sorted by ``i``.
    """
    return assign(iou_matrix(a_xyxy, b_xyxy), min_gain=iou_threshold, matching=matching)


def centre_gain(a_xyxy: npt.ArrayLike, b_xyxy: npt.ArrayLike, *, max_shift: float) -> npt.NDArray[np.float64]:
    """Closeness of box centres for boxes of similar size, in [0, 1].

    ``1 - d / (max_shift * s)`` where ``d`` is the centre distance and ``s`` the
    geometric mean of the two boxes' longer sides; 0 beyond that, and 0 for pairs whose
    sizes differ by more than ``SIZE_RATIO_MAX``.

    Args:
        a_xyxy: ``(N, 4)`` boxes (tracks).
        b_xyxy: ``(M, 4)`` boxes (detections).
        max_shift: centre distance, in box sides, at which the gain reaches 0.

    Returns:
        ``(N, M)`` float64.
    """
    a = to_cxcywh(a_xyxy)
    b = to_cxcywh(b_xyxy)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    side_a = np.maximum(a[:, 2], a[:, 3])[:, None]
    side_b = np.maximum(b[:, 2], b[:, 3])[None, :]
    scale = np.sqrt(side_a * side_b)
    dist = np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])
    gain = 1.0 - dist / (max_shift * scale)
    ratio = np.maximum(side_a, side_b) / np.maximum(np.minimum(side_a, side_b), 1e-6)
    return np.where((gain > 0) & (ratio <= SIZE_RATIO_MAX), gain, 0.0)
