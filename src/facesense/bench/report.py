"""What a bench run measured, and how it is printed: the table and the JSON.

:class:`BenchReport` is plain data (no model objects); :func:`format_report` renders
it as the text table of ``facesense bench`` and :meth:`BenchReport.to_dict` as its
``--json`` object. The header of both names the CPU
(:meth:`facesense.cpu.CpuInfo.describe`), so every figure says where it was measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "STAGES",
    "BenchReport",
    "PeerRow",
    "StageStats",
    "format_report",
]

STAGES = (
    "decode",
    "wait",
    "scene cut",
    "detect",
    "quality",
    "track",
    "embed",
    "match",
    "identify",
    "sinks",
    "draw",
    "encode",
)
"""The rows of the stage table, in pipeline order.

``decode`` runs on the capture thread, ``draw`` and ``encode`` (conversion, encoding
and muxing) on the video writer's thread: they overlap with the others and are read
from :meth:`VideoSource.stats() <facesense.capture.VideoSource.stats>` and
:meth:`VideoFileSink.stats() <facesense.sinks.video.VideoFileSink.stats>` (totals: no
median). Every other stage runs on the
consumer thread, one after the other, and is read from the frame's
:class:`~facesense.types.StageTimings`.
"""


def finite(value: float | None) -> float | None:
    """``value`` rounded for JSON, or ``None`` for ``None``/NaN/infinity."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), 4)


@dataclass(frozen=True, kw_only=True)
class StageStats:
    """Timings of one stage.

    Attributes:
        runs: how many times the stage ran (frames, or the frames it did work on).
        median_ms: median of one run, milliseconds (NaN when it never ran, or when only
            a total is known).
        p95_ms: 95th percentile of one run (NaN likewise).
        mean_ms: mean of one run.
        per_frame_ms: total time divided by the frames processed (its share of a frame).
    """

    runs: int
    median_ms: float
    p95_ms: float
    mean_ms: float
    per_frame_ms: float

    @classmethod
    def of(cls, samples_ms: Sequence[float], frames: int) -> StageStats:
        """Statistics of per-run samples, ``frames`` being the frames processed."""
        arr = np.asarray(samples_ms, np.float64)
        if arr.size == 0:
            return cls.never()
        return cls(
            runs=int(arr.size),
            median_ms=float(np.median(arr)),
            p95_ms=float(np.percentile(arr, 95)),
            mean_ms=float(arr.mean()),
            per_frame_ms=float(arr.sum() / max(frames, 1)),
        )

    @classmethod
    def of_total(cls, total_ms: float, runs: int, frames: int) -> StageStats:
        """Statistics of a stage whose timing hook gives only a total over ``runs`` runs."""
        if runs <= 0:
            return cls.never()
        return cls(
            runs=int(runs),
            median_ms=math.nan,
            p95_ms=math.nan,
            mean_ms=float(total_ms) / runs,
            per_frame_ms=float(total_ms) / max(frames, 1),
        )

    @classmethod
    def never(cls) -> StageStats:
        """A stage that did not run."""
        return cls(runs=0, median_ms=math.nan, p95_ms=math.nan, mean_ms=math.nan, per_frame_ms=0.0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes ``None``)."""
        return {
            "runs": self.runs,
            "median_ms": finite(self.median_ms),
            "p95_ms": finite(self.p95_ms),
            "mean_ms": finite(self.mean_ms),
            "per_frame_ms": finite(self.per_frame_ms),
        }


@dataclass(frozen=True, kw_only=True)
class PeerRow:
    """facesense against one peer on one task, measured on the same inputs.

    Attributes:
        task: ``detect``, ``embed``, ``end_to_end`` or ``watch``.
        unit: what the milliseconds measure (``ms/frame``, ``ms/face``).
        ours: what facesense ran.
        peer: what the peer is.
        ours_ms: facesense's median.
        peer_ms: the peer's median (``None`` when the peer is not installed).
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
        """A JSON-ready dict (NaN becomes ``None``)."""
        return {
            "task": self.task,
            "unit": self.unit,
            "ours": self.ours,
            "peer": self.peer,
            "ours_ms": finite(self.ours_ms),
            "peer_ms": finite(self.peer_ms),
            "speedup": finite(self.speedup),
            "ours_fps": finite(self.ours_fps),
            "peer_fps": finite(self.peer_fps),
            "ours_faces": self.ours_faces,
            "peer_faces": self.peer_faces,
            "samples": self.samples,
            "note": self.note,
        }


@dataclass(frozen=True, kw_only=True)
class BenchReport:
    """What :func:`facesense.bench.run_bench` measured.

    Attributes:
        source: the source's id.
        size_wh: frame size, ``None`` when unknown.
        cpu: :meth:`facesense.cpu.CpuInfo.as_dict` of the machine.
        cpu_line: :meth:`facesense.cpu.CpuInfo.describe` of the machine.
        frames: frames processed by the pipeline.
        every: detection period.
        min_face_px: the detector's minimum face size.
        threads: inference threads (``$FACESENSE_THREADS`` or the usable cores).
        load_avg: the machine's 1, 5 and 15 minute load averages before the run.
        pipeline: the class that ran the frames (``facesense.pipeline.Pipeline``).
        detector: the detector ``watch`` builds (its repr).
        embedder: the embedder ``watch`` builds (its class name).
        embedder_model_id: its model id.
        merged: for a fused embedder, whether its parts ran as one merged ONNX Runtime
            session (``None`` for other embedders).
        wall_s: the pipeline's wall time, first frame request to the last frame encoded.
        fps: ``frames / wall_s``, end to end.
        stages: per-stage statistics, keyed by the names in :data:`STAGES`.
        detections: faces the detector returned, summed over detection frames.
        detect_frames: frames detection ran on.
        faces_per_frame: mean faces reported per frame (detected or tracked).
        embed_calls: frames on which the identity stage embedded faces.
        embedded_faces: faces embedded (``None`` when the pipeline does not say).
        embed_ms_per_face: the pipeline's embedding time divided by the faces embedded
            (crops included), or ``None`` when unknown.
        named_faces: face reports with a known name, summed over frames.
        enrolled: faces enrolled (one person each) into the bench's gallery.
        dropped_frames: frames the capture dropped (always 0 for files).
        encoded_frames: frames the video writer encoded.
        peak_rss_mb: the process's peak resident memory after the pipeline run, before
            any peer was loaded: facesense's own peak.
        rss_mb: resident memory at the end of the pipeline run (the steady state), or
            ``None`` where it cannot be read.
        peers: the comparison rows (empty without ``compare``).
        peak_rss_mb_with_peers: peak RSS after the comparison (``None`` without it).
    """

    source: str
    size_wh: tuple[int, int] | None
    cpu: dict[str, object]
    cpu_line: str
    frames: int
    every: int
    min_face_px: float
    threads: int
    load_avg: tuple[float, float, float]
    pipeline: str
    detector: str
    embedder: str
    embedder_model_id: str
    merged: bool | None
    wall_s: float
    fps: float
    stages: dict[str, StageStats]
    detections: int
    detect_frames: int
    faces_per_frame: float
    embed_calls: int
    embedded_faces: int | None
    embed_ms_per_face: float | None
    named_faces: int
    enrolled: int
    dropped_frames: int
    encoded_frames: int
    peak_rss_mb: float
    rss_mb: float | None
    peers: tuple[PeerRow, ...] = field(default=())
    peak_rss_mb_with_peers: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes ``None``)."""
        return {
            "source": self.source,
            "size_wh": list(self.size_wh) if self.size_wh else None,
            "cpu": dict(self.cpu),
            "cpu_line": self.cpu_line,
            "frames": self.frames,
            "every": self.every,
            "min_face_px": self.min_face_px,
            "threads": self.threads,
            "load_avg": [round(v, 2) for v in self.load_avg],
            "pipeline": self.pipeline,
            "detector": self.detector,
            "embedder": self.embedder,
            "embedder_model_id": self.embedder_model_id,
            "merged": self.merged,
            "wall_s": finite(self.wall_s),
            "fps": finite(self.fps),
            "detect_ms": finite(self.stages["detect"].median_ms),
            "embed_ms_per_face": finite(self.embed_ms_per_face),
            "faces": self.detections,
            "detect_frames": self.detect_frames,
            "faces_per_frame": finite(self.faces_per_frame),
            "embed_calls": self.embed_calls,
            "embedded_faces": self.embedded_faces,
            "named_faces": self.named_faces,
            "enrolled": self.enrolled,
            "dropped_frames": self.dropped_frames,
            "encoded_frames": self.encoded_frames,
            "peak_rss_mb": finite(self.peak_rss_mb),
            "rss_mb": finite(self.rss_mb),
            "peak_rss_mb_with_peers": finite(self.peak_rss_mb_with_peers),
            "stages": {name: stats.to_dict() for name, stats in self.stages.items()},
            "compare": [row.to_dict() for row in self.peers],
        }


def _ms(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.2f}"


def _embedder_line(report: BenchReport) -> str:
    session = {True: ", one merged ONNX Runtime session", False: ", parts run one by one", None: ""}[report.merged]
    return f"{report.embedder}{session} ({report.embedder_model_id})"


def _embedding_line(report: BenchReport) -> str:
    if report.embed_ms_per_face is not None:
        return (
            f"embedding    {_ms(report.embed_ms_per_face)} ms/face"
            " (the pipeline's embed time / faces embedded, crops included)"
        )
    embed = report.stages["embed"]
    return (
        f"embedding    {_ms(embed.mean_ms)} ms per embedding call, mean (the identity stage does not report"
        " how many faces a call embedded; --compare times the embedder per face)"
    )


def format_report(report: BenchReport) -> str:
    """The report as the plain-text table ``facesense bench`` prints."""
    size = "x".join(map(str, report.size_wh)) if report.size_wh else "?"
    load = " ".join(f"{v:.2f}" for v in report.load_avg)
    lines = [
        (
            f"facesense bench: {report.source} ({size}), {report.frames} frames, detect every {report.every},"
            f" min face {report.min_face_px:g} px, {report.threads} threads, load average {load}"
        ),
        f"CPU: {report.cpu_line}",
        f"runs: {report.pipeline}; detector {report.detector}; embedder {_embedder_line(report)}",
        "",
        f"{'stage':<11} {'runs':>5} {'median ms':>10} {'p95 ms':>8} {'mean ms':>8} {'ms/frame':>9}",
    ]
    for name in STAGES:
        s = report.stages[name]
        lines.append(
            f"{name:<11} {s.runs:>5} {_ms(s.median_ms):>10} {_ms(s.p95_ms):>8} {_ms(s.mean_ms):>8}"
            f" {_ms(s.per_frame_ms):>9}"
        )
    embedded = "?" if report.embedded_faces is None else str(report.embedded_faces)
    rss = f"{report.peak_rss_mb:.0f} MB facesense alone"
    if report.rss_mb is not None:
        rss += f" ({report.rss_mb:.0f} MB resident at the end of the run)"
    if report.peak_rss_mb_with_peers is not None:
        rss += f"; {report.peak_rss_mb_with_peers:.0f} MB with the peers loaded"
    lines += [
        "",
        (
            f"end to end   {report.fps:.1f} frames/s ({report.frames} frames in {report.wall_s:.2f} s,"
            " capture, inference and encoding overlapped)"
        ),
        (
            f"faces        {report.faces_per_frame:.2f} per frame; {report.detections} detections on"
            f" {report.detect_frames} detection frames; {embedded} embedded on {report.embed_calls} frames;"
            f" {report.named_faces} named ({report.enrolled} enrolled)"
        ),
        _embedding_line(report),
        f"peak RSS     {rss}",
    ]
    if report.peers:
        lines += [
            "",
            "same frames, interleaved with the peers (medians):",
            f"{'task':<13} {'facesense':>10} {'peer':>10} {'speedup':>8} {'fps ours/peer':>14}"
            f" {'faces ours/peer':>16}  peer",
        ]
        for row in report.peers:
            peer_ms = _ms(row.peer_ms) if row.peer_ms is not None else "-"
            speed = f"{row.speedup:.2f}x" if row.speedup is not None else "-"
            fps = f"{row.ours_fps:.1f}/{row.peer_fps:.1f}" if row.ours_fps and row.peer_fps else ""
            faces = (
                f"{row.ours_faces}/{row.peer_faces}"
                if row.ours_faces is not None and row.peer_faces is not None
                else ""
            )
            lines.append(
                f"{row.task:<13} {_ms(row.ours_ms):>10} {peer_ms:>10} {speed:>8} {fps:>14} {faces:>16}  {row.peer}"
                f" [{row.unit}, n={row.samples}]"
            )
            lines.append(f"{'':<13} ours: {row.ours}")
            if row.note:
                lines.append(f"{'':<13} note: {row.note}")
    return "\n".join(lines)
