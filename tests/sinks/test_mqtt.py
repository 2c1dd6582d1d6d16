"""The MQTT sink against a real Mosquitto: topics and payloads of a watched folder,
Home Assistant discovery following the gallery, presence expiry, the last will, a
broker restart mid-run, authentication; URL parsing and payloads without a broker."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest
from click.testing import CliRunner

from facesense.cli import main
from facesense.errors import ConfigError
from facesense.sinks.mqtt import (
    MqttSettings,
    MqttSink,
    camera_discovery,
    camera_slug,
    camera_state_payload,
    event_payload,
    open_mqtt_sink,
    person_discovery,
    person_slug,
    settings_from_options,
)
from facesense.types import Event, EventType, IdentityState

from .mosquitto import Mosquitto, Recorder, events_of

EVENT_KEYS = {
    "seq",
    "run",
    "type",
    "camera",
    "source",
    "time",
    "frame",
    "track",
    "name",
    "confidence",
    "box",
    "wall_time",
}
PEOPLE = ["alex_lacamoire", "biden", "kit_harington", "obama", "rose_leslie"]
# knn_examples/test in name order: alex_lacamoire1, johnsnow_test1, kit_with_rose, obama1, obama_and_biden
NAMED = [
    (0, "alex_lacamoire"),
    (1, "kit_harington"),
    (2, "kit_harington"),
    (2, "rose_leslie"),
    (3, "obama"),
    (4, "biden"),
    (4, "obama"),
]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path / "broker")
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def recorder(broker: Mosquitto) -> Iterator[Recorder]:
    rec = Recorder(broker, client_id="facesense-test-recorder")
    yield rec
    rec.close()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def warnings(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= logging.WARNING]


@pytest.fixture()
def mqtt_log() -> Iterator[_Records]:
    """The sink's log records (the CLI turns propagation off, so caplog may not see them)."""
    handler = _Records()
    log = logging.getLogger("facesense.sinks.mqtt")
    log.addHandler(handler)
    old = log.level
    log.setLevel(logging.DEBUG)
    yield handler
    log.removeHandler(handler)
    log.setLevel(old)


@pytest.fixture(scope="module")
def enrolled(examples_dir: Path, shared_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gallery of the five people of knn_examples/train (enrolled once for the module)."""
    db = tmp_path_factory.mktemp("mqtt-gallery") / "people.db"
    result = CliRunner().invoke(main, ["enroll", str(examples_dir / "knn_examples" / "train"), "--db", str(db)])
    assert result.exit_code == 0, result.output
    return db


def _copy_gallery(db: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for part in db.parent.glob(db.name + "*"):  # the database and any -wal / -shm beside it
        shutil.copy2(part, folder / part.name)
    return folder / db.name


def _wait(check: Callable[[], bool], timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def _event(kind: EventType, track: int, frame: int, name: str | None = None) -> Event:
    return Event(type=kind, time=frame / 25.0, frame=frame, source="test", track_id=track, name=name,
                 confidence=0.9 if name else 0.0, xyxy=(10.0, 20.0, 60.0, 90.0))  # fmt: skip


# --------------------------------------------------------------------------- watch, end to end


def test_watch_publishes_events_presence_state_discovery_and_a_last_will(
    broker: Mosquitto, recorder: Recorder, enrolled: Path, examples_dir: Path, tmp_path: Path
) -> None:
    """``facesense watch --mqtt`` on knn_examples/test (looping, so that it is still
    running), checked by a real subscriber, then killed with SIGKILL."""
    folder = examples_dir / "knn_examples" / "test"
    events_path = tmp_path / "events.jsonl"
    args = [sys.executable, "-m", "facesense.cli", "watch", str(folder), "--db", str(enrolled), "--no-display",
            "--loop", "--events", str(events_path), "--mqtt", broker.url]  # fmt: skip
    started = time.time()
    with (tmp_path / "watch.log").open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:

        def first_pass_done(messages: list[Any]) -> bool:
            return any(e["type"] == "unknown" and e["frame"] == 4 for e in events_of(messages))

        recorder.wait_for(lambda ms: first_pass_done(ms) or proc.poll() is not None, timeout_s=120)
        assert proc.poll() is None, (tmp_path / "watch.log").read_text()[-3000:]
        online = recorder.last("facesense/availability")
        assert online is not None and online.text == "online"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    # The broker publishes the last will as soon as the connection drops.
    recorder.wait_for(lambda ms: [m.text for m in ms if m.topic == "facesense/availability"][-1:] == ["offline"], 10)

    messages = recorder.messages
    events = events_of(messages)
    # Every event once, in order, from one run; the fields the issue asks for.
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert len({e["run"] for e in events}) == 1
    assert all(set(e) == EVENT_KEYS for e in events)
    assert {e["camera"] for e in events} == {"test"} and {e["source"] for e in events} == {str(folder)}
    assert {m.topic for m in messages if m.topic.endswith("/events")} == {"facesense/test/events"}
    # The same events as events.jsonl, in the same order.
    jsonl = [json.loads(line) for line in events_path.read_text().splitlines()]
    assert len(jsonl) >= len(events)
    for ours, theirs in zip(events, jsonl, strict=False):
        assert (ours["type"], ours["frame"], ours["track"], ours["name"], ours["confidence"], ours["box"]) == (
            theirs["type"], theirs["frame"], theirs["track_id"], theirs["name"], theirs["confidence"], theirs["box"],
        )  # fmt: skip
    named = sorted((e["frame"], e["name"]) for e in events if e["type"] == "recognized" and e["frame"] <= 4)
    assert named == NAMED
    assert [e["track"] for e in events if e["type"] == "unknown" and e["frame"] <= 4] == [8]

    # The camera's state as it changed: obama_and_biden.jpg shows both and one stranger.
    states = [m.json() for m in messages if m.topic == "facesense/test/state"]
    seen_states = [(s["people"], s["unknown"]) for s in states]
    assert (["kit_harington", "rose_leslie"], 0) in seen_states
    assert (["biden", "obama"], 1) in seen_states
    assert all(set(s) == {"camera", "source", "people", "unknown", "faces", "updated"} for s in states)

    # What a newcomer (Home Assistant starting now) gets from the broker.
    fresh = Recorder(broker)
    try:
        retained = fresh.retained()
    finally:
        fresh.close()
    assert retained["facesense/availability"].text == "offline"
    sensor = retained["homeassistant/sensor/facesense_test/config"].json()
    assert sensor["state_topic"] == "facesense/test/state" and sensor["availability_topic"] == "facesense/availability"
    assert (
        sensor["unique_id"] == "facesense_test_people"
        and "value_template" in sensor
        and sensor["device"]["identifiers"]
    )
    configs = {t: m.json() for t, m in retained.items() if t.startswith("homeassistant/binary_sensor/")}
    assert sorted(configs) == [f"homeassistant/binary_sensor/facesense_{p}/config" for p in PEOPLE]
    for person in PEOPLE:
        config = configs[f"homeassistant/binary_sensor/facesense_{person}/config"]
        assert config["name"] == person and config["device_class"] == "presence"
        assert config["state_topic"] == f"facesense/person/{person}/seen"
        assert config["json_attributes_topic"] == f"facesense/person/{person}"
        assert (config["payload_on"], config["payload_off"]) == ("ON", "OFF")
        assert retained[f"facesense/person/{person}/seen"].text == "ON"  # seen within the last 5 minutes
        presence = retained[f"facesense/person/{person}"].json()
        assert presence["name"] == person and presence["camera"] == "test"
        assert started <= presence["last_seen_ts"] <= time.time()
    assert len({c["unique_id"] for c in configs.values()}) == len(PEOPLE)


def test_bad_mqtt_options_give_one_line_and_exit_2(examples_dir: Path) -> None:
    folder = str(examples_dir / "knn_examples" / "test")
    runner = CliRunner()
    for args in (
        ["watch", folder, "--no-display", "--mqtt", "http://broker:1883"],
        ["watch", folder, "--no-display", "--mqtt", "mqtt://user:hunter2@broker:99999"],
        ["watch", folder, "--no-display", "--mqtt-qos", "1"],
        ["serve", "--mqtt", "mqtt://user:hunter2@broker:port"],
    ):
        result = runner.invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "mqtt" in lines[0].lower() and "hunter2" not in lines[0], result.output
    bad_qos = runner.invoke(main, ["watch", folder, "--mqtt", "mqtt://h", "--mqtt-qos", "3"])
    assert bad_qos.exit_code == 2 and "--mqtt-qos" in bad_qos.output


# --------------------------------------------------------------------------- the sink, driven directly


def test_discovery_follows_people_renamed_and_removed_in_the_gallery(
    broker: Mosquitto, recorder: Recorder, enrolled: Path, tmp_path: Path
) -> None:
    from facesense.gallery import open_gallery

    db = _copy_gallery(enrolled, tmp_path / "gallery")
    store = open_gallery(db)
    sink = open_mqtt_sink(MqttSettings.from_url(broker.url), store)
    assert sink is not None
    config = "homeassistant/binary_sensor/facesense_{}/config".format

    def payloads(topic: str) -> list[bytes]:
        return [m.payload for m in recorder.on(topic)]

    try:
        recorder.wait_for(lambda ms: all(payloads(config(p)) for p in PEOPLE), 20)
        runner = CliRunner()  # another command changes the gallery, as a user would
        renamed = runner.invoke(main, ["people", "rename", "biden", "Joe Biden", "--db", str(db)])
        assert renamed.exit_code == 0, renamed.output
        took = _wait(
            lambda: bool(payloads(config("joe_biden"))) and payloads(config("biden"))[-1:] == [b""], 10, "rename"
        )
        assert took < 5
        new = json.loads(payloads(config("joe_biden"))[-1])
        assert new["name"] == "Joe Biden" and new["state_topic"] == "facesense/person/joe_biden/seen"
        removed = runner.invoke(main, ["people", "remove", "obama", "--yes", "--db", str(db)])
        assert removed.exit_code == 0, removed.output
        _wait(lambda: payloads(config("obama"))[-1:] == [b""], 10, "removal")
        assert payloads("facesense/person/obama/seen")[-1:] == [b""]  # its state is cleared too
    finally:
        sink.close()
        store.close()
    fresh = Recorder(broker)
    try:
        retained = fresh.retained()
    finally:
        fresh.close()
    assert sorted(t for t in retained if t.startswith("homeassistant/binary_sensor/")) == [
        config(p) for p in ["alex_lacamoire", "joe_biden", "kit_harington", "rose_leslie"]
    ]
    assert "facesense/person/obama/seen" not in retained and "facesense/person/biden/seen" not in retained


def test_broker_restart_mid_run_delivers_every_queued_event_once_in_order(
    broker: Mosquitto, recorder: Recorder, make_result: Callable[..., Any], mqtt_log: _Records
) -> None:
    settings = MqttSettings.from_url(broker.url, qos=1, queue_size=25, reconnect_min_s=1, reconnect_max_s=2)
    sink = MqttSink(settings)
    frame = 0
    write_s: list[float] = []

    def write(n: int) -> None:
        nonlocal frame
        for _ in range(n):
            track = frame + 1
            result = make_result(
                frame, [[10, 20, 60, 90]], [track], ["lin"], events=[_event(EventType.APPEARED, track, frame)]
            )
            t0 = time.perf_counter()
            sink.write(result)
            write_s.append(time.perf_counter() - t0)
            frame += 1

    def seqs() -> list[int]:
        return [e["seq"] for e in events_of(recorder.messages)]

    try:
        assert sink.wait_connected(10)
        write(10)
        _wait(lambda: len(seqs()) == 10, 10, "the first events")
        assert sink.flush(5)
        # The recorder's own acks must reach the broker before it stops, or the broker
        # (rightly, at QoS 1) delivers those messages to the recorder again after the restart.
        time.sleep(0.5)

        broker.stop()
        _wait(lambda: not sink.stats().connected, 10, "the sink to notice")
        write(20)  # during the outage: queued, in order
        assert sink.stats().events_queued == 20 and sink.stats().events_dropped == 0
        broker.start()  # same port, same store: the recorder's session survives
        _wait(lambda: len(seqs()) >= 30, 30, "the queued events after the restart")
        assert sink.flush(5)
        stats = sink.stats()
        assert (stats.connects, stats.events_sent, stats.events_queued) == (2, 30, 0)
        time.sleep(0.5)  # the recorder's acks, as above

        # A longer outage than the queue holds: the oldest are dropped, with a warning.
        broker.stop()
        _wait(lambda: not sink.stats().connected, 10, "the second outage")
        write(40)
        assert sink.stats().events_dropped == 15 and sink.stats().events_queued == 25
        assert any("queue full" in w for w in mqtt_log.warnings())
        broker.start()
        _wait(lambda: len(seqs()) >= 55, 30, "the second batch")
        assert sink.flush(5)
    finally:
        sink.close()
    got = seqs()
    assert got == list(range(1, 31)) + list(range(46, 71))  # each once, in order; 31-45 dropped
    assert sink.stats().events_dropped == 15
    assert max(write_s) < 0.05  # write never waits for the broker (outages included)
    # The sink's "offline" reaches the recorder through the broker a moment after close().
    _wait(lambda: getattr(recorder.last("facesense/availability"), "text", None) == "offline", 5, "offline")


def test_messages_unacknowledged_when_the_connection_died_go_first_after_the_reconnect(
    broker: Mosquitto, recorder: Recorder, make_result: Callable[..., Any]
) -> None:
    """The broker freezes with five events in flight (sent, never acknowledged); the
    sink's keep-alive gives up, five more events queue. After the reconnect paho re-sends
    the five (a subscriber may see them twice: ``seq`` tells) before any newer one."""
    sink = MqttSink(MqttSettings.from_url(broker.url, qos=1, keepalive_s=5, reconnect_min_s=1, reconnect_max_s=1))

    def write(frames: range) -> None:
        for i in frames:
            sink.write(make_result(i, events=[_event(EventType.LEFT, i + 1, i)]))  # no faces: only events to send

    try:
        assert sink.wait_connected(10)
        sink.write(make_result(0))  # the camera's config and state go out now
        assert sink.flush(5)
        broker.pause(True)
        try:
            write(range(5))
            _wait(lambda: sink.stats().inflight == 5, 5, "five unacknowledged events")
            _wait(lambda: not sink.stats().connected, 20, "the keep-alive to give up")
            write(range(5, 10))
            assert sink.stats().events_queued == 10  # five with paho, five waiting
        finally:
            broker.pause(False)
        recorder.wait_for(lambda ms: {e["seq"] for e in events_of(ms)} >= set(range(1, 11)), 30)
        assert sink.flush(5)
    finally:
        sink.close()
    seqs = [e["seq"] for e in events_of(recorder.messages)]
    assert list(dict.fromkeys(seqs)) == list(range(1, 11))  # first arrivals in order
    assert all(1 <= seqs.count(n) <= 2 for n in range(1, 11))
    assert all(seqs.count(n) == 1 for n in range(6, 11))  # never acknowledged = never sent before
    last_old = max(i for i, n in enumerate(seqs) if n <= 5)
    assert last_old < seqs.index(6)  # the re-sent ones before the newer ones
    assert sink.stats().events_sent == 10


def test_presence_turns_off_after_the_window_and_state_counts_unknown_faces(
    broker: Mosquitto, recorder: Recorder, make_result: Callable[..., Any]
) -> None:
    settings = MqttSettings.from_url(broker.url, presence_minutes=1.5 / 60, prefix="home/faces")
    sink = MqttSink(settings)  # no people list: a person gets a sensor when first seen
    try:
        assert sink.wait_connected(10)
        states = [IdentityState.KNOWN, IdentityState.UNKNOWN, IdentityState.PENDING]
        sink.write(
            make_result(
                0, [[0, 0, 40, 40], [50, 0, 90, 40], [100, 0, 140, 40]], [1, 2, 3], ["lin", None, None], states=states
            )
        )
        seen_at = time.monotonic()
        recorder.wait_for(lambda ms: [m.text for m in ms if m.topic == "home/faces/person/lin/seen"] == ["ON"], 10)
        recorder.wait_for(lambda ms: recorder.last("home/faces/test/state") is not None, 10)
        state = recorder.last("home/faces/test/state")
        assert state is not None and (state.json()["people"], state.json()["unknown"], state.json()["faces"]) == (
            ["lin"],
            1,
            3,
        )
        config = recorder.last("homeassistant/binary_sensor/home_faces_lin/config")
        assert config is not None and config.json()["state_topic"] == "home/faces/person/lin/seen"
        recorder.wait_for(
            lambda ms: [m.text for m in ms if m.topic == "home/faces/person/lin/seen"] == ["ON", "OFF"], 10
        )
        assert 1.4 <= time.monotonic() - seen_at <= 4.0

        # Home Assistant announcing itself gets every config again.
        before = len(recorder.on("homeassistant/sensor/home_faces_test/config"))
        recorder.client.publish("homeassistant/status", "online", qos=1)
        recorder.wait_for(lambda ms: len(recorder.on("homeassistant/sensor/home_faces_test/config")) > before, 10)
    finally:
        sink.close()

    def ended(ms: list[Any]) -> bool:  # the sink ended: nobody in view (it may still be on its way)
        last = [m for m in ms if m.topic == "home/faces/test/state"][-1:]
        return bool(last) and last[0].json()["people"] == [] and last[0].json()["faces"] == 0

    recorder.wait_for(ended, 10)


def test_password_protected_broker(tmp_path: Path, make_result: Callable[..., Any], mqtt_log: _Records) -> None:
    server = Mosquitto(tmp_path / "auth", users={"camera": "s3cret pass"})
    server.start()
    try:
        rec = Recorder(server, auth=("camera", "s3cret pass"))
        try:
            good = MqttSink(MqttSettings.from_url(f"mqtt://camera:s3cret%20pass@127.0.0.1:{server.port}"))
            try:
                assert good.wait_connected(10)
                good.write(
                    make_result(0, [[0, 0, 40, 40]], [1], ["lin"], events=[_event(EventType.RECOGNIZED, 1, 0, "lin")])
                )
                events = events_of(rec.wait_for(lambda ms: bool(events_of(ms)), 10))
                assert [(e["type"], e["name"], e["seq"]) for e in events] == [("recognized", "lin", 1)]
            finally:
                good.close()
        finally:
            rec.close()
        bad = MqttSink(MqttSettings.from_url(f"mqtt://camera:wrong@127.0.0.1:{server.port}"))
        try:
            assert not bad.wait_connected(2)
            t0 = time.perf_counter()
            bad.write(make_result(0, [[0, 0, 40, 40]], [1], ["lin"], events=[_event(EventType.APPEARED, 1, 0)]))
            assert time.perf_counter() - t0 < 0.05
            assert "refused" in bad.stats().last_error
        finally:
            t0 = time.perf_counter()
            bad.close()
            assert time.perf_counter() - t0 < 3.0  # a broker that refuses us does not hold up the exit
        assert any("refused" in w for w in mqtt_log.warnings())
        assert not any("wrong" in r.getMessage() for r in mqtt_log.records)
    finally:
        server.stop()


# --------------------------------------------------------------------------- no broker needed


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://broker", ("broker", 1883, None, None, False)),
        ("mqtt://10.0.0.5:1884", ("10.0.0.5", 1884, None, None, False)),
        ("mqtts://broker.local", ("broker.local", 8883, None, None, True)),
        ("mqtts://ha:p%40ss%3Aword@broker:8884/", ("broker", 8884, "ha", "p@ss:word", True)),
        ("MQTT://user@[::1]:1883", ("::1", 1883, "user", None, False)),
    ],
)
def test_urls_parse(url: str, expected: tuple[Any, ...]) -> None:
    s = MqttSettings.from_url(url)
    assert (s.host, s.port, s.username, s.password, s.tls) == expected
    assert (s.prefix, s.qos, s.presence_minutes) == ("facesense", 1, 5.0)
    if s.password:
        assert s.password not in repr(s) and s.password not in s.display


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("http://broker", {}, "must start with mqtt:// or mqtts://"),
        ("mqt://broker", {}, "did you mean 'mqtt'"),
        ("broker:1883", {}, "must be a URL"),
        ("mqtt://broker:99999", {}, "port must be a number"),
        ("mqtt://u:topsecret@broker:abc", {}, "port must be a number"),
        ("mqtt://broker:0", {}, "port must be a number"),
        ("mqtt://", {}, "has no host"),
        ("mqtt://broker/facesense", {}, "takes no path"),
        ("mqtt://broker?qos=1", {}, "unknown option 'qos'"),
        ("mqtt://broker?ca=/x.pem", {}, "ca= needs mqtts://"),
        ("mqtt://broker", {"qos": 3}, "QoS must be 0, 1 or 2"),
        ("mqtt://broker", {"prefix": "a/#"}, "must not contain '+', '#'"),
        ("mqtt://broker", {"prefix": "/facesense"}, "must not start or end with '/'"),
        ("mqtt://broker", {"prefix": ""}, "must not be empty"),
        ("mqtt://broker", {"presence_minutes": 0}, "presence window must be > 0"),
        ("mqtt://broker", {"queue_size": 0}, "queue size must be a positive integer"),
    ],
)
def test_bad_settings_are_one_line_config_errors(url: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        MqttSettings.from_url(url, **options)
    text = str(info.value)
    assert message in text and "\n" not in text and "topsecret" not in text


def test_cli_options_map_onto_settings() -> None:
    assert settings_from_options(None) is None
    s = settings_from_options("mqtt://h", "cams/front", 2)
    assert s is not None and (s.prefix, s.qos) == ("cams/front", 2)
    assert s.events_topic("door") == "cams/front/door/events"
    assert s.camera_config_topic("door") == "homeassistant/sensor/cams_front_door/config"
    with pytest.raises(ConfigError, match="need --mqtt"):
        settings_from_options(None, "x", None)


@pytest.mark.parametrize(
    ("source", "slug"),
    [
        ("camera:0", "camera_0"),
        ("/data/knn_examples/test", "test"),
        ("/data/knn_examples/test/", "test"),
        ("clips/short_hamilton_clip.mp4", "short_hamilton_clip"),
        ("rtsp://admin:hunter2@cam1.local:554/Streaming/101", "cam1_local_streaming_101"),
        ("http://192.168.1.20/video.mjpg", "192_168_1_20_video_mjpg"),
        ("Front door", "front_door"),
        ("🎥", "camera"),
    ],
)
def test_camera_slugs(source: str, slug: str) -> None:
    assert camera_slug(source) == slug


@pytest.mark.parametrize(
    ("name", "slug"),
    [("alex_lacamoire", "alex_lacamoire"), ("Joe Biden", "joe_biden"), ("José Ortega-Díaz", "jose_ortega-diaz")],
)
def test_person_slugs(name: str, slug: str) -> None:
    assert person_slug(name) == slug


def test_person_slugs_without_latin_letters_are_hashed_and_stable() -> None:
    slug = person_slug("李雷")
    assert slug.startswith("person_") and len(slug) == len("person_") + 8 and slug == person_slug("李雷")
    assert slug != person_slug("韩梅梅")


def test_event_payloads() -> None:
    track = Event(type=EventType.RECOGNIZED, time=3.4712, frame=104, source="rtsp://u:pw@cam/live", track_id=3,
                  name="lin", confidence=0.93456, xyxy=(212.44, 61.0, 301.71, 172.2))  # fmt: skip
    payload = event_payload(track, seq=7, run="abc", camera="cam_live", wall_time=1700000000.12345)
    assert payload == {
        "seq": 7, "run": "abc", "type": "recognized", "camera": "cam_live", "source": "rtsp://cam/live",
        "time": 3.471, "frame": 104, "track": 3, "name": "lin", "confidence": 0.9346,
        "box": [212.4, 61.0, 301.7, 172.2], "wall_time": 1700000000.123,
    }  # fmt: skip
    status = Event(type=EventType.STATUS, time=5.0, frame=9, source="rtsp://u:pw@cam/live", status="disconnected",
                   message="rtsp://u:pw@cam/live: lost the source, reconnecting")  # fmt: skip
    payload = event_payload(status, seq=8, run="abc", camera="cam_live", wall_time=5.0)
    assert payload["status"] == "disconnected" and "track" not in payload
    assert "pw" not in json.dumps(payload)
    nan = Event(type=EventType.UNKNOWN, time=1.0, frame=1, source="x", track_id=1, confidence=float("nan"))
    assert event_payload(nan, seq=1, run="r", camera="x", wall_time=1.0)["confidence"] is None


def test_state_and_discovery_payloads() -> None:
    state = camera_state_payload("door", "camera:0", ["obama", "biden"], 1, 3, 0.0)
    assert state == {"camera": "door", "source": "camera:0", "people": ["biden", "obama"], "unknown": 1, "faces": 3,
                     "updated": "1970-01-01T00:00:00.000Z"}  # fmt: skip
    settings = MqttSettings.from_url("mqtt://h", qos=0)
    topic, sensor = camera_discovery(settings, "door")
    assert topic == "homeassistant/sensor/facesense_door/config"
    # Home Assistant's documented discovery keys.
    assert {"name", "unique_id", "state_topic", "value_template", "json_attributes_topic", "availability_topic",
            "payload_available", "payload_not_available", "device", "origin", "qos"} <= set(sensor)  # fmt: skip
    assert sensor["qos"] == 0 and sensor["device"]["identifiers"] == ["facesense_door"]
    # The state Home Assistant renders from the camera's state (its templates are Jinja2).
    template = jinja2.Environment().from_string(sensor["value_template"])
    assert template.render(value_json=state) == "biden, obama"
    assert template.render(value_json={**state, "people": []}) == "nobody"
    assert len(template.render(value_json={**state, "people": [f"person {i}" for i in range(100)]})) == 255
    topic, person = person_discovery(settings, "Joe Biden")
    assert topic == "homeassistant/binary_sensor/facesense_joe_biden/config"
    assert person["state_topic"] == "facesense/person/joe_biden/seen" and person["device_class"] == "presence"
    assert person["name"] == "Joe Biden" and person["unique_id"] == "facesense_person_joe_biden"


def test_importing_the_sink_does_not_import_paho() -> None:
    code = "import sys, facesense.sinks.mqtt, facesense.cli; print('paho' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ})
    assert out.stdout.strip() == "False"
