"""``facesense watch --config facesense.toml``: every camera of a configuration file at once.

The cameras run in one :class:`facesense.multicam.MultiCamera`: one copy of each model,
model calls on one inference thread (embeddings batched across cameras), so N cameras
share the cores instead of fighting over them. Each camera gets the sinks the file
names (``[sinks.events]`` / ``[sinks.video]`` with ``{camera}`` in the path, one shared
MQTT connection for ``[sinks.mqtt]`` or ``--mqtt``). With a gallery, every camera's
tracks that stay unknown are recorded in the gallery's unknowns store, as ``watch
SOURCE`` does: one :class:`~facesense.sinks.unknowns.UnknownsWriter` for the process, a
:class:`~facesense.sinks.unknowns.SourceUnknownsSink` per camera, the writer flushed
and closed once every camera has ended (off with ``--no-unknowns``). The closing lines
give each camera's frames, fps, dropped frames and the people it named.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import click

from facesense.errors import ConfigError

if TYPE_CHECKING:
    from facesense.capture import VideoSource
    from facesense.config import FacesenseConfig
    from facesense.multicam import CameraSpec
    from facesense.sinks.base import Sink
    from facesense.sinks.mqtt import MqttSettings
    from facesense.sinks.unknowns import UnknownsWriter
    from facesense.types import Event

logger = logging.getLogger("facesense.cli")

__all__ = ["camera_specs", "watch_config"]

STATUS_EVERY_S = 10.0  # a progress line per camera this often (to stderr, when it is a terminal)


def camera_specs(config: FacesenseConfig, only: str | None = None) -> list[CameraSpec]:
    """The cameras of ``config`` (or just ``only``) with ``[recognition]`` filled in.

    Raises:
        ConfigError: no cameras in the file, or no camera named ``only`` (did-you-mean).
    """
    from facesense.multicam import CameraSpec

    if not config.cameras:
        where = f"{config.source}: " if config.source is not None else ""
        raise ConfigError(f"{where}no [[cameras]] to watch")
    names = [only] if only is not None else [c.name for c in config.cameras]
    specs = []
    for name in names:
        cam = config.camera(name)
        specs.append(
            CameraSpec(
                name=cam.name,
                url=str(cam.url),
                every=cam.every or 1,
                min_face_px=cam.min_face_px,
                detector=cam.detector.value if cam.detector is not None else None,
            )
        )
    return specs


class _Tally:
    """Per-camera counts for the closing lines (events arrive from camera threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.tracks: dict[str, int] = {}
        self.named: dict[str, dict[str, set[int]]] = {}
        self.unknown: dict[str, int] = {}

    def event(self, event: Event) -> None:
        from facesense.types import EventType

        cam = event.source or "?"
        with self._lock:
            if event.type is EventType.APPEARED:
                self.tracks[cam] = self.tracks.get(cam, 0) + 1
            elif event.type is EventType.RECOGNIZED and event.name is not None and event.track_id is not None:
                self.named.setdefault(cam, {}).setdefault(event.name, set()).add(event.track_id)
            elif event.type is EventType.UNKNOWN:
                self.unknown[cam] = self.unknown.get(cam, 0) + 1

    def line(self, cam: str) -> str:
        with self._lock:
            named = self.named.get(cam, {})
            people = ", ".join(f"{n} ({len(t)} track{'s' if len(t) > 1 else ''})" for n, t in sorted(named.items()))
            return (
                f"{self.tracks.get(cam, 0)} track(s)"
                + (f"; named: {people}" if people else "")
                + (f"; {self.unknown[cam]} unknown" if self.unknown.get(cam) else "")
            )


def watch_config(
    config: FacesenseConfig,
    *,
    only: str | None,
    loop: bool,
    realtime: bool,
    mqtt: MqttSettings | None,
    threads: int | None = None,
    record_unknowns: bool = True,
    stop_signal: Any = None,
) -> None:
    """Run the cameras of ``config`` until they end (files) or SIGTERM / Ctrl-C.

    Args:
        config: the parsed file, command-line flags already put over it.
        only: run just this camera of the file.
        loop: play files and folders again and again.
        realtime: play files at their own frame rate, as cameras would send them.
        mqtt: ``--mqtt`` settings (else the file's ``[sinks.mqtt]``).
        threads: inference threads (``None``: every core).
        record_unknowns: record the tracks that stay unknown in the gallery's unknowns
            store (needs a gallery).
        stop_signal: a context manager factory that calls its argument on SIGTERM.

    Raises:
        ConfigError: no cameras, a bad sink setting.
        GalleryError: an unusable gallery.
    """
    from facesense.capture import CaptureConfig
    from facesense.cli.watch import _open_matcher
    from facesense.embed import make_embedder
    from facesense.gallery.location import parse_location
    from facesense.multicam import CameraState, MultiCamera
    from facesense.sinks.files import camera_file_sinks
    from facesense.sinks.mqtt import open_mqtt_sink, settings_from_config
    from facesense.sinks.unknowns import SourceUnknownsSink, make_writer

    specs = camera_specs(config, only)
    mqtt_settings = settings_from_config(config, mqtt)
    tally = _Tally()
    with contextlib.ExitStack() as stack:
        embedder = make_embedder(config.recognition.embedder.value, threads=threads)
        threshold = config.recognition.threshold
        opened = _open_matcher(
            config.gallery.url,
            config.gallery.url is not None,
            None if threshold == "auto" else float(threshold),
            embedder.model_id,
        )
        store, matcher = opened if opened is not None else (None, None)
        if store is not None:
            stack.callback(store.close)
        mqtt_sink = open_mqtt_sink(mqtt_settings, store)
        if mqtt_sink is not None:
            stack.callback(mqtt_sink.close)
        writer = None
        if record_unknowns and store is not None:
            writer = make_writer(parse_location(config.gallery.url), embedder.model_id)
            # Closed after the cameras (the `with cams` below ends first): their last
            # tracks leave as the pipelines finish, and what they queued is written.
            stack.callback(_close_writer, writer)

        def sinks(spec: CameraSpec, source: VideoSource) -> list[Sink]:
            out = camera_file_sinks(config, spec.name, source)
            if mqtt_sink is not None:
                out.append(mqtt_sink.shared())
            if writer is not None:
                out.append(SourceUnknownsSink(writer, embedder.model_id))
            return out

        cams = MultiCamera(
            specs,
            embedder=embedder,
            matcher=matcher,
            detector=config.recognition.detector.value,
            threads=threads,
            capture=CaptureConfig(loop=loop, realtime=realtime),
            sinks=sinks,
            on_event=tally.event,
        )
        started = time.perf_counter()
        stops = stop_signal(cams.stop) if stop_signal is not None else contextlib.nullcontext()
        with cams, stops:
            logger.info("watching %d camera(s): %s", len(specs), ", ".join(s.name for s in specs))
            try:
                last = time.monotonic()
                while not cams.wait(timeout=1.0):
                    if time.monotonic() - last >= STATUS_EVERY_S:
                        last = time.monotonic()
                        for s in cams.statuses():
                            logger.info("%s: %s, %d frames, %.1f fps, %d dropped", s.name, s.state.value, s.frames, s.fps, s.dropped)
            except KeyboardInterrupt:
                cams.stop()
                cams.wait(timeout=15)
                raise
        elapsed = time.perf_counter() - started
    statuses = cams.statuses()
    failed = [s for s in statuses if s.state is CameraState.FAILED]
    if logging.getLogger("facesense").getEffectiveLevel() <= logging.WARNING:
        for s in statuses:
            figures = f"{s.frames} frame(s), {s.frames / elapsed if elapsed > 0 else 0:.1f} fps, {s.dropped} dropped"
            state = f" [{s.state.value}: {s.error}]" if s.state is CameraState.FAILED else ""
            click.echo(f"{s.name}: watched {figures}; {tally.line(s.name)}{state}", err=True)
    if failed and len(failed) == len(statuses):
        from facesense.errors import SourceError

        raise SourceError(f"no camera could be watched: {failed[0].name}: {failed[0].error}")


def _close_writer(writer: UnknownsWriter) -> None:
    """Write what the cameras queued (bounded wait), then close the unknowns store."""
    writer.close()
    if writer.stored:
        logger.info("unknowns: %d unknown track(s) recorded (%d recurring)", writer.stored, writer.recurring)
