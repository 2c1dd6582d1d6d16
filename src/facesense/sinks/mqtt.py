"""Events, presence and Home Assistant discovery over MQTT (paho-mqtt).

:class:`MqttSink` publishes, under a topic prefix (``facesense`` by default)::

    <prefix>/availability            online / offline, retained; offline is also the last will
    <prefix>/<camera>/events         one JSON object per event (not retained), with "seq"
    <prefix>/<camera>/state          retained JSON: the people in view now, the unknown faces
    <prefix>/person/<person>         retained JSON: where and when the person was last seen
    <prefix>/person/<person>/seen    retained ON / OFF: seen in the last ``presence_minutes``

and Home Assistant's MQTT discovery configs (retained, under ``homeassistant/``)::

    homeassistant/sensor/facesense_<camera>/config         who is in view on that camera
    homeassistant/binary_sensor/facesense_<person>/config  per enrolled person: seen lately

``<camera>`` is :func:`camera_slug` of the frame's source id (the id ``events.jsonl``
writes as ``source``), ``<person>`` is :func:`person_slug` of the name: both only use
``[a-z0-9_-]``, which HA requires of discovery ids. The enrolled people come from a
callable (checked against a change counter such as :meth:`GalleryStore.revision
<facesense.gallery.base.GalleryStore.revision>`); a person added gets a config, a person
removed gets an empty retained config (HA's way to delete an entity) and their retained
state topics are cleared; a rename is a removal and an addition.

Delivery. :meth:`MqttSink.write` and :meth:`MqttSink.notify` only update state and
enqueue, under a lock; they never wait for the network. A sender thread hands messages to
paho, whose own thread talks to the broker and reconnects with exponential backoff
(``reconnect_min_s`` doubling up to ``reconnect_max_s``). Events wait in a bounded queue
(``queue_size``; when it is full the oldest is dropped, with a warning, and counted in
:meth:`MqttSink.stats`) and go out in order. At most :data:`MAX_INFLIGHT` messages are
with paho unacknowledged; after a reconnect, paho first re-sends those (QoS 1/2, marked
as duplicates) and newer ones wait until they are acknowledged, so order holds across an
outage. A message the broker acknowledged is never sent again; one that was unacknowledged
when the connection dropped may reach a subscriber twice at QoS 1 (as may one a restarted
broker re-delivers), which the event's ``seq`` (per sink, so per process; ``run`` tells
processes apart) lets it notice. At QoS 0 events being written when the connection
drops are lost (at most once), queued ones are still kept. Retained
topics hold only their newest value; after every (re)connect, and when Home Assistant
announces itself on ``homeassistant/status``, they are all published again, so a broker
restarted without persistence is refilled.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import json
import logging
import math
import re
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from facesense.errors import ConfigError, FacesenseError
from facesense.types import EventType, IdentityState

if TYPE_CHECKING:
    from facesense.types import Event, FrameResult

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

__all__ = [
    "DEFAULT_PREFIX",
    "MAX_INFLIGHT",
    "MqttSettings",
    "MqttSink",
    "MqttStats",
    "SharedMqttSink",
    "camera_discovery",
    "camera_slug",
    "camera_state_payload",
    "event_payload",
    "mqtt_options",
    "open_mqtt_sink",
    "person_discovery",
    "person_slug",
    "presence_payload",
    "settings_from_options",
]

DEFAULT_PREFIX = "facesense"
DEFAULT_DISCOVERY_PREFIX = "homeassistant"
HA_STATUS_TOPIC = "homeassistant/status"  # Home Assistant's birth message ("online") goes here
MAX_INFLIGHT = 20  # messages handed to paho and not yet acknowledged
PRESENCE_REFRESH_S = 10.0  # re-publish a person's presence at most this often while in view
DRAIN_TIMEOUT_S = 10.0  # after a reconnect, wait at most this long for re-sent messages' acks
CLOSE_TIMEOUT_S = 5.0  # close() waits this long for queued messages to go out
TICK_S = 0.25  # how often the sender thread checks timers (presence expiry, people list)
ONLINE, OFFLINE = "online", "offline"
ON, OFF = "ON", "OFF"
_SCHEMES = {"mqtt": (False, 1883), "mqtts": (True, 8883)}
_URL_OPTIONS = ("ca", "client_id")
_SLUG_BAD = re.compile(r"[^a-z0-9_-]+")

F = TypeVar("F", bound=Callable[..., Any])


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True, kw_only=True)
class MqttSettings:
    """Where and how :class:`MqttSink` publishes. Build it with :meth:`from_url`.

    Attributes:
        host: the broker's host name or address.
        port: its TCP port (1883 for ``mqtt://``, 8883 for ``mqtts://`` by default).
        username: user name, or ``None`` for an anonymous connection.
        password: password (never shown in messages or ``repr``).
        tls: connect with TLS (``mqtts://``), checking the broker's certificate.
        ca_file: a CA bundle to check the broker's certificate against (default: the system's).
        prefix: the first level of every facesense topic.
        qos: MQTT quality of service of every message (0, 1 or 2).
        client_id: the MQTT client id (default: ``facesense-`` and a random suffix).
        presence_minutes: a person's binary sensor turns off after this long unseen.
        queue_size: events kept while the broker is unreachable (the oldest go first).
        discovery_prefix: Home Assistant's discovery prefix.
        keepalive_s: MQTT keep-alive; the broker sends the last will after 1.5 times this
            without a word (at once when the connection closes).
        reconnect_min_s / reconnect_max_s: the reconnect backoff, doubling from min to max.
    """

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: str | None = None
    prefix: str = DEFAULT_PREFIX
    qos: int = 1
    client_id: str | None = None
    presence_minutes: float = 5.0
    queue_size: int = 1000
    discovery_prefix: str = DEFAULT_DISCOVERY_PREFIX
    keepalive_s: int = 30
    reconnect_min_s: int = 1
    reconnect_max_s: int = 30

    def __post_init__(self) -> None:
        if not self.host or any(c.isspace() for c in self.host):
            raise ConfigError(f"MQTT broker host must be a host name or address, got {self.host!r}")
        if not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise ConfigError(f"MQTT broker port must be in 1-65535, got {self.port!r}")
        if self.qos not in (0, 1, 2):
            raise ConfigError(f"MQTT QoS must be 0, 1 or 2, got {self.qos!r}")
        for what, topic in (("topic prefix", self.prefix), ("discovery prefix", self.discovery_prefix)):
            _check_prefix(what, topic)
        if not (
            isinstance(self.presence_minutes, (int, float))
            and math.isfinite(self.presence_minutes)
            and self.presence_minutes > 0
        ):
            raise ConfigError(f"MQTT presence window must be > 0 minutes, got {self.presence_minutes!r}")
        if not isinstance(self.queue_size, int) or self.queue_size < 1:
            raise ConfigError(f"MQTT queue size must be a positive integer, got {self.queue_size!r}")
        if not isinstance(self.keepalive_s, int) or self.keepalive_s < 5:
            raise ConfigError(f"MQTT keep-alive must be at least 5 s, got {self.keepalive_s!r}")
        if not 1 <= self.reconnect_min_s <= self.reconnect_max_s:
            raise ConfigError("MQTT reconnect backoff needs 1 <= reconnect_min_s <= reconnect_max_s")
        if self.client_id is not None and not 0 < len(self.client_id) <= 128:
            raise ConfigError("MQTT client id must be 1-128 characters")
        if self.password is not None and self.username is None:
            raise ConfigError("MQTT URL has a password but no user name")

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MqttSettings:
        """Settings from ``mqtt://[user[:password]@]host[:port]`` or ``mqtts://...`` (TLS).

        The query may set ``ca`` (a CA bundle for ``mqtts``) and ``client_id``; every
        other setting is a keyword (``prefix=``, ``qos=``, ...). User name and password are
        percent-decoded.

        Raises:
            ConfigError: another scheme, no host, a bad port, a path, or an unknown query key;
                the message never contains the password.
        """
        from facesense.choices import did_you_mean

        if not isinstance(url, str) or "://" not in url:
            raise ConfigError("MQTT broker must be a URL like mqtt://host:1883 or mqtts://user:password@host")
        scheme = url.split("://", 1)[0].lower()
        if scheme not in _SCHEMES:
            raise ConfigError(
                f"MQTT broker URL must start with mqtt:// or mqtts://, got {scheme}://{did_you_mean(scheme, list(_SCHEMES))}"
            )
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ConfigError(f"MQTT broker URL {_redact(url)}: the port must be a number in 1-65535") from None
        tls, default_port = _SCHEMES[scheme]
        if not parts.hostname:
            raise ConfigError(f"MQTT broker URL {_redact(url)} has no host")
        if parts.path not in ("", "/"):
            raise ConfigError(f"MQTT broker URL {_redact(url)} takes no path (set the topic prefix with --mqtt-prefix)")
        if parts.fragment:
            raise ConfigError(f"MQTT broker URL {_redact(url)} takes no #fragment")
        query: dict[str, str] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key not in _URL_OPTIONS:
                raise ConfigError(
                    f"MQTT broker URL: unknown option {key!r}{did_you_mean(key, _URL_OPTIONS)}; known: {', '.join(_URL_OPTIONS)}"
                )
            query[key] = value
        if "ca" in query and not tls:
            raise ConfigError("MQTT broker URL: ca= needs mqtts://")
        if port == 0:
            raise ConfigError(f"MQTT broker URL {_redact(url)}: the port must be a number in 1-65535")
        settings: dict[str, Any] = {
            "host": parts.hostname,
            "port": default_port if port is None else port,
            "username": None if parts.username is None else unquote(parts.username),
            "password": None if parts.password is None else unquote(parts.password),
            "tls": tls,
            "ca_file": query.get("ca") or None,
            "client_id": query.get("client_id") or None,
        }
        settings.update(options)
        return cls(**settings)

    @property
    def display(self) -> str:
        """The broker as a URL without the password."""
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}"

    @property
    def availability_topic(self) -> str:
        return f"{self.prefix}/availability"

    @property
    def node(self) -> str:
        """The discovery object-id prefix: ``facesense`` for the default topic prefix."""
        return _slug(self.prefix) or DEFAULT_PREFIX

    def events_topic(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/events"

    def state_topic(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/state"

    def presence_topic(self, person: str) -> str:
        return f"{self.prefix}/person/{person}"

    def seen_topic(self, person: str) -> str:
        return f"{self.prefix}/person/{person}/seen"

    def camera_config_topic(self, camera: str) -> str:
        return f"{self.discovery_prefix}/sensor/{self.node}_{camera}/config"

    def person_config_topic(self, person: str) -> str:
        return f"{self.discovery_prefix}/binary_sensor/{self.node}_{person}/config"


def _check_prefix(what: str, topic: str) -> None:
    if not isinstance(topic, str) or not topic.strip("/"):
        raise ConfigError(f"MQTT {what} must not be empty")
    if topic != topic.strip("/") or "//" in topic:
        raise ConfigError(f"MQTT {what} {topic!r} must not start or end with '/' or hold an empty level")
    if any(c in topic for c in "+#\0"):
        raise ConfigError(f"MQTT {what} {topic!r} must not contain '+', '#' or NUL")
    if topic.startswith("$"):
        raise ConfigError(f"MQTT {what} {topic!r} must not start with '$' (reserved by brokers)")


def _redact(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    head, sep, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    return f"{head}{sep}{userinfo}{at}{hostport}{slash}{tail}"


def settings_from_options(url: str | None, prefix: str | None = None, qos: int | None = None) -> MqttSettings | None:
    """The :class:`MqttSettings` of ``--mqtt``, ``--mqtt-prefix`` and ``--mqtt-qos``
    (``None`` without ``--mqtt``).

    Raises:
        ConfigError: a bad URL, prefix or QoS; or a prefix / QoS without ``--mqtt``.
    """
    if not url:
        if prefix is not None or qos is not None:
            raise ConfigError("--mqtt-prefix and --mqtt-qos need --mqtt URL")
        return None
    options: dict[str, Any] = {}
    if prefix is not None:
        options["prefix"] = prefix
    if qos is not None:
        options["qos"] = qos
    return MqttSettings.from_url(url, **options)


def settings_from_config(config: Any, cli: MqttSettings | None = None) -> MqttSettings | None:
    """``--mqtt`` when given (``cli``), else the ``[sinks.mqtt]`` table of a
    :class:`facesense.config.FacesenseConfig` (``url``, ``prefix``, ``qos``); ``None``: no MQTT.

    Raises:
        ConfigError: a bad ``[sinks.mqtt]`` table (the message names the file).
    """
    if cli is not None:
        return cli
    table = config.sinks.mqtt
    if not table:
        return None
    try:
        return settings_from_options(table.get("url"), table.get("prefix"), table.get("qos"))
    except ConfigError as exc:
        where = f"{config.source}: " if config.source is not None else ""
        raise ConfigError(f"{where}[sinks.mqtt]: {exc}") from None


def mqtt_options(func: F) -> F:
    """The ``--mqtt``, ``--mqtt-prefix`` and ``--mqtt-qos`` click options (``watch``, ``serve``);
    the command gets ``mqtt``, ``mqtt_prefix`` and ``mqtt_qos`` for :func:`settings_from_options`."""
    import click

    func = click.option(
        "--mqtt-qos",
        type=click.IntRange(0, 2),
        default=None,
        help="MQTT quality of service of every message [default: 1].",
    )(func)
    func = click.option(
        "--mqtt-prefix",
        default=None,
        metavar="PREFIX",
        help=f"First level of the MQTT topics [default: {DEFAULT_PREFIX}].",
    )(func)
    func = click.option(
        "--mqtt",
        metavar="URL",
        envvar="FACESENSE_MQTT",
        default=None,
        help="Publish events, presence and Home Assistant discovery to this MQTT broker:"
        " mqtt://[user:password@]host[:port] or mqtts://... (TLS) [env FACESENSE_MQTT].",
    )(func)
    return func


# --------------------------------------------------------------------------- slugs and payloads


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _SLUG_BAD.sub("_", ascii_text.lower()).strip("_")


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


def public_source(source_id: str) -> str:
    """``source_id`` without a URL's user name and password."""
    if "://" not in source_id:
        return source_id
    try:
        parts = urlsplit(source_id)
        port = parts.port
    except ValueError:
        return source_id.split("://", 1)[0] + "://..."
    if parts.username is None and parts.password is None:
        return source_id
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return urlunsplit((parts.scheme, host + (f":{port}" if port else ""), parts.path, parts.query, parts.fragment))


def camera_slug(source_id: str) -> str:
    """A topic level for a source id: ``[a-z0-9_-]`` only.

    ``camera:0`` -> ``camera_0``; a file or folder -> its name without the extension
    (``clip.mp4`` -> ``clip``); a URL -> host and path (``rtsp://u:p@cam1:554/live`` ->
    ``cam1_live``), never its credentials. A named source (``VideoSource(name=...)``)
    keeps its name, slugged (``Front door`` -> ``front_door``).
    """
    text = source_id.strip()
    if "://" in text:
        try:
            parts = urlsplit(text)
            text = f"{parts.hostname or ''}{parts.path}"
        except ValueError:
            text = text.split("://", 1)[1].rsplit("@", 1)[-1]
    elif "/" in text or "\\" in text or PurePath(text).suffix:
        path = PurePath(text.rstrip("/\\"))
        text = path.stem if path.suffix else path.name
    return _slug(text) or "camera"


def person_slug(name: str) -> str:
    """A topic level and discovery id for a person's name: ``[a-z0-9_-]`` only.

    ``alex_lacamoire`` stays; ``José Ortega`` -> ``jose_ortega``; a name with no Latin
    letters or digits gets ``person_`` and a hash of the name.
    """
    return _slug(name) or f"person_{_short_hash(name)}"


def _person_slugs(names: Iterable[str]) -> dict[str, str]:
    """Each name's slug; names whose slugs collide each get a hash suffix."""
    groups: dict[str, list[str]] = collections.defaultdict(list)
    for name in names:
        groups[person_slug(name)].append(name)
    slugs: dict[str, str] = {}
    for slug, members in groups.items():
        for name in members:
            slugs[name] = slug if len(members) == 1 else f"{slug}_{_short_hash(name)}"
    return slugs


def _iso(epoch_s: float) -> str:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _finite(value: float | None, digits: int) -> float | None:
    if value is None or not math.isfinite(float(value)):
        return None
    return round(float(value), digits)


def event_payload(event: Event, *, seq: int, run: str, camera: str, wall_time: float) -> dict[str, Any]:
    """The JSON object of one event on ``<prefix>/<camera>/events``.

    Track events: ``{"seq", "run", "type", "camera", "source", "time", "frame", "track",
    "name", "confidence", "box", "wall_time"}``; status events carry ``"status"`` and
    ``"message"`` instead of the track fields. ``time`` is the event's own (media
    seconds for files, epoch seconds for live sources), ``wall_time`` when facesense
    produced it (epoch seconds). ``source`` has no URL credentials.
    """
    payload: dict[str, Any] = {
        "seq": seq,
        "run": run,
        "type": event.type.value,
        "camera": camera,
        "source": public_source(event.source or ""),
        "time": _finite(event.time, 3),
        "frame": event.frame,
    }
    if event.type is EventType.STATUS:
        message = event.message
        if message and event.source and event.source in message:
            message = message.replace(event.source, public_source(event.source))
        payload.update(status=event.status, message=message)
    else:
        payload.update(
            track=event.track_id,
            name=event.name,
            confidence=_finite(event.confidence, 4),
            box=None if event.xyxy is None else [_finite(v, 1) for v in event.xyxy],
        )
    payload["wall_time"] = round(wall_time, 3)
    return payload


def camera_state_payload(
    camera: str, source: str, people: Sequence[str], unknown: int, faces: int, when: float
) -> dict[str, Any]:
    """The retained JSON of ``<prefix>/<camera>/state``: ``{"camera", "source", "people"
    (sorted names in view), "unknown" (faces voted unknown), "faces" (all tracked faces),
    "updated" (ISO 8601 UTC)}``."""
    return {
        "camera": camera,
        "source": public_source(source),
        "people": sorted(people),
        "unknown": unknown,
        "faces": faces,
        "updated": _iso(when),
    }


def presence_payload(name: str, camera: str, source: str, seen_at: float) -> dict[str, Any]:
    """The retained JSON of ``<prefix>/person/<person>``: ``{"name", "camera", "source",
    "last_seen" (ISO 8601 UTC), "last_seen_ts" (epoch seconds)}``."""
    return {
        "name": name,
        "camera": camera,
        "source": public_source(source),
        "last_seen": _iso(seen_at),
        "last_seen_ts": round(seen_at, 3),
    }


def _ha_common(settings: MqttSettings) -> dict[str, Any]:
    from facesense import __version__

    return {
        "availability_topic": settings.availability_topic,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "qos": settings.qos,
        "origin": {"name": "facesense", "sw_version": __version__},
    }


def _ha_device(settings: MqttSettings, ident: str, name: str, model: str) -> dict[str, Any]:
    from facesense import __version__

    return {
        "identifiers": [ident],
        "name": name,
        "manufacturer": "facesense",
        "model": model,
        "sw_version": __version__,
    }


def camera_discovery(settings: MqttSettings, camera: str) -> tuple[str, dict[str, Any]]:
    """Home Assistant's discovery topic and config of a camera's "people in view" sensor.

    The state is the names in view, comma-separated (``nobody`` when none); the
    attributes are the whole ``<prefix>/<camera>/state`` object.
    """
    config = {
        "name": "People in view",
        "unique_id": f"{settings.node}_{camera}_people",
        "state_topic": settings.state_topic(camera),
        # HA refuses sensor states over 255 characters.
        "value_template": "{{ ((value_json.people | join(', ')) if value_json.people else 'nobody')[:255] }}",
        "json_attributes_topic": settings.state_topic(camera),
        "icon": "mdi:face-recognition",
        **_ha_common(settings),
        "device": _ha_device(settings, f"{settings.node}_{camera}", f"{settings.node} {camera}", "camera"),
    }
    return settings.camera_config_topic(camera), config


def person_discovery(settings: MqttSettings, name: str, person: str | None = None) -> tuple[str, dict[str, Any]]:
    """Home Assistant's discovery topic and config of a person's presence binary sensor.

    ``ON`` while the person was seen in the last ``presence_minutes``; the attributes are
    ``<prefix>/person/<person>`` (camera, last seen).
    """
    person = person or person_slug(name)
    config = {
        "name": name,
        "unique_id": f"{settings.node}_person_{person}",
        "state_topic": settings.seen_topic(person),
        "payload_on": ON,
        "payload_off": OFF,
        "device_class": "presence",
        "json_attributes_topic": settings.presence_topic(person),
        "icon": "mdi:account",
        **_ha_common(settings),
        "device": _ha_device(settings, f"{settings.node}_people", f"{settings.node} people", "enrolled people"),
    }
    return settings.person_config_topic(person), config


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


# --------------------------------------------------------------------------- the sink


@dataclass(frozen=True)
class MqttStats:
    """A snapshot of :class:`MqttSink`'s counters.

    Attributes:
        connected: whether the broker connection is up.
        connects: successful connections so far (1 + reconnects).
        events_enqueued: events accepted by ``write`` / ``notify`` (= the last ``seq``).
        events_sent: events the broker acknowledged (QoS 1/2) or that were written (QoS 0).
        events_queued: events waiting (for the broker, or for a free in-flight slot).
        events_dropped: events dropped because the queue was full (the oldest first).
        messages_sent: every message acknowledged or written, retained ones included.
        inflight: messages with paho, not yet acknowledged.
        write_ms_max: the slowest ``write`` / ``notify`` call.
        last_error: the last connection problem, or ``""``.
    """

    connected: bool
    connects: int
    events_enqueued: int
    events_sent: int
    events_queued: int
    events_dropped: int
    messages_sent: int
    inflight: int
    write_ms_max: float
    last_error: str


@dataclass(slots=True)
class _Message:
    topic: str
    payload: bytes
    retain: bool
    seq: int | None = None  # events only


@dataclass(slots=True)
class _Camera:
    slug: str
    source: str
    state: tuple[tuple[str, ...], int, int] | None = None  # people, unknown, faces


@dataclass(slots=True)
class _Seen:
    camera: str
    source: str
    last_seen: float  # epoch seconds
    published_at: float = -math.inf
    on: bool = False


class MqttSink:
    """A pipeline sink that publishes to an MQTT broker (see the module docstring).

    Args:
        settings: the broker and topics.
        people: returns the enrolled people's names; every one gets a Home Assistant
            binary sensor. ``None``: a sensor for each person as they are first seen.
        revision: a change counter for ``people`` (``GalleryStore.revision``): the names are
            read again only when it moves. Without it ``people`` is called every
            ``people_check_s``.
        people_check_s: how often the people list (or its revision) is checked.

    Raises:
        ConfigError: paho-mqtt is not installed, or the TLS settings are unusable.

    The connection is made in the background: a broker that is down when the sink starts
    is retried like one that goes away later.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        people: Callable[[], Iterable[str]] | None = None,
        revision: Callable[[], int] | None = None,
        people_check_s: float = 1.0,
    ) -> None:
        try:
            import paho.mqtt.client as paho
            from paho.mqtt.enums import CallbackAPIVersion
        except ImportError as exc:
            raise ConfigError(f"MQTT needs paho-mqtt: pip install 'paho-mqtt>=2' ({exc})") from None
        self.settings = settings
        self.run = uuid.uuid4().hex[:12]
        self._paho = paho
        self._people_fn = people
        self._revision_fn = revision
        self._people_check_s = people_check_s
        self._people_checked = -math.inf
        self._people_revision: int | None = None
        self._people_error: str | None = None
        self._window_s = settings.presence_minutes * 60.0

        self._cond = threading.Condition()
        self._events: collections.deque[_Message] = collections.deque()
        self._pending: collections.OrderedDict[str, bytes] = collections.OrderedDict()  # retained topics to (re)send
        self._retained: collections.OrderedDict[str, bytes] = collections.OrderedDict()  # what the broker should hold
        self._inflight: dict[int, _Message] = {}
        self._early_acks: set[int] = set()
        self._cameras: dict[str, _Camera] = {}
        self._seen: dict[str, _Seen] = {}
        self._enrolled: dict[str, str] = {}  # name -> slug, people with a discovery config
        self._connected = False
        self._draining_until = 0.0
        self._seq = 0
        self._sent_events = 0
        self._sent_messages = 0
        self._dropped = 0
        self._dropping = False
        self._connects = 0
        self._write_ms_max = 0.0
        self._last_error = ""
        self._halt = False
        self._closed = False

        client_id = settings.client_id or f"facesense-{self.run}"
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311, clean_session=True
        )
        if logger.isEnabledFor(logging.DEBUG):  # paho's own lines repeat ours at each retry: only for -vv
            client.enable_logger(logging.getLogger(f"{__name__}.paho"))
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            import ssl

            try:
                client.tls_set_context(ssl.create_default_context(cafile=settings.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"MQTT TLS: cannot use CA file {settings.ca_file} ({exc})") from None
        client.will_set(settings.availability_topic, OFFLINE, qos=settings.qos, retain=True)
        client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)
        client.max_inflight_messages_set(MAX_INFLIGHT)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._client = client
        self._set_retained(settings.availability_topic, ONLINE.encode())
        client.connect_async(settings.host, settings.port, keepalive=settings.keepalive_s)
        client.loop_start()  # paho's thread: connects, reconnects with backoff, reads acks
        self._thread = threading.Thread(target=self._run, name="facesense-mqtt", daemon=True)
        self._thread.start()
        logger.info("MQTT: publishing to %s under %s/ (QoS %d)", settings.display, settings.prefix, settings.qos)

    def __repr__(self) -> str:
        return f"MqttSink({self.settings.display}, prefix={self.settings.prefix!r})"

    # -- sink interface --------------------------------------------------------------
    def write(self, result: FrameResult) -> None:
        """Enqueue the frame's events and update the camera's state and people's presence
        (never waits for the broker)."""
        started = time.perf_counter()
        now = time.time()
        frame, faces = result.frame, result.faces
        with self._cond:
            if self._closed:
                return
            camera = self._camera_locked(frame.source_id)
            for event in result.events:
                self._enqueue_event_locked(event, now)
            people: set[str] = set()
            unknown = 0
            states = faces.states or ()
            names = faces.names or ()
            for state, name in zip(states, names, strict=False):
                if state is IdentityState.KNOWN and name is not None:
                    people.add(name)
                elif state is IdentityState.UNKNOWN:
                    unknown += 1
            for name in people:
                self._sighting_locked(name, camera, now)
            self._camera_state_locked(camera, tuple(sorted(people)), unknown, len(faces), now)
            self._cond.notify_all()
        self._write_ms_max = max(self._write_ms_max, (time.perf_counter() - started) * 1000.0)

    def notify(self, events: Sequence[Event]) -> None:
        """Enqueue events from between frames (source status, the last tracks leaving)."""
        if not events:
            return
        now = time.time()
        with self._cond:
            if self._closed:
                return
            for event in events:
                self._camera_locked(event.source or "")
                self._enqueue_event_locked(event, now)
            self._cond.notify_all()

    def end_camera(self, source_id: str) -> None:
        """Mark a source as ended: nobody in view on it any more."""
        with self._cond:
            camera = self._cameras.get(source_id)
            if camera is not None and not self._closed:
                self._camera_state_locked(camera, (), 0, 0, time.time())
                self._cond.notify_all()

    def shared(self) -> SharedMqttSink:
        """A view of this sink for one of several pipelines: its ``close`` only ends
        the cameras it saw; the owner closes the sink itself."""
        return SharedMqttSink(self)

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Publish what is queued (waiting up to ``timeout_s`` while connected), then
        ``offline`` on the availability topic, and disconnect. Idempotent."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            if self._closed:
                return
            self._closed = True
        # What the cameras saw last goes out first (a state is only kept at its newest),
        # then "nobody in view" and "offline", so that offline is the last word.
        self.flush(timeout_s)
        with self._cond:
            now = time.time()
            for camera in self._cameras.values():
                self._camera_state_locked(camera, (), 0, 0, now)
            self._set_retained(self.settings.availability_topic, OFFLINE.encode())
            self._cond.notify_all()
        self.flush(max(0.5, deadline - time.monotonic()))
        with self._cond:
            self._halt = True
            left = len(self._events) + len(self._inflight)
            self._cond.notify_all()
        self._thread.join(timeout=5)
        if left:
            logger.warning("MQTT: %d event(s) were not delivered to %s", left, self.settings.display)
        self._client.disconnect()  # a clean disconnect: the broker drops the last will
        self._client.loop_stop()
        logger.info("MQTT: %s", self._summary())

    # -- waiting and counters ----------------------------------------------------------
    def wait_connected(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the broker connection; returns whether it is up."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._connected:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def flush(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` until everything queued was acknowledged; returns
        whether it was. Returns at once when the broker is unreachable."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._events or self._pending or self._inflight:
                left = deadline - time.monotonic()
                if left <= 0 or (not self._connected and self._last_error):
                    return False  # out of time, or the broker is unreachable: no point waiting
                self._cond.wait(min(left, TICK_S))
            return True

    def stats(self) -> MqttStats:
        """A snapshot of the counters; cheap and thread-safe."""
        with self._cond:
            return MqttStats(
                connected=self._connected,
                connects=self._connects,
                events_enqueued=self._seq,
                events_sent=self._sent_events,
                events_queued=len(self._events) + sum(1 for m in self._inflight.values() if m.seq is not None),
                events_dropped=self._dropped,
                messages_sent=self._sent_messages,
                inflight=len(self._inflight),
                write_ms_max=self._write_ms_max,
                last_error=self._last_error,
            )

    def _summary(self) -> str:
        s = self.stats()
        return (
            f"{s.events_sent} of {s.events_enqueued} event(s) delivered to {self.settings.display}"
            + (f", {s.events_dropped} dropped (queue full)" if s.events_dropped else "")
            + (f", {s.connects - 1} reconnect(s)" if s.connects > 1 else "")
        )

    # -- state (callers hold self._cond) ---------------------------------------------
    def _camera_locked(self, source_id: str) -> _Camera:
        camera = self._cameras.get(source_id)
        if camera is not None:
            return camera
        slug = camera_slug(source_id)
        taken = {c.slug for c in self._cameras.values()}
        base, n = slug, 2
        while slug in taken:
            slug, n = f"{base}_{n}", n + 1
        camera = _Camera(slug=slug, source=source_id)
        self._cameras[source_id] = camera
        topic, config = camera_discovery(self.settings, slug)
        self._set_retained(topic, _json(config))
        return camera

    def _enqueue_event_locked(self, event: Event, now: float) -> None:
        camera = self._camera_locked(event.source or "")
        self._seq += 1
        payload = event_payload(event, seq=self._seq, run=self.run, camera=camera.slug, wall_time=now)
        if len(self._events) >= self.settings.queue_size:
            self._events.popleft()
            self._dropped += 1
            if not self._dropping:
                self._dropping = True
                logger.warning(
                    "MQTT: event queue full (%d): dropping the oldest events until %s takes them",
                    self.settings.queue_size,
                    self.settings.display,
                )
        self._events.append(_Message(self.settings.events_topic(camera.slug), _json(payload), False, self._seq))

    def _camera_state_locked(
        self, camera: _Camera, people: tuple[str, ...], unknown: int, faces: int, now: float
    ) -> None:
        state = (people, unknown, faces)
        if state == camera.state:
            return
        camera.state = state
        payload = camera_state_payload(camera.slug, camera.source, people, unknown, faces, now)
        self._set_retained(self.settings.state_topic(camera.slug), _json(payload))

    def _sighting_locked(self, name: str, camera: _Camera, now: float) -> None:
        if self._people_fn is None and name not in self._enrolled:
            self._sync_enrolled_locked([*self._enrolled, name])
        person = self._enrolled.get(name)
        seen = self._seen.get(name)
        if seen is None:
            seen = self._seen[name] = _Seen(camera=camera.slug, source=camera.source, last_seen=now)
        moved = seen.camera != camera.slug
        seen.camera, seen.source, seen.last_seen = camera.slug, camera.source, now
        if person is None:
            return  # not enrolled (any more): no topics of their own
        if moved or not seen.on or now - seen.published_at >= PRESENCE_REFRESH_S:
            seen.published_at = now
            self._set_retained(
                self.settings.presence_topic(person), _json(presence_payload(name, camera.slug, camera.source, now))
            )
        if not seen.on:
            seen.on = True
            self._set_retained(self.settings.seen_topic(person), ON.encode())

    def _expire_locked(self, now: float) -> None:
        for name, seen in self._seen.items():
            if seen.on and now - seen.last_seen > self._window_s:
                seen.on = False
                person = self._enrolled.get(name)
                if person is not None:
                    self._set_retained(self.settings.seen_topic(person), OFF.encode())

    def _sync_enrolled_locked(self, names: Iterable[str]) -> None:
        """Discovery configs for ``names``; empty retained configs for those gone."""
        slugs = _person_slugs(sorted(set(names)))
        for name, person in list(self._enrolled.items()):
            if slugs.get(name) == person:
                continue
            for topic in (
                self.settings.person_config_topic(person),
                self.settings.seen_topic(person),
                self.settings.presence_topic(person),
            ):
                self._clear_retained(topic)
            del self._enrolled[name]
            logger.info("MQTT: %s is no longer enrolled: removed from Home Assistant", name)
        for name, person in slugs.items():
            if name in self._enrolled:
                continue
            self._enrolled[name] = person
            topic, config = person_discovery(self.settings, name, person)
            self._set_retained(topic, _json(config))
            seen = self._seen.get(name)
            self._set_retained(self.settings.seen_topic(person), (ON if seen is not None and seen.on else OFF).encode())
            if seen is not None:
                payload = presence_payload(name, seen.camera, seen.source, seen.last_seen)
                self._set_retained(self.settings.presence_topic(person), _json(payload))

    def _set_retained(self, topic: str, payload: bytes) -> None:
        self._retained[topic] = payload
        self._retained.move_to_end(topic)
        self._pending[topic] = payload
        self._pending.move_to_end(topic)

    def _clear_retained(self, topic: str) -> None:
        """An empty retained message deletes the broker's retained message (and HA's entity)."""
        self._retained.pop(topic, None)
        self._pending[topic] = b""
        self._pending.move_to_end(topic)

    # -- people list (sender thread) -------------------------------------------------
    def _check_people(self) -> None:
        if self._people_fn is None or time.monotonic() - self._people_checked < self._people_check_s:
            return
        self._people_checked = time.monotonic()
        try:
            if self._revision_fn is not None:
                revision = self._revision_fn()
                if revision == self._people_revision:
                    return
            else:
                revision = None
            names = list(self._people_fn())
        except FacesenseError as exc:
            if str(exc) != self._people_error:
                self._people_error = str(exc)
                logger.warning("MQTT: cannot read the enrolled people (%s); Home Assistant is not updated", exc)
            return
        self._people_error = None
        self._people_revision = revision
        with self._cond:
            self._sync_enrolled_locked(names)
            self._cond.notify_all()

    # -- sending (sender thread) -----------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                self._check_people()
            except Exception:  # a people callable must not kill the sender
                logger.exception("MQTT: reading the enrolled people failed")
            with self._cond:
                if self._halt:
                    return
                self._expire_locked(time.time())
                message = self._take_locked()
                if message is None:
                    self._cond.wait(TICK_S)
                    continue
            self._send(message)

    def _take_locked(self) -> _Message | None:
        if not self._connected or len(self._inflight) >= MAX_INFLIGHT:
            return None
        if self._draining_until:
            if self._inflight and time.monotonic() < self._draining_until:
                return None  # re-sent messages first, so that order holds
            self._draining_until = 0.0
        if self._pending:
            topic, payload = self._pending.popitem(last=False)
            return _Message(topic, payload, True)
        if self._events:
            return self._events.popleft()
        return None

    def _send(self, message: _Message) -> None:
        qos = self.settings.qos
        try:
            info = self._client.publish(message.topic, message.payload, qos=qos, retain=message.retain)
        except (ValueError, TypeError) as exc:
            logger.error("MQTT: cannot publish on %r (%s): dropped", message.topic, exc)
            return
        rc = info.rc
        paho = self._paho
        with self._cond:
            if rc == paho.MQTT_ERR_SUCCESS or (rc == paho.MQTT_ERR_NO_CONN and qos > 0):
                # At QoS 1/2 paho keeps a message it could not send and sends it on reconnect.
                if info.mid in self._early_acks:
                    self._early_acks.discard(info.mid)
                    self._count_sent_locked(message)
                else:
                    self._inflight[info.mid] = message
            elif rc == paho.MQTT_ERR_NO_CONN:
                self._requeue_locked(message)
            else:
                logger.error("MQTT: cannot publish on %r (%s): dropped", message.topic, paho.error_string(rc))
            self._cond.notify_all()

    def _requeue_locked(self, message: _Message) -> None:
        if message.seq is not None:
            self._events.appendleft(message)
        elif message.topic not in self._pending:
            self._pending[message.topic] = message.payload
            self._pending.move_to_end(message.topic, last=False)

    def _count_sent_locked(self, message: _Message) -> None:
        self._sent_messages += 1
        if message.seq is not None:
            self._sent_events += 1

    # -- paho callbacks (paho's thread) ----------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._problem(f"the broker refused the connection: {reason_code}")
            return
        client.subscribe(HA_STATUS_TOPIC, qos=0)
        with self._cond:
            self._connected = True
            self._connects += 1
            self._last_error = ""
            self._dropping = False
            if self._inflight:
                self._draining_until = time.monotonic() + DRAIN_TIMEOUT_S
            # The broker may have lost its retained messages (restarted): send them all again.
            for topic, payload in self._retained.items():
                if topic not in self._pending:
                    self._pending[topic] = payload
            availability = self.settings.availability_topic
            if availability in self._pending:
                self._pending.move_to_end(availability, last=False)
            self._cond.notify_all()
        logger.log(
            logging.INFO if self._connects == 1 else logging.WARNING,
            "MQTT: %s %s",
            "connected to" if self._connects == 1 else "reconnected to",
            self.settings.display,
        )

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self._problem("cannot connect (broker down or unreachable); retrying")

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        with self._cond:
            was = self._connected
            self._connected = False
            if self.settings.qos == 0:
                self._inflight.clear()  # QoS 0 messages not yet written are lost with the connection
            self._cond.notify_all()
        if was and not self._halt:
            self._problem(f"lost the connection ({reason_code}); reconnecting with backoff")

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        with self._cond:
            message = self._inflight.pop(mid, None)
            if message is None:
                self._early_acks.add(mid)
            else:
                self._count_sent_locked(message)
            self._cond.notify_all()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if message.topic == HA_STATUS_TOPIC and message.payload == ONLINE.encode():
            with self._cond:  # Home Assistant (re)started: announce everything again
                for topic, payload in self._retained.items():
                    self._pending[topic] = payload
                self._cond.notify_all()

    def _problem(self, text: str) -> None:
        with self._cond:
            repeated = text == self._last_error
            self._last_error = text
        if not repeated:
            logger.warning("MQTT %s: %s", self.settings.display, text)


class SharedMqttSink:
    """One pipeline's view of a shared :class:`MqttSink` (``facesense serve`` runs one
    pipeline per source): ``close`` ends only the cameras this view saw."""

    def __init__(self, sink: MqttSink) -> None:
        self.sink = sink
        self._sources: set[str] = set()

    def write(self, result: FrameResult) -> None:
        self._sources.add(result.frame.source_id)
        self.sink.write(result)

    def notify(self, events: Sequence[Event]) -> None:
        self.sink.notify(events)

    def close(self) -> None:
        for source in self._sources:
            self.sink.end_camera(source)

    def stats(self) -> MqttStats:
        return self.sink.stats()


def open_mqtt_sink(settings: MqttSettings | None, store: Any = None) -> MqttSink | None:
    """The sink of ``--mqtt`` (``None`` without it), following ``store``'s people.

    Args:
        settings: from :func:`settings_from_options`.
        store: a :class:`~facesense.gallery.base.GalleryStore` (or ``None``: people get
            a Home Assistant sensor when they are first seen).
    """
    if settings is None:
        return None
    if store is None:
        return MqttSink(settings)

    def names() -> Iterator[str]:
        return (person.name for person in store.people())

    return MqttSink(settings, people=names, revision=store.revision)
