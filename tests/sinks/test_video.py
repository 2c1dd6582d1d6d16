"""The annotated video writer."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesense.errors import ConfigError
from facesense.sinks.video import VideoFileSink


def _probe(path: Path) -> tuple[int, float, tuple[int, int]]:
    cap = cv2.VideoCapture(str(path))
    try:
        count = 0
        while cap.read()[0]:
            count += 1
        return count, cap.get(cv2.CAP_PROP_FPS), (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        cap.release()


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_writes_every_frame_at_the_given_rate(tmp_path: Path, make_result, suffix: str) -> None:
    path = tmp_path / f"out{suffix}"
    sink = VideoFileSink(path, fps=29.97, size_wh=(320, 240), queue_frames=2)
    for i in range(40):
        result = make_result(i, boxes=[(20, 40, 100, 140)], ids=[1], names=["ann"])
        sink.write(result.frame, result)
    sink.close()
    sink.close()  # idempotent
    assert sink.frames_written == 40
    count, fps, size = _probe(path)
    assert count == 40
    assert fps == pytest.approx(29.97, abs=0.01)
    assert size == (320, 240)
    assert not [t for t in threading.enumerate() if t.name == "facesense-video-writer"]


def test_size_comes_from_the_first_frame_and_others_are_resized(tmp_path: Path, make_result) -> None:
    path = tmp_path / "out.mp4"
    sink = VideoFileSink(path, fps=10)
    for i, size in enumerate([(320, 240), (640, 480), (200, 100)]):
        result = make_result(i, size_wh=size)
        sink.write(result.frame, result)
    sink.close()
    assert _probe(path)[0::2] == (3, (320, 240))


def test_raw_frames_without_annotation(tmp_path: Path, make_result) -> None:
    path = tmp_path / "raw.avi"
    black = np.zeros((240, 320, 3), np.uint8)
    sink = VideoFileSink(path, fps=10, annotate_frames=False)
    result = make_result(0, boxes=[(20, 40, 100, 140)], ids=[1], image=black)
    sink.write(result.frame, result)
    sink.close()
    cap = cv2.VideoCapture(str(path))
    ok, image = cap.read()
    cap.release()
    assert ok and image.max() < 16  # MJPEG noise only: no box, no text


def test_segments_split_the_output_without_losing_frames(tmp_path: Path, make_result) -> None:
    """For days-long runs: each segment is finished (its frame index freed) before the next."""
    sink = VideoFileSink(tmp_path / "watch.mp4", fps=10, size_wh=(160, 120), segment_frames=10)
    for i in range(25):
        result = make_result(i, size_wh=(160, 120))
        sink.write(result.frame, result)
    sink.close()
    names = ["watch-0000.mp4", "watch-0001.mp4", "watch-0002.mp4"]
    assert [p.name for p in sink.segments] == names
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # no unsegmented watch.mp4
    assert [_probe(tmp_path / n)[0] for n in names] == [10, 10, 5]
    assert sink.frames_written == 25


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("out.mp4", {"segment_frames": 0}, "segment_frames"),
        ("out.gif", {}, "unsupported video suffix"),
        ("out", {}, "unsupported video suffix"),
        ("missing/out.mp4", {}, "does not exist"),
        ("out.mp4", {"fps": 0.0}, "fps"),
        ("out.mp4", {"fourcc": "xx"}, "fourcc"),
    ],
)
def test_bad_settings(tmp_path: Path, name: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        VideoFileSink(tmp_path / name, **{"fps": 25.0, **kwargs})
