"""``facesense.toml``: a full file read into frozen dataclasses, defaults, one-line errors
that name the file and key (with did-you-mean), and command-line flags over the file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from facesense.config import FacesenseConfig, load_config, parse_config, with_overrides
from facesense.detect.factory import DetectorKind
from facesense.embed.factory import EmbedderKind
from facesense.errors import ConfigError

FULL = """
[gallery]
url = "postgresql://faces@db.local/faces"

[recognition]
threshold = 0.95
every = 3
min_face_px = 40
detector = "mtcnn"
embedder = "facenet"

[[cameras]]
name = "door"
url = "rtsp://cam1/stream"
every = 2
min_face_px = 60
detector = "yunet"

[[cameras]]
name = "hall"
url = 0

[sinks.events]
path = "events-{camera}.jsonl"

[sinks.video]
output = "video-{camera}.mp4"
segment_minutes = 10

[sinks.mqtt]
url = "mqtt://broker.local:1883"
qos = 1

[worker]
lease_s = 12
heartbeat_s = 4
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "facesense.toml"
    path.write_text(text)
    return path


def test_a_full_file(tmp_path: Path) -> None:
    path = _write(tmp_path, FULL)
    cfg = load_config(path)
    assert cfg.source == path
    assert cfg.gallery.url == "postgresql://faces@db.local/faces"
    rec = cfg.recognition
    assert (rec.threshold, rec.every, rec.min_face_px, rec.detector, rec.embedder) == (
        0.95, 3, 40.0, DetectorKind.MTCNN, EmbedderKind.FACENET,
    )  # fmt: skip
    assert [c.name for c in cfg.cameras] == ["door", "hall"]
    door, hall = cfg.camera("door"), cfg.camera("hall")
    assert (door.url, door.every, door.min_face_px, door.detector) == ("rtsp://cam1/stream", 2, 60.0, DetectorKind.YUNET)
    assert (hall.url, hall.every, hall.min_face_px, hall.detector) == (0, 3, 40.0, DetectorKind.MTCNN)  # from [recognition]
    assert cfg.cameras[1].every is None  # the raw entry keeps "not given"
    assert cfg.sinks.events.path_for("door") == "events-door.jsonl"
    assert cfg.sinks.video.output_for("hall") == "video-hall.mp4"
    assert cfg.sinks.video.segment_minutes == 10.0
    assert dict(cfg.sinks.mqtt or {}) == {"url": "mqtt://broker.local:1883", "prefix": "facesense", "qos": 1}
    assert (cfg.worker.lease_s, cfg.worker.heartbeat_s) == (12.0, 4.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.gallery.url = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.sinks.mqtt["qos"] = 2  # type: ignore[index]


def test_an_empty_file_is_the_defaults(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, ""))
    assert dataclasses.replace(cfg, source=None) == FacesenseConfig()
    assert cfg.recognition.threshold == "auto" and cfg.recognition.every == 1
    assert cfg.cameras == () and cfg.sinks.mqtt is None and cfg.gallery.url is None
    assert (cfg.worker.lease_s, cfg.worker.heartbeat_s) == (10.0, 3.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[recognition]\nevry = 2\n", "[recognition]: unknown key 'evry' (did you mean 'every'?)"),
        ("[recogniton]\n", "top level: unknown key 'recogniton' (did you mean 'recognition'?)"),
        ("[recognition]\ndetector = 'mtcn'\n", "[recognition].detector is wrong: unknown detector 'mtcn' (did you mean 'mtcnn'?)"),
        ("[recognition]\nembedder = 'dlib+sfcae'\n", "unknown embedder 'dlib+sfcae' (did you mean 'dlib+sface'?)"),
        ("[recognition]\nevery = 0\n", "[recognition].every must be an integer >= 1, got 0"),
        ("[recognition]\nevery = 'three'\n", "[recognition].every must be an integer >= 1, got 'three'"),
        ("[recognition]\nevery = true\n", "[recognition].every must be an integer >= 1, got True"),
        ("[recognition]\nmin_face_px = -4\n", "[recognition].min_face_px must be a positive number, got -4"),
        ("[recognition]\nthreshold = 'high'\n", "[recognition].threshold must be \"auto\" or a number >= 0, got 'high'"),
        ("[recognition]\nthreshold = -1\n", "[recognition].threshold must be a non-negative number, got -1"),
        ("[[cameras]]\nname = 'door'\n", "[cameras][1] (door): url is missing"),
        ("[[cameras]]\nurl = 'rtsp://x'\n", "[cameras][1]: name is missing"),
        ("[[cameras]]\nname = 'door'\nurl = 'a.mp4'\nevry = 2\n", "[cameras][1] (door): unknown key 'evry' (did you mean 'every'?)"),
        ("[[cameras]]\nname = 'door'\nurl = 'a.mp4'\n[[cameras]]\nname = 'door'\nurl = 'b.mp4'\n",
         "[cameras][2] (door).name 'door' is used by another camera"),
        ("[[cameras]]\nname = 'front door'\nurl = 'a.mp4'\n", "(front door).name must be 1-64 letters"),
        ("[[cameras]]\nname = 'door'\nurl = ''\n", "(door).url must be non-empty text, got ''"),
        ("[[cameras]]\nname = 'door'\nurl = 'a.mp4'\ndetector = 'yunnet'\n", "(did you mean 'yunet'?)"),
        ("cameras = 'door'\n", "cameras must be an array of tables ([[cameras]]), got text"),
        ("gallery = 3\n", "[gallery] must be a table, got an integer"),
        ("[gallery]\nurl = 5\n", "[gallery].url must be non-empty text, got 5"),
        ("[sinks.mqtt]\nprefix = 'x'\n", "[sinks.mqtt]: url is missing"),
        ("[sinks.mqtt]\nurl = 'mqtt://b'\nqos = 3\n", "[sinks.mqtt].qos must be an integer from 0 to 2, got 3"),
        ("[sinks.mqtt]\nurl = 'mqtt://b'\nprefx = 'a'\n", "unknown key 'prefx' (did you mean 'prefix'?)"),
        ("[sinks.event]\npath = 'e.jsonl'\n", "[sinks]: unknown key 'event' (did you mean 'events'?)"),
        ("[sinks.video]\noutput = 'v.mp4'\nsegment_minutes = 0\n", "[sinks.video].segment_minutes must be a positive number"),
        ("[[cameras]]\nname = 'a'\nurl = 'a.mp4'\n[[cameras]]\nname = 'b'\nurl = 'b.mp4'\n[sinks.events]\npath = 'e.jsonl'\n",
         "[sinks.events].path 'e.jsonl' would be written by 2 cameras at once; put {camera} in it"),
        ("[worker]\nlease_s = 10\nheartbeat_s = 6\n", "[worker]: heartbeat_s (6) must be > 0 and at most half of lease_s (10)"),
        ("[worker]\nleas_s = 10\n", "unknown key 'leas_s' (did you mean 'lease_s'?)"),
        ("[recognition\n", "not valid TOML"),
        ("[gallery]\nurl = 'a'\n[gallery]\nurl = 'b'\n", "not valid TOML"),
    ],
)  # fmt: skip
def test_bad_files_give_one_line_naming_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text_ = str(info.value)
    assert text_.startswith(f"{path}: ")
    assert message in text_
    assert "\n" not in text_


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read the config file .*missing\.toml: No such file"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path)  # a folder
    binary = tmp_path / "b.toml"
    binary.write_bytes(b"\xff\xfe[gallery]")
    with pytest.raises(ConfigError, match=r"b\.toml: not UTF-8 text"):
        load_config(binary)


def test_unknown_camera_name_suggests_the_closest(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, FULL))
    with pytest.raises(ConfigError, match=r"no camera named 'dor' \(did you mean 'door'\?\)"):
        cfg.camera("dor")


def test_flags_override_the_file(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, FULL))
    same = with_overrides(cfg)  # nothing given: nothing changes
    assert same == cfg
    over = with_overrides(
        cfg, db="postgresql://other/db", threshold=0.8, every=5, detector="yunet", embedder="dlib",
        events="ev-{camera}.jsonl", lease_s=20, heartbeat_s=5,
    )  # fmt: skip
    assert over.gallery.url == "postgresql://other/db"
    assert (over.recognition.threshold, over.recognition.every, over.recognition.embedder) == (0.8, 5, EmbedderKind.DLIB)
    # every/detector given on the command line apply to each camera, even one with its own value
    assert [(c.every, c.detector) for c in over.cameras] == [(5, DetectorKind.YUNET), (5, DetectorKind.YUNET)]
    assert over.camera("door").min_face_px == 60.0  # not given: the camera keeps its own
    assert over.sinks.events.path_for("hall") == "ev-hall.jsonl"
    assert over.sinks.video.output_for("hall") == "video-hall.mp4"  # kept from the file
    assert (over.worker.lease_s, over.worker.heartbeat_s) == (20.0, 5.0)
    assert cfg.gallery.url == "postgresql://faces@db.local/faces"  # the original is untouched


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"detector": "mtnn"}, "unknown detector 'mtnn' (did you mean 'mtcnn'?)"),
        ({"every": 0}, "every must be an integer >= 1, got 0"),
        ({"threshold": "loose"}, "threshold must be 'auto' or a number >= 0, got 'loose'"),
        ({"heartbeat_s": 9}, "heartbeat_s (9) must be > 0 and at most half of lease_s (12)"),
        ({"events": "one.jsonl"}, "--events 'one.jsonl' would be written by 2 cameras at once"),
    ],
)
def test_bad_flags(tmp_path: Path, flags: dict, message: str) -> None:
    cfg = load_config(_write(tmp_path, FULL))
    with pytest.raises(ConfigError) as info:
        with_overrides(cfg, **flags)
    assert message in str(info.value)


def test_parse_config_without_a_file() -> None:
    cfg = parse_config({"recognition": {"every": 2}})
    assert cfg.source is None and cfg.recognition.every == 2
    with pytest.raises(ConfigError, match=r"^config: \[recognition\]: unknown key 'x'"):
        parse_config({"recognition": {"x": 1}})


@pytest.mark.parametrize(
    ("value", "kind"),
    [(None, EmbedderKind.DLIB_SFACE), ("fusion", EmbedderKind.FACENET_DLIB), ("facenet+dlib", EmbedderKind.FACENET_DLIB)],
)
def test_the_embedder_default_and_the_old_defaults_name(tmp_path: Path, value: str | None, kind: EmbedderKind) -> None:
    """No embedder: the default (dlib+sface); ``fusion``, written while it was the default, is still FaceNet + dlib."""
    text = "[recognition]\n" + ("" if value is None else f"embedder = {value!r}\n")
    assert load_config(_write(tmp_path, text)).recognition.embedder is kind
