"""``facesense watch``: faces in a camera, video file, stream or image folder, live.

A thin adapter over :class:`facesense.pipeline.Pipeline`: it opens the source
(:func:`facesense.capture.open_source`), builds the detector and embedder
(:func:`facesense.detect.make_detector` with the video defaults,
:func:`facesense.embed.make_embedder`), the gallery's hot-reloading matcher
(:func:`facesense.gallery.open_gallery`, :class:`facesense.recognize.LiveMatcher`) and
the sinks from the options, and shows progress on stderr. Events go to a file (or
stdout with ``--events -``). With a gallery, tracks that stay unknown are recorded in
its unknowns store (:mod:`facesense.sinks.unknowns`, off with ``--no-unknowns``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from facesense.cli._common import db_option, detector_option, min_face_option, open_db, rotations_option
from facesense.errors import ConfigError
from facesense.sinks.mqtt import mqtt_options, open_mqtt_sink, settings_from_options

if TYPE_CHECKING:
    from facesense.capture import VideoSource
    from facesense.detect import DetectorKind
    from facesense.gallery.base import GalleryStore
    from facesense.recognize import LiveMatcher
    from facesense.sinks.base import Sink
    from facesense.types import Event, FrameResult

logger = logging.getLogger("facesense.cli")

__all__ = ["watch"]

STATUS_INTERVAL_S = 0.25  # how often the status line / progress bar is redrawn


def _quiet_native_logs() -> None:
    """Keep FFmpeg's and OpenCV's own stderr chatter out of the way (unless -vv).

    Errors reach the user as one-line facesense messages instead.
    """
    if logging.getLogger("facesense").getEffectiveLevel() <= logging.DEBUG:
        return
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    import cv2

    with contextlib.suppress(AttributeError):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def _open_matcher(
    db: str | None, explicit: bool, threshold: float | None, model_id: str
) -> tuple[GalleryStore, LiveMatcher] | None:
    """The gallery and its hot-reloading matcher, or ``None`` when there is no gallery to use.

    Without ``--db`` (or ``$FACESENSE_DB``) a missing default gallery just means nobody
    is named; a gallery named explicitly must exist. The matcher is fitted once now, so
    a gallery of another model fails here rather than on the first face.

    Raises:
        GalleryError: an explicit gallery is missing, or the gallery is unusable.
        ConfigError: an unsupported gallery URL.
    """
    from facesense.gallery.location import parse_location
    from facesense.recognize import LiveMatcher

    location = parse_location(db)
    if not explicit and location.kind == "sqlite" and not location.path.exists():
        logger.info("no gallery at %s: every face stays unnamed (enroll people, or pass --db)", location.display)
        return None
    store = open_db(db)
    try:
        matcher = LiveMatcher(store, model_id, threshold="auto" if threshold is None else threshold)
        matcher.refresh()
    except BaseException:
        store.close()
        raise
    return store, matcher


class _ClearLine(logging.Filter):
    """Wipes the progress line before a log record is printed under it."""

    def filter(self, record: logging.LogRecord) -> bool:
        sys.stderr.write("\r\x1b[K")
        return True


class _Progress:
    """Progress on stderr: a bar for files and folders, a rolling line for live sources.

    Draws nothing when stderr is not a terminal.
    """

    def __init__(self, source: VideoSource, *, loop: bool, max_frames: int | None) -> None:
        self.enabled = sys.stderr.isatty()
        self._clear = _ClearLine()
        self._handlers = logging.getLogger("facesense").handlers if self.enabled else []
        for handler in self._handlers:
            handler.addFilter(self._clear)
        self.live = source.live
        total = source.frame_count if not source.live and not loop else None
        if max_frames is not None:
            total = min(total, max_frames) if total is not None else max_frames
        self.total = total
        self._bar: Any = None
        self._last = 0.0
        self._done = 0
        self._fps = 0.0
        self._faces = 0
        self._state = ""
        if self.enabled and not self.live and total is not None:
            self._bar = click.progressbar(
                length=total,
                label="watch",
                file=sys.stderr,
                show_pos=True,
                show_eta=True,
                item_show_func=lambda _: f"{self._fps:5.1f} fps",
            )
            self._bar.__enter__()

    def frame(self, result: FrameResult) -> None:
        self._done += 1
        self._fps = result.fps
        self._faces = len(result.faces)
        self._state = ""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(1, None)
            return
        now = time.monotonic()
        if now - self._last >= STATUS_INTERVAL_S:
            self._last = now
            self._line()

    def status(self, event: Event) -> None:
        self._state = event.status or ""
        if self.enabled and self._bar is None:
            self._line()

    def _line(self) -> None:
        names = f" [{self._state}]" if self._state else ""
        click.echo(
            f"\r\x1b[Kframe {self._done}  {self._fps:5.1f} fps  {self._faces} face(s){names}",
            err=True,
            nl=False,
        )

    def close(self) -> None:
        for handler in self._handlers:
            handler.removeFilter(self._clear)
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
        elif self.enabled and self._done:
            click.echo("", err=True)


class _Summary:
    """Counts for the closing line."""

    def __init__(self) -> None:
        self.tracks = 0
        self.named: dict[str, set[int]] = {}
        self.unknown = 0
        self.reconnects = 0

    def event(self, event: Event) -> None:
        from facesense.capture import StatusKind
        from facesense.types import EventType

        if event.type is EventType.APPEARED:
            self.tracks += 1
        elif event.type is EventType.RECOGNIZED and event.name is not None and event.track_id is not None:
            self.named.setdefault(event.name, set()).add(event.track_id)
        elif event.type is EventType.UNKNOWN:
            self.unknown += 1
        elif event.type is EventType.STATUS and event.status == StatusKind.RECONNECTED:
            self.reconnects += 1


@contextlib.contextmanager
def _stop_on_sigterm(stop: Any) -> Iterator[None]:
    """SIGTERM ends the loop cleanly (outputs are finished) instead of killing it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: stop())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.command("watch")
@click.argument("source", required=False)
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="facesense.toml: watch all its [[cameras]] at once on shared models (SOURCE then names one of them).",
)  # fmt: skip
@click.option(
    "--realtime", is_flag=True,
    help="Play files and folders at their own frame rate, as cameras send them (late frames are dropped).",
)  # fmt: skip
@db_option(
    "Gallery to name faces from [env FACESENSE_DB; default: gallery.db in the user data directory, if it exists]."
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the annotated video here (.mp4, .avi, ...).")
@click.option(
    "--segment-minutes",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Cut --output into finished files of this many minutes of video (OUT-0000.mp4, ...); for runs of hours or days.",
)
@click.option("--events", "events_path", metavar="PATH", help="Write events as JSON Lines here ('-' for stdout).")
@click.option(
    "--display/--no-display",
    default=None,
    help="Show a live window (q or Esc closes it) [default: when a GUI and a display exist].",
)
@click.option("--every", type=click.IntRange(min=1), default=1, show_default=True, help="Detect faces every N frames; track in between.")
@click.option("--snapshots", type=click.Path(file_okay=False, path_type=Path), help="Save a crop of each unknown face's track here.")
@click.option("--loop", is_flag=True, help="Play a file or folder again and again.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop after N frames.")
@min_face_option("video")
@detector_option()
@rotations_option()
@click.option("--threshold", type=click.FloatRange(min=0), default=None, help="Score above which a face is unknown [default: calibrated, see docs/recognition.md].")
@click.option("--fps", "folder_fps", type=click.FloatRange(min=0.1), default=None, help="Frame rate of an image folder [default: 25].")
@click.option(
    "--sequence",
    is_flag=True,
    help="A folder holds the frames of one video: track faces from image to image. By default a folder is a set of separate photos, each named on its own.",
)
@click.option(
    "--unknowns/--no-unknowns",
    "record_unknowns",
    default=True,
    show_default=True,
    help="Record tracks that stay unknown in the gallery's unknowns store, grouped into recurring visitors "
    "(see `facesense unknowns`); needs a gallery.",
)
@mqtt_options
def watch(
    source: str | None,
    config_path: Path | None,
    realtime: bool,
    db: str | None,
    output: Path | None,
    segment_minutes: float | None,
    events_path: str | None,
    display: bool | None,
    every: int,
    snapshots: Path | None,
    loop: bool,
    max_frames: int | None,
    min_face_px: float | None,
    detector_kind: DetectorKind,
    rotations: bool,
    threshold: float | None,
    folder_fps: float | None,
    sequence: bool,
    record_unknowns: bool,
    mqtt: str | None,
    mqtt_prefix: str | None,
    mqtt_qos: int | None,
) -> None:
    """Detect, track and name faces in SOURCE: a camera index (0), a video file, an
    rtsp:// or http(s):// stream, or a folder of images (played in name order; each
    image is a separate photo unless --sequence says they are one video's frames).

    Files are processed frame by frame, none dropped; live sources keep the newest
    frame and reconnect when they drop out. The gallery is followed while watching:
    people enrolled meanwhile (by another command or the web server) are named
    from then on, without a restart.

    \b
    Exit status: 0 when the source ended (or --max-frames, a closed window, Ctrl-C
    as 130, SIGTERM); 5 when it cannot be opened, or when a folder holds no readable
    image (unreadable images in a folder are skipped with a warning); 6 for an
    unusable gallery; 2 for bad options. A live source that drops out is retried,
    never an error.
    """
    from facesense.capture import CaptureConfig, SourceKind, open_source
    from facesense.detect import make_detector
    from facesense.embed import make_embedder
    from facesense.pipeline import Pipeline, PipelineConfig, default_tracker
    from facesense.types import EventType

    mqtt_settings = settings_from_options(mqtt, mqtt_prefix, mqtt_qos)  # a bad URL fails before anything opens
    _quiet_native_logs()
    if config_path is not None:
        _watch_with_config(config_path, source, db=db, threshold=threshold, every=every, min_face_px=min_face_px,
                           detector_kind=detector_kind, events_path=events_path, output=output,
                           segment_minutes=segment_minutes, loop=loop, realtime=realtime, mqtt_settings=mqtt_settings,
                           record_unknowns=record_unknowns)  # fmt: skip
        return
    if source is None:
        raise click.UsageError("give a SOURCE to watch, or --config facesense.toml")
    explicit_db = db is not None or bool(os.environ.get("FACESENSE_DB"))
    capture_cfg = CaptureConfig(loop=loop, realtime=realtime)
    if folder_fps is not None:
        capture_cfg = CaptureConfig(loop=loop, realtime=realtime, folder_fps=folder_fps)
    progress_ref: list[_Progress] = []
    summary = _Summary()

    def on_event(event: Event) -> None:
        summary.event(event)
        if event.type is EventType.STATUS and progress_ref:
            progress_ref[0].status(event)

    with contextlib.ExitStack() as stack:
        video_source = open_source(source, capture_cfg)
        stack.callback(video_source.close)
        if loop and video_source.live:
            logger.warning("--loop has no effect on a live source")
        stills = video_source.kind is SourceKind.FOLDER and not sequence
        if stills and every != 1:
            raise click.UsageError("--every needs a video or --sequence: each photo of a folder is detected on its own")
        if sequence and video_source.kind is not SourceKind.FOLDER:
            logger.warning("--sequence only applies to a folder of images")

        detector = make_detector(detector_kind, min_face_px=min_face_px, use="video", rotations=rotations)
        embedder = make_embedder()
        opened = _open_matcher(db, explicit_db, threshold, embedder.model_id)
        matcher = None
        if opened is not None:
            store, matcher = opened
            stack.callback(store.close)

        sinks = _make_sinks(
            stack,
            video_source,
            output=output,
            segment_minutes=segment_minutes,
            events_path=events_path,
            snapshots=snapshots,
            display=display,
        )
        if record_unknowns and matcher is not None:
            unknowns_sink = _unknowns_sink(db, embedder.model_id)
            sinks.append(unknowns_sink)
            stack.callback(_close_quietly, unknowns_sink)
        mqtt_sink = open_mqtt_sink(mqtt_settings, opened[0] if opened is not None else None)
        if mqtt_sink is not None:
            sinks.append(mqtt_sink)
            stack.callback(_close_quietly, mqtt_sink)
        if not sinks:
            logger.warning("no output chosen (--output, --events, --snapshots or a display): only counting faces")

        pipeline = Pipeline(
            video_source,
            detector=detector,
            embedder=embedder if matcher is not None else None,
            matcher=matcher,
            tracker=default_tracker(every, stills=stills),
            sinks=sinks,
            config=PipelineConfig(every=every, max_frames=max_frames, stills=stills),
            on_event=on_event,
        )
        bar = _Progress(video_source, loop=loop, max_frames=max_frames)
        progress_ref.append(bar)
        started = time.perf_counter()
        frames = 0
        try:
            results = iter(pipeline)
            with _stop_on_sigterm(pipeline.stop), contextlib.ExitStack() as ending:
                # Finish the pipeline (sinks closed, tracks left) now, not when collected.
                ending.callback(getattr(results, "close", lambda: None))
                for result in results:
                    frames += 1
                    bar.frame(result)
        finally:
            bar.close()
        elapsed = time.perf_counter() - started
    if logging.getLogger("facesense").getEffectiveLevel() > logging.WARNING:
        return  # -q: errors only
    named = ", ".join(f"{name} ({len(ids)} track{'s' if len(ids) > 1 else ''})" for name, ids in sorted(summary.named.items()))
    click.echo(
        f"watched {frames} frame(s) in {elapsed:.1f} s ({frames / elapsed if elapsed > 0 else 0:.1f} fps);"
        f" {summary.tracks} track(s)"
        + (f"; named: {named}" if named else "")
        + (f"; {summary.unknown} unknown" if summary.unknown else "")
        + (f"; {summary.reconnects} reconnect(s)" if summary.reconnects else ""),
        err=True,
    )


def _watch_with_config(
    config_path: Path,
    camera: str | None,
    *,
    db: str | None,
    threshold: float | None,
    every: int,
    min_face_px: float | None,
    detector_kind: DetectorKind,
    events_path: str | None,
    output: Path | None,
    segment_minutes: float | None,
    loop: bool,
    realtime: bool,
    mqtt_settings: Any,
    record_unknowns: bool,
) -> None:
    """``watch --config``: the file's cameras, the flags given on the command line over it."""
    from facesense.cli.watch_config import watch_config
    from facesense.config import load_config, with_overrides

    ctx = click.get_current_context()

    def given(name: str) -> bool:
        src = ctx.get_parameter_source(name)
        return src is not None and src.name not in ("DEFAULT", "DEFAULT_MAP")

    if ctx.params.get("display"):
        raise click.UsageError("--display shows one source; with --config use --no-display (or facesense serve --config)")
    for name in ("snapshots", "max_frames", "sequence", "rotations", "folder_fps"):
        if given(name):
            raise click.UsageError(f"--{name.replace('_', '-')} is not supported with --config")
    config = with_overrides(
        load_config(config_path),
        db=db,
        threshold=threshold,
        every=every if given("every") else None,
        min_face_px=min_face_px,
        detector=detector_kind if given("detector_kind") else None,
        events=events_path,
        output=str(output) if output is not None else None,
        segment_minutes=segment_minutes,
    )
    watch_config(config, only=camera, loop=loop, realtime=realtime, mqtt=mqtt_settings, record_unknowns=record_unknowns,
                 stop_signal=_stop_on_sigterm)  # fmt: skip


def _make_sinks(
    stack: contextlib.ExitStack,
    video_source: VideoSource,
    *,
    output: Path | None,
    segment_minutes: float | None,
    events_path: str | None,
    snapshots: Path | None,
    display: bool | None,
) -> list[Sink]:
    """The sinks the options ask for, each closed by ``stack`` if the pipeline never starts.

    Raises:
        ConfigError: ``--display`` without a usable GUI, or a bad output option.
    """
    from facesense.pipeline import fps_or_default

    sinks: list[Sink] = []

    def add(sink: Sink) -> None:
        sinks.append(sink)
        stack.callback(_close_quietly, sink)

    if output is not None:
        from facesense.sinks.files import segment_frames
        from facesense.sinks.video import VideoFileSink

        out_fps = fps_or_default(video_source.fps)
        segment = segment_frames(segment_minutes, out_fps)
        add(VideoFileSink(output, fps=out_fps, size_wh=video_source.size_wh, segment_frames=segment))
    if events_path is not None:
        from facesense.sinks.events import JsonlEventSink

        add(JsonlEventSink(events_path))
    if snapshots is not None:
        from facesense.sinks.snapshots import SnapshotSink

        add(SnapshotSink(snapshots))
    if display is not False:
        from facesense.sinks.window import WindowSink, gui_available

        ok, reason = gui_available()
        if ok:
            add(WindowSink(f"facesense: {video_source.source_id}"))
        elif display:
            raise ConfigError(f"cannot show a window: {reason}; run with --no-display")
        else:
            logger.info("no window: %s", reason)
    return sinks


def _unknowns_sink(db: str | None, model_id: str) -> Sink:
    """The recorder of unknown tracks, writing to the unknowns store beside the gallery ``db`` names.

    The store is opened on the writer's own thread (and reopened after a failure), so a
    database that is away never stops the watch.
    """
    from facesense.gallery.location import parse_location
    from facesense.sinks.unknowns import UnknownsSink, make_writer

    return UnknownsSink(make_writer(parse_location(db), model_id), model_id=model_id)


def _close_quietly(sink: Any) -> None:
    """Close a sink the pipeline never got to close (setup failed half-way)."""
    try:
        sink.close()
    except Exception as exc:  # noqa: BLE001 - the original error matters more
        logger.debug("closing %r: %s", sink, exc)
