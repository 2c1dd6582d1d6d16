"""The identity stage, with a scripted embedder and matcher: whom it embeds, the vote,
the states, the events and splits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from facesense.errors import ConfigError, ModelError
from facesense.identity import IdentityConfig, IdentityStage, sample_confidences
from facesense.track import Tracker, TrackerConfig
from facesense.types import EventType, Faces, Frame, IdentityState

KNOWN, UNKNOWN, PENDING = IdentityState.KNOWN, IdentityState.UNKNOWN, IdentityState.PENDING
IMAGE = np.zeros((480, 640, 3), np.uint8)
ANN, BOB, CAROL = np.eye(3, dtype=np.float32)  # 1.41 apart from each other


def frame(index: int = 0) -> Frame:
    return Frame(image=IMAGE, index=index, timestamp=index / 25.0, source_id="test")


def box(cx: float, cy: float = 100.0, side: float = 80.0) -> tuple[float, float, float, float]:
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def faces_at(boxes: list[tuple[float, float, float, float]], quality: list[float] | None = None) -> Faces:
    xyxy = np.array(boxes, np.float32).reshape(-1, 4)
    n = len(xyxy)
    return Faces(
        xyxy=xyxy,
        scores=np.full(n, 0.99, np.float32),
        landmarks=np.zeros((n, 5, 2), np.float32),
        quality=np.array(quality if quality is not None else [0.5] * n, np.float32),
    )


class ScriptedEmbedder:
    """The embedding of a face is whatever ``who`` says stands at its box's x centre."""

    model_id = "scripted"
    dim = 3

    def __init__(self, who: dict[int, np.ndarray]) -> None:
        self.who = who
        self.embedded: list[list[int]] = []  # the track ids of each call

    def embed(self, image: np.ndarray, faces: Faces) -> Faces:
        assert faces.track_ids is not None
        self.embedded.append(faces.track_ids.tolist())
        centres = ((faces.xyxy[:, 0] + faces.xyxy[:, 2]) / 2).round().astype(int)
        return faces.replace(embeddings=np.stack([self.who[int(c)] for c in centres]).reshape(-1, 3))


@dataclass
class _Match:
    names: tuple[str | None, ...]
    distances: np.ndarray
    confidences: np.ndarray


class Gallery:
    """Ann and Bob enrolled: distance 0 to oneself, 1.41 to anyone else; threshold 0.5."""

    def __init__(self, confidence: float = 0.9) -> None:
        self.people = {"ann": ANN, "bob": BOB}
        self.confidence = confidence

    def match(self, embeddings: np.ndarray) -> _Match:
        names, dist = [], []
        for e in embeddings:
            name, d = min(((n, float(np.linalg.norm(e - v))) for n, v in self.people.items()), key=lambda x: x[1])
            names.append(name if d <= 0.5 else None)
            dist.append(d)
        # The matcher's confidence is about its candidate: high for a match, low for a reject.
        conf = [self.confidence if n is not None else 1 - self.confidence for n in names]
        return _Match(tuple(names), np.array(dist, np.float32), np.array(conf, np.float32))


def stage(
    who: dict[int, np.ndarray], *, min_hits: int = 1, **identity: object
) -> tuple[Tracker, IdentityStage, ScriptedEmbedder]:
    tracker = Tracker(TrackerConfig(min_hits=min_hits))
    embedder = ScriptedEmbedder(who)
    return tracker, IdentityStage(tracker, embedder, Gallery(), IdentityConfig(**identity)), embedder  # type: ignore[arg-type]


def step(tracker: Tracker, identity: IdentityStage, faces: Faces | None) -> Faces:
    """One frame: a detection frame with ``faces``, or a predicted one."""
    tracked = tracker.predict() if faces is None else tracker.update(faces)
    return identity.identify(IMAGE, tracked)


def events(tracker: Tracker, identity: IdentityStage, index: int = 0) -> list[tuple[EventType, int | None, str | None]]:
    f = frame(index)
    return [(e.type, e.track_id, e.name) for e in (*tracker.drain_events(f), *identity.drain_events(f))]


# --------------------------------------------------------------------------- whom it embeds


def test_only_confirmed_tracks_seen_now_are_embedded() -> None:
    tracker, identity, embedder = stage({100: ANN}, min_hits=2)
    first = step(tracker, identity, faces_at([box(100)]))
    assert embedder.embedded == [] and first.states == (PENDING,) and first.names == (None,)
    second = step(tracker, identity, faces_at([box(100)]))
    assert embedder.embedded == [[1]]
    assert second.states == (KNOWN,) and second.names == ("ann",)
    # Between detections nothing is embedded, and the name stays.
    between = step(tracker, identity, None)
    assert embedder.embedded == [[1]]
    assert between.names == ("ann",) and between.states == (KNOWN,)
    assert identity.last_timings.embed_ms == 0.0


def test_new_tracks_are_embedded_more_often_until_they_have_a_few_samples() -> None:
    tracker, identity, embedder = stage({100: ANN}, reembed_every=9, warmup_samples=2, reembed_quality_gain=10)
    due = []
    for _ in range(30):
        before = len(embedder.embedded)
        step(tracker, identity, faces_at([box(100)]))
        due.append(len(embedder.embedded) > before)
    assert [i for i, d in enumerate(due) if d] == [0, 3, 12, 21]


def test_a_clearly_better_face_is_embedded_early_and_predicted_frames_count_as_time() -> None:
    tracker, identity, embedder = stage({100: ANN, 400: BOB}, reembed_every=3, warmup_samples=0)
    step(tracker, identity, faces_at([box(100), box(400)], quality=[0.5, 0.5]))
    assert embedder.embedded == [[1, 2]]
    # Just embedded, same quality: nobody ...
    step(tracker, identity, faces_at([box(100), box(400)], quality=[0.5, 0.5]))
    assert len(embedder.embedded) == 1
    # ... unless a face got clearly better (0.9 > 0.5 * 1.25) ...
    step(tracker, identity, faces_at([box(100), box(400)], quality=[0.9, 0.55]))
    assert embedder.embedded[-1] == [1]
    # ... or it is time to look again (3 frames, one of them predicted).
    step(tracker, identity, None)
    named = step(tracker, identity, faces_at([box(100), box(400)], quality=[0.9, 0.5]))
    assert embedder.embedded[-1] == [2]
    assert named.names == ("ann", "bob")


def test_without_a_matcher_nothing_is_embedded_and_every_face_is_pending() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1))
    identity = IdentityStage(tracker)
    named = identity.identify(IMAGE, tracker.update(faces_at([box(100), box(300)])))
    assert named.states == (PENDING, PENDING) and named.names == (None, None)
    assert named.confidences.tolist() == [0.0, 0.0] and np.isnan(named.distances).all()
    assert identity.due(named).tolist() == [True, True]  # it would, given the means


# --------------------------------------------------------------------------- the vote and states


def test_states_confidences_and_distances() -> None:
    tracker, identity, _ = stage({100: ANN, 300: CAROL, 500: ANN}, min_hits=1)
    out = step(tracker, identity, faces_at([box(100), box(300)]))
    assert out.states == (KNOWN, UNKNOWN) and out.names == ("ann", None)
    assert out.known_mask().tolist() == [True, False]
    # The unknown face's confidence is that it is nobody enrolled: 1 - the matcher's 0.1.
    np.testing.assert_allclose(out.confidences, [0.9, 0.9], rtol=1e-6)
    # Distances: to the voted name, or for an unknown face to its nearest (rejected) candidate.
    np.testing.assert_allclose(out.distances, [0.0, np.sqrt(2)], rtol=1e-6)
    # A face that appears later is pending until its track has a sample.
    tracker2, identity2, _ = stage({100: ANN}, min_hits=2)
    assert step(tracker2, identity2, faces_at([box(100)])).states == (PENDING,)


def test_the_vote_outweighs_one_odd_sample() -> None:
    # The same track is Ann four times, then looks like Bob once (a bad angle): still Ann.
    who = {100: ANN}
    tracker, identity, embedder = stage(who, reembed_every=1, warmup_samples=0, split_distance=0)
    for _ in range(4):
        step(tracker, identity, faces_at([box(100)]))
    who[100] = BOB
    out = step(tracker, identity, faces_at([box(100)]))
    assert len(embedder.embedded) == 5
    assert out.names == ("ann",) and out.states == (KNOWN,)
    assert out.confidences[0] == pytest.approx(0.9 * 4 / 5)


@pytest.mark.parametrize(
    ("names", "confidences", "expected"),
    [
        (("ann", None), [0.8, 0.3], [0.8, 0.7]),
        ((None,), [0.0], [1.0]),  # an empty gallery: surely nobody enrolled
        (("ann",), [1.5], [1.0]),  # clipped
        ((), [], []),
    ],
)
def test_sample_confidences(names: tuple, confidences: list[float], expected: list[float]) -> None:
    match = _Match(names, np.zeros(len(names), np.float32), np.array(confidences, np.float32))
    assert sample_confidences(match).tolist() == pytest.approx(expected)


# --------------------------------------------------------------------------- events


def test_recognized_once_unknown_once_settled_and_left_with_the_voted_name() -> None:
    tracker, identity, _ = stage({100: ANN, 300: CAROL}, reembed_every=1, warmup_samples=0, unknown_after_samples=3)
    step(tracker, identity, faces_at([box(100), box(300)]))
    assert events(tracker, identity) == [
        (EventType.APPEARED, 1, None),
        (EventType.APPEARED, 2, None),
        (EventType.RECOGNIZED, 1, "ann"),
    ]
    step(tracker, identity, faces_at([box(100), box(300)]))
    assert events(tracker, identity) == []  # Ann again: no news; Carol: 2 samples, not settled
    step(tracker, identity, faces_at([box(100), box(300)]))
    assert events(tracker, identity) == [(EventType.UNKNOWN, 2, None)]
    for _ in range(3):
        step(tracker, identity, faces_at([box(100), box(300)]))
    assert events(tracker, identity) == []  # once per track
    tracker.finish()
    left = [*tracker.drain_events(frame(9))]
    assert [(e.type, e.track_id, e.name) for e in left] == [(EventType.LEFT, 1, "ann"), (EventType.LEFT, 2, None)]
    assert left[0].confidence == pytest.approx(0.9) and left[1].confidence == pytest.approx(0.9)


def test_events_are_stamped_with_the_frame_and_the_track_box() -> None:
    tracker, identity, _ = stage({100: ANN})
    step(tracker, identity, faces_at([box(100)]))
    tracker.drain_events(frame(4))
    (recognized,) = identity.drain_events(frame(4))
    assert (recognized.frame, recognized.time, recognized.source) == (4, 4 / 25.0, "test")
    assert recognized.xyxy == pytest.approx(box(100))
    assert recognized.to_dict()["type"] == "recognized"


# --------------------------------------------------------------------------- splits


def test_a_track_that_jumps_to_another_face_is_split() -> None:
    # Ann stands at x=100; from the 4th detection Bob stands exactly there instead.
    who = {100: ANN}
    tracker, identity, embedder = stage(who, reembed_every=1, warmup_samples=0, split_distance=1.2)
    for _ in range(3):
        out = step(tracker, identity, faces_at([box(100)]))
    assert out.track_ids.tolist() == [1] and out.names == ("ann",)
    events(tracker, identity)
    who[100] = BOB
    out = step(tracker, identity, faces_at([box(100)]))
    # The returned faces already carry the new track, named from its own first sample.
    assert out.track_ids.tolist() == [2] and out.names == ("bob",) and out.states == (KNOWN,)
    assert events(tracker, identity) == [
        (EventType.LEFT, 1, "ann"),
        (EventType.APPEARED, 2, None),
        (EventType.RECOGNIZED, 2, "bob"),
    ]
    # The new track carries on in the same place; Ann's name went with the old one.
    assert step(tracker, identity, faces_at([box(100)])).names == ("bob",)
    assert tracker.track(1) is None and tracker.track(2) is not None
    assert len(embedder.embedded) == 5


def test_a_face_turning_is_not_a_split() -> None:
    near_ann = np.array([0.9, 0.3, 0.0], np.float32) / np.linalg.norm([0.9, 0.3, 0.0])
    who = {100: ANN}
    tracker, identity, _ = stage(who, reembed_every=1, warmup_samples=0, split_distance=1.2)
    step(tracker, identity, faces_at([box(100)]))
    who[100] = near_ann
    assert step(tracker, identity, faces_at([box(100)])).track_ids.tolist() == [1]
    # With splitting off, even another person keeps the track.
    tracker, identity, _ = stage({100: ANN}, reembed_every=1, warmup_samples=0, split_distance=0)
    step(tracker, identity, faces_at([box(100)]))
    identity.embedder.who[100] = BOB  # type: ignore[union-attr]
    assert step(tracker, identity, faces_at([box(100)])).track_ids.tolist() == [1]


# --------------------------------------------------------------------------- errors


def test_bad_use_is_refused() -> None:
    tracker = Tracker()
    with pytest.raises(ConfigError, match="needs an embedder"):
        IdentityStage(tracker, None, Gallery())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="track_ids"):
        IdentityStage(tracker).identify(IMAGE, faces_at([box(100)]))
    with pytest.raises(ConfigError, match="reembed_every"):
        IdentityConfig(reembed_every=0)
    with pytest.raises(ConfigError, match="switch_ratio"):
        IdentityConfig(switch_ratio=0.5)


def test_faces_the_tracker_never_saw_stay_pending() -> None:
    _, identity, embedder = stage({100: ANN})
    strangers = faces_at([box(100)]).replace(track_ids=np.array([42]))
    out = identity.identify(IMAGE, strangers)
    assert out.states == (PENDING,) and embedder.embedded == []


def test_a_broken_matcher_is_reported() -> None:
    class TooFew(Gallery):
        def match(self, embeddings: np.ndarray) -> _Match:
            return _Match((), np.zeros(0, np.float32), np.zeros(0, np.float32))

    tracker = Tracker(TrackerConfig(min_hits=1))
    identity = IdentityStage(tracker, ScriptedEmbedder({100: ANN}), TooFew())
    with pytest.raises(ModelError, match=r"returned 0 names.*for 1 embeddings"):
        identity.identify(IMAGE, tracker.update(faces_at([box(100)])))


def test_a_forgotten_track_is_named_afresh_on_its_next_detection() -> None:
    """After a correction: the track keeps its id, is pending at once, is embedded on its
    next detection and named by the matcher as it is then; its LEFT event carries no old name."""
    tracker, identity, embedder = stage({100: ANN}, reembed_every=50, warmup_samples=0)
    assert step(tracker, identity, faces_at([box(100)])).names == ("ann",)
    events(tracker, identity)
    embedded = len(embedder.embedded)
    identity.matcher.people = {"bob": BOB}  # type: ignore[attr-defined]  # "not ann": the gallery changed
    assert identity.forget(1) and not identity.forget(99)
    between = step(tracker, identity, None)
    assert between.track_ids.tolist() == [1] and between.names == (None,) and between.states == (PENDING,)
    again = step(tracker, identity, faces_at([box(100)]))
    assert len(embedder.embedded) == embedded + 1  # embedded at once, not 50 detections later
    assert again.track_ids.tolist() == [1] and again.names == (None,) and again.states == (UNKNOWN,)
    tracker.finish()
    assert [(e.type, e.name) for e in tracker.drain_events(frame(9))] == [(EventType.LEFT, None)]
