"""``facesense watch`` end to end: the clip, a gallery, bad input, and a live stream that drops."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner

from facesense.cli import main

ENROLL_FRAME = 150  # Lin-Manuel Miranda alone on stage, facing the camera
AUDIENCE_SHOT = 211  # from this frame on: the audience (the Obamas and others)
EVENT_KEYS = {"time", "frame", "type", "source", "track_id", "name", "confidence", "box"}


def _probe(path: Path) -> tuple[int, float, tuple[int, int]]:
    cap = cv2.VideoCapture(str(path))
    try:
        count = 0
        while cap.read()[0]:
            count += 1
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        return count, cap.get(cv2.CAP_PROP_FPS), size
    finally:
        cap.release()


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def clip(examples_dir: Path) -> Path:
    return examples_dir / "short_hamilton_clip.mp4"


@pytest.fixture(scope="module")
def watched(clip: Path, tmp_path_factory: pytest.TempPathFactory):
    """Enroll Lin from one frame of the clip, then watch the whole clip."""
    tmp = tmp_path_factory.mktemp("watch")
    cap = cv2.VideoCapture(str(clip))
    cap.set(cv2.CAP_PROP_POS_FRAMES, ENROLL_FRAME)
    ok, image = cap.read()
    cap.release()
    assert ok
    cv2.imwrite(str(tmp / "lin.png"), image)
    db = tmp / "gallery.db"
    runner = CliRunner()
    enrolled = runner.invoke(main, ["enroll", "--name", "lin", str(tmp / "lin.png"), "--db", str(db)])
    assert enrolled.exit_code == 0, enrolled.output
    args = [
        "watch", str(clip), "--db", str(db), "--no-display", "--every", "2",
        "--output", str(tmp / "out.mp4"), "--events", str(tmp / "events.jsonl"), "--snapshots", str(tmp / "snaps"),
    ]  # fmt: skip
    result = runner.invoke(main, args)
    return tmp, result


def test_watch_writes_a_video_like_the_input(watched, clip: Path) -> None:
    tmp, result = watched
    assert result.exit_code == 0, result.output
    count, fps, size = _probe(clip)
    assert (count, size) == (275, (640, 360))
    assert _probe(tmp / "out.mp4") == (count, pytest.approx(fps, abs=0.01), size)
    assert "watched 275 frame(s)" in result.stderr
    assert result.stdout == ""  # data goes to files; logs and summary to stderr


def test_watch_events_describe_the_faces(watched, clip: Path) -> None:
    tmp, _ = watched
    events = _events(tmp / "events.jsonl")
    assert events
    assert all(set(e) == EVENT_KEYS for e in events)
    assert {e["type"] for e in events} <= {"appeared", "recognized", "unknown", "left"}
    assert {e["source"] for e in events} == {str(clip)}
    assert [e["frame"] for e in events] == sorted(e["frame"] for e in events)
    appeared = {e["track_id"] for e in events if e["type"] == "appeared"}
    left = {e["track_id"] for e in events if e["type"] == "left"}
    assert appeared == left and len(appeared) >= 5  # every track that appears also leaves
    for e in events:
        x1, y1, x2, y2 = e["box"]
        assert 0 <= e["confidence"] <= 1 and x2 > x1 and y2 > y1
    # The audience shot holds at least three faces at once.
    assert len({e["track_id"] for e in events if e["type"] == "appeared" and e["frame"] >= AUDIENCE_SHOT}) >= 3


def test_watch_names_the_enrolled_person_and_nobody_else(watched) -> None:
    tmp, result = watched
    events = _events(tmp / "events.jsonl")
    recognized = [e for e in events if e["type"] == "recognized"]
    lin_tracks = {e["track_id"] for e in recognized if e["name"] == "lin"}
    first_frame = {e["track_id"]: e["frame"] for e in events if e["type"] == "appeared"}
    last_frame = {e["track_id"]: e["frame"] for e in events if e["type"] == "left"}
    # Lin's stage shot (frames 82-210, enrolled from frame 150) is one track, named
    # within a second of its start.
    stage = [t for t in lin_tracks if first_frame[t] <= 90 and last_frame[t] >= 205]
    assert len(stage) == 1
    assert next(e["frame"] for e in recognized if e["track_id"] == stage[0]) <= 82 + 30
    # Nobody in the audience gets his name.
    assert not [t for t in lin_tracks if first_frame[t] >= AUDIENCE_SHOT]
    assert {e["name"] for e in recognized} == {"lin"}
    # Names do not flicker: one "recognized" per track, and tracks leave with that name.
    assert len(recognized) == len({e["track_id"] for e in recognized})
    assert all(e["name"] == "lin" for e in events if e["type"] == "left" and e["track_id"] in lin_tracks)
    assert "named: lin" in result.stderr


def test_watch_saves_unknown_faces_once(watched) -> None:
    tmp, _ = watched
    events = _events(tmp / "events.jsonl")
    unknown = {e["track_id"] for e in events if e["type"] == "left" and e["name"] is None}
    saved = sorted((tmp / "snaps").glob("track*.jpg"))
    saved_ids = [int(p.name[5:10]) for p in saved]
    assert len(unknown) >= 3  # the audience: nobody there is enrolled
    assert len(saved_ids) == len(set(saved_ids))
    assert set(saved_ids) == unknown
    assert all(cv2.imread(str(p)) is not None for p in saved)


# --------------------------------------------------------------------------- bad input


def _other_model_gallery(folder: Path) -> None:
    """A gallery holding another model's embeddings."""
    import numpy as np

    from facesense.gallery import NewSample, SQLiteGallery

    with SQLiteGallery(folder / "other.db") as gallery:
        sample = NewSample(embedding=np.eye(8, dtype=np.float32)[0], model_id="some-other-model/v1", source_sha256="0" * 64)
        gallery.add_samples("someone", [sample])


@pytest.mark.parametrize(
    ("make", "args", "code", "message"),
    [
        (None, ["missing.mp4"], 5, "no such file"),
        (lambda d: (d / "notes.mp4").write_text("hello\n"), ["notes.mp4"], 5, "not a video"),
        (None, ["http://127.0.0.1:9/x"], 5, "cannot open stream"),
        (None, ["57"], 5, "cannot open camera 57"),
        ("clip", ["CLIP", "--display"], 2, "cannot show a window"),
        ("clip", ["CLIP", "--output", "out.gif"], 2, "unsupported video suffix"),
        ("clip", ["CLIP", "--db", "nothing-here.db"], 6, "no gallery"),
        ("clip", ["CLIP", "--db", "postgresql://me:secret@127.0.0.1:1/faces"], 6, "cannot connect to postgresql://me@127.0.0.1:1/faces"),
        (_other_model_gallery, ["CLIP", "--db", "other.db"], 6, "reembed"),
    ],
)
def test_bad_input_gives_one_line_and_an_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clip: Path, make, args: list[str], code: int, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    if callable(make):
        make(tmp_path)
    args = [str(clip) if a == "CLIP" else a for a in args]
    result = CliRunner().invoke(main, ["watch", *args, "--max-frames", "2", "--no-display" if "--display" not in args else "--display"])
    assert result.exit_code == code, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in result.output


def test_watch_image_folder_and_loop(tmp_path: Path, clip: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    cap = cv2.VideoCapture(str(clip))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 150)
    for i in range(4):
        cv2.imwrite(str(folder / f"f{i:03d}.png"), cap.read()[1])
    cap.release()
    out = tmp_path / "out.avi"
    result = CliRunner().invoke(
        main,
        ["watch", str(folder), "--sequence", "--loop", "--max-frames", "10", "--fps", "5", "--no-display", "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert _probe(out) == (10, pytest.approx(5.0), (640, 360))
    # --segment-minutes cuts the same run into files of 0.02 min x 5 fps = 6 frames
    result = CliRunner().invoke(
        main,
        ["watch", str(folder), "--sequence", "--loop", "--max-frames", "10", "--fps", "5", "--no-display",
         "-o", str(tmp_path / "seg.avi"), "--segment-minutes", "0.02"],
    )
    assert result.exit_code == 0, result.output
    assert [_probe(tmp_path / f"seg-000{i}.avi")[0] for i in (0, 1)] == [6, 4]
    assert not (tmp_path / "seg.avi").exists()


def test_watch_a_folder_of_photos_names_each_enrolled_person(tmp_path: Path, examples_dir: Path) -> None:
    """The README's first command: enroll knn_examples/train, watch knn_examples/test.
    Each photo is its own scene: every face is reported and named on the photo it is in."""
    db = tmp_path / "people.db"
    runner = CliRunner()
    enrolled = runner.invoke(main, ["enroll", str(examples_dir / "knn_examples" / "train"), "--db", str(db)])
    assert enrolled.exit_code == 0, enrolled.output
    events_path = tmp_path / "events.jsonl"
    args = ["watch", str(examples_dir / "knn_examples" / "test"), "--db", str(db), "--no-display",
            "--output", str(tmp_path / "out.mp4"), "--events", str(events_path)]  # fmt: skip
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    events = _events(events_path)
    # test images in name order: alex_lacamoire1, johnsnow_test1, kit_with_rose, obama1, obama_and_biden
    named = sorted((e["frame"], e["name"]) for e in events if e["type"] == "recognized")
    assert named == [
        (0, "alex_lacamoire"), (1, "kit_harington"), (2, "kit_harington"), (2, "rose_leslie"),
        (3, "obama"), (4, "biden"), (4, "obama"),
    ]  # fmt: skip
    appeared = [e["track_id"] for e in events if e["type"] == "appeared"]
    left = [e["track_id"] for e in events if e["type"] == "left"]
    unknown = [e["track_id"] for e in events if e["type"] == "unknown"]
    assert sorted(appeared) == sorted(left) and len(appeared) == len(named) + len(unknown)
    assert "named: alex_lacamoire (1 track), biden (1 track), kit_harington (2 tracks)" in result.output
    assert _probe(tmp_path / "out.mp4")[0] == 5

    # --sequence: the same folder as one video's frames; a face must be seen twice to count.
    seq = runner.invoke(main, [*args[:-4], "--sequence", "--events", str(tmp_path / "seq.jsonl")])
    assert seq.exit_code == 0, seq.output
    assert not [e for e in _events(tmp_path / "seq.jsonl") if e["type"] == "recognized"]
    bad = runner.invoke(main, [*args, "--every", "2"])
    assert bad.exit_code == 2 and "--sequence" in bad.output


# --------------------------------------------------------------------------- live stream


def test_watch_reconnects_when_a_live_stream_drops(tmp_path: Path, mjpeg_server) -> None:
    server = mjpeg_server
    events_path = tmp_path / "events.jsonl"
    out = {}

    def run() -> None:
        url = server.url
        args = ["watch", url, "--no-display", "--max-frames", "60", "--events", str(events_path)]
        out["result"] = CliRunner().invoke(main, args)

    thread = threading.Thread(target=run)
    try:
        thread.start()
        deadline = time.monotonic() + 60
        while server.sent < 30:
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.05)
        server.stop()  # pull the plug
        time.sleep(1.5)
        assert thread.is_alive(), "watch must keep trying, not exit"
        server.start()  # same port
        thread.join(timeout=60)
        assert not thread.is_alive()
    finally:
        server.stop()
    result = out["result"]
    assert result.exit_code == 0, result.output
    assert "watched 60 frame(s)" in result.stderr and "1 reconnect(s)" in result.stderr
    statuses = [e for e in _events(events_path) if e["type"] == "status"]
    kinds = [e["status"] for e in statuses]
    assert kinds[0] == "disconnected" and kinds[-1] == "reconnected" and "reconnecting" in kinds
    assert all(set(e) == {"time", "frame", "type", "status", "message", "source"} for e in statuses)
    assert "reconnect" in result.stderr  # said so in the log too
