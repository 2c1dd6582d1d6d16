"""The ``facesense.toml`` configuration file: a gallery, many cameras, sinks, a worker.

Parsed once, at the edge (``facesense worker --config``; later ``watch``/``serve
--config``), into frozen dataclasses; the library below never sees TOML. Every key is
optional except each camera's ``name`` and ``url``::

    [gallery]
    url = "postgresql://faces@db.local/faces"   # or a path / sqlite:///PATH

    [recognition]              # the options watch and serve take, for every camera
    threshold = "auto"         # or a number: the score above which a face is unknown
    every = 3                  # detect every N frames, track in between
    min_face_px = 40           # smallest face [default: the detector's video default]
    detector = "yunet"         # facesense.detect.DetectorKind
    embedder = "dlib+sface"    # facesense.embed.EmbedderKind

    [[cameras]]
    name = "door"              # letters, digits, '_', '-', '.'; unique
    url = "rtsp://cam1/stream" # what `facesense watch SOURCE` takes (0 for a camera index)
    every = 2                  # optional: overrides [recognition] for this camera
    min_face_px = 60
    detector = "yunet"

    [sinks.events]
    path = "events-{camera}.jsonl"   # {camera}: the camera's name (needed with several cameras)
    [sinks.video]
    output = "video-{camera}.mp4"
    segment_minutes = 10
    [sinks.mqtt]               # passed through to the MQTT sink as a dict
    url = "mqtt://broker.local:1883"
    prefix = "facesense"
    qos = 1

    [worker]
    lease_s = 10.0             # a camera's lease lasts this long without a heartbeat
    heartbeat_s = 3.0          # how often a worker renews its leases (< lease_s / 2)

Mistakes are one-line :class:`~facesense.errors.ConfigError` messages naming the file
and the key, with a did-you-mean for misspelt keys and choices::

    facesense.toml: [cameras][2] (hall): unknown key 'evry' (did you mean 'every'?); the keys are ...

:func:`with_overrides` applies command-line flags on top (a flag given wins over the
file; a flag left out keeps the file's value).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from facesense.choices import did_you_mean, parse_choice
from facesense.detect.factory import DEFAULT_DETECTOR, DetectorKind
from facesense.embed.factory import DEFAULT_EMBEDDER, EmbedderKind
from facesense.errors import ConfigError

__all__ = [
    "CAMERA_PLACEHOLDER",
    "CameraConfig",
    "EventsSinkConfig",
    "FacesenseConfig",
    "GalleryConfig",
    "RecognitionConfig",
    "SinksConfig",
    "VideoSinkConfig",
    "WorkerConfig",
    "load_config",
    "parse_config",
    "with_overrides",
]

CAMERA_PLACEHOLDER = "{camera}"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_MQTT_KEYS = ("url", "prefix", "qos")


# --- the sections ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class GalleryConfig:
    """``[gallery]``: ``url`` is a path or URL for :func:`facesense.gallery.open_gallery` (``None``: the default)."""

    url: str | None = None


@dataclass(frozen=True, kw_only=True)
class RecognitionConfig:
    """``[recognition]``: what every camera uses unless it says otherwise.

    Attributes:
        threshold: ``"auto"`` (the embedder's calibrated threshold) or a number >= 0.
        every: detect every this many frames (track in between), >= 1.
        min_face_px: smallest face to find, pixels (``None``: the detector's video default).
        detector: the detector kind.
        embedder: the embedder kind (one per process: the gallery holds one model).
    """

    threshold: float | str = "auto"
    every: int = 1
    min_face_px: float | None = None
    detector: DetectorKind = DEFAULT_DETECTOR
    embedder: EmbedderKind = DEFAULT_EMBEDDER


@dataclass(frozen=True, kw_only=True)
class CameraConfig:
    """One ``[[cameras]]`` entry; ``None`` fields fall back to ``[recognition]`` (see :meth:`FacesenseConfig.camera`)."""

    name: str
    url: str | int
    every: int | None = None
    min_face_px: float | None = None
    detector: DetectorKind | None = None


@dataclass(frozen=True, kw_only=True)
class EventsSinkConfig:
    """``[sinks.events]``: a JSON Lines file per camera (``{camera}`` in ``path`` is its name)."""

    path: str | None = None

    def path_for(self, camera: str) -> str | None:
        """The events file of ``camera`` (``None``: no file)."""
        return None if self.path is None else self.path.replace(CAMERA_PLACEHOLDER, camera)


@dataclass(frozen=True, kw_only=True)
class VideoSinkConfig:
    """``[sinks.video]``: an annotated video per camera, optionally cut into segments."""

    output: str | None = None
    segment_minutes: float | None = None

    def output_for(self, camera: str) -> str | None:
        """The video file of ``camera`` (``None``: no video)."""
        return None if self.output is None else self.output.replace(CAMERA_PLACEHOLDER, camera)


@dataclass(frozen=True, kw_only=True)
class SinksConfig:
    """``[sinks]``: ``events``, ``video``, and ``mqtt`` (``url``, ``prefix``, ``qos``; read-only dict, or ``None``)."""

    events: EventsSinkConfig = field(default_factory=EventsSinkConfig)
    video: VideoSinkConfig = field(default_factory=VideoSinkConfig)
    mqtt: Mapping[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class WorkerConfig:
    """``[worker]``: camera leases (see :mod:`facesense.fleet.leases`).

    Attributes:
        lease_s: a lease not renewed for this long may be taken over by another worker.
        heartbeat_s: how often a worker renews its leases; less than half ``lease_s``, so
            one late heartbeat does not lose a camera.
    """

    lease_s: float = 10.0
    heartbeat_s: float = 3.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lease_s) and math.isfinite(self.heartbeat_s)):
            raise ConfigError("lease_s and heartbeat_s must be finite numbers")
        if not 0 < self.heartbeat_s <= self.lease_s / 2:
            raise ConfigError(
                f"heartbeat_s ({self.heartbeat_s:g}) must be > 0 and at most half of lease_s ({self.lease_s:g})"
            )


@dataclass(frozen=True, kw_only=True)
class FacesenseConfig:
    """A whole ``facesense.toml`` (or the defaults, with no file).

    Attributes:
        source: the file it came from (for messages), or ``None``.
    """

    source: Path | None = None
    gallery: GalleryConfig = field(default_factory=GalleryConfig)
    recognition: RecognitionConfig = field(default_factory=RecognitionConfig)
    cameras: tuple[CameraConfig, ...] = ()
    sinks: SinksConfig = field(default_factory=SinksConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)

    def camera(self, name: str) -> CameraConfig:
        """Camera ``name`` with every ``None`` filled in from ``[recognition]``.

        Raises:
            ConfigError: no camera of that name (did-you-mean).
        """
        for cam in self.cameras:
            if cam.name == name:
                rec = self.recognition
                return dataclasses.replace(
                    cam,
                    every=rec.every if cam.every is None else cam.every,
                    min_face_px=rec.min_face_px if cam.min_face_px is None else cam.min_face_px,
                    detector=rec.detector if cam.detector is None else cam.detector,
                )
        names = [c.name for c in self.cameras]
        raise ConfigError(f"{self._where()}no camera named {name!r}{did_you_mean(name, names)}")

    def _where(self) -> str:
        return f"{self.source}: " if self.source is not None else ""


# --- parsing ---------------------------------------------------------------------------


class _Table:
    """One TOML table being read: typed getters, and a check that nothing else is in it."""

    def __init__(self, file: str, where: str, data: Any, allowed: tuple[str, ...]) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{file}: {where} must be a table, got {_kind(data)}")
        self.file, self.where, self.data = file, where, data
        unknown = [k for k in data if k not in allowed]
        if unknown:
            key = str(unknown[0])
            raise ConfigError(
                f"{file}: {where}: unknown key {key!r}{did_you_mean(key, list(allowed))}; "
                f"the keys are {', '.join(allowed)}"
            )

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.file}: {self.where}.{key} {message}")

    def has(self, key: str) -> bool:
        return key in self.data

    def text(self, key: str) -> str | None:
        if key not in self.data:
            return None
        return self.required_text(key)

    def required_text(self, key: str) -> str:
        if key not in self.data:
            raise ConfigError(f"{self.file}: {self.where}: {key} is missing")
        value = self.data[key]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be non-empty text, got {_show(value)}")
        return value

    def integer(self, key: str, *, low: int, high: int | None = None) -> int | None:
        if key not in self.data:
            return None
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            span = f">= {low}" if high is None else f"from {low} to {high}"
            raise self.fail(key, f"must be an integer {span}, got {_show(value)}")
        return value

    def number(self, key: str, *, positive: bool = True) -> float | None:
        if key not in self.data:
            return None
        value = self.data[key]
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or (positive and not value > 0) or (not positive and value < 0):
            raise self.fail(key, f"must be a {'positive' if positive else 'non-negative'} number, got {_show(value)}")
        return float(value)

    def choice(self, key: str, kind: type[DetectorKind] | type[EmbedderKind], what: str) -> Any:
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, str):
            raise self.fail(key, f"must be text, got {_show(value)}")
        try:
            return parse_choice(kind, value, what)
        except ConfigError as exc:
            raise self.fail(key, f"is wrong: {exc}") from None


def _kind(value: Any) -> str:
    return {dict: "a table", list: "an array", str: "text", bool: "a boolean", int: "an integer", float: "a number"}.get(
        type(value), type(value).__name__
    )


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def load_config(path: str | os.PathLike[str]) -> FacesenseConfig:
    """Read and validate a ``facesense.toml``.

    Raises:
        ConfigError: the file cannot be read, is not TOML, or holds a bad key or value
            (one line, naming the file and the key).
    """
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {file}: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML ({' '.join(str(exc).split())})") from exc
    return parse_config(data, source=file)


def parse_config(data: Mapping[str, Any], *, source: str | os.PathLike[str] | None = None) -> FacesenseConfig:
    """Validate an already-parsed TOML document (see the module docstring).

    Args:
        data: what :func:`tomllib.loads` returned.
        source: the file's name, for messages.

    Raises:
        ConfigError: a bad key or value.
    """
    path = None if source is None else Path(source)
    file = str(path) if path is not None else "config"
    top = _Table(file, "top level", data, ("gallery", "recognition", "cameras", "sinks", "worker"))

    gallery = GalleryConfig()
    if top.has("gallery"):
        t = _Table(file, "[gallery]", data["gallery"], ("url",))
        gallery = GalleryConfig(url=t.text("url"))

    recognition = RecognitionConfig()
    if top.has("recognition"):
        t = _Table(file, "[recognition]", data["recognition"], ("threshold", "every", "min_face_px", "detector", "embedder"))
        threshold: float | str = "auto"
        if t.has("threshold"):
            value = t.data["threshold"]
            if isinstance(value, str) and value.strip().lower() == "auto":
                threshold = "auto"
            else:
                if isinstance(value, str):
                    raise t.fail("threshold", f"must be \"auto\" or a number >= 0, got {_show(value)}")
                number = t.number("threshold", positive=False)
                threshold = "auto" if number is None else number
        recognition = RecognitionConfig(
            threshold=threshold,
            every=t.integer("every", low=1) or 1,
            min_face_px=t.number("min_face_px"),
            detector=t.choice("detector", DetectorKind, "detector") or DEFAULT_DETECTOR,
            embedder=t.choice("embedder", EmbedderKind, "embedder") or DEFAULT_EMBEDDER,
        )

    cameras = _cameras(file, data.get("cameras", []))

    sinks = SinksConfig()
    if top.has("sinks"):
        t = _Table(file, "[sinks]", data["sinks"], ("events", "video", "mqtt"))
        events = EventsSinkConfig()
        if t.has("events"):
            e = _Table(file, "[sinks.events]", t.data["events"], ("path",))
            events = EventsSinkConfig(path=e.text("path"))
            _check_placeholder(f"{file}: [sinks.events].path", events.path, cameras)
        video = VideoSinkConfig()
        if t.has("video"):
            v = _Table(file, "[sinks.video]", t.data["video"], ("output", "segment_minutes"))
            video = VideoSinkConfig(output=v.text("output"), segment_minutes=v.number("segment_minutes"))
            _check_placeholder(f"{file}: [sinks.video].output", video.output, cameras)
        mqtt = None
        if t.has("mqtt"):
            m = _Table(file, "[sinks.mqtt]", t.data["mqtt"], _MQTT_KEYS)
            url = m.required_text("url")
            prefix = m.text("prefix")
            qos = m.integer("qos", low=0, high=2)
            mqtt = MappingProxyType(
                {"url": url, "prefix": "facesense" if prefix is None else prefix, "qos": 0 if qos is None else qos}
            )
        sinks = SinksConfig(events=events, video=video, mqtt=mqtt)

    worker = WorkerConfig()
    if top.has("worker"):
        t = _Table(file, "[worker]", data["worker"], ("lease_s", "heartbeat_s"))
        lease = t.number("lease_s")
        beat = t.number("heartbeat_s")
        try:
            worker = WorkerConfig(
                lease_s=WorkerConfig.lease_s if lease is None else lease,
                heartbeat_s=WorkerConfig.heartbeat_s if beat is None else beat,
            )
        except ConfigError as exc:
            raise ConfigError(f"{file}: [worker]: {exc}") from None

    return FacesenseConfig(
        source=path, gallery=gallery, recognition=recognition, cameras=cameras, sinks=sinks, worker=worker
    )


def _cameras(file: str, raw: Any) -> tuple[CameraConfig, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"{file}: cameras must be an array of tables ([[cameras]]), got {_kind(raw)}")
    cameras: list[CameraConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(raw, start=1):
        label = f"[cameras][{i}]"
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            label += f" ({item['name']})"
        t = _Table(file, label, item, ("name", "url", "every", "min_face_px", "detector"))
        name = t.required_text("name")
        if not _NAME_RE.match(name):
            raise t.fail("name", f"must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit; got {name!r}")
        if name in seen:
            raise t.fail("name", f"{name!r} is used by another camera; camera names must be unique")
        seen.add(name)
        url_value = t.data.get("url")
        url: str | int
        if isinstance(url_value, int) and not isinstance(url_value, bool) and url_value >= 0:
            url = url_value  # a camera index
        else:
            url = t.required_text("url")
        cameras.append(
            CameraConfig(
                name=name, url=url, every=t.integer("every", low=1), min_face_px=t.number("min_face_px"),
                detector=t.choice("detector", DetectorKind, "detector"),
            )
        )
    return tuple(cameras)


def _check_placeholder(where: str, value: str | None, cameras: tuple[CameraConfig, ...]) -> None:
    if value is not None and len(cameras) > 1 and CAMERA_PLACEHOLDER not in value:
        raise ConfigError(
            f"{where} {value!r} would be written by {len(cameras)} cameras at once; "
            f"put {CAMERA_PLACEHOLDER} in it (say 'events-{CAMERA_PLACEHOLDER}.jsonl')"
        )


# --- command-line overrides ------------------------------------------------------------


def with_overrides(
    config: FacesenseConfig,
    *,
    db: str | None = None,
    threshold: float | str | None = None,
    every: int | None = None,
    min_face_px: float | None = None,
    detector: DetectorKind | str | None = None,
    embedder: EmbedderKind | str | None = None,
    events: str | None = None,
    output: str | None = None,
    segment_minutes: float | None = None,
    lease_s: float | None = None,
    heartbeat_s: float | None = None,
) -> FacesenseConfig:
    """``config`` with the command-line flags that were given (not ``None``) put over it.

    ``every``, ``min_face_px`` and ``detector`` from the command line apply to every
    camera: they replace ``[recognition]`` and each camera's own value. The rest replace
    the matching key (``db`` is ``[gallery].url``, ``events`` is ``[sinks.events].path``,
    ``output`` is ``[sinks.video].output``).

    Raises:
        ConfigError: a bad value (an unknown detector, a heartbeat too slow for the lease...).
    """
    rec = config.recognition
    det = None if detector is None else parse_choice(DetectorKind, detector, "detector")
    emb = None if embedder is None else parse_choice(EmbedderKind, embedder, "embedder")
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise ConfigError(f"every must be an integer >= 1, got {every!r}")
    if min_face_px is not None and not min_face_px > 0:
        raise ConfigError(f"min_face_px must be a positive number, got {min_face_px!r}")
    if isinstance(threshold, str) and threshold.strip().lower() != "auto":
        raise ConfigError(f"threshold must be 'auto' or a number >= 0, got {threshold!r}")
    if isinstance(threshold, int | float) and not (math.isfinite(threshold) and threshold >= 0):
        raise ConfigError(f"threshold must be 'auto' or a number >= 0, got {threshold!r}")
    recognition = dataclasses.replace(
        rec,
        threshold=rec.threshold if threshold is None else threshold,
        every=rec.every if every is None else every,
        min_face_px=rec.min_face_px if min_face_px is None else float(min_face_px),
        detector=rec.detector if det is None else det,
        embedder=rec.embedder if emb is None else emb,
    )
    cameras = tuple(
        dataclasses.replace(
            cam,
            every=cam.every if every is None else every,
            min_face_px=cam.min_face_px if min_face_px is None else float(min_face_px),
            detector=cam.detector if det is None else det,
        )
        for cam in config.cameras
    )
    sinks = config.sinks
    if events is not None or output is not None or segment_minutes is not None:
        _check_placeholder("--events", events, cameras)
        _check_placeholder("--output", output, cameras)
        sinks = dataclasses.replace(
            sinks,
            events=sinks.events if events is None else EventsSinkConfig(path=events),
            video=VideoSinkConfig(
                output=sinks.video.output if output is None else output,
                segment_minutes=sinks.video.segment_minutes if segment_minutes is None else segment_minutes,
            ),
        )
    worker = config.worker
    if lease_s is not None or heartbeat_s is not None:
        worker = WorkerConfig(
            lease_s=worker.lease_s if lease_s is None else float(lease_s),
            heartbeat_s=worker.heartbeat_s if heartbeat_s is None else float(heartbeat_s),
        )
    return dataclasses.replace(
        config,
        gallery=config.gallery if db is None else GalleryConfig(url=db),
        recognition=recognition,
        cameras=cameras,
        sinks=sinks,
        worker=worker,
    )
