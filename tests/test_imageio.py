"""Reading images: the size is checked from the header before any pixel is decoded.

The decompression-bomb files are written by hand (``_black_png``): an all-black PNG's
pixel stream is zeros, so one deflate block of one row, repeated, is a valid stream
whose Adler-32 is known in closed form. A 30000 x 30000 RGB PNG is ~3 MB on disk and
2.7 GB decoded.
"""

from __future__ import annotations

import io
import os
import resource
import struct
import subprocess
import sys
import threading
import time
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from facesense.errors import ImageError
from facesense.imageio import decode_image, load_image, read_image_size

ADDRESS_SPACE_LIMIT = 1536 * 2**20
"""RLIMIT_AS for the CLI runs. ``facesense detect obama.jpg`` needs ~0.75 GiB of address
space (ONNX Runtime and OpenCV reserve much more than they touch) and fails under
0.5 GiB; decoding the 30000 x 30000 bomb needs 2.7 GB for its pixels alone (5.3 GB peak
RSS before the header check)."""


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _black_png(width: int, height: int, *, channels: int = 3) -> bytes:
    """A valid all-black 8-bit PNG (grey or RGB) of any size, built in milliseconds."""
    row = bytes(1 + width * channels)  # filter type 0, then zero pixels
    comp = zlib.compressobj(9)
    first = comp.compress(row) + comp.flush(zlib.Z_FULL_FLUSH)  # a full flush makes the block independent
    header, block = first[:2], first[2:]
    total = len(row) * height
    adler = ((total % 65521) << 16) | 1  # Adler-32 of `total` zero bytes
    stream = header + block * height + b"\x03\x00" + struct.pack(">I", adler)  # + an empty final block
    ihdr = struct.pack(">IIBBBBB", width, height, 8, {1: 0, 3: 2}[channels], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", stream) + _chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "big.png"
    path.write_bytes(_black_png(30000, 30000))
    return path


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if OpenCV is asked to decode anything."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("cv2.imdecode was called for an image whose header is over the limit")

    monkeypatch.setattr(cv2, "imdecode", refuse)


def test_the_handmade_png_is_a_real_image() -> None:
    data = _black_png(300, 200)
    image = decode_image(data)
    assert image.shape == (200, 300, 3) and image.dtype == np.uint8 and not image.any()
    grey = decode_image(_black_png(64, 48, channels=1))
    assert grey.shape == (48, 64, 3)


def test_colour_order_is_bgr(tmp_path: Path) -> None:
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 255  # red, as Pillow writes it
    Image.fromarray(rgb).save(tmp_path / "red.png")
    image = load_image(tmp_path / "red.png")
    assert image.shape == (20, 30, 3)
    assert image[0, 0].tolist() == [0, 0, 255]


@pytest.mark.usefixtures("no_decoding")
@pytest.mark.parametrize("read", ["bytes", "file"])
def test_bomb_is_refused_from_the_header(bomb: Path, read: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ImageError, match=r"big\.png: image has 900,000,000 pixels, over the 100,000,000-pixel limit"):
        if read == "bytes":
            decode_image(bomb.read_bytes(), name=str(bomb))
        else:
            load_image(bomb)
    assert time.perf_counter() - start < 1.0


@pytest.mark.usefixtures("no_decoding")
def test_just_over_the_limit_names_the_sides(tmp_path: Path) -> None:
    # 100,010,000 pixels: over facesense's limit, under Pillow's error threshold (~179 M;
    # it only warns, and warnings are errors in this test suite).
    path = tmp_path / "wide.png"
    path.write_bytes(_black_png(10001, 10000, channels=1))
    with pytest.raises(ImageError, match=r"image is 10001x10000, over the 100,000,000-pixel limit"):
        load_image(path)
    assert read_image_size(io.BytesIO(path.read_bytes())) == (10001, 10000)


def test_pillow_bomb_warning_never_escapes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Lower Pillow's own guard so that a small image crosses its warning threshold
    # (5000 px) and a larger one its error threshold (10000 px).
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    filters = list(warnings.filters)
    image = decode_image(_black_png(100, 60))  # 6000 px: Pillow would warn
    assert image.shape == (60, 100, 3)
    with pytest.raises(ImageError, match=r"20,000 pixels, over Pillow's limit"):
        decode_image(_black_png(200, 100))
    assert warnings.filters == filters


def test_header_reads_from_threads_leave_the_warning_filters_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    data = _black_png(100, 60)
    filters = list(warnings.filters)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(50):
                assert read_image_size(io.BytesIO(data)) == (100, 60)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert warnings.filters == filters


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"this is not a picture", "not a readable image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "not a readable image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\x00" * 10, "not a readable image"),
        (_black_png(4, 100), "too small to hold a face"),
    ],
    ids=["empty", "text", "png-signature-only", "jpeg-header-cut", "too-small"],
)
def test_bad_bytes(data: bytes, message: str, tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=message):
        decode_image(data, name="x.png")
    path = tmp_path / "x.png"
    path.write_bytes(data)
    with pytest.raises(ImageError, match=message):
        load_image(path)


def test_truncated_jpeg_passes_the_header_and_fails_the_decode(examples_dir: Path) -> None:
    data = (examples_dir / "obama.jpg").read_bytes()
    assert read_image_size(io.BytesIO(data[: len(data) // 2])) == decode_image(data).shape[1::-1]
    with pytest.raises(ImageError, match="not a readable image"):
        decode_image(data[: len(data) // 2], name="half.jpg")


def test_missing_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)


# --- the real CLI under an address-space limit ------------------------------------------


def _limited(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))

    env = {**os.environ, "FACESENSE_DB": str(cwd / "gallery.db")}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "facesense.cli", *args],
        cwd=cwd,
        env=env,
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, time.perf_counter() - start


def test_address_space_limit_lets_a_normal_detect_run(examples_dir: Path, tmp_path: Path) -> None:
    """The limit below is generous for real work: the bomb tests fail only by decoding."""
    done, _ = _limited(["detect", "--json", str(examples_dir / "obama.jpg")], tmp_path)
    assert done.returncode == 0, done.stderr
    assert '"faces":[{' in done.stdout


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (["detect", "{bomb}"], 4),
        (["detect", "{folder}"], 0),  # the good image is processed, the bomb reported
        (["enroll", "--name", "someone", "{bomb}"], 4),
        (["watch", "{bomb}", "--no-display"], 5),  # an image source: a one-frame folder
    ],
    ids=["detect", "detect-folder", "enroll", "watch"],
)
def test_cli_refuses_a_bomb_in_bounded_memory_and_time(
    bomb: Path, examples_dir: Path, tmp_path: Path, command: list[str], code: int
) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "big.png").write_bytes(bomb.read_bytes())
    (folder / "obama.jpg").write_bytes((examples_dir / "obama.jpg").read_bytes())
    args = [str(bomb) if a == "{bomb}" else str(folder) if a == "{folder}" else a for a in command]
    done, elapsed = _limited(args, tmp_path)
    assert done.returncode == code, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "big.png" in errors[0], done.stderr
    # watch's folder source warns about the image it skips, then fails for having none.
    said = errors[0] if command[0] != "watch" else done.stderr
    assert "big.png: image has 900,000,000 pixels, over the 100,000,000-pixel limit" in said, done.stderr
    assert "Traceback" not in done.stderr
    assert elapsed < 60  # the imports and, for detect-folder, one real detection; decoding took 17-56 s
    assert not (tmp_path / "gallery.db").exists()  # a failed first enrollment leaves no file


def test_recognize_reports_a_bomb_and_goes_on(bomb: Path, examples_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from click.testing import CliRunner

    from facesense.cli import main

    size = bomb.stat().st_size
    decode = cv2.imdecode

    def guarded(buf: np.ndarray, flags: int) -> np.ndarray | None:
        assert buf.size != size, "the bomb reached the decoder"
        return decode(buf, flags)

    monkeypatch.setattr(cv2, "imdecode", guarded)
    db = tmp_path / "g.db"
    photo = examples_dir / "knn_examples" / "train" / "obama" / "obama.jpg"
    enrolled = CliRunner().invoke(main, ["enroll", "--name", "obama", str(photo), str(bomb), "--db", str(db)])
    assert enrolled.exit_code == 0, enrolled.stderr
    assert f"skipped {bomb}: unreadable (image has 900,000,000 pixels" in enrolled.stderr
    probe = examples_dir / "knn_examples" / "test" / "obama1.jpg"
    result = CliRunner().invoke(main, ["recognize", str(bomb), str(probe), "--db", str(db), "--json"])
    assert result.exit_code == 0, result.stderr
    failed, named = (json.loads(line) for line in result.stdout.splitlines())
    assert "image has 900,000,000 pixels, over the 100,000,000-pixel limit" in failed["error"]
    assert [f["name"] for f in named["faces"]] == ["obama"]
