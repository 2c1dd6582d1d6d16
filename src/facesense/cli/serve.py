"""``facesense serve``: the web dashboard and REST API (FastAPI on uvicorn).

A thin adapter over :func:`facesense.web.app.create_app`: it checks the options,
builds the app and runs uvicorn until Ctrl-C or SIGTERM.

Shutdown stays within :data:`GRACEFUL_SHUTDOWN_S`: as soon as uvicorn starts
shutting down, the app ends its MJPEG streams and asks its sources to stop
(:meth:`facesense.web.app.WebState.begin_shutdown`); otherwise an open Live page
would hold every connection for the whole grace period, and uvicorn would then
cancel the streams with a traceback each.
"""

from __future__ import annotations

import enum
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from facesense.cli._common import db_option, detector_option, min_face_option
from facesense.errors import ConfigError
from facesense.sinks.mqtt import mqtt_options, open_mqtt_sink, settings_from_options

if TYPE_CHECKING:
    import socket

logger = logging.getLogger("facesense.cli")

__all__ = ["serve"]

GRACEFUL_SHUTDOWN_S = 3  # open MJPEG streams are cut after this on shutdown


@click.command("serve")
@db_option()
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="facesense.toml: watch its [[cameras]] (by name, each with its own settings); its [gallery] and [sinks.mqtt] apply unless given here.",
)  # fmt: skip
@click.option("--source", "sources", multiple=True, metavar="SOURCE", help="Watch this camera index, video file, stream URL or image folder (repeatable).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; anything but loopback needs --token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port.")
@click.option("--token", envvar="FACESENSE_TOKEN", default=None, help="Shared secret for the API (Bearer) and the pages (login) [env FACESENSE_TOKEN].")
@click.option("--loop", is_flag=True, help="Play file and folder sources again and again.")
@click.option("--every", type=click.IntRange(min=1), default=3, show_default=True, help="Detect faces every N frames on the sources; track in between.")
@min_face_option("video")
@detector_option()
@click.option("--threshold", type=click.FloatRange(min=0), default=None, help="Score above which a face is unknown [default: calibrated].")
@click.option("--events-db", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Events file [default: <gallery>.events.db beside an SQLite gallery; in the database for PostgreSQL].")
@click.option("--keep-events", type=click.IntRange(min=1), default=10_000, show_default=True, help="Keep at most this many events.")
@click.option("--keep-days", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True, help="Drop events older than this.")
@click.option("--max-upload-mb", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True, help="Largest accepted image upload.")
@click.option(
    "--unknowns/--no-unknowns", "record_unknowns", default=True, show_default=True,
    help="Record the sources' tracks that stay unknown in the gallery's unknowns store, grouped into recurring "
    "visitors (the Unknowns page, `facesense unknowns`).",
)  # fmt: skip
@mqtt_options
def serve(
    db: str | None,
    config_path: Path | None,
    sources: tuple[str, ...],
    host: str,
    port: int,
    token: str | None,
    loop: bool,
    every: int,
    min_face_px: float | None,
    detector_kind: enum.Enum,
    threshold: float | None,
    events_db: Path | None,
    keep_events: int,
    keep_days: float,
    max_upload_mb: float,
    record_unknowns: bool,
    mqtt: str | None,
    mqtt_prefix: str | None,
    mqtt_qos: int | None,
) -> None:
    """Serve the dashboard (Live, People, Unknowns, Events) and the REST API under /api.

    With --source, each source is watched in the background: its annotated video is
    on the Live page, its events and unknown faces on the events page, and the tracks
    that stay unknown are grouped into recurring visitors on the Unknowns page.
    """
    mqtt_settings = settings_from_options(mqtt, mqtt_prefix, mqtt_qos)  # a bad URL fails before anything opens
    cameras: tuple[Any, ...] = ()
    if config_path is not None:
        from facesense.cli.watch_config import camera_specs
        from facesense.config import load_config, with_overrides
        from facesense.sinks.mqtt import settings_from_config

        file_config = with_overrides(load_config(config_path), db=db, threshold=threshold)
        cameras = tuple(camera_specs(file_config)) if file_config.cameras else ()
        db = file_config.gallery.url
        if threshold is None and file_config.recognition.threshold != "auto":
            threshold = float(file_config.recognition.threshold)
        mqtt_settings = settings_from_config(file_config, mqtt_settings)
    try:
        import uvicorn

        from facesense.web.app import create_app
        from facesense.web.config import ServeConfig
    except ImportError as exc:
        raise ConfigError(f"facesense serve cannot import its web stack, reinstall facesense ({exc})") from None

    from facesense.imageio import MAX_PIXELS

    # OpenCV refuses to decode images over this many pixels (decompression bombs).
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))
    if logging.getLogger("facesense").getEffectiveLevel() > logging.DEBUG:
        # Uploads that are not images and streams that drop out make OpenCV and FFmpeg
        # print to stderr; the API and the logs already say it in one line (-vv shows them).
        os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    max_upload = int(max_upload_mb * 1024 * 1024)
    config = ServeConfig(
        db=db,
        sources=sources,
        cameras=cameras,
        host=host,
        port=port,
        token=token or None,
        events_db=events_db,
        loop=loop,
        every=every,
        min_face_px=min_face_px,
        detector=str(detector_kind.value),
        threshold=threshold,
        max_upload_bytes=max_upload,
        max_request_bytes=max(5 * max_upload, 50 * 1024 * 1024),
        keep_events=keep_events,
        keep_days=keep_days,
        record_unknowns=record_unknowns,
    )
    for spec in (*sources, *(c.url for c in cameras)):
        from facesense.capture import parse_source

        parse_source(spec)  # a missing file fails here, with one line, before the server starts
    app = create_app(config, warm_up=True)
    mqtt_sink = open_mqtt_sink(mqtt_settings, app.state.facesense.store)
    if mqtt_sink is not None:
        for runner in app.state.facesense.runners:
            runner.extra_sinks.append(mqtt_sink.shared())  # one connection for every source
    level = logging.getLogger("facesense").getEffectiveLevel()
    server = _server_class(uvicorn.Server)(
        app.state.facesense.begin_shutdown,
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="info" if level <= logging.INFO else "warning",
            access_log=level <= logging.DEBUG,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            server_header=False,
        ),
    )
    shown = f"[{host}]" if ":" in host else host
    click.echo(
        f"facesense: serving http://{shown}:{port}/ (gallery {config.gallery.display}"
        + (f"; {len(sources)} source(s)" if sources else "")
        + ("; token required" if token else "")
        + "); Ctrl-C stops",
        err=True,
    )
    try:
        server.run()
    finally:
        if mqtt_sink is not None:
            mqtt_sink.close()


def _server_class(base: type[Any]) -> type[Any]:
    """``uvicorn.Server`` that tells the app when shutdown begins (uvicorn is imported lazily)."""

    class FacesenseServer(base):  # type: ignore[misc]
        def __init__(self, on_shutdown: Any, config: Any) -> None:
            super().__init__(config)
            self._on_shutdown = on_shutdown

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            self._on_shutdown()  # end the streams before uvicorn waits for connections
            await super().shutdown(sockets=sockets)

    return FacesenseServer
