"""The annotated video writer: real frames in, files that read back frame for frame."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from facesense.errors import ConfigError, FacesenseError
from facesense.sinks.base import Sink
from facesense.sinks.video import FORMAT_BY_SUFFIX, SinkStats, VideoFileSink, default_codec
from facesense.types import Faces, Frame, FrameResult, IdentityState

CLIP_FPS = 29.97


@pytest.fixture(scope="module")
def clip_frames(examples_dir: Path) -> list[np.ndarray]:
    """The first 40 frames of the example clip (640x360 BGR)."""
    cap = cv2.VideoCapture(str(examples_dir / "short_hamilton_clip.mp4"))
    try:
        frames = [cap.read()[1] for _ in range(40)]
    finally:
        cap.release()
    assert all(f is not None and f.shape == (360, 640, 3) for f in frames)
    return frames


def _result(image: np.ndarray, index: int, boxes: Sequence[Sequence[float]] = ()) -> FrameResult:
    xyxy = np.array(boxes, np.float32).reshape(-1, 4)
    n = len(xyxy)
    faces = Faces(
        xyxy=xyxy,
        scores=np.full(n, 0.99, np.float32),
        landmarks=np.zeros((n, 5, 2), np.float32),
        track_ids=np.arange(1, n + 1),
        names=("ann",) * n,
        confidences=np.full(n, 0.9, np.float32),
        states=(IdentityState.KNOWN,) * n,
    )
    frame = Frame(image=image, index=index, timestamp=index / CLIP_FPS, source_id="test")
    return FrameResult(frame=frame, faces=faces, detected=True, fps=25.0)


def _read_cv2(path: Path) -> tuple[list[np.ndarray], float, tuple[int, int]]:
    cap = cv2.VideoCapture(str(path))
    try:
        frames = []
        while True:
            ok, image = cap.read()
            if not ok:
                break
            frames.append(image)
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        return frames, cap.get(cv2.CAP_PROP_FPS), size
    finally:
        cap.release()


def _read_av(path: Path) -> tuple[int, str, float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        count = sum(1 for _ in container.decode(stream))
        return count, stream.codec_context.name, float(stream.average_rate)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / mse)


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "facesense-video-writer"]


@pytest.mark.parametrize("suffix", sorted(FORMAT_BY_SUFFIX))
def test_writes_every_frame_at_the_given_rate(tmp_path: Path, clip_frames: list[np.ndarray], suffix: str) -> None:
    path = tmp_path / f"out{suffix}"
    sink = VideoFileSink(path, fps=CLIP_FPS, size_wh=(640, 360), queue_frames=2, annotate_frames=False)
    assert isinstance(sink, Sink)
    for i, image in enumerate(clip_frames):
        sink.write(_result(image, i))
    sink.close()
    sink.close()  # idempotent
    stats = sink.stats()
    assert (stats.frames, stats.segments, stats.queued) == (40, 1, 0)
    assert sink.frames_written == 40
    assert stats.encode_ms_total > 0 and 0 < stats.mean_encode_ms < 200
    assert 0 < stats.last_encode_ms < 1000
    frames, fps, size = _read_cv2(path)
    assert len(frames) == 40
    assert fps == pytest.approx(CLIP_FPS, abs=0.01)
    assert size == (640, 360)
    # Colours and pixels survive: not a channel swap or a shifted picture.
    assert min(_psnr(a, b) for a, b in zip(frames, clip_frames, strict=True)) > 30
    count, codec, rate = _read_av(path)
    assert count == 40 and rate == pytest.approx(CLIP_FPS, abs=0.01)
    assert codec == ("mjpeg" if suffix == ".avi" else {"libx264": "h264", "mpeg4": "mpeg4"}[default_codec()])
    assert not _writer_threads()


def test_mp4_is_fragmented_so_its_index_does_not_grow_in_memory(tmp_path: Path, clip_frames: list[np.ndarray]) -> None:
    """A plain MP4 holds ~70 bytes a frame until finished; fragments are written out as they fill."""
    path = tmp_path / "out.mp4"
    with VideoFileSink(path, fps=10, annotate_frames=False) as sink:  # keyframe every 5 s = 50 frames
        for i in range(120):
            sink.write(_result(clip_frames[i % 40], i))
    data = path.read_bytes()
    assert data[4:8] == b"ftyp" and b"mvex" in data  # empty moov announcing fragments
    assert data.count(b"moof") >= 3  # 120 frames at one key frame per 50: three fragments
    assert len(_read_cv2(path)[0]) == 120


def test_a_killed_run_leaves_a_playable_mp4_up_to_its_last_fragment(
    tmp_path: Path, clip_frames: list[np.ndarray]
) -> None:
    path = tmp_path / "out.mp4"
    with VideoFileSink(path, fps=10, annotate_frames=False) as sink:
        for i in range(120):
            sink.write(_result(clip_frames[i % 40], i))
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: data.rindex(b"moof") - 4])  # as if the process died in the last fragment
    assert len(_read_cv2(cut)[0]) == 100


def test_annotation_is_drawn_unless_disabled(tmp_path: Path) -> None:
    black = np.zeros((240, 320, 3), np.uint8)
    for annotate_frames in (True, False):
        path = tmp_path / f"{annotate_frames}.mp4"
        with VideoFileSink(path, fps=10, annotate_frames=annotate_frames) as sink:
            sink.write(_result(black, 0, boxes=[(40, 60, 140, 180)]))
        (image,), _, _ = _read_cv2(path)
        box_edge = image[60:181, 40:43]  # the box's left side
        if annotate_frames:
            assert box_edge.max() > 100
        else:
            assert image.max() < 16  # compression noise only: no box, no text


def test_size_comes_from_the_first_frame_and_others_are_resized(tmp_path: Path, clip_frames: list[np.ndarray]) -> None:
    path = tmp_path / "out.mp4"
    sink = VideoFileSink(path, fps=10, annotate_frames=False)
    for i, size in enumerate([(320, 180), (640, 360), (200, 100)]):
        sink.write(_result(cv2.resize(clip_frames[i], size), i))
    sink.close()
    frames, _, size_wh = _read_cv2(path)
    assert (len(frames), size_wh) == (3, (320, 180))
    assert _psnr(frames[1], cv2.resize(clip_frames[1], (320, 180), interpolation=cv2.INTER_AREA)) > 30


def test_odd_sizes_are_padded_to_even(tmp_path: Path, clip_frames: list[np.ndarray]) -> None:
    path = tmp_path / "odd.mp4"
    image = np.ascontiguousarray(clip_frames[0][:241, :321])
    with VideoFileSink(path, fps=10, annotate_frames=False) as sink:
        sink.write(_result(image, 0))
    (decoded,), _, size = _read_cv2(path)
    assert size == (322, 242)
    assert _psnr(decoded[:241, :321], image) > 30


def test_segments_split_the_output_without_losing_frames(tmp_path: Path, clip_frames: list[np.ndarray]) -> None:
    """For days-long runs: each segment is a finished, playable file before the next starts."""
    sink = VideoFileSink(tmp_path / "watch.mp4", fps=10, segment_frames=10, annotate_frames=False)
    for i in range(25):
        sink.write(_result(clip_frames[i], i))
    sink.close()
    names = ["watch-0000.mp4", "watch-0001.mp4", "watch-0002.mp4"]
    assert [p.name for p in sink.segments] == names
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # no unsegmented watch.mp4
    assert [len(_read_cv2(tmp_path / n)[0]) for n in names] == [10, 10, 5]
    assert [_read_av(tmp_path / n)[0] for n in names] == [10, 10, 5]
    first_of_second, _, _ = _read_cv2(tmp_path / names[1])
    assert _psnr(first_of_second[0], clip_frames[10]) > 30  # frame 10 opens segment 1
    assert (sink.frames_written, sink.stats().segments) == (25, 3)


def test_stats_can_be_read_from_another_thread_while_writing(tmp_path: Path, clip_frames: list[np.ndarray]) -> None:
    seen: list[SinkStats] = []
    done = threading.Event()
    sink = VideoFileSink(tmp_path / "out.mkv", fps=CLIP_FPS, queue_frames=4)

    def poll() -> None:
        while not done.is_set():
            seen.append(sink.stats())

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        for i, image in enumerate(clip_frames):
            sink.write(_result(image, i, boxes=[(100, 50, 200, 170)]))
        sink.close()
    finally:
        done.set()
        poller.join()
    frames = [s.frames for s in seen]
    assert frames == sorted(frames) and len(set(frames)) > 1
    assert all(0 <= s.queued <= 4 for s in seen)
    final = sink.stats()
    assert final.frames == 40 and final.draw_ms_total > 0 and final.mean_draw_ms < final.mean_encode_ms * 10


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("out.mp4", {"segment_frames": 0}, "segment_frames"),
        ("out.mp4", {"segment_frames": 2.5}, "segment_frames"),
        ("out.gif", {}, "unsupported video suffix"),
        ("out", {}, "unsupported video suffix"),
        ("missing/out.mp4", {}, "does not exist"),
        ("out.mp4", {"fps": 0.0}, "fps"),
        ("out.mp4", {"fps": float("nan")}, "fps"),
        ("out.mp4", {"codec": "nope264"}, "unknown video encoder 'nope264'"),
        ("out.mp4", {"codec": "aac"}, "unknown video encoder 'aac'"),
        ("out.mp4", {"size_wh": (0, 240)}, "video size must be positive"),
    ],
)
def test_bad_settings(tmp_path: Path, name: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        VideoFileSink(tmp_path / name, **{"fps": 25.0, **kwargs})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("size_wh", [None, (320, 240)])
def test_unwritable_path_fails_at_once_with_one_line(tmp_path: Path, size_wh: tuple[int, int] | None) -> None:
    taken = tmp_path / "taken.mp4"
    taken.mkdir()  # a folder where the file should go (root can write anywhere else)
    with pytest.raises(ConfigError, match=r"taken\.mp4: cannot create video file") as info:
        VideoFileSink(taken, fps=25.0, size_wh=size_wh)
    assert "\n" not in str(info.value)
    assert not _writer_threads()


def test_codec_the_container_cannot_hold_fails_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot write libvpx video at 320x240") as info:
        VideoFileSink(tmp_path / "out.mp4", fps=25.0, size_wh=(320, 240), codec="libvpx")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out.mp4").exists()


def test_a_write_error_on_the_writer_thread_is_raised_in_one_line(
    tmp_path: Path, clip_frames: list[np.ndarray]
) -> None:
    full = tmp_path / "full.mkv"
    full.symlink_to("/dev/full")  # every write fails: no space left on device
    sink = VideoFileSink(full, fps=CLIP_FPS, annotate_frames=False)
    with pytest.raises(FacesenseError, match="writing video failed") as info:
        for i in range(2000):  # the muxer's buffer fills within a few dozen frames
            sink.write(_result(clip_frames[i % 40], i))
        sink.close()
    assert "\n" not in str(info.value) and "No space left on device" in str(info.value)
    with pytest.raises(FacesenseError, match="writing video failed"):
        sink.write(_result(clip_frames[0], 0))  # still failing, never silently dropping
    sink.close()  # the error was reported already: closing neither hangs nor raises it again
    assert not _writer_threads()


def test_no_frames_leaves_no_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for size_wh in (None, (320, 240)):
        path = tmp_path / f"empty{size_wh is None}.mp4"
        with caplog.at_level(logging.WARNING, logger="facesense.sinks.video"):
            VideoFileSink(path, fps=25.0, size_wh=size_wh).close()
        assert not path.exists()
    assert "no frames to write" in caplog.text


def test_write_after_close_is_an_error(tmp_path: Path, clip_frames: list[np.ndarray]) -> None:
    sink = VideoFileSink(tmp_path / "out.mp4", fps=25.0)
    sink.write(_result(clip_frames[0], 0))
    sink.close()
    with pytest.raises(FacesenseError, match="closed"):
        sink.write(_result(clip_frames[1], 1))
