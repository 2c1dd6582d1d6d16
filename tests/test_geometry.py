"""Box maths: tables of small cases, plus greedy NMS against a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest

from facesense import geometry
from facesense.errors import ConfigError
from facesense.geometry import (
    NmsMode,
    batched_nms,
    box_area,
    clip_boxes,
    iou_matrix,
    nms,
    overlap_matrix,
    regress_boxes,
    scale_boxes,
    square_boxes,
    xywh_to_xyxy,
    xyxy_to_xywh,
)

UNIT = [0, 0, 10, 10]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        pytest.param(UNIT, UNIT, 1.0, id="identical"),
        pytest.param(UNIT, [20, 20, 30, 30], 0.0, id="disjoint"),
        pytest.param(UNIT, [10, 0, 20, 10], 0.0, id="touching-edge"),
        pytest.param(UNIT, [5, 0, 15, 10], 50 / 150, id="half-shifted"),
        pytest.param(UNIT, [0, 0, 5, 5], 25 / 100, id="nested-quarter"),
        pytest.param(UNIT, [-5, -5, 5, 5], 25 / 175, id="negative-coordinates"),
        pytest.param(UNIT, [3, 3, 3, 8], 0.0, id="zero-area"),
        pytest.param(
            [0.5, 0.5, 2.5, 1.5], [1.5, 0.5, 3.5, 1.5], 1 / 3, id="fractional"
        ),
    ],
)
def test_iou_pairs(a: list[float], b: list[float], expected: float) -> None:
    got = iou_matrix([a], [b])
    assert got.shape == (1, 1)
    assert got[0, 0] == pytest.approx(expected)
    assert iou_matrix([b], [a])[0, 0] == pytest.approx(expected)  # symmetric


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        pytest.param(UNIT, [0, 0, 5, 5], 1.0, id="nested-is-full-overlap"),
        pytest.param(UNIT, [5, 0, 15, 10], 0.5, id="half-shifted"),
        pytest.param(UNIT, [20, 20, 30, 30], 0.0, id="disjoint"),
        pytest.param(UNIT, [3, 3, 3, 8], 0.0, id="zero-area"),
    ],
)
def test_min_overlap_pairs(a: list[float], b: list[float], expected: float) -> None:
    assert overlap_matrix([a], [b], "min")[0, 0] == pytest.approx(expected)


@pytest.mark.parametrize(("n", "m"), [(0, 0), (0, 3), (2, 0), (3, 4)])
def test_iou_matrix_shapes(n: int, m: int) -> None:
    rng = np.random.default_rng(n * 10 + m)
    a = np.sort(rng.uniform(0, 50, (n, 2, 2)), axis=1).transpose(0, 2, 1).reshape(n, 4)
    b = np.sort(rng.uniform(0, 50, (m, 2, 2)), axis=1).transpose(0, 2, 1).reshape(m, 4)
    out = iou_matrix(a, b)
    assert out.shape == (n, m)
    assert np.all((out >= 0) & (out <= 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_dtype_is_kept(dtype: type) -> None:
    boxes = np.array([UNIT], dtype=dtype)
    assert iou_matrix(boxes, boxes).dtype == dtype
    assert regress_boxes(boxes, np.zeros((1, 4), dtype)).dtype == dtype
    assert square_boxes(boxes).dtype == dtype


def test_integer_boxes_become_float32() -> None:
    assert iou_matrix(np.array([UNIT]), np.array([UNIT])).dtype == np.float32


@pytest.mark.parametrize(
    "bad",
    [np.zeros((3,)) + 1, np.zeros((2, 3)), np.zeros((2, 4, 1))],
    ids=["1d", "three-columns", "3d"],
)
def test_bad_box_shapes_raise(bad: np.ndarray) -> None:
    with pytest.raises(ConfigError, match=r"expected shape \(N, 4\)"):
        iou_matrix(bad, [UNIT])


@pytest.mark.parametrize(
    ("boxes", "scores", "threshold", "mode", "expected"),
    [
        pytest.param([], [], 0.5, "union", [], id="empty"),
        pytest.param([UNIT], [0.3], 0.5, "union", [0], id="single"),
        pytest.param(
            [UNIT, [1, 1, 11, 11], [50, 50, 60, 60]],
            [0.9, 0.8, 0.7],
            0.5,
            "union",
            [0, 2],
            id="overlapping-pair-and-loner",
        ),
        pytest.param(
            [UNIT, [1, 1, 11, 11]],
            [0.2, 0.8],
            0.5,
            "union",
            [1],
            id="best-score-wins-not-first",
        ),
        pytest.param(
            [UNIT, [5, 0, 15, 10]],
            [0.9, 0.8],
            50 / 150,
            "union",
            [0, 1],
            id="iou-equal-threshold-kept",
        ),
        pytest.param(
            [UNIT, [5, 0, 15, 10]],
            [0.9, 0.8],
            0.3,
            "union",
            [0],
            id="iou-above-threshold-dropped",
        ),
        pytest.param(
            [UNIT, [0, 0, 5, 5]],
            [0.9, 0.8],
            0.5,
            "union",
            [0, 1],
            id="nested-survives-union",
        ),
        pytest.param(
            [UNIT, [0, 0, 5, 5]],
            [0.9, 0.8],
            0.5,
            "min",
            [0],
            id="nested-dropped-by-min",
        ),
        pytest.param(
            [UNIT, UNIT, UNIT],
            [0.5, 0.5, 0.5],
            0.5,
            "union",
            [0],
            id="ties-keep-input-order",
        ),
        pytest.param(
            # a chain: 0 suppresses 1, so 2 (overlapping 1 only) survives
            [[0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10]],
            [0.9, 0.8, 0.7],
            0.4,
            "union",
            [0, 2],
            id="chain-suppressed-box-does-not-suppress",
        ),
    ],
)
def test_nms_table(
    boxes: list[list[float]],
    scores: list[float],
    threshold: float,
    mode: str,
    expected: list[int],
) -> None:
    keep = nms(
        np.array(boxes, dtype=np.float32).reshape(-1, 4),
        np.array(scores),
        threshold,
        mode,
    )
    assert keep.dtype == np.int64
    assert keep.tolist() == expected


def _brute_force_nms(
    boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str
) -> list[int]:
    overlaps = overlap_matrix(boxes, boxes, mode)
    keep: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if all(overlaps[i, j] <= threshold for j in keep):
            keep.append(int(i))
    return keep


def _random_boxes(
    rng: np.random.Generator, n: int, extent: float = 200.0
) -> np.ndarray:
    xy = rng.uniform(0, extent, (n, 2))
    wh = rng.uniform(5, 60, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mode", ["union", "min"])
def test_nms_matches_brute_force(seed: int, mode: str) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    boxes = _random_boxes(rng, n)
    scores = np.round(rng.uniform(0, 1, n), 1)  # rounding makes ties
    for threshold in (0.3, 0.5, 0.7):
        assert nms(boxes, scores, threshold, mode).tolist() == _brute_force_nms(
            boxes, scores, threshold, mode
        )


def test_nms_long_chain_falls_back_and_stays_exact() -> None:
    # 12 px windows 2 px apart: each suppresses the next, a chain deeper than the
    # fixed-point iteration allows, so the one-pick-at-a-time loop takes over.
    n = 3 * geometry._NMS_MAX_ROUNDS
    x = np.arange(n, dtype=np.float32) * 2
    boxes = np.stack([x, np.zeros(n), x + 12, np.full(n, 12)], axis=1).astype(
        np.float32
    )
    scores = np.linspace(1, 0, n)
    keep = nms(boxes, scores, 0.5)
    assert keep.tolist() == _brute_force_nms(boxes, scores, 0.5, "union")
    assert keep.tolist() == list(range(0, n, 2))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("mode", ["union", "min"])
def test_nms_without_full_matrix(
    seed: int, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past NMS_MATRIX_MAX_BOXES, overlapping pairs come from a sweep over x, in chunks."""
    rng = np.random.default_rng(seed)
    boxes = _random_boxes(rng, 250)
    boxes[:20, 0] = boxes[20:40, 0]  # equal left edges
    boxes[40:45, 2] = boxes[40:45, 0]  # zero-width boxes
    scores = np.round(rng.uniform(0, 1, 250), 1)
    monkeypatch.setattr(geometry, "NMS_MATRIX_MAX_BOXES", 10)
    monkeypatch.setattr(geometry, "_NMS_PAIR_CHUNK", 100)
    for threshold in (0.3, 0.6):
        assert nms(boxes, scores, threshold, mode).tolist() == _brute_force_nms(
            boxes, scores, threshold, mode
        )


def test_nms_rejects_mismatched_scores() -> None:
    with pytest.raises(ConfigError, match="scores: expected 1 values"):
        nms([UNIT], [0.1, 0.2], 0.5)


def test_nms_rejects_unknown_mode() -> None:
    with pytest.raises(ConfigError, match="unknown NMS mode 'max'; choose one of union, min"):
        nms([UNIT], [0.1], 0.5, "max")


def test_batched_nms_keeps_groups_apart() -> None:
    boxes = np.array([UNIT, [1, 1, 11, 11], UNIT, [1, 1, 11, 11]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    groups = np.array([0, 0, 1, 1])
    assert batched_nms(boxes, scores, groups, 0.5).tolist() == [3, 0]
    assert batched_nms(np.zeros((0, 4)), [], [], 0.5).tolist() == []


@pytest.mark.parametrize("seed", range(3))
def test_batched_nms_equals_nms_per_group(seed: int) -> None:
    rng = np.random.default_rng(seed)
    boxes = _random_boxes(rng, 150, extent=80)
    scores = rng.uniform(0, 1, 150)
    groups = rng.integers(0, 4, 150)
    expected = set()
    for g in range(4):
        members = np.flatnonzero(groups == g)
        expected |= set(members[nms(boxes[members], scores[members], 0.5)].tolist())
    keep = batched_nms(boxes, scores, groups, 0.5)
    assert set(keep.tolist()) == expected
    assert np.all(np.diff(scores[keep]) <= 0)


@pytest.mark.parametrize(
    ("box", "deltas", "expected"),
    [
        pytest.param(UNIT, [0, 0, 0, 0], UNIT, id="zero"),
        pytest.param(
            UNIT, [0.1, 0.2, -0.1, 0.5], [1, 2, 9, 15], id="edges-move-by-size"
        ),
        pytest.param(
            [10, 20, 30, 60],
            [-0.5, 0.25, 0.5, -0.25],
            [0, 30, 40, 50],
            id="width-and-height",
        ),
    ],
)
def test_regress_boxes(
    box: list[float], deltas: list[float], expected: list[float]
) -> None:
    assert regress_boxes([box], [deltas])[0].tolist() == pytest.approx(expected)


def test_regress_boxes_shape_mismatch() -> None:
    with pytest.raises(ConfigError, match="deltas: expected shape"):
        regress_boxes([UNIT, UNIT], [[0, 0, 0, 0]])


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        pytest.param(UNIT, UNIT, id="already-square"),
        pytest.param([0, 0, 10, 20], [-5, 0, 15, 20], id="tall"),
        pytest.param([0, 0, 20, 10], [0, -5, 20, 15], id="wide"),
        pytest.param([1.5, 2.5, 2.5, 6.5], [0, 2.5, 4, 6.5], id="fractional"),
    ],
)
def test_square_boxes(box: list[float], expected: list[float]) -> None:
    assert square_boxes([box])[0].tolist() == pytest.approx(expected)


@pytest.mark.parametrize(
    ("box", "size_wh", "expected"),
    [
        pytest.param([-5, -5, 5, 5], (100, 50), [0, 0, 5, 5], id="top-left"),
        pytest.param(
            [90, 40, 120, 70], (100, 50), [90, 40, 100, 50], id="bottom-right"
        ),
        pytest.param([10, 10, 20, 20], (100, 50), [10, 10, 20, 20], id="inside"),
    ],
)
def test_clip_boxes(
    box: list[float], size_wh: tuple[int, int], expected: list[float]
) -> None:
    assert clip_boxes([box], size_wh)[0].tolist() == expected


@pytest.mark.parametrize(
    ("scale", "expected"),
    [(2.0, [2, 4, 6, 8]), ((2.0, 0.5), [2, 1, 6, 2])],
    ids=["uniform", "per-axis"],
)
def test_scale_boxes(scale: float | tuple[float, float], expected: list[float]) -> None:
    assert scale_boxes([[1, 2, 3, 4]], scale)[0].tolist() == expected


def test_xywh_round_trip() -> None:
    xywh = np.array([[10, 20, 30, 40], [0, 0, 1, 1]], dtype=np.float32)
    xyxy = xywh_to_xyxy(xywh)
    assert xyxy.tolist() == [[10, 20, 40, 60], [0, 0, 1, 1]]
    assert xyxy_to_xywh(xyxy).tolist() == xywh.tolist()


def test_box_area() -> None:
    assert box_area([[0, 0, 2, 3], [5, 5, 4, 9]]).tolist() == [6, 0]


def test_nms_mode_accepts_strings() -> None:
    assert NmsMode("min") is NmsMode.MIN
