"""A real Mosquitto broker for the MQTT tests, and a recording paho subscriber.

:class:`Mosquitto` runs Debian's ``/usr/sbin/mosquitto`` on a free port of 127.0.0.1 with
a generated config (anonymous, or a password file made with ``mosquitto_passwd``), with
persistence on, so that a stop and a start on the same port keep the subscribers'
sessions and retained messages, as a real broker restart does. :class:`Recorder`
subscribes with a persistent session and keeps every message it receives.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

__all__ = ["Mosquitto", "Received", "Recorder", "events_of", "mosquitto_binary"]


def mosquitto_binary() -> str | None:
    """The broker's path, or ``None`` when Mosquitto is not installed."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Mosquitto:
    """One broker process; :meth:`stop` and :meth:`start` again reuse the port and the store."""

    def __init__(self, root: Path, *, users: dict[str, str] | None = None) -> None:
        binary = mosquitto_binary()
        if binary is None:
            pytest.skip("Debian's mosquitto is not installed (apt-get install mosquitto; .ci/run does it)")
        self.binary = binary
        self.root = root
        self.port = _free_port()
        self.users = users
        self.log = root / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"persistence true\npersistence_location {root}/",
            "user root" if os.geteuid() == 0 else "",  # as root it would switch to user mosquitto
            "log_dest stderr\nlog_type all",
        ]
        if users:
            passwd = shutil.which("mosquitto_passwd")
            if passwd is None:
                pytest.skip("mosquitto_passwd is not installed")
            password_file = root / "passwords"
            for i, (user, password) in enumerate(users.items()):
                flags = ["-b", "-c"] if i == 0 else ["-b"]
                subprocess.run([passwd, *flags, str(password_file), user, password], check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        self.config = root / "mosquitto.conf"
        self.config.write_text("\n".join(line for line in lines if line) + "\n")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout_s} s")

    def pause(self, paused: bool) -> None:
        """Freeze (SIGSTOP) or thaw (SIGCONT) the broker: connections stay open, nothing answers."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)

    def stop(self) -> None:
        """Stop the broker (SIGTERM: it saves its store first)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.payload)


class Recorder:
    """A paho subscriber that records everything under ``topics``.

    With ``client_id`` set the session is persistent (clean_session=False): messages
    published while it is away (a broker restart) are kept for it by the broker.
    """

    def __init__(
        self,
        broker: Mosquitto,
        topics: tuple[str, ...] = ("#",),
        *,
        client_id: str | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.topics = topics
        persistent = client_id is not None
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or "",
            clean_session=not persistent,
            protocol=paho.MQTTv311,
        )
        if auth is not None:
            self.client.username_pw_set(*auth)
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.connect("127.0.0.1", broker.port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("the recording subscriber could not subscribe")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if not reason_code.is_failure:
            client.subscribe([(topic, 1) for topic in self.topics])

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._cond:
            self.messages.append(Received(message.topic, bytes(message.payload), bool(message.retain), message.qos))
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout_s: float = 20.0) -> list[Received]:
        """Wait until ``predicate(messages)`` holds; fails the test with what came otherwise."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    topics = sorted({m.topic for m in self.messages})
                    pytest.fail(f"timed out after {timeout_s} s; got {len(self.messages)} message(s) on {topics}")
                self._cond.wait(min(left, 0.2))  # the predicate may also look at other things
            return list(self.messages)

    def on(self, topic: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def last(self, topic: str) -> Received | None:
        found = self.on(topic)
        return found[-1] if found else None

    def retained(self, settle_s: float = 0.5) -> dict[str, Received]:
        """The retained messages as a new subscriber sees them (non-empty ones only)."""
        time.sleep(settle_s)
        with self._cond:
            return {m.topic: m for m in self.messages if m.retain and m.payload}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def events_of(messages: list[Received]) -> list[dict[str, Any]]:
    """The JSON events among ``messages``, in arrival order."""
    return [m.json() for m in messages if m.topic.endswith("/events")]
