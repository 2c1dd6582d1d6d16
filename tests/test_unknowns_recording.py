"""Recording unknowns while watching: :class:`~facesense.sinks.unknowns.UnknownsSink` and its writer.

The sink is fed the results a pipeline hands it (a real frame of the Hamilton clip, the
faces and events the stages would give); the writer writes to a real SQLite unknowns
store, which is made to fail (a folder where the file should be, a store closed under
it) to show that recording waits and retries instead of failing the watch. The whole
chain on the real models runs in ``tests/cli/test_unknowns_cli.py``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesense.errors import ConfigError
from facesense.gallery.sqlite_unknowns import SQLiteUnknownStore
from facesense.gallery.unknowns import StoredUnknowns, UnknownStore
from facesense.sinks.base import EventSink
from facesense.sinks.unknowns import SourceUnknownsSink, UnknownsSink, UnknownsWriter
from facesense.types import Event, EventType, Faces, Frame, FrameResult, IdentityState
from facesense.unknowns import ClusterConfig, UnknownRecord

MODEL = "fake-model/v1"
CONFIG = ClusterConfig(eps=0.5)
DIM = 8
BOX = (250.0, 60.0, 330.0, 150.0)


@pytest.fixture(scope="module")
def frame_image(examples_dir: Path) -> np.ndarray:
    cap = cv2.VideoCapture(str(examples_dir / "short_hamilton_clip.mp4"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 150)
    ok, image = cap.read()
    cap.release()
    assert ok
    return image


def _unit(seed: int) -> np.ndarray:
    e = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return e / np.linalg.norm(e)


def _wait(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _stored(path: Path) -> list[int]:
    with SQLiteUnknownStore(path) as store:
        state, _ = store.load()
    return [] if state is None else [rid for rid, _, _ in state.records]


def _record(seed: int) -> UnknownRecord:
    return UnknownRecord(embedding=_unit(seed), model_id=MODEL, first_seen=time.time(), last_seen=time.time())


def _result(image: np.ndarray, index: int, tracks: dict[int, tuple[np.ndarray | None, IdentityState]],
            events: tuple[Event, ...] = (), source: str = "door") -> FrameResult:  # fmt: skip
    """One frame's result: each track's face (an embedding on frames that embedded it, NaN otherwise)."""
    ids = sorted(tracks)
    n = len(ids)
    emb = np.full((n, DIM), np.nan, np.float32)
    for row, tid in enumerate(ids):
        e = tracks[tid][0]
        if e is not None:
            emb[row] = e
    faces = Faces(
        xyxy=np.array([BOX] * n, np.float32).reshape(n, 4), scores=np.full(n, 0.9, np.float32),
        landmarks=np.zeros((n, 5, 2), np.float32), embeddings=emb, track_ids=np.array(ids, np.int64),
        names=tuple(None for _ in ids), states=tuple(tracks[t][1] for t in ids),
        quality=np.linspace(0.3, 0.6, n, dtype=np.float32) + 0.01 * index,
    )  # fmt: skip
    frame = Frame(image=image, index=index, timestamp=index / 30.0, source_id=source)
    return FrameResult(frame=frame, faces=faces, detected=True, events=events)


def _event(kind: EventType, tid: int, index: int, name: str | None = None, source: str = "door") -> Event:
    return Event(type=kind, time=index / 30.0, frame=index, source=source, track_id=tid, name=name)


def test_a_track_that_ends_unknown_is_recorded_and_a_named_one_is_not(frame_image: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "g.unknowns.db"
    writer = UnknownsWriter(lambda: SQLiteUnknownStore(path), model_id=MODEL, config=CONFIG)
    sink = UnknownsSink(writer, model_id=MODEL)
    assert isinstance(sink, EventSink)
    stranger, lin = _unit(1), _unit(2)
    for i in range(6):
        tracks = {1: (stranger + 0.01 * i, IdentityState.UNKNOWN), 2: (lin, IdentityState.KNOWN)}
        if i % 2:  # frames between embeddings: NaN rows are not samples
            tracks = {1: (None, IdentityState.UNKNOWN), 2: (None, IdentityState.KNOWN)}
        events = (_event(EventType.UNKNOWN, 1, i), _event(EventType.RECOGNIZED, 2, i, "lin")) if i == 3 else ()
        sink.write(_result(frame_image, i, tracks, events))
    sink.write(_result(frame_image, 6, {}, (_event(EventType.LEFT, 2, 6, "lin"),)))
    sink.notify([_event(EventType.LEFT, 1, 7)])  # the end of the stream
    assert sink.records == 1
    sink.close()
    sink.close()  # idempotent
    book = StoredUnknowns(SQLiteUnknownStore(path), MODEL, CONFIG)
    (record,) = (r for _, _, r in book.clusterer.state().records)
    assert record.faces == 3 and record.source == "door" and record.track_id == 1
    assert 1 <= len(record.crops) <= 3 and all(c.jpeg.startswith(b"\xff\xd8") for c in record.crops)
    assert abs(record.first_seen - time.time()) < 600  # file frames (media seconds) are put on the wall clock
    book.store.close()


def _unknown_track(sink: SourceUnknownsSink, image: np.ndarray, source: str, seed: int) -> None:
    """One run of a pipeline: track 1 (the ids of every run start at 1) settles unknown, then the stream ends."""
    for i in range(4):
        events = (_event(EventType.UNKNOWN, 1, i, source=source),) if i == 2 else ()
        sink.write(_result(image, i, {1: (_unit(seed) + 0.01 * i, IdentityState.UNKNOWN)}, events, source=source))
    sink.notify([_event(EventType.LEFT, 1, 4, source=source)])
    sink.close()  # the end of the run


def test_pipelines_sharing_one_writer_each_record_and_leave_it_open(frame_image: np.ndarray, tmp_path: Path) -> None:
    """The cameras of one process (watch --config, worker, serve): one writer, a sink per camera;
    the end of a camera's run leaves the writer open for the others, and its next run starts afresh."""
    path = tmp_path / "g.unknowns.db"
    writer = UnknownsWriter(lambda: SQLiteUnknownStore(path), model_id=MODEL, config=CONFIG)
    door, hall = SourceUnknownsSink(writer, MODEL), SourceUnknownsSink(writer, MODEL)
    assert isinstance(door, EventSink)
    _unknown_track(door, frame_image, "door", seed=1)
    _unknown_track(hall, frame_image, "hall", seed=1)  # the same stranger, seen by the other camera
    _unknown_track(door, frame_image, "door", seed=2)  # the door camera again (reconnected): track 1 once more
    assert (door.records, hall.records) == (2, 1)
    assert _wait(lambda: writer.stored == 3)  # still open: nobody closed it
    assert writer.submit(_record(3))
    writer.close()
    book = StoredUnknowns(SQLiteUnknownStore(path), MODEL, CONFIG)
    records = [r for _, _, r in book.clusterer.state().records]
    assert sorted((r.source, r.track_id) for r in records) == [("", None), ("door", 1), ("door", 1), ("hall", 1)]
    assert writer.recurring >= 1  # the stranger the two cameras saw is one visitor
    book.store.close()


def test_a_track_that_never_settled_unknown_is_not_recorded(frame_image: np.ndarray, tmp_path: Path) -> None:
    writer = UnknownsWriter(lambda: SQLiteUnknownStore(tmp_path / "u.db"), model_id=MODEL, config=CONFIG)
    sink = UnknownsSink(writer, model_id=MODEL)
    sink.write(_result(frame_image, 0, {5: (_unit(5), IdentityState.UNKNOWN)}))
    sink.notify([_event(EventType.LEFT, 5, 1)])  # one sample: no UNKNOWN event yet
    sink.close()
    assert sink.records == 0 and writer.stored == 0


def test_a_track_of_only_blurred_faces_is_not_recorded(frame_image: np.ndarray, tmp_path: Path) -> None:
    """Faces no enrollment would take (dark, blurred) leave no record: they could never be named."""
    from facesense.enroll import DEFAULT_MIN_SHARPNESS
    from facesense.quality import sharpness

    blurred = cv2.GaussianBlur(frame_image, (0, 0), 6)
    assert sharpness(blurred, BOX) < DEFAULT_MIN_SHARPNESS <= sharpness(frame_image, BOX)
    writer = UnknownsWriter(lambda: SQLiteUnknownStore(tmp_path / "u.db"), model_id=MODEL, config=CONFIG)
    sink = UnknownsSink(writer, model_id=MODEL)
    for tid, frames in ((1, [blurred] * 4), (2, [blurred, blurred, frame_image, blurred])):
        for i, image in enumerate(frames):
            events = (_event(EventType.UNKNOWN, tid, i),) if i == 2 else ()
            sink.write(_result(image, i, {tid: (_unit(tid) + 0.01 * i, IdentityState.UNKNOWN)}, events))
        sink.notify([_event(EventType.LEFT, tid, 4)])
    assert (sink.records, sink.blurred) == (1, 1)  # track 2 had one sharp face
    everything = UnknownsSink(writer, model_id=MODEL, min_sharpness=0)
    for i in range(3):
        everything.write(_result(blurred, i, {3: (_unit(3), IdentityState.UNKNOWN)}, (_event(EventType.UNKNOWN, 3, i),)))
    everything.notify([_event(EventType.LEFT, 3, 3)])
    assert everything.records == 1
    sink.close()
    assert _wait(lambda: writer.stored == 2)
    book = StoredUnknowns(SQLiteUnknownStore(tmp_path / "u.db"), MODEL, CONFIG)
    assert sorted(r.track_id for _, _, r in book.clusterer.state().records) == [2, 3]
    book.store.close()
    with pytest.raises(ConfigError, match="min_sharpness"):
        UnknownsSink(writer, model_id=MODEL, min_sharpness=-1)


def test_the_writer_waits_for_a_database_that_is_away_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "faces"
    folder.write_text("a file where the gallery folder should be")  # the store cannot be created
    path = folder / "gallery.unknowns.db"
    opened: list[UnknownStore] = []

    def open_store() -> UnknownStore:
        store = SQLiteUnknownStore(path)
        opened.append(store)
        return store

    caplog.set_level(logging.WARNING, logger="facesense.sinks.unknowns")
    writer = UnknownsWriter(open_store, model_id=MODEL, config=CONFIG, retry_s=(0.05,))
    started = time.perf_counter()
    assert all(writer.submit(_record(s)) for s in range(3))
    assert time.perf_counter() - started < 0.1  # the frame thread never waits for the database
    time.sleep(0.4)  # several failed attempts
    assert writer.stored == 0 and writer.disabled is None
    failures = [r for r in caplog.records if "cannot store unknown tracks" in r.getMessage()]
    assert len(failures) == 1  # logged once, retried quietly

    folder.unlink()  # the database comes back
    assert _wait(lambda: writer.stored == 3)
    assert any("database is back" in r.getMessage() for r in caplog.records)

    opened[-1].close()  # goes away under the writer: it reopens and reloads
    writer.submit(_record(10))
    assert _wait(lambda: writer.stored == 4)
    writer.close()
    assert _stored(path) == [1, 2, 3, 4]


def test_a_full_queue_drops_records_instead_of_blocking(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "faces"
    blocker.write_text("x")
    caplog.set_level(logging.WARNING, logger="facesense.sinks.unknowns")
    writer = UnknownsWriter(lambda: SQLiteUnknownStore(blocker / "u.db"), model_id=MODEL, config=CONFIG,
                            queue_size=2, retry_s=(0.05,))  # fmt: skip
    results = [writer.submit(_record(s)) for s in range(10)]
    assert results.count(False) >= 7
    assert sum("dropping unknown tracks" in r.getMessage() for r in caplog.records) == 1
    started = time.perf_counter()
    writer.close(timeout=0.2)  # the database never came back: close gives up in bounded time
    assert time.perf_counter() - started < 3.0
    assert any("not stored" in r.getMessage() for r in caplog.records)


def test_a_store_of_another_model_turns_recording_off(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "u.db"
    with SQLiteUnknownStore(path) as store:
        StoredUnknowns(store, "other-model/v2", CONFIG).add(
            UnknownRecord(embedding=_unit(0), model_id="other-model/v2", first_seen=0.0, last_seen=0.0)
        )
    writer = UnknownsWriter(lambda: SQLiteUnknownStore(path), model_id=MODEL, config=CONFIG, retry_s=(0.05,))
    writer.submit(_record(1))
    assert _wait(lambda: writer.disabled is not None)
    assert "other-model/v2" in (writer.disabled or "")
    assert not writer.submit(_record(2))
    writer.close()
    assert _stored(path) == [1]


class _Embedder:
    """Every face's embedding is a fixed unit vector of its box's left edge."""

    model_id = MODEL

    def embed(self, image: np.ndarray, faces: Faces) -> Faces:
        return faces.replace(embeddings=np.stack([_unit(int(x)) for x in faces.xyxy[:, 0]]))


class _Nobody:
    """A gallery that knows nobody."""

    def match(self, embeddings: np.ndarray) -> object:
        from types import SimpleNamespace

        n = len(embeddings)
        return SimpleNamespace(names=(None,) * n, distances=np.ones(n, np.float32), confidences=np.zeros(n, np.float32))


def test_the_identity_stage_hands_this_frames_embeddings_to_the_sinks(frame_image: np.ndarray) -> None:
    """Rows of the faces embedded on a frame hold their embeddings, the others NaN; None when none was."""
    from facesense.identity import IdentityConfig, IdentityStage
    from facesense.track import Tracker, TrackerConfig

    tracker = Tracker(TrackerConfig(min_hits=1))
    identity = IdentityStage(tracker, _Embedder(), _Nobody(), IdentityConfig(reembed_every=3, warmup_samples=0))  # type: ignore[arg-type]
    boxes = np.array([[10, 10, 90, 90], [200, 10, 280, 90]], np.float32)
    faces = Faces(xyxy=boxes, scores=np.full(2, 0.9, np.float32), landmarks=np.zeros((2, 5, 2), np.float32),
                  quality=np.array([0.5, 0.5], np.float32))  # fmt: skip
    first = identity.identify(frame_image, tracker.update(faces))
    assert first.embeddings is not None and np.allclose(first.embeddings, np.stack([_unit(10), _unit(200)]))
    second = identity.identify(frame_image, tracker.update(faces))  # nobody due yet
    assert second.embeddings is None
    better = faces.replace(quality=np.array([0.5, 0.9], np.float32))  # the second face is worth embedding again
    third = identity.identify(frame_image, tracker.update(better))
    assert third.embeddings is not None
    assert np.all(np.isnan(third.embeddings[0])) and np.allclose(third.embeddings[1], _unit(200))
