"""``facesense worker``: one machine of a camera fleet sharing one PostgreSQL database.

A thin adapter over :class:`facesense.fleet.worker.Worker`: it reads ``facesense.toml``
(:func:`facesense.config.load_config`), puts the command-line flags over it
(:func:`facesense.config.with_overrides`), and runs the worker until SIGTERM or Ctrl-C,
which release its cameras at once.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from facesense.cli._common import db_option, detector_option, min_face_option

if TYPE_CHECKING:
    from facesense.detect import DetectorKind

logger = logging.getLogger("facesense.cli")

__all__ = ["worker"]


@contextlib.contextmanager
def _stop_on_signals(stop: Any) -> Iterator[None]:
    """SIGTERM and SIGINT stop the worker cleanly (cameras stopped, leases released)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@click.command("worker")
@click.option(
    "--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="facesense.toml: the fleet's cameras, recognition settings, sinks and lease timings.",
)  # fmt: skip
@db_option("The fleet's PostgreSQL database (gallery, events, leases) [default: [gallery] url of the config; env FACESENSE_DB].")
@click.option("--worker-id", default=None, help="This worker's id in the lease table [default: host:pid:random].")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Threads of each model call [default: every core].")
@click.option("--every", type=click.IntRange(min=1), default=None, help="Detect faces every N frames on every camera (overrides the config).")
@min_face_option("video")
@detector_option()
@click.option("--threshold", type=click.FloatRange(min=0), default=None, help="Score above which a face is unknown (overrides the config).")
@click.option("--lease-s", type=click.FloatRange(min=0, min_open=True), default=None, help="Lease length, seconds (overrides [worker] lease_s).")
@click.option("--heartbeat-s", type=click.FloatRange(min=0, min_open=True), default=None, help="Heartbeat interval, seconds (overrides [worker] heartbeat_s).")
@click.option("--stream", "stream_at", metavar="HOST:PORT", default=None, help="Serve the cameras' live video here, for facesense serve to relay (e.g. 0.0.0.0:8090).")
@click.option("--advertise", default=None, metavar="HOST", help="Host name other machines reach --stream by [default: its host, or this machine's name].")
@click.option("--token", envvar="FACESENSE_TOKEN", default=None, help="The fleet's shared secret: --stream requires it from clients [env FACESENSE_TOKEN].")
@click.option(
    "--unknowns/--no-unknowns",
    "record_unknowns",
    default=True,
    show_default=True,
    help="Record the cameras' tracks that stay unknown in the fleet database's unknowns store, grouped into "
    "recurring visitors (see `facesense unknowns`).",
)
def worker(
    config_path: Path,
    db: str | None,
    worker_id: str | None,
    threads: int | None,
    every: int | None,
    min_face_px: float | None,
    detector_kind: DetectorKind,
    threshold: float | None,
    lease_s: float | None,
    heartbeat_s: float | None,
    stream_at: str | None,
    advertise: str | None,
    token: str | None,
    record_unknowns: bool,
) -> None:
    """Run cameras of a fleet: claim the cameras of --config through leases in the
    PostgreSQL database, up to a fair share while other workers are alive (all of
    them when it is the only one), name faces from the shared gallery and store the
    events in the database.

    A worker that dies loses its cameras to the others when its leases expire
    ([worker] lease_s, 10 s by default); SIGTERM or Ctrl-C stops its cameras and
    releases them at once. A camera is never run by two workers at once.

    \b
    Exit status: 0 after SIGTERM or Ctrl-C; 2 for a bad configuration file or
    option (including a --db that is not postgresql://); 3 when the models cannot
    be loaded; 6 when the database cannot be reached or the gallery is unusable.
    """
    from facesense.config import load_config, with_overrides
    from facesense.errors import ConfigError
    from facesense.fleet.worker import Worker

    config = load_config(config_path)
    source = click.get_current_context().get_parameter_source("detector_kind")
    explicit_detector = source is not None and source.name != "DEFAULT"
    config = with_overrides(
        config, db=db, threshold=threshold, every=every, min_face_px=min_face_px,
        detector=detector_kind if explicit_detector else None, lease_s=lease_s, heartbeat_s=heartbeat_s,
    )  # fmt: skip
    if config.gallery.url is None:
        raise ConfigError(f"{config_path}: no database: give --db postgresql://... or [gallery] url")
    from facesense.fleet.stream import parse_bind

    stream = parse_bind(stream_at) if stream_at is not None else None
    fleet_worker = Worker(
        config, config.gallery.url, worker_id=worker_id, threads=threads, stream=stream, token=token or None,
        advertise=advertise, record_unknowns=record_unknowns,
    )  # fmt: skip
    with _stop_on_signals(fleet_worker.stop):
        fleet_worker.run()
