"""``facesense watch --config``: several cameras of a facesense.toml at once, on the real clip."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner

from facesense.cli import main

ENROLL_FRAME = 150  # Lin-Manuel Miranda alone on stage, facing the camera
SHOT = range(160, 205)  # frames of the shot he is in, after the enrollment frame


@pytest.fixture(scope="module")
def setup(examples_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gallery of Lin (one frame of the clip) and a folder of frames of his shot."""
    tmp = tmp_path_factory.mktemp("watch_config")
    frames = tmp / "shot"
    frames.mkdir()
    cap = cv2.VideoCapture(str(examples_dir / "short_hamilton_clip.mp4"))
    index = 0
    while True:
        ok, image = cap.read()
        if not ok or index >= SHOT.stop:
            break
        if index == ENROLL_FRAME:
            cv2.imwrite(str(tmp / "lin.png"), image)
        if index in SHOT:
            cv2.imwrite(str(frames / f"{index:04d}.png"), image)
        index += 1
    cap.release()
    enrolled = CliRunner().invoke(main, ["enroll", "--name", "lin", str(tmp / "lin.png"), "--db", str(tmp / "g.db")])
    assert enrolled.exit_code == 0, enrolled.output
    return tmp


def _config(tmp: Path, body: str) -> Path:
    path = tmp / "facesense.toml"
    path.write_text(body)
    return path


def test_two_cameras_in_one_process_name_the_person_each_in_its_own_events_file(setup: Path, tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        f"""
[gallery]
url = "{setup / 'g.db'}"

[recognition]
every = 2

[[cameras]]
name = "left"
url = "{setup / 'shot'}"

[[cameras]]
name = "right"
url = "{setup / 'shot'}"
every = 3

[sinks.events]
path = "{tmp_path / 'events-{camera}.jsonl'}"
""",
    )
    result = CliRunner().invoke(main, ["watch", "--config", str(config)])
    assert result.exit_code == 0, result.output
    for cam in ("left", "right"):
        events = [json.loads(line) for line in (tmp_path / f"events-{cam}.jsonl").read_text().splitlines()]
        assert {e["source"] for e in events} == {cam}
        assert any(e["type"] == "recognized" and e["name"] == "lin" for e in events)
        assert f"{cam}: watched {len(SHOT)} frame(s)" in result.stderr
    assert "named: lin" in result.stderr


def test_source_names_one_camera_of_the_file(setup: Path, tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        f"""
[[cameras]]
name = "door"
url = "{setup / 'shot'}"

[[cameras]]
name = "hall"
url = "{tmp_path / 'missing.mp4'}"
""",
    )
    result = CliRunner().invoke(main, ["watch", "door", "--config", str(config), "--every", "3"])
    assert result.exit_code == 0, result.output
    assert "door: watched" in result.stderr and "hall" not in result.stderr
    wrong = CliRunner().invoke(main, ["watch", "dor", "--config", str(config)])
    assert wrong.exit_code == 2
    assert "no camera named 'dor'" in wrong.stderr and "did you mean 'door'" in wrong.stderr


def test_a_camera_that_cannot_open_does_not_stop_the_others(setup: Path, tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        f"""
[[cameras]]
name = "door"
url = "{setup / 'shot'}"
every = 3

[[cameras]]
name = "gone"
url = "{tmp_path / 'missing.mp4'}"
""",
    )
    result = CliRunner().invoke(main, ["watch", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert f"door: watched {len(SHOT)} frame(s)" in result.stderr
    assert "gone: watched 0 frame(s)" in result.stderr and "[failed:" in result.stderr


@pytest.mark.parametrize(
    ("body", "args", "message"),
    [
        ('[[cameras]]\nname = "a"\nurl = "x"\nevry = 2\n', [], "did you mean 'every'"),
        ("[recognition]\nevery = 2\n", [], "no [[cameras]] to watch"),
        ('[[cameras]]\nname = "a"\nurl = "x"\n', ["--snapshots", "snaps"], "--snapshots is not supported with --config"),
        ('[[cameras]]\nname = "a"\nurl = "x"\n[sinks.mqtt]\nurl = "mqtx://h"\n', [], "[sinks.mqtt]"),
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(tmp_path: Path, body: str, args: list[str], message: str) -> None:
    config = _config(tmp_path, body)
    result = CliRunner().invoke(main, ["watch", "--config", str(config), *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_watch_without_source_or_config_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["watch"])
    assert result.exit_code == 2
    assert "give a SOURCE to watch, or --config" in result.stderr


def test_serve_reads_the_same_file_and_refuses_a_bad_one_before_starting(tmp_path: Path) -> None:
    config = _config(tmp_path, '[[cameras]]\nname = "door"\nurl = "x"\nmin_face = 40\n')
    result = CliRunner().invoke(main, ["serve", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert "unknown key 'min_face'" in result.stderr and "did you mean 'min_face_px'" in result.stderr
    missing = _config(tmp_path, f'[[cameras]]\nname = "door"\nurl = "{tmp_path / "nope.mp4"}"\n')
    result = CliRunner().invoke(main, ["serve", "--config", str(missing)])
    assert result.exit_code == 5 and "nope.mp4" in result.stderr, result.output


# --- recurring unknowns -------------------------------------------------------------------------


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def strangers(setup: Path, examples_dir: Path) -> Path:
    """A gallery of Obama only: Lin, alone in the shot, stays unknown."""
    db = setup / "strangers" / "g.db"
    db.parent.mkdir()
    enrolled = CliRunner().invoke(main, ["enroll", "--name", "obama", str(examples_dir / "obama.jpg"), "--db", str(db)])
    assert enrolled.exit_code == 0, enrolled.output
    return db


def _stranger_gallery(strangers: Path, dest: Path) -> Path:
    """A copy of the gallery of its own (the unknowns store is created beside it)."""
    db = dest / "g.db"
    shutil.copy(strangers, db)
    return db


def _two_cameras(tmp: Path, db: Path, url: Path) -> Path:
    return _config(
        tmp,
        f"""
[gallery]
url = "{db}"

[[cameras]]
name = "left"
url = "{url}"
every = 2

[[cameras]]
name = "right"
url = "{url}"
every = 3
""",
    )


def test_two_cameras_record_their_unknowns_in_one_store(setup: Path, strangers: Path, tmp_path: Path) -> None:
    db = _stranger_gallery(strangers, tmp_path)
    result = CliRunner().invoke(main, ["watch", "--config", str(_two_cameras(tmp_path, db, setup / "shot"))])
    assert result.exit_code == 0, result.output
    assert "left: watched" in result.stderr and "right: watched" in result.stderr
    assert (tmp_path / "g.unknowns.db").is_file()
    listed = CliRunner().invoke(main, ["unknowns", "list", "--all", "--json", "--db", str(db)])
    assert listed.exit_code == 0, listed.output
    clusters = _lines(listed.output)
    assert {s for c in clusters for s in c["sources"]} == {"left", "right"}
    # The same person seen by both cameras is one recurring visitor.
    assert any(sorted(c["sources"]) == ["left", "right"] and c["recurring"] for c in clusters), clusters


def test_no_unknowns_records_nothing(setup: Path, strangers: Path, tmp_path: Path) -> None:
    db = _stranger_gallery(strangers, tmp_path)
    config = _two_cameras(tmp_path, db, setup / "shot")
    result = CliRunner().invoke(main, ["watch", "--config", str(config), "--no-unknowns", "left"])
    assert result.exit_code == 0, result.output
    assert "unknown" in result.stderr  # Lin stayed unknown: there was something to record
    assert not (tmp_path / "g.unknowns.db").exists()


def test_ctrl_c_still_writes_what_the_cameras_recorded(setup: Path, strangers: Path, tmp_path: Path) -> None:
    """Cameras that never end (played in a loop): Ctrl-C stops them, and the unknown tracks
    they were following are stored before watch returns, every camera's."""
    import _thread
    import signal
    import threading
    import time
    from collections.abc import Callable, Iterator
    from contextlib import contextmanager

    from facesense.cli.watch_config import watch_config
    from facesense.config import load_config
    from facesense.gallery.sqlite_unknowns import SQLiteUnknownStore

    db = _stranger_gallery(strangers, tmp_path)
    config = load_config(_two_cameras(tmp_path, db, setup / "shot"))
    pressed = threading.Event()
    frames: list[list[int]] = []
    lost: list[str] = []

    @contextmanager
    def ctrl_c_soon(stop: Callable[[], None]) -> Iterator[None]:
        cams = stop.__self__  # type: ignore[attr-defined]  # watch_config hands over MultiCamera.stop
        done = threading.Event()

        def press() -> None:
            # Once both cameras have followed Lin long enough for him to settle as unknown
            # (or after 40 s, so that a stalled camera fails the test instead of hanging it).
            deadline = time.monotonic() + 40
            while not done.wait(0.1):
                frames.append([st.frames for st in cams.statuses()])
                if all(n >= 30 for n in frames[-1]) or time.monotonic() > deadline:
                    pressed.set()
                    _thread.interrupt_main()
                    break
            if not done.wait(10):  # the interrupt never arrived
                lost.append(repr(signal.getsignal(signal.SIGINT)))
                stop()

        presser = threading.Thread(target=press, daemon=True)
        presser.start()
        try:
            yield
        finally:
            done.set()

    # A shell starts background jobs with SIGINT ignored (`pytest &`); Ctrl-C needs Python's handler.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.monotonic()
    try:
        watch_config(config, only=None, loop=True, realtime=True, mqtt=None, stop_signal=ctrl_c_soon)
    except KeyboardInterrupt:
        pass
    else:
        pytest.fail(f"Ctrl-C never reached watch (SIGINT handler {lost}, frames {frames[-1:]})")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert pressed.is_set() and time.monotonic() - started < 60
    assert all(n >= 30 for n in frames[-1]), f"frames per camera when Ctrl-C was pressed: {frames[-1]}"
    with SQLiteUnknownStore(tmp_path / "g.unknowns.db") as store:
        state, _ = store.load()
    assert state is not None
    assert {record.source for _, _, record in state.records} == {"left", "right"}
