"""The real-time loop: plumbing with fakes, then the real models on the clip."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesense.capture import CaptureConfig, SourceStatus, StatusKind, VideoSource, open_source
from facesense.errors import ConfigError, ModelError
from facesense.identity import IdentityConfig
from facesense.pipeline import Pipeline, PipelineConfig, status_event
from facesense.track import Tracker, TrackerConfig
from facesense.types import Event, EventType, Faces, Frame, FrameResult, IdentityState, StageTimings

APPEARED, RECOGNIZED, UNKNOWN, LEFT = EventType.APPEARED, EventType.RECOGNIZED, EventType.UNKNOWN, EventType.LEFT
KNOWN, UNKNOWN_STATE, PENDING = IdentityState.KNOWN, IdentityState.UNKNOWN, IdentityState.PENDING


# --------------------------------------------------------------------------- fakes
# Synthetic "faces" are coloured squares on black; the colour is the identity.

RED, GREEN = (0, 0, 255), (0, 255, 0)


def square_frames(n: int = 40, *, size_wh: tuple[int, int] = (320, 240)) -> list[Frame]:
    """A red square moving right for the whole clip; a green one from frame 10 to 24."""
    w, h = size_wh
    frames = []
    for i in range(n):
        image = np.zeros((h, w, 3), np.uint8)
        x = 20 + 3 * i
        image[60:120, x : x + 60] = RED
        if 10 <= i < 25:
            image[140:200, 200:260] = GREEN
        frames.append(Frame(image=image, index=i, timestamp=i / 25.0, source_id="squares"))
    return frames


class SquareDetector:
    """Finds the bright squares: boxes from connected components."""

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, image: np.ndarray) -> Faces:
        self.calls += 1
        mask = (image.max(axis=2) > 0).astype(np.uint8)
        _, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        boxes = [(x, y, x + w, y + h) for x, y, w, h, area in stats[1:] if area > 100]
        xyxy = np.array(boxes, np.float32).reshape(-1, 4)
        centre = (xyxy[:, :2] + xyxy[:, 2:]) / 2
        return Faces(
            xyxy=xyxy,
            scores=np.full(len(xyxy), 0.99, np.float32),
            landmarks=np.repeat(centre[:, None, :], 5, axis=1),
        )


class ColourEmbedder:
    """The embedding of a square is its normalised mean colour."""

    model_id = "colour"
    dim = 3

    def __init__(self) -> None:
        self.faces_embedded = 0

    def embed(self, image: np.ndarray, faces: Faces) -> Faces:
        self.faces_embedded += len(faces)
        rows = []
        for x1, y1, x2, y2 in faces.xyxy.astype(int):
            mean = image[y1:y2, x1:x2].reshape(-1, 3).mean(axis=0) + 1e-3
            rows.append(mean / np.linalg.norm(mean))
        return faces.replace(embeddings=np.array(rows, np.float32).reshape(-1, 3))


@dataclass
class _Match:
    names: tuple[str | None, ...]
    distances: np.ndarray
    confidences: np.ndarray


class NearestColour:
    """Open-set nearest neighbour over a few enrolled colours."""

    def __init__(self, gallery: dict[str, np.ndarray], threshold: float = 0.5) -> None:
        self.names = list(gallery)
        self.matrix = np.array([v / np.linalg.norm(v) for v in gallery.values()], np.float32)
        self.threshold = threshold

    def match(self, embeddings: np.ndarray) -> _Match:
        d = np.linalg.norm(embeddings[:, None, :] - self.matrix[None], axis=2)
        best = d.argmin(axis=1)
        dist = d[np.arange(len(d)), best]
        names = tuple(self.names[b] if x <= self.threshold else None for b, x in zip(best, dist, strict=True))
        return _Match(names, dist.astype(np.float32), np.clip(1 - dist, 0, 1).astype(np.float32))


class RecordingSink:
    def __init__(self) -> None:
        self.frames: list[int] = []
        self.results: list[FrameResult] = []
        self.events: list[Event] = []
        self.notified: list[Event] = []
        self.closed = 0

    def write(self, result: FrameResult) -> None:
        self.frames.append(result.frame.index)
        self.results.append(result)
        self.events.extend(result.events)

    def notify(self, events: Sequence[Event]) -> None:
        self.notified.extend(events)

    def close(self) -> None:
        self.closed += 1


def colour_pipeline(frames, **kwargs) -> Pipeline:
    kwargs.setdefault("config", PipelineConfig(scene_cuts=False))
    return Pipeline(
        frames,
        detector=kwargs.pop("detector", SquareDetector()),
        embedder=kwargs.pop("embedder", ColourEmbedder()),
        matcher=kwargs.pop("matcher", NearestColour({"red": np.array(RED, float)})),
        **kwargs,
    )


# --------------------------------------------------------------------------- plumbing


def test_results_stream_one_per_frame_with_tracks_names_and_timings() -> None:
    sink = RecordingSink()
    pipeline = colour_pipeline(square_frames(), sinks=[sink])
    results = iter(pipeline)
    assert not isinstance(results, list)
    first = next(results)
    assert isinstance(first, FrameResult) and isinstance(first.timings, StageTimings)
    rest = list(results)
    all_results = [first, *rest]
    assert [r.frame.index for r in all_results] == list(range(40))
    assert sink.frames == list(range(40)) and sink.closed == 1
    red_ids = {int(r.faces.track_ids[0]) for r in all_results}
    assert red_ids == {1}  # the red square keeps its id
    with_green = [r for r in all_results if len(r.faces) == 2]
    assert {int(r.faces.track_ids[1]) for r in with_green} == {2}
    # Names: red is known from its second frame (the track is confirmed then) on.
    assert all_results[0].faces.states == (PENDING,)
    assert [r.faces.names[0] for r in all_results[1:]] == ["red"] * 39
    assert {r.faces.states[0] for r in all_results[1:]} == {KNOWN}
    # Green is pending until confirmed, then embedded and unknown (only red is enrolled).
    assert [r.faces.states[1] for r in with_green[:3]] == [PENDING, UNKNOWN_STATE, UNKNOWN_STATE]
    assert all(r.faces.names[1] is None for r in with_green)
    # Per-face quality and confidence travel on the faces, nothing beside them.
    assert all(r.faces.quality is not None and r.faces.confidences is not None for r in all_results)
    assert all_results[5].faces.confidences[0] == pytest.approx(1.0, abs=0.01)
    for r in all_results:
        t = r.timings
        assert t.detect_ms > 0 and t.total_ms >= t.detect_ms + t.track_ms + t.embed_ms + t.sinks_ms
        assert t.decode_ms == 0.0  # a list of frames: nothing decoded
    assert all_results[1].timings.embed_ms > 0 and all_results[1].timings.match_ms > 0
    assert all_results[2].timings.embed_ms == 0 and all_results[2].timings.match_ms == 0
    # Sinks see the same result the iterator yields, before their own time is added.
    assert [r.frame.index for r in sink.results] == list(range(40))
    assert sink.results[3].faces is all_results[3].faces and sink.results[3].timings.sinks_ms == 0


def test_events_appear_recognize_and_leave() -> None:
    sink = RecordingSink()
    seen: list[Event] = []
    colour_pipeline(square_frames(60), sinks=[sink], on_event=seen.append).run()
    in_frames = [(e.type, e.track_id, e.frame, e.name) for e in sink.events]
    assert in_frames == [
        (APPEARED, 1, 1, None),
        (RECOGNIZED, 1, 1, "red"),
        (APPEARED, 2, 11, None),
        # Green's third sample (warm-up: one every 5 frames) settles it as nobody enrolled.
        (UNKNOWN, 2, 21, None),
        (LEFT, 2, 24 + 31, None),  # not seen from frame 25; max_age 30
    ]
    # The red track leaves when the stream ends: between frames, via notify.
    assert [(e.type, e.track_id, e.frame, e.name) for e in sink.notified] == [(LEFT, 1, 59, "red")]
    assert {e.source for e in sink.events + sink.notified} == {"squares"}
    assert [e.to_dict() for e in seen] == [e.to_dict() for e in sink.events + sink.notified]
    assert sink.events[1].to_dict()["confidence"] == pytest.approx(1.0, abs=0.01)


def test_embedding_only_now_and_then() -> None:
    embedder = ColourEmbedder()
    colour_pipeline(square_frames(), embedder=embedder, identity=IdentityConfig(reembed_every=10)).run()
    # 39 frames with red and 14 with green would be 53 embeddings at every frame.
    assert 2 <= embedder.faces_embedded <= 10


def test_a_name_never_passes_to_another_face_in_the_same_place() -> None:
    # Red stands still; at frame 12 green takes its place (two people crossing, say).
    frames = square_frames(24)
    for f in frames:
        f.image[140:200, 200:260] = 0
        f.image[60:120] = 0
        f.image[60:120, 100:160] = RED if f.index < 12 else GREEN
    sink = RecordingSink()
    results = list(colour_pipeline(frames, identity=IdentityConfig(reembed_every=3), sinks=[sink]))
    assert {int(r.faces.track_ids[0]) for r in results[:12]} == {1}
    # The next embedding (at most reembed_every frames later) notices and splits the track.
    split_at = next(i for i, r in enumerate(results) if int(r.faces.track_ids[0]) != 1)
    assert 12 <= split_at <= 12 + 3
    assert {int(r.faces.track_ids[0]) for r in results[split_at:]} == {2}
    assert all(r.faces.names[0] is None for r in results[split_at:])
    later = [(e.type, e.track_id) for e in sink.events if e.frame >= 12]
    assert later == [(LEFT, 1), (APPEARED, 2), (UNKNOWN, 2)]  # green: nobody enrolled


def test_detection_every_n_frames_with_tracking_between() -> None:
    detector = SquareDetector()
    results = list(colour_pipeline(square_frames(), detector=detector, config=PipelineConfig(every=4, scene_cuts=False)))
    assert [r.detected for r in results[:9]] == [True, False, False, False, True, False, False, False, True]
    assert detector.calls == 10
    assert all(r.timings.detect_ms == 0 for r in results if not r.detected)
    assert {int(r.faces.track_ids[0]) for r in results if len(r.faces)} == {1}
    # Between detections the box follows the square (3 px/frame).
    r = results[23]
    assert not r.detected
    np.testing.assert_allclose(r.faces.xyxy[0, [0, 2]], [20 + 3 * 23, 80 + 3 * 23], atol=3)
    assert np.isnan(r.faces.quality).all() and r.faces.names == ("red", None)
    assert not np.isnan(results[24].faces.quality).any()


def test_scene_cut_forces_detection() -> None:
    frames = square_frames(12)
    rng = np.random.default_rng(0)
    for f in frames[6:]:
        f.image[:] = rng.integers(0, 255, f.image.shape, dtype=np.uint8)  # a new "shot"
    results = list(colour_pipeline(frames, config=PipelineConfig(every=100), matcher=None, embedder=None))
    assert [i for i, r in enumerate(results) if r.detected] == [0, 6]


def test_max_frames_and_stop() -> None:
    assert len(list(colour_pipeline(square_frames(), config=PipelineConfig(max_frames=7)))) == 7
    pipeline = colour_pipeline(square_frames())
    count = 0
    for _ in pipeline:
        count += 1
        if count == 5:
            pipeline.stop()
    assert count == 5


def test_a_sink_can_stop_the_loop() -> None:
    class QuitAfterThree(RecordingSink):
        @property
        def wants_stop(self) -> bool:
            return len(self.frames) >= 3

    sink = QuitAfterThree()
    assert len(list(colour_pipeline(square_frames(), sinks=[sink]))) == 3
    assert sink.closed == 1


def test_errors_propagate_and_everything_is_closed(tmp_path: Path) -> None:
    class Broken(SquareDetector):
        def detect(self, image: np.ndarray) -> Faces:
            if self.calls == 5:
                raise ModelError("inference failed")
            return super().detect(image)

    folder = tmp_path / "frames"
    folder.mkdir()
    for f in square_frames(10):
        cv2.imwrite(str(folder / f"{f.index:03d}.png"), f.image)
    source = open_source(folder)
    sink = RecordingSink()
    with pytest.raises(ModelError, match="inference failed"):
        for _ in colour_pipeline(source, detector=Broken(), sinks=[sink]):
            pass
    assert sink.closed == 1 and sink.frames == [0, 1, 2, 3, 4]
    assert not [t for t in threading.enumerate() if t.name.startswith("facesense-capture")]


def test_breaking_out_closes_source_and_sinks(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for f in square_frames(10):
        cv2.imwrite(str(folder / f"{f.index:03d}.png"), f.image)
    sink = RecordingSink()
    results = iter(colour_pipeline(open_source(folder, CaptureConfig(buffer_frames=2)), sinks=[sink]))
    next(results)
    results.close()
    assert sink.closed == 1
    assert sink.notified == []  # nothing confirmed after one frame
    assert not [t for t in threading.enumerate() if t.name.startswith("facesense-capture")]


def test_decode_time_comes_from_the_video_source(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for f in square_frames(6):
        cv2.imwrite(str(folder / f"{f.index:03d}.png"), f.image)
    source = open_source(folder)
    assert isinstance(source, VideoSource)
    results = list(colour_pipeline(source))
    assert len(results) == 6
    # Reading and decoding a 320x240 PNG takes a measurable time on the capture thread.
    assert all(r.timings.decode_ms > 0 for r in results)
    assert sum(r.timings.decode_ms for r in results) == pytest.approx(source.stats().decode_ms_total, rel=1e-6)


def test_sinks_without_notify_only_get_frames() -> None:
    class FramesOnly:
        def __init__(self) -> None:
            self.written = 0

        def write(self, result: FrameResult) -> None:
            self.written += 1

        def close(self) -> None:
            pass

    frames_only, recording = FramesOnly(), RecordingSink()
    colour_pipeline(square_frames(8), sinks=[frames_only, recording]).run()
    assert frames_only.written == 8
    assert [(e.type, e.track_id) for e in recording.notified] == [(LEFT, 1)]


def test_status_event_from_a_source_status() -> None:
    status = SourceStatus(kind=StatusKind.RECONNECTING, source_id="rtsp://cam", time=5.0, message="retry", frame_index=3)
    event = status_event(status)
    assert (event.type, event.status, event.frame, event.source, event.is_track) == (
        EventType.STATUS,
        "reconnecting",
        3,
        "rtsp://cam",
        False,
    )


def test_free_memory_is_handed_back_every_n_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    import facesense.pipeline as pipeline_module

    calls: list[int] = []
    pipeline = colour_pipeline(square_frames(), config=PipelineConfig(scene_cuts=False, trim_every=15))
    monkeypatch.setattr(pipeline_module, "release_free_memory", lambda: calls.append(pipeline.frames_processed))
    assert len(list(pipeline)) == 40
    assert calls == [15, 30]
    never = colour_pipeline(square_frames(), config=PipelineConfig(scene_cuts=False, trim_every=0))
    calls.clear()
    list(never)
    assert calls == []


def test_release_free_memory_on_this_platform() -> None:
    import sys

    from facesense.memory import release_free_memory

    assert release_free_memory() is sys.platform.startswith("linux")


def test_bad_configuration() -> None:
    with pytest.raises(ConfigError, match="trim_every"):
        PipelineConfig(trim_every=-1)
    with pytest.raises(ConfigError, match="needs an embedder"):
        Pipeline([], detector=SquareDetector(), matcher=NearestColour({"red": np.ones(3)}))
    with pytest.raises(ConfigError, match="every"):
        PipelineConfig(every=0)
    with pytest.raises(ConfigError, match="max_age"):
        Pipeline([], detector=SquareDetector(), tracker=Tracker(TrackerConfig(max_age=2)), config=PipelineConfig(every=5))
    pipeline = Pipeline([], detector=SquareDetector())
    assert list(pipeline) == []
    with pytest.raises(RuntimeError, match="once"):
        iter(pipeline)


# --------------------------------------------------------------------------- real models


@pytest.fixture(scope="module")
def models():
    from facesense.detect import make_detector
    from facesense.embed.facenet import FaceNetEmbedder

    return make_detector(use="video"), FaceNetEmbedder()


ENROLL_FRAME = 150  # Lin-Manuel Miranda, alone, facing the camera
LIN_SHOT = range(83, 211)  # the shot he is in (between two cuts)


@pytest.fixture(scope="module")
def lin_matcher(models, examples_dir: Path):
    """An in-memory gallery of one person, enrolled from one frame of the clip."""
    from facesense.match import KNNMatcher

    detector, embedder = models
    with open_source(examples_dir / "short_hamilton_clip.mp4") as source:
        frame = next(f for f in source if f.index == ENROLL_FRAME)
    faces = detector.detect(frame.image)
    biggest = faces[[int(np.argmax(faces.size_px))]]
    return KNNMatcher(k=1).fit(embedder.embed(frame.image, biggest).embeddings, ["lin"])


def _names_by_track(results) -> dict[int, list[str | None]]:
    out: dict[int, list[str | None]] = {}
    for r in results:
        for tid, name in zip(r.faces.track_ids, r.faces.names, strict=True):
            out.setdefault(int(tid), []).append(name)
    return out


def test_known_person_named_through_an_image_folder_same_as_the_video(
    models, lin_matcher, examples_dir: Path, tmp_path: Path
) -> None:
    """The same frames, from the video file and from a folder of PNGs: same tracks, same name."""
    detector, embedder = models
    first, count = 165, 30  # away from the enrollment frame
    folder = tmp_path / "frames"
    folder.mkdir()
    video_frames = []
    with open_source(examples_dir / "short_hamilton_clip.mp4") as source:
        for frame in source:
            if frame.index >= first + count:
                break
            if frame.index >= first:
                video_frames.append(frame)
                cv2.imwrite(str(folder / f"frame_{frame.index:05d}.png"), frame.image)

    def run(src) -> list[FrameResult]:
        return list(Pipeline(src, detector=detector, embedder=embedder, matcher=lin_matcher))

    from_folder = run(open_source(folder))
    from_video = run(video_frames)
    assert len(from_folder) == len(from_video) == count
    for a, b in zip(from_folder, from_video, strict=True):
        np.testing.assert_array_equal(a.frame.image, b.frame.image)
        np.testing.assert_array_equal(a.faces.track_ids, b.faces.track_ids)
        assert a.faces.names == b.faces.names
        np.testing.assert_allclose(a.faces.xyxy, b.faces.xyxy, atol=1e-3)
    recognized = [e for r in from_folder for e in r.events if e.type is RECOGNIZED]
    assert [e.name for e in recognized] == ["lin"]
    names = _names_by_track(from_folder)[recognized[0].track_id]
    # Named from its confirmation on, and never flickers.
    assert names[0] is None and set(names[1:]) == {"lin"}
    states = [
        r.faces.states[i]
        for r in from_folder
        for i, tid in enumerate(r.faces.track_ids.tolist())
        if tid == recognized[0].track_id
    ]
    assert states[0] is PENDING and set(states[1:]) == {KNOWN}
