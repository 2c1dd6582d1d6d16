"""Tracker, identity vote, face quality and scene cuts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from facesense.errors import ConfigError
from facesense.track import (
    IdentityVote,
    Matching,
    SceneCutDetector,
    Tracker,
    TrackerConfig,
    centre_gain,
    face_quality,
    match_boxes,
)
from facesense.types import Faces


def faces_at(boxes: list[tuple[float, float, float, float]], score: float = 0.99) -> Faces:
    """Faces with the given xyxy boxes and landmarks at the box centre."""
    xyxy = np.array(boxes, np.float32).reshape(-1, 4)
    centre = (xyxy[:, :2] + xyxy[:, 2:]) / 2
    return Faces(
        xyxy=xyxy,
        scores=np.full(len(xyxy), score, np.float32),
        landmarks=np.repeat(centre[:, None, :], 5, axis=1),
    )


def box(cx: float, cy: float, side: float = 80.0) -> tuple[float, float, float, float]:
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def kinds(events) -> list[tuple[str, int]]:
    return [(e.type.value, e.track_id) for e in events]


# --------------------------------------------------------------------------- matching


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


# --------------------------------------------------------------------------- tracker


def test_ids_persist_while_faces_move() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1))
    ids = []
    for t in range(30):
        out = tracker.update(faces_at([box(100 + 6 * t, 200), box(500, 100 + 4 * t)]))
        ids.append(out.track_ids.tolist())
    assert ids == [[1, 2]] * 30
    assert kinds(tracker.drain_events()) == [("appeared", 1), ("appeared", 2)]


def test_new_face_gets_a_new_id_and_order_does_not_matter() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1))
    tracker.update(faces_at([box(100, 100)]))
    out = tracker.update(faces_at([box(400, 300), box(102, 101)]))
    assert out.track_ids.tolist() == [2, 1]
    assert tracker.active_count == 2


def test_track_survives_a_short_miss_and_dies_after_max_age() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1, max_age=5))
    tracker.update(faces_at([box(100, 100)]))
    tracker.drain_events()
    for _ in range(3):
        assert len(tracker.update(Faces.empty())) == 0
    assert tracker.update(faces_at([box(101, 100)])).track_ids.tolist() == [1]
    for _ in range(6):
        tracker.update(Faces.empty())
    events = tracker.drain_events()
    assert kinds(events) == [("left", 1)]
    np.testing.assert_allclose(events[0].xyxy, box(101, 100))
    assert tracker.update(faces_at([box(101, 100)])).track_ids.tolist() == [2]


def test_a_track_appears_only_after_min_hits() -> None:
    tracker = Tracker(TrackerConfig(min_hits=3, max_age=2))
    tracker.update(faces_at([box(100, 100)]))
    tracker.update(faces_at([box(100, 100)]))
    assert tracker.drain_events() == []
    assert not tracker.confirmed([1])[0]
    tracker.update(faces_at([box(100, 100)]))
    assert kinds(tracker.drain_events()) == [("appeared", 1)]
    # A one-frame false positive never appears, and never leaves either.
    tracker.update(faces_at([box(100, 100), box(400, 400)]))
    for _ in range(4):
        tracker.update(faces_at([box(100, 100)]))
    assert tracker.drain_events() == []


def test_prediction_follows_a_moving_face_between_detections() -> None:
    every, speed = 5, 4.0
    tracker = Tracker(TrackerConfig(min_hits=1))
    errors = []
    for t in range(40):
        truth = box(100 + speed * t, 200)
        if t % every == 0:
            out = tracker.update(faces_at([truth]))
        else:
            out = tracker.predict()
        assert out.track_ids.tolist() == [1]
        if t >= 2 * every:  # once the velocity is known
            errors.append(float(np.abs(out.xyxy[0] - truth).max()))
    assert max(errors) < 2.0


def test_fast_face_keeps_its_id_with_sparse_detection() -> None:
    # An 80 px face moving 12 px/frame, detected every 5 frames: 60 px between
    # detections, IoU 0.14 with the old box. The centre pass matches the first step,
    # the motion model the rest.
    tracker = Tracker(TrackerConfig(min_hits=1))
    ids = set()
    for t in range(0, 60, 5):
        ids.update(tracker.update(faces_at([box(100 + 12 * t, 200)])).track_ids.tolist())
        for _ in range(4):
            tracker.predict()
    assert ids == {1}
    off = Tracker(TrackerConfig(min_hits=1, max_centre_shift=0))
    off.update(faces_at([box(100, 200)]))
    assert off.update(faces_at([box(160, 200)])).track_ids.tolist() == [2]


def test_centre_pass_needs_similar_sizes_and_close_centres() -> None:
    gain = centre_gain([box(100, 100, 80)], [box(150, 100, 80), box(100, 100, 160), box(300, 100, 80)], max_shift=1.0)
    assert gain[0, 0] == pytest.approx(1 - 50 / 80)
    assert gain[0, 1] == 0.0  # twice the size
    assert gain[0, 2] == 0.0  # too far


def test_predict_hides_tracks_the_last_detection_missed() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1))
    tracker.update(faces_at([box(100, 100), box(400, 100)]))
    tracker.update(faces_at([box(100, 100)]))
    assert tracker.predict().track_ids.tolist() == [1]
    assert tracker.active_count == 2


def test_new_scene_ends_every_track() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1))
    tracker.update(faces_at([box(100, 100)]))
    tracker.drain_events()
    out = tracker.update(faces_at([box(100, 100)]), new_scene=True)
    assert out.track_ids.tolist() == [2]
    assert kinds(tracker.drain_events()) == [("left", 1), ("appeared", 2)]


def test_finish_reports_every_confirmed_track() -> None:
    tracker = Tracker(TrackerConfig(min_hits=2))
    tracker.update(faces_at([box(100, 100), box(300, 300)]))
    tracker.update(faces_at([box(100, 100)]))
    tracker.drain_events()
    tracker.finish()
    assert kinds(tracker.drain_events()) == [("left", 1)]
    assert tracker.active_count == 0


def test_update_returns_a_new_container() -> None:
    tracker = Tracker()
    faces = faces_at([box(100, 100)])
    out = tracker.update(faces)
    assert faces.track_ids is None and out.track_ids is not None
    assert out.names == (None,)
    with pytest.raises(ValueError, match="quality"):
        tracker.update(faces, quality=[0.5, 0.5])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"iou_threshold": 0.0}, "iou_threshold"),
        ({"max_age": 0}, "max_age"),
        ({"min_hits": 0}, "min_hits"),
        ({"velocity_smoothing": 0.0}, "velocity_smoothing"),
        ({"switch_ratio": 0.5}, "switch_ratio"),
        ({"matching": "magic"}, "magic"),
    ],
)
def test_tracker_config_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises((ConfigError, ValueError), match=match):
        TrackerConfig(**kwargs)


# --------------------------------------------------------------------------- identity


def test_vote_does_not_flicker_on_odd_samples() -> None:
    vote = IdentityVote(window=16, switch_ratio=1.5)
    decided = []
    for name in ["ann", "ann", "bob", "ann", None, "ann", "bob", "ann", "ann", "bob"]:
        vote.add(name, quality=0.8, confidence=0.9)
        decided.append(vote.name)
    assert decided == ["ann"] * 10
    assert 0.5 < vote.confidence < 0.9


def test_vote_weights_samples_by_quality() -> None:
    vote = IdentityVote()
    vote.add("ann", quality=0.9, confidence=0.9)
    for _ in range(5):
        vote.add("bob", quality=0.1, confidence=0.9)  # small, blurry glimpses
    assert vote.name == "ann"


def test_vote_changes_its_mind_when_the_evidence_does() -> None:
    vote = IdentityVote(window=8)
    vote.add("ann", quality=0.5, confidence=0.6)
    for _ in range(8):
        vote.add("bob", quality=0.9, confidence=0.9)
    assert vote.name == "bob"
    assert vote.confidence == pytest.approx(0.9)
    assert vote.samples == 8


def test_vote_prefers_unknown_on_a_tie() -> None:
    vote = IdentityVote()
    vote.add(None, quality=0.5, confidence=0.8)
    vote.add("ann", quality=0.5, confidence=0.8)
    assert vote.name is None
    assert math.isnan(vote.distance)


def test_tracker_votes_and_labels_names() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1, reembed_every=3, warmup_samples=0, reembed_quality_gain=0.25))
    out = tracker.update(faces_at([box(100, 100), box(400, 100)]), quality=[0.5, 0.5])
    tracker.drain_events()
    assert tracker.embed_mask(out).tolist() == [True, True]
    tracker.vote([1, 2], ["ann", None], [0.9, 0.8], [0.6, 1.2])
    assert kinds(tracker.drain_events()) == [("recognized", 1)]
    out = tracker.update(faces_at([box(101, 100), box(401, 100)]), quality=[0.5, 0.5])
    assert out.names == ("ann", None)
    # Distances: to the voted name, or for unknown faces to the nearest (rejected) candidate.
    np.testing.assert_allclose(out.distances, [0.6, 1.2])
    assert tracker.confidences(out.track_ids).tolist() == pytest.approx([0.9, 0.8])
    # Just embedded, same quality: no embedding needed ...
    assert tracker.embed_mask(out).tolist() == [False, False]
    # ... unless the face got clearly better ...
    out = tracker.update(faces_at([box(101, 100), box(401, 100)]), quality=[0.9, 0.55])
    assert tracker.embed_mask(out).tolist() == [True, False]
    tracker.vote([1], ["ann"], [0.9])
    # ... or it is time to look again.
    tracker.update(faces_at([box(101, 100), box(401, 100)]), quality=[0.9, 0.5])
    out = tracker.update(faces_at([box(101, 100), box(401, 100)]), quality=[0.9, 0.5])
    assert tracker.embed_mask(out).tolist() == [False, True]
    assert tracker.drain_events() == []  # the name did not change: no new event


def test_new_tracks_are_embedded_more_often_until_they_have_a_few_samples() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1, reembed_every=9, warmup_samples=2, reembed_quality_gain=10))
    due = []
    for _ in range(30):
        out = tracker.update(faces_at([box(100, 100)]), quality=[0.5])
        mask = tracker.embed_mask(out)
        due.append(bool(mask[0]))
        if mask[0]:
            tracker.vote(out.track_ids, ["ann"], [0.9])
    assert [i for i, d in enumerate(due) if d] == [0, 3, 12, 21]


def test_unconfirmed_tracks_are_not_embedded() -> None:
    tracker = Tracker(TrackerConfig(min_hits=2))
    out = tracker.update(faces_at([box(100, 100)]))
    assert tracker.embed_mask(out).tolist() == [False]
    out = tracker.update(faces_at([box(100, 100)]))
    assert tracker.embed_mask(out).tolist() == [True]


def test_vote_rejects_mismatched_lengths() -> None:
    tracker = Tracker()
    with pytest.raises(ValueError, match="equal lengths"):
        tracker.vote([1, 2], ["a"], [0.5, 0.5])


# --------------------------------------------------------------------------- quality


def test_quality_prefers_large_sharp_confident_faces() -> None:
    rng = np.random.default_rng(1)
    image = np.full((400, 800, 3), 128, np.uint8)
    image[50:250, 50:250] = rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)  # sharp texture
    image[50:250, 450:650] = 128  # flat: blurry
    faces = faces_at([(50, 50, 250, 250), (450, 50, 650, 250), (50, 300, 80, 330)])
    q = face_quality(image, faces)
    assert q.dtype == np.float32 and q.shape == (3,)
    assert q[0] == pytest.approx(0.99, abs=0.01)
    assert q[1] < 0.5 * q[0]
    assert q[2] < 0.5 * q[0]  # 30 px face
    low_score = face_quality(image, faces_at([(50, 50, 250, 250)], score=0.5))
    assert low_score[0] == pytest.approx(q[0] * 0.5 / 0.99, rel=1e-3)
    assert face_quality(image, Faces.empty()).shape == (0,)


# --------------------------------------------------------------------------- scene cuts


def test_scene_cuts_in_the_clip(examples_dir: Path) -> None:
    from facesense.capture import open_source

    detector = SceneCutDetector()
    with open_source(examples_dir / "short_hamilton_clip.mp4") as source:
        cuts = [f.index for f in source if detector.update(f.image)]
    assert cuts == [20, 82, 211]


def test_a_track_that_jumps_to_another_face_is_split() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1, split_distance=1.2))
    out = tracker.update(faces_at([box(100, 100)]))
    ann, bob = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])  # 1.41 apart
    near_ann = np.array([0.9, 0.3, 0.0]) / np.linalg.norm([0.9, 0.3, 0.0])
    assert tracker.vote(out.track_ids, ["ann"], [0.9], embeddings=[ann]).tolist() == [1]
    assert tracker.vote(out.track_ids, ["ann"], [0.8], embeddings=[near_ann]).tolist() == [1]
    tracker.drain_events()
    new = tracker.vote(out.track_ids, [None], [0.9], embeddings=[bob])
    assert new.tolist() == [2]
    assert kinds(tracker.drain_events()) == [("left", 1), ("appeared", 2)]
    # The new track carries on from the same place, without the old name.
    out = tracker.update(faces_at([box(102, 100)]))
    assert out.track_ids.tolist() == [2] and out.names == (None,)
    off = Tracker(TrackerConfig(min_hits=1, split_distance=0))
    out = off.update(faces_at([box(100, 100)]))
    off.vote(out.track_ids, ["ann"], [0.9], embeddings=[ann])
    assert off.vote(out.track_ids, [None], [0.9], embeddings=[bob]).tolist() == [1]
