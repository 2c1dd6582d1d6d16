"""Run what ``watch`` runs and measure it: :func:`run_bench`.

The bench builds its objects with the factories ``facesense watch`` uses and runs them
in :class:`facesense.pipeline.Pipeline`, as ``watch SOURCE -o out.mp4`` does:

* the detector: :func:`facesense.detect.make_detector` with ``use="video"``;
* the embedder: :func:`facesense.embed.make_embedder` (the fused embedder by default,
  which runs its parts in one merged ONNX Runtime session);
* the matcher: a :class:`facesense.recognize.LiveMatcher` on a gallery opened with
  :func:`facesense.gallery.open_gallery`. The gallery is a temporary file, enrolled
  first with the first faces of the source itself that enrollment would take (one per
  person), so matching runs on real embeddings and some tracks get a name. Enrolling loads and warms up the
  models, so no timing includes a model load;
* the source: :func:`facesense.capture.open_source`; the sinks: a
  :class:`facesense.sinks.video.VideoFileSink` writing a temporary file.

Nothing is wrapped or patched. The figures come from the public timing hooks:

* every frame's :class:`~facesense.types.StageTimings` (decode, wait, scene cut,
  detect, quality, track, embed, match, identify, sinks);
* :meth:`VideoSource.stats() <facesense.capture.VideoSource.stats>` (frames decoded,
  dropped, decoding time) and :meth:`VideoFileSink.stats()
  <facesense.sinks.video.VideoFileSink.stats>` (frames encoded; drawing, and
  conversion + encoding + muxing time, on the writer's thread);
* :attr:`IdentityStage.last_timings <facesense.identity.IdentityStage.last_timings>`
  for the faces embedded per frame.

Peak RSS is read after the run and before any peer is loaded, so it is facesense's own;
with ``compare`` the peers (:mod:`facesense.bench.peers`) are timed afterwards on the
same frames and the peak is read again.

Example:
    >>> report = run_bench("clip.mp4", BenchConfig(compare=True))
    >>> report.fps, report.stages["detect"].median_ms, report.peak_rss_mb
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facesense.bench.report import STAGES, BenchReport, StageStats
from facesense.errors import ConfigError, SourceError

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.detect.base import Detector
    from facesense.embed.base import Embedder
    from facesense.gallery.base import GalleryStore
    from facesense.pipeline import Pipeline
    from facesense.types import FrameResult

__all__ = [
    "ENROLL_SCAN_FRAMES",
    "BenchConfig",
    "current_rss_mb",
    "embedder_session",
    "peak_rss_mb",
    "run_bench",
]

logger = logging.getLogger(__name__)

ENROLL_SCAN_FRAMES = 60
"""Frames searched (every 5th) for faces to enroll before the timed run."""
ENROLL_EVERY = 5


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """Settings of :func:`run_bench`.

    Attributes:
        frames: stop after this many frames (``None``: the whole source).
        every: run detection every ``every`` frames (the tracker fills in between).
        min_face_px: the detector's minimum face size (``None``: the ``video`` default
            of :data:`facesense.detect.DEFAULTS`, as ``watch``); the peers get the same.
        embedder: which embedder ``make_embedder`` builds (``dlib+sface``, ``facenet``,
            ``facenet+dlib`` ...), as ``watch --embedder``; the default is
            :data:`facesense.embed.DEFAULT_EMBEDDER`.
        detector: which detector ``make_detector`` builds (``yunet``, ``mtcnn``), as
            ``watch --detector``; the default is :data:`facesense.detect.DEFAULT_DETECTOR`.
        rotations: also search rotated copies for tilted faces, as ``watch --rotations``.
        compare: also time the peers on the same frames.
        compare_frames: time the peers on at most this many of those frames
            (``None``: all of them).
        enroll_faces: faces enrolled (one person each) into the bench's gallery.

    Raises:
        ConfigError: a value out of range, or an unknown embedder (with a did-you-mean).
    """

    frames: int | None = None
    every: int = 1
    min_face_px: float | None = None
    embedder: str = ""
    detector: str = ""
    rotations: bool = False
    compare: bool = False
    compare_frames: int | None = None
    enroll_faces: int = 4

    def __post_init__(self) -> None:
        from facesense.choices import parse_choice
        from facesense.detect import DetectorKind
        from facesense.embed import EmbedderKind

        if self.frames is not None and (not isinstance(self.frames, int) or self.frames < 1):
            raise ConfigError(f"frames must be a positive integer or None, got {self.frames!r}")
        if not isinstance(self.every, int) or self.every < 1:
            raise ConfigError(f"every must be a positive integer, got {self.every!r}")
        if self.min_face_px is not None and not self.min_face_px > 0:
            raise ConfigError(f"min_face_px must be > 0 or None, got {self.min_face_px!r}")
        if self.compare_frames is not None and (not isinstance(self.compare_frames, int) or self.compare_frames < 1):
            raise ConfigError(f"compare_frames must be a positive integer or None, got {self.compare_frames!r}")
        if not isinstance(self.enroll_faces, int) or self.enroll_faces < 1:
            raise ConfigError(f"enroll_faces must be a positive integer, got {self.enroll_faces!r}")
        from facesense.detect.factory import DEFAULT_DETECTOR
        from facesense.embed.factory import DEFAULT_EMBEDDER

        object.__setattr__(
            self, "embedder", parse_choice(EmbedderKind, self.embedder or DEFAULT_EMBEDDER, "embedder").value
        )

        object.__setattr__(
            self, "detector", parse_choice(DetectorKind, self.detector or DEFAULT_DETECTOR, "detector").value
        )


def peak_rss_mb() -> float:
    """The process's peak resident set size so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def current_rss_mb() -> float | None:
    """The process's resident set size now, in MiB (``None`` without ``/proc``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None


def embedder_session(embedder: Embedder) -> bool | None:
    """For a fused embedder, whether its parts run as one merged session; else ``None``."""
    from facesense.embed import FusedEmbedder

    return embedder.merged if isinstance(embedder, FusedEmbedder) else None


def _load_avg() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:  # pragma: no cover - platforms without it
        return (math.nan, math.nan, math.nan)


# ----------------------------------------------------------------------------- setup


@dataclass(frozen=True, kw_only=True)
class _Probe:
    source_id: str
    size_wh: tuple[int, int] | None
    fps: float | None


def _probe(source: str | os.PathLike[str]) -> _Probe:
    """Open the source once for its id, size and frame rate; refuse live sources."""
    from facesense.capture import VideoSource

    with VideoSource(source) as probe:
        if probe.live:
            raise ConfigError(f"{probe.source_id}: bench needs a video file or image folder, not a live source")
        return _Probe(source_id=probe.source_id, size_wh=probe.size_wh, fps=probe.fps)


def _enroll(
    source: str | os.PathLike[str], store: GalleryStore, detector: Detector, embedder: Embedder, cfg: BenchConfig
) -> int:
    """Enroll the first faces of the source into ``store``, one person each; how many.

    Only faces enrollment would take count (at least :data:`facesense.enroll.DEFAULT_MIN_FACE_PX`
    and :data:`facesense.enroll.DEFAULT_MIN_SHARPNESS`), and only one per person: a face
    the model's calibrated raw threshold puts with an enrolled one is skipped. (The Hamilton
    clip's dark audience, which YuNet finds, would otherwise be enrolled, and one actor as
    two "people", which made the report's "named" count meaningless.)

    Runs the detector and the embedder, so both are loaded and warmed up before the timed
    run (a batch of two faces too, for the batched shapes). A source without such faces
    enrolls nobody: matching still runs and names nobody.
    """
    from facesense.capture import VideoSource
    from facesense.enroll import DEFAULT_MIN_FACE_PX, DEFAULT_MIN_SHARPNESS
    from facesense.gallery.base import NewSample
    from facesense.match import calibration_for, pairwise_distances
    from facesense.quality import sharpness

    cal = calibration_for(embedder.model_id)
    same_person = None if cal is None else cal.raw_threshold
    kept: list[npt.NDArray[np.float32]] = []
    with VideoSource(source) as video:
        for frame in video:
            if frame.index >= ENROLL_SCAN_FRAMES or len(kept) >= cfg.enroll_faces:
                break
            if frame.index % ENROLL_EVERY:
                continue
            faces = detector.detect(frame.image)
            takes = [size >= DEFAULT_MIN_FACE_PX and sharpness(frame.image, box) >= DEFAULT_MIN_SHARPNESS
                     for size, box in zip(faces.size_px.tolist(), faces.xyxy, strict=True)]
            faces = faces[np.array(takes, bool)]
            if not len(faces):
                continue
            embedded = embedder.embed(frame.image, faces)
            if embedded.embeddings is None:
                raise ConfigError(f"{embedder!r} returned faces without embeddings")
            sha = hashlib.sha256(frame.image.tobytes()).hexdigest()
            for i in range(len(faces)):
                if len(kept) >= cfg.enroll_faces:
                    break
                embedding = np.asarray(embedded.embeddings[i], np.float32)
                if kept and same_person is not None and float(pairwise_distances(embedding[None], np.stack(kept)).min()) < same_person:
                    continue  # somebody already enrolled
                box = tuple(float(v) for v in faces.xyxy[i])
                sample = NewSample(
                    embedding=embedding,
                    model_id=embedder.model_id,
                    source_sha256=sha,
                    source_path=f"{frame.source_id}#{frame.index}",
                    xyxy=(box[0], box[1], box[2], box[3]),
                )
                store.add_samples(f"bench-person-{len(kept)}", [sample])
                kept.append(embedding)
    _warm_up(embedder)
    return len(kept)


def _warm_up(embedder: Embedder) -> None:
    """Embed a batch of two synthetic faces (first batched call), and run a throwaway
    tracker (its box assignment imports SciPy on first use)."""
    from facesense.pipeline import default_tracker
    from facesense.types import Faces

    landmarks = np.array([[[70, 80], [130, 80], [100, 110], [75, 135], [125, 135]]] * 2, np.float32)
    two = Faces(xyxy=np.array([[40, 40, 160, 160]] * 2, np.float32), scores=np.ones(2, np.float32), landmarks=landmarks)
    embedder.embed(np.zeros((200, 200, 3), np.uint8), two)
    tracker = default_tracker()
    for _ in range(3):
        tracker.update(two)


# ----------------------------------------------------------------------------- the run


@dataclass
class _Tally:
    """What the run's frames said, accumulated frame by frame."""

    frames: int = 0
    detections: int = 0
    detect_frames: int = 0
    faces: int = 0
    named: int = 0
    embedded_faces: int = 0
    samples: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in STAGES})

    def add(self, result: FrameResult, embedded: int) -> None:
        t = result.timings
        self.frames += 1
        self.faces += len(result.faces)
        self.named += int(result.faces.known_mask().sum())
        s = self.samples
        s["decode"].append(t.decode_ms)
        s["wait"].append(t.wait_ms)
        s["scene cut"].append(t.cut_ms)
        s["track"].append(t.track_ms)
        s["identify"].append(t.identify_ms)
        s["sinks"].append(t.sinks_ms)
        if result.detected:
            self.detect_frames += 1
            self.detections += len(result.faces)
            s["detect"].append(t.detect_ms)
            s["quality"].append(t.quality_ms)
        self.embedded_faces += embedded
        if embedded > 0:
            s["embed"].append(t.embed_ms)
            s["match"].append(t.match_ms)


def _embedded_now(pipeline: Pipeline) -> int:
    """Faces the identity stage embedded on the frame just yielded
    (:attr:`IdentityStage.last_timings <facesense.identity.IdentityStage.last_timings>`)."""
    return pipeline.identity.last_timings.embedded


def run_bench(
    source: str | os.PathLike[str],
    config: BenchConfig | None = None,
    *,
    on_frame: Callable[[int], None] | None = None,
) -> BenchReport:
    """Benchmark ``watch``'s pipeline on a video file or image folder.

    Args:
        source: a video file, an image, or a folder of images (live sources are
            refused: their frame rate caps the measurement).
        config: settings; the defaults when ``None``.
        on_frame: called with the number of frames done, after each pipeline frame
            (for a progress display).

    Returns:
        The measurements; see :class:`~facesense.bench.report.BenchReport`.

    Raises:
        SourceError: the source cannot be opened or read, or has no frames.
        ConfigError: a live source, or bad settings.
        ModelError: a model cannot be loaded.
        GalleryError: the temporary gallery cannot be written.
    """
    cfg = config or BenchConfig()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="facesense-bench-")))
        return _run(source, cfg, tmp, stack, on_frame)


def _run(
    source: str | os.PathLike[str],
    cfg: BenchConfig,
    tmp: Path,
    stack: contextlib.ExitStack,
    on_frame: Callable[[int], None] | None,
) -> BenchReport:
    """:func:`run_bench`'s work; temporary files go to ``tmp``, cleanups onto ``stack``."""
    from facesense.capture import open_source
    from facesense.cpu import cpu_info
    from facesense.detect import DEFAULTS, DetectorUse, make_detector
    from facesense.embed import make_embedder
    from facesense.gallery import open_gallery
    from facesense.models.runtime import default_threads
    from facesense.pipeline import Pipeline, PipelineConfig, default_tracker, fps_or_default
    from facesense.recognize import LiveMatcher
    from facesense.sinks.video import VideoFileSink

    load_avg = _load_avg()
    probe = _probe(source)
    min_face_px = DEFAULTS[DetectorUse.VIDEO].min_face_px if cfg.min_face_px is None else float(cfg.min_face_px)
    detector = make_detector(cfg.detector, use="video", min_face_px=min_face_px, rotations=cfg.rotations)
    from facesense.detect.landmarks import with_landmark_stage

    base_embedder = make_embedder(cfg.embedder)
    embedder = with_landmark_stage(detector, base_embedder)  # as the pipeline embeds (video: O-Net's points)
    store = open_gallery(tmp / "bench-gallery.db")
    stack.callback(store.close)  # after the peers too: the matcher reads it
    enrolled = _enroll(source, store, detector, embedder, cfg)
    matcher = LiveMatcher(store, embedder.model_id)
    matcher.refresh()  # fit now, as watch does, and fail fast
    video = open_source(source)
    stack.callback(video.close)  # the pipeline closes it too; this is for a failed setup
    sink = VideoFileSink(tmp / "bench.mp4", fps=fps_or_default(probe.fps), size_wh=probe.size_wh)
    pipeline = Pipeline(
        video,
        detector=detector,
        embedder=embedder,
        matcher=matcher,
        tracker=default_tracker(cfg.every),
        sinks=[sink],
        config=PipelineConfig(every=cfg.every, max_frames=cfg.frames),
    )
    tally = _Tally()
    start = time.perf_counter()
    for result in pipeline:
        tally.add(result, _embedded_now(pipeline))
        if on_frame is not None:
            on_frame(tally.frames)
    wall_s = time.perf_counter() - start  # the pipeline closed the sink: every frame is encoded
    source_stats = video.stats()
    sink_stats = sink.stats()
    peak = peak_rss_mb()
    rss = current_rss_mb()
    if tally.frames == 0:
        raise SourceError(f"{probe.source_id}: no frames to benchmark")

    frames = tally.frames
    stages = {name: StageStats.of(tally.samples[name], frames) for name in STAGES}
    if not any(tally.samples["decode"]):  # a source without per-frame decode times: its total
        stages["decode"] = StageStats.of_total(source_stats.decode_ms_total, source_stats.frames, frames)
    stages["draw"] = StageStats.of_total(sink_stats.draw_ms_total, sink_stats.frames, frames)
    stages["encode"] = StageStats.of_total(sink_stats.encode_ms_total, sink_stats.frames, frames)
    embed_total = float(np.sum(tally.samples["embed"]))
    embedded = tally.embedded_faces
    cpu = cpu_info()
    report = BenchReport(
        source=probe.source_id,
        size_wh=probe.size_wh,
        cpu=cpu.as_dict(),
        cpu_line=cpu.describe(),
        frames=frames,
        every=cfg.every,
        min_face_px=min_face_px,
        threads=default_threads(),
        load_avg=load_avg,
        pipeline=f"{type(pipeline).__module__}.{type(pipeline).__qualname__}",
        detector=repr(detector),
        embedder=type(base_embedder).__name__,
        embedder_model_id=embedder.model_id,
        merged=embedder_session(base_embedder),
        wall_s=wall_s,
        fps=frames / wall_s if wall_s > 0 else math.nan,
        stages=stages,
        detections=tally.detections,
        detect_frames=tally.detect_frames,
        faces_per_frame=tally.faces / frames,
        embed_calls=len(tally.samples["embed"]),
        embedded_faces=embedded,
        embed_ms_per_face=embed_total / embedded if embedded else None,
        named_faces=tally.named,
        enrolled=enrolled,
        dropped_frames=int(source_stats.dropped),
        encoded_frames=int(sink_stats.frames),
        peak_rss_mb=peak,
        rss_mb=rss,
    )
    logger.info("bench: %d frames at %.1f fps; facesense's peak RSS %.0f MB", frames, report.fps, peak)
    if not cfg.compare:
        return report

    from facesense.bench.peers import PeerSubjects, compare

    subjects = PeerSubjects(
        detector=detector,
        embedder=embedder,
        matcher=matcher,
        pipeline_fps=report.fps,
        pipeline_frames=frames,
        every=cfg.every,
        embedder_label=f"{report.embedder}" + (", one merged session" if report.merged else ""),
    )
    rows = compare(source, subjects, min_face_px=min_face_px, max_frames=cfg.compare_frames, size_wh=probe.size_wh)
    return replace(report, peers=tuple(rows), peak_rss_mb_with_peers=peak_rss_mb())
