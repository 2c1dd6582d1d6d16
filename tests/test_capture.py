"""Capture: files in order, folders, bad inputs, and a live MJPEG stream that drops out."""

from __future__ import annotations

import logging
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesense.capture import CaptureConfig, SourceKind, SourceStats, StatusKind, open_source, parse_source
from facesense.errors import ConfigError, SourceError
from facesense.types import Frame

CLIP_FRAMES = 275
CLIP_SIZE_WH = (640, 360)


def _capture_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("facesense-capture")]


@pytest.fixture()
def clip(examples_dir: Path) -> Path:
    return examples_dir / "short_hamilton_clip.mp4"


@pytest.fixture(autouse=True)
def _no_leaked_threads():
    yield
    deadline = time.monotonic() + 5
    while _capture_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _capture_threads(), "a capture thread outlived its test"


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        (0, SourceKind.CAMERA),
        ("2", SourceKind.CAMERA),
        ("rtsp://10.0.0.1/stream", SourceKind.STREAM),
        ("http://127.0.0.1:8080/video.mjpg", SourceKind.STREAM),
        ("HTTPS://example.invalid/x", SourceKind.STREAM),
    ],
)
def test_parse_source_kinds(spec: object, kind: SourceKind) -> None:
    assert parse_source(spec).kind is kind  # type: ignore[arg-type]


def test_parse_source_paths(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "v.mp4").write_bytes(b"x")
    assert parse_source(tmp_path).kind is SourceKind.FOLDER
    assert parse_source(tmp_path / "a.jpg").kind is SourceKind.FOLDER
    assert parse_source(tmp_path / "v.mp4").kind is SourceKind.FILE
    assert parse_source(f"file://{tmp_path / 'v.mp4'}").kind is SourceKind.FILE


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"buffer_frames": 0}, "buffer_frames"),
        ({"open_timeout_s": 0}, "open_timeout_s"),
        ({"reconnect_initial_s": 2.0, "reconnect_max_s": 1.0}, "reconnect_max_s"),
    ],
)
def test_capture_config_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        CaptureConfig(**kwargs)


# --------------------------------------------------------------------------- files


def test_file_yields_every_frame_in_order(clip: Path) -> None:
    with open_source(clip) as source:
        assert source.kind is SourceKind.FILE
        assert not source.live
        assert source.frame_count == CLIP_FRAMES
        assert source.size_wh == CLIP_SIZE_WH
        assert source.fps == pytest.approx(29.97, abs=0.01)
        frames = list(source)
    assert [f.index for f in frames] == list(range(CLIP_FRAMES))
    stamps = np.array([f.timestamp for f in frames])
    assert stamps[0] == 0.0
    assert np.all(np.diff(stamps) > 0)
    assert stamps[-1] == pytest.approx((CLIP_FRAMES - 1) / 29.97, abs=0.01)
    first = frames[0]
    assert isinstance(first, Frame)
    assert first.image.shape == (360, 640, 3) and first.image.dtype == np.uint8
    assert first.source_id == str(clip)
    # Every frame is its own array (the consumer may keep them).
    assert not np.shares_memory(frames[0].image, frames[1].image)


def test_file_frames_match_a_plain_decode(clip: Path) -> None:
    cap = cv2.VideoCapture(str(clip))
    expected = [cap.read()[1] for _ in range(5)]
    cap.release()
    with open_source(clip) as source:
        got = [f.image for _, f in zip(range(5), source, strict=False)]
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a, b)


def test_slow_consumer_of_a_file_loses_nothing(clip: Path) -> None:
    config = CaptureConfig(buffer_frames=2)
    with open_source(clip, config) as source:
        indexes = []
        for frame in source:
            indexes.append(frame.index)
            if frame.index < 10:
                time.sleep(0.02)  # the capture thread must wait, not drop
    assert indexes == list(range(CLIP_FRAMES))
    assert source.frames_dropped == 0


def test_loop_plays_again_with_increasing_index_and_time(clip: Path) -> None:
    with open_source(clip, CaptureConfig(loop=True)) as source:
        frames = [f for _, f in zip(range(2 * CLIP_FRAMES + 20), source, strict=False)]
    assert [f.index for f in frames] == list(range(2 * CLIP_FRAMES + 20))
    assert np.all(np.diff([f.timestamp for f in frames]) > 0)
    np.testing.assert_array_equal(frames[0].image, frames[CLIP_FRAMES].image)


def test_breaking_out_early_stops_the_thread(clip: Path) -> None:
    source = open_source(clip)
    for frame in source:
        if frame.index == 3:
            break
    source.close()
    assert not _capture_threads() or all(not t.is_alive() for t in _capture_threads())


def test_a_source_iterates_once(clip: Path) -> None:
    with open_source(clip) as source:
        first = iter(source)
        next(first)
        with pytest.raises(SourceError, match="only once"):
            next(iter(source))
        first.close()
    # Dropping the iterator closes the source.
    with pytest.raises(SourceError, match="closed"):
        next(iter(source))


# --------------------------------------------------------------------------- stats


def test_stats_count_and_time_every_decoded_frame(clip: Path) -> None:
    per_frame: list[SourceStats] = []
    with open_source(clip) as source:
        assert source.stats() == SourceStats()  # nothing decoded yet
        for _ in source:
            per_frame.append(source.stats())  # what the pipeline reads for StageTimings.decode_ms
    final = source.stats()
    assert (final.frames, final.dropped, final.buffered, final.reconnects) == (CLIP_FRAMES, 0, 0, 0)
    # 640x360 H.264 decodes in well under 50 ms a frame even on a loaded 2-core machine.
    assert 0 < final.mean_decode_ms < 50
    assert final.decode_ms_total == pytest.approx(final.mean_decode_ms * CLIP_FRAMES)
    assert all(s.last_decode_ms > 0 for s in per_frame)
    assert all(s.lag_ms >= 0 for s in per_frame)
    assert final.fps > 1
    decoded = [s.frames for s in per_frame]
    assert decoded == sorted(decoded) and decoded[0] >= 1
    # The capture thread decodes ahead, but never more than the buffer holds.
    assert all(s.frames - i - 1 <= CaptureConfig().buffer_frames + 1 for i, s in enumerate(per_frame))


def test_stats_can_be_polled_from_another_thread(clip: Path) -> None:
    seen: list[SourceStats] = []
    done = threading.Event()
    source = open_source(clip, CaptureConfig(buffer_frames=2))

    def poll() -> None:
        while not done.is_set():
            seen.append(source.stats())

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        count = sum(1 for _ in source)
    finally:
        done.set()
        poller.join()
    assert count == CLIP_FRAMES
    frames = [s.frames for s in seen]
    assert frames == sorted(frames) and len(set(frames)) > 10
    assert all(0 <= s.buffered <= 2 for s in seen)


# --------------------------------------------------------------------------- folders


def _write_frames(clip: Path, folder: Path, count: int) -> list[np.ndarray]:
    folder.mkdir()
    images = []
    with open_source(clip) as source:
        for frame in source:
            if frame.index >= count:
                break
            cv2.imwrite(str(folder / f"frame_{frame.index:04d}.png"), frame.image)
            images.append(frame.image)
    return images


def test_folder_plays_images_in_name_order_and_skips_bad_files(
    clip: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "frames"
    images = _write_frames(clip, folder, 6)
    (folder / "frame_0002b.jpg").write_bytes(b"not an image at all")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    with (
        caplog.at_level(logging.WARNING, logger="facesense.capture"),
        open_source(folder, CaptureConfig(folder_fps=10)) as source,
    ):
        assert source.kind is SourceKind.FOLDER
        assert source.frame_count == 7  # image-suffixed files, before decoding
        assert source.size_wh == CLIP_SIZE_WH
        frames = list(source)
    assert [f.index for f in frames] == list(range(6))
    assert [f.timestamp for f in frames] == pytest.approx([i / 10 for i in range(6)])
    for got, want in zip(frames, images, strict=True):
        np.testing.assert_array_equal(got.image, want)
    assert source.skipped_files == 1
    assert any("frame_0002b.jpg" in r.getMessage() for r in caplog.records)


def test_single_image_plays_as_one_frame(examples_dir: Path) -> None:
    with open_source(examples_dir / "obama.jpg") as source:
        frames = list(source)
    assert len(frames) == 1 and frames[0].image.ndim == 3


def _png_bomb(path: Path, width: int, height: int) -> None:
    """A grey PNG of ``width`` x ``height`` zeros: under 2 MB on disk, width*height bytes decoded."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    packer = zlib.compressobj(1)
    rows = b"\x00" * (width + 1) * 500  # filter byte + pixels, 500 rows at a time
    idat = b"".join(packer.compress(rows) for _ in range(height // 500)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_folder_skips_a_decompression_bomb_without_decoding_it(examples_dir: Path, tmp_path: Path) -> None:
    """Issue 11 item 4: a 225-megapixel PNG (1.7 MB) is refused from its header, not decoded."""
    folder = tmp_path / "frames"
    folder.mkdir()
    _png_bomb(folder / "a_bomb.png", 15_000, 15_000)  # 225 MB decoded grey, 675 MB as BGR
    (folder / "b_obama.jpg").write_bytes((examples_dir / "obama.jpg").read_bytes())
    # Peak RSS from VmHWM: ru_maxrss would carry over pytest's own peak through fork + exec.
    script = (
        "import logging, re\n"
        "from facesense.capture import open_source\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        f"with open_source({str(folder)!r}) as source:\n"
        "    frames = list(source)\n"
        "peak_kib = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
        "print(len(frames), source.skipped_files, peak_kib // 1024)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    frames, skipped, peak_mib = map(int, run.stdout.split())
    assert (frames, skipped) == (1, 1)
    assert "225,000,000 pixels" in run.stderr or "15000x15000" in run.stderr  # the warning names the size
    assert peak_mib < 150, f"peak RSS {peak_mib} MiB: the bomb was decoded"


def test_folder_with_loop(clip: Path, tmp_path: Path) -> None:
    _write_frames(clip, tmp_path / "f", 3)
    with open_source(tmp_path / "f", CaptureConfig(loop=True)) as source:
        frames = [f for _, f in zip(range(8), source, strict=False)]
    assert [f.index for f in frames] == list(range(8))


# --------------------------------------------------------------------------- bad input


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_bad_inputs_give_one_line_errors(clip: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 10)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[:200_000])  # the clip keeps its index at the end
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    (bad_dir / "a.jpg").write_bytes(b"garbage")
    cases = [
        (tmp_path / "missing.mp4", "no such file"),
        (text, "not a video"),
        (empty, "empty file"),
        (truncated, "truncated or damaged"),
        (empty_dir, "no images"),
        (bad_dir, "none of its 1 images"),
        ("ftp://example.invalid/x", "unsupported URL scheme"),
        (f"http://127.0.0.1:{_free_port()}/stream.mjpg", "cannot open stream"),
        ("63", "cannot open camera 63"),
    ]
    for spec, message in cases:
        with pytest.raises(SourceError, match=message) as info:
            open_source(spec)
        assert "\n" not in str(info.value)


def test_url_that_never_answers_times_out(tmp_path: Path) -> None:
    # A socket that accepts connections but never says a word.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(5)
        port = server.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(SourceError, match="no answer within 1 s"):
            open_source(f"http://127.0.0.1:{port}/x", CaptureConfig(open_timeout_s=1.0))
        assert time.monotonic() - started < 10


def test_video_that_ends_early_is_reported_after_its_frames(tmp_path: Path) -> None:
    path = tmp_path / "cut.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 120))
    rng = np.random.default_rng(0)
    for _ in range(40):
        writer.write(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    writer.release()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    seen = 0
    with pytest.raises(SourceError, match=r"ends early: decoded \d+ of 40 frames"), open_source(path) as source:
        for _ in source:
            seen += 1
    assert 5 < seen < 40


# --------------------------------------------------------------------------- live MJPEG


LIVE_CONFIG = CaptureConfig(open_timeout_s=3, read_timeout_s=3, reconnect_initial_s=0.1, reconnect_max_s=0.4)


def test_live_stream_reconnects_after_the_plug_is_pulled(mjpeg_server) -> None:
    statuses: list = []
    frames_before = frames_after = 0
    reconnected = False
    stopped = False
    restarted_at = 0.0
    deadline = time.monotonic() + 30
    with open_source(mjpeg_server.url, LIVE_CONFIG) as source:
        assert source.live and source.kind is SourceKind.STREAM
        for item in source.items(poll_s=0.2):
            assert time.monotonic() < deadline, f"stuck; statuses so far: {statuses}"
            if item is None:
                pass
            elif isinstance(item, Frame):
                assert item.image.shape == (120, 160, 3)
                if reconnected:
                    frames_after += 1
                    if frames_after >= 10:
                        break
                elif not stopped:
                    frames_before += 1
            else:
                statuses.append(item)
                if item.kind is StatusKind.RECONNECTED:
                    reconnected = True
            if frames_before >= 10 and not stopped:
                mjpeg_server.stop()  # pull the plug
                stopped = True
                restarted_at = time.monotonic() + 1.0
            if stopped and restarted_at and time.monotonic() >= restarted_at and mjpeg_server._server is None:
                mjpeg_server.start()  # same port: plug it back in
    kinds = [s.kind for s in statuses]
    assert kinds[0] is StatusKind.DISCONNECTED
    assert StatusKind.RECONNECTING in kinds
    assert kinds[-1] is StatusKind.RECONNECTED
    assert kinds.count(StatusKind.RECONNECTING) >= 2  # refused at least once while down: backoff
    waits = [s.retry_in_s for s in statuses if s.kind is StatusKind.RECONNECTING]
    assert waits == sorted(waits) and waits[0] == pytest.approx(0.1) and max(waits) <= 0.4
    assert all("\n" not in s.message for s in statuses)
    assert frames_after == 10
    assert source.reconnects == 1


def test_live_stream_keeps_only_the_newest_frame(mjpeg_server) -> None:
    with open_source(mjpeg_server.url, LIVE_CONFIG) as source:
        stamps = []
        for frame in source:
            time.sleep(0.1)  # 10 fps consumer of a 50 fps camera
            stamps.append(frame.timestamp)
            if len(stamps) == 8:
                break
    assert source.frames_dropped > 0
    # Latency does not build up: the last frame handed over is fresh.
    assert time.time() - stamps[-1] < 1.0
    stats = source.stats()
    assert stats.dropped == source.frames_dropped
    assert stats.frames >= stats.dropped + len(stamps)
    assert 10 < stats.fps < 200  # the camera's rate (50 fps), not the consumer's (10)
    assert stats.lag_ms < 1000


def test_status_callback_and_stop_while_disconnected(mjpeg_server) -> None:
    seen: list = []
    source = open_source(mjpeg_server.url, LIVE_CONFIG, on_status=seen.append)
    items = source.items(poll_s=0.1)
    next(item for item in items if isinstance(item, Frame))
    mjpeg_server.stop()
    deadline = time.monotonic() + 10
    while not any(s.kind is StatusKind.RECONNECTING for s in seen):
        assert time.monotonic() < deadline
        next(items)
    started = time.monotonic()
    source.close()  # must not wait for the source to come back
    assert time.monotonic() - started < 2
    items.close()
