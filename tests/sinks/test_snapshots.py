"""One crop per unknown track."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from facesense.sinks.base import EventSink
from facesense.sinks.snapshots import SnapshotSink
from facesense.types import EventType, IdentityState

APPEARED, RECOGNIZED, UNKNOWN, LEFT = EventType.APPEARED, EventType.RECOGNIZED, EventType.UNKNOWN, EventType.LEFT


def _feed(sink: SnapshotSink, results) -> None:
    for r in results:
        sink.write(r)


def test_unknown_track_saved_once_with_its_best_crop(tmp_path: Path, make_result, event) -> None:
    sink = SnapshotSink(tmp_path / "snaps", after_frames=100)
    box = [(40, 40, 120, 140)]
    results = [make_result(0, box, [1], events=[event(APPEARED, 1, 0)], quality=[0.3])]
    results += [make_result(i, box, [1], quality=[q]) for i, q in [(1, 0.9), (2, 0.5)]]
    results += [make_result(3, [], [], events=[event(LEFT, 1, 3)])]
    _feed(sink, results)
    sink.close()
    files = sorted((tmp_path / "snaps").iterdir())
    assert [f.name for f in files] == ["track00001_f000001.jpg"]  # frame 1 had the best face
    crop = cv2.imread(str(files[0]))
    assert crop.shape == (150, 130, 3)  # the 80x100 box + 25 % of its 100 px side on each side
    assert sink.saved_count == 1


def test_named_tracks_are_not_saved(tmp_path: Path, make_result, event) -> None:
    sink = SnapshotSink(tmp_path, after_frames=100)
    box = [(40, 40, 120, 140)]
    _feed(
        sink,
        [
            make_result(0, box, [1], events=[event(APPEARED, 1, 0)]),
            make_result(1, box, [1], ["ann"], events=[event(RECOGNIZED, 1, 1, "ann")]),
            make_result(2, [], [], events=[event(LEFT, 1, 2, "ann")]),
        ],
    )
    sink.close()
    assert list(tmp_path.iterdir()) == []


def test_long_unknown_track_saved_without_waiting_for_it_to_leave(tmp_path: Path, make_result, event) -> None:
    sink = SnapshotSink(tmp_path, after_frames=5)
    box = [(40, 40, 120, 140)]
    _feed(sink, [make_result(0, box, [1], events=[event(APPEARED, 1, 0)])])
    _feed(sink, [make_result(i, box, [1]) for i in range(1, 12)])
    assert sink.saved_count == 1
    _feed(sink, [make_result(12, [], [], events=[event(LEFT, 1, 12)])])
    sink.close()
    assert sink.saved_count == 1 and len(list(tmp_path.iterdir())) == 1


def test_predicted_frames_and_unconfirmed_tracks_give_no_crop(tmp_path: Path, make_result, event) -> None:
    sink = SnapshotSink(tmp_path)
    box = [(40, 40, 120, 140)]
    _feed(sink, [make_result(0, box, [9])])  # never appeared: unconfirmed
    _feed(sink, [make_result(1, box, [1], events=[event(APPEARED, 1, 1)], detected=False, quality=[np.nan])])
    sink.close()
    assert sink.saved_count == 0


def test_a_track_voted_unknown_is_saved_and_one_that_turns_known_is_not(tmp_path: Path, make_result, event) -> None:
    sink = SnapshotSink(tmp_path, after_frames=100)
    assert isinstance(sink, EventSink)
    boxes = [(40, 40, 120, 140), (180, 40, 260, 140)]
    pending = [IdentityState.PENDING, IdentityState.PENDING]
    _feed(sink, [make_result(0, boxes, [1, 2], events=[event(APPEARED, 1, 0), event(APPEARED, 2, 0)], states=pending)])
    # Track 2's state turns KNOWN (its RECOGNIZED event went elsewhere): it is never saved.
    decided = [IdentityState.UNKNOWN, IdentityState.KNOWN]
    _feed(sink, [make_result(1, boxes, [1, 2], [None, "ann"], states=decided, events=[event(UNKNOWN, 1, 1)])])
    _feed(sink, [make_result(2, [], [], events=[event(LEFT, 1, 2), event(LEFT, 2, 2, "ann")])])
    sink.close()
    assert [f.name for f in tmp_path.iterdir()] == ["track00001_f000000.jpg"]
