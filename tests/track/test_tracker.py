"""The tracker: ids, motion, birth and death, events, splits."""

from __future__ import annotations

import numpy as np
import pytest

from facesense.errors import ConfigError
from facesense.track import Tracker, TrackerConfig
from facesense.types import EventType, Faces, Frame

APPEARED, LEFT = EventType.APPEARED, EventType.LEFT
FRAME = Frame(image=np.zeros((4, 4, 3), np.uint8), index=7, timestamp=0.28, source_id="cam")


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


def kinds(tracker: Tracker) -> list[tuple[EventType, int | None]]:
    return [(e.type, e.track_id) for e in tracker.drain_events(FRAME)]


def test_ids_persist_while_faces_move() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1))
    ids = []
    for t in range(30):
        out = tracker.update(faces_at([box(100 + 6 * t, 200), box(500, 100 + 4 * t)]))
        ids.append(out.track_ids.tolist())
    assert ids == [[1, 2]] * 30
    assert kinds(tracker) == [(APPEARED, 1), (APPEARED, 2)]
    assert tracker.frames == 30


def test_new_face_gets_a_new_id_and_order_does_not_matter() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1))
    tracker.update(faces_at([box(100, 100)]))
    out = tracker.update(faces_at([box(400, 300), box(102, 101)]))
    assert out.track_ids.tolist() == [2, 1]
    assert tracker.active_count == 2


def test_track_survives_a_short_miss_and_dies_after_max_age() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1, max_age=5))
    tracker.update(faces_at([box(100, 100)]))
    tracker.drain_events(FRAME)
    for _ in range(3):
        assert len(tracker.update(Faces.empty())) == 0
    assert tracker.update(faces_at([box(101, 100)])).track_ids.tolist() == [1]
    for _ in range(6):
        tracker.update(Faces.empty())
    events = tracker.drain_events(FRAME)
    assert [(e.type, e.track_id) for e in events] == [(LEFT, 1)]
    np.testing.assert_allclose(events[0].xyxy, box(101, 100))
    assert tracker.track(1) is None
    assert tracker.update(faces_at([box(101, 100)])).track_ids.tolist() == [2]


def test_a_track_appears_only_after_min_hits() -> None:
    tracker = Tracker(TrackerConfig(min_hits=3, max_age=2))
    tracker.update(faces_at([box(100, 100)]))
    tracker.update(faces_at([box(100, 100)]))
    assert tracker.drain_events(FRAME) == []
    info = tracker.track(1)
    assert info is not None and not info.confirmed and info.hits == 2
    tracker.update(faces_at([box(100, 100)]))
    assert kinds(tracker) == [(APPEARED, 1)]
    assert tracker.track(1).confirmed
    # A one-frame false positive never appears, and never leaves either.
    tracker.update(faces_at([box(100, 100), box(400, 400)]))
    for _ in range(4):
        tracker.update(faces_at([box(100, 100)]))
    assert tracker.drain_events(FRAME) == []


def test_events_are_stamped_with_the_frame_and_carry_the_name_they_were_given() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1))
    tracker.update(faces_at([box(100, 100)]))
    appeared = tracker.drain_events(FRAME)
    assert [(e.type, e.time, e.frame, e.source, e.name, e.confidence) for e in appeared] == [
        (APPEARED, 0.28, 7, "cam", None, 0.0)
    ]
    tracker.set_name(1, "ann", 0.8)
    tracker.finish()
    later = Frame(image=FRAME.image, index=9, timestamp=0.36, source_id="cam")
    (left,) = tracker.drain_events(later)
    assert (left.type, left.frame, left.name, left.confidence) == (LEFT, 9, "ann", 0.8)
    assert tracker.drain_events(later) == []  # drained
    with pytest.raises(ConfigError, match="no live track 1"):
        tracker.set_name(1, "bob", 0.9)


def test_prediction_follows_a_moving_face_between_detections() -> None:
    every, speed = 5, 4.0
    tracker = Tracker(TrackerConfig(min_hits=1))
    errors = []
    for t in range(40):
        truth = box(100 + speed * t, 200)
        out = tracker.update(faces_at([truth])) if t % every == 0 else tracker.predict()
        assert out.track_ids.tolist() == [1]
        if t >= 2 * every:  # once the velocity is known
            errors.append(float(np.abs(out.xyxy[0] - truth).max()))
    assert len(errors) == 30 and max(errors) < 2.0


def test_predicted_faces_have_no_measured_quality() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1))
    tracker.update(faces_at([box(100, 100)]).replace(quality=np.array([0.7], np.float32)))
    predicted = tracker.predict()
    assert predicted.quality is not None and np.isnan(predicted.quality).all()
    assert predicted.scores.tolist() == pytest.approx([0.99])
    info = tracker.track(1)
    assert info is not None and info.since_update == 1


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


def test_predict_hides_tracks_the_last_detection_missed() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1))
    tracker.update(faces_at([box(100, 100), box(400, 100)]))
    tracker.update(faces_at([box(100, 100)]))
    assert tracker.predict().track_ids.tolist() == [1]
    assert tracker.active_count == 2


def test_new_scene_ends_every_track() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1))
    tracker.update(faces_at([box(100, 100)]))
    tracker.drain_events(FRAME)
    out = tracker.update(faces_at([box(100, 100)]), new_scene=True)
    assert out.track_ids.tolist() == [2]
    assert kinds(tracker) == [(LEFT, 1), (APPEARED, 2)]


def test_finish_reports_every_confirmed_track() -> None:
    tracker = Tracker(TrackerConfig(min_hits=2))
    tracker.update(faces_at([box(100, 100), box(300, 300)]))
    tracker.update(faces_at([box(100, 100)]))
    tracker.drain_events(FRAME)
    tracker.finish()
    assert kinds(tracker) == [(LEFT, 1)]
    assert tracker.active_count == 0


def test_update_returns_a_new_container_and_passes_fields_through() -> None:
    tracker = Tracker()
    faces = faces_at([box(100, 100)]).replace(quality=np.array([0.6], np.float32))
    out = tracker.update(faces)
    assert faces.track_ids is None and out.track_ids is not None
    assert out.quality.tolist() == pytest.approx([0.6])
    assert out.names is None and out.states is None  # naming is the identity stage's job


def test_a_split_ends_the_track_and_a_new_one_carries_on() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1))
    tracker.update(faces_at([box(100, 100)]))
    tracker.set_name(1, "ann", 0.9)
    tracker.drain_events(FRAME)
    new = tracker.split(1)
    assert new == 2 and tracker.track(1) is None
    events = tracker.drain_events(FRAME)
    assert [(e.type, e.track_id, e.name) for e in events] == [(LEFT, 1, "ann"), (APPEARED, 2, None)]
    info = tracker.track(2)
    assert info is not None and info.confirmed and info.hits == 1
    # Same place, same motion: the next detection continues the new track.
    assert tracker.update(faces_at([box(102, 100)])).track_ids.tolist() == [2]
    with pytest.raises(ConfigError, match="no live track 1"):
        tracker.split(1)


def test_splitting_an_unconfirmed_track_is_silent() -> None:
    tracker = Tracker(TrackerConfig(min_hits=3))
    tracker.update(faces_at([box(100, 100)]))
    assert tracker.split(1) == 2
    assert tracker.drain_events(FRAME) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"iou_threshold": 0.0}, "iou_threshold"),
        ({"max_age": 0}, "max_age"),
        ({"min_hits": 0}, "min_hits"),
        ({"velocity_smoothing": 0.0}, "velocity_smoothing"),
        ({"max_centre_shift": -1}, "max_centre_shift"),
        ({"matching": "magic"}, "magic"),
    ],
)
def test_tracker_config_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TrackerConfig(**kwargs)
