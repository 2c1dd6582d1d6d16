"""Assigning tracks to detections: IoU pairs, the centre pass, Hungarian and greedy."""

from __future__ import annotations

import numpy as np
import pytest

from facesense.track import Matching, assign, centre_gain, match_boxes
from facesense.track.assignment import to_cxcywh, to_xyxy


def box(cx: float, cy: float, side: float = 80.0) -> tuple[float, float, float, float]:
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


@pytest.mark.parametrize("matching", [Matching.HUNGARIAN, Matching.GREEDY])
def test_match_boxes_pairs_overlapping_boxes(matching: Matching) -> None:
    a = [box(100, 100), box(300, 100), box(500, 500)]
    b = [box(305, 100), box(102, 98)]
    pairs = match_boxes(a, b, iou_threshold=0.3, matching=matching)
    assert pairs.tolist() == [[0, 1], [1, 0]]


@pytest.mark.parametrize("matching", list(Matching))
@pytest.mark.parametrize(("n", "m"), [(0, 0), (0, 3), (2, 0)])
def test_match_boxes_empty(matching: Matching, n: int, m: int) -> None:
    pairs = match_boxes(np.zeros((n, 4)), np.zeros((m, 4)), iou_threshold=0.3, matching=matching)
    assert pairs.shape == (0, 2)


def test_hungarian_beats_greedy_on_total_overlap() -> None:
    # Greedy takes the single best pair (a0, b0) and leaves a1 unmatched; the
    # optimal assignment matches both.
    a = [(0, 0, 10, 10), (6, 0, 16, 10)]
    b = [(3, 0, 13, 10), (-4, 0, 6, 10)]
    greedy = match_boxes(a, b, iou_threshold=0.2, matching=Matching.GREEDY)
    hungarian = match_boxes(a, b, iou_threshold=0.2, matching=Matching.HUNGARIAN)
    assert len(greedy) == 1
    assert hungarian.tolist() == [[0, 1], [1, 0]]


@pytest.mark.parametrize("matching", [Matching.HUNGARIAN, Matching.GREEDY])
def test_pairs_under_the_threshold_never_match(matching: Matching) -> None:
    gain = [[0.9, 0.1], [0.2, 0.25]]
    assert assign(gain, min_gain=0.3, matching=matching).tolist() == [[0, 0]]


def test_centre_pass_needs_similar_sizes_and_close_centres() -> None:
    gain = centre_gain([box(100, 100, 80)], [box(150, 100, 80), box(100, 100, 160), box(300, 100, 80)], max_shift=1.0)
    assert gain[0, 0] == pytest.approx(1 - 50 / 80)
    assert gain[0, 1] == 0.0  # twice the size
    assert gain[0, 2] == 0.0  # too far
    assert centre_gain(np.zeros((0, 4)), [box(1, 1)], max_shift=1.0).shape == (0, 1)


def test_box_conversions_round_trip() -> None:
    xyxy = np.array([[10.0, 20.0, 50.0, 100.0], [0.0, 0.0, 1.0, 3.0]])
    np.testing.assert_allclose(to_cxcywh(xyxy), [[30, 60, 40, 80], [0.5, 1.5, 1, 3]])
    np.testing.assert_allclose(to_xyxy(to_cxcywh(xyxy)), xyxy)
