"""Reading images from files and bytes into the BGR uint8 arrays facesense uses."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facesense.errors import ImageError

if TYPE_CHECKING:
    import numpy.typing as npt

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"})
MAX_PIXELS = 100_000_000  # a 10000x10000 image; larger decodes are refused
MIN_SIDE_PX = 8


def to_bgr8(image: npt.NDArray) -> npt.NDArray[np.uint8]:
    """Convert gray, BGRA, 16-bit or float images to ``(H, W, 3)`` uint8 BGR.

    Raises:
        ImageError: the array cannot be an image (wrong rank, channel count or size).
    """
    import cv2

    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {arr.shape}")
    if arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    elif arr.dtype.kind == "f":
        scale = 255.0 if arr.size and float(np.nanmax(arr)) <= 1.0 else 1.0
        arr = np.clip(np.nan_to_num(arr) * scale, 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise ImageError(f"unsupported image dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR)
    elif arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(arr)


def decode_image(data: bytes, *, name: str = "<bytes>") -> npt.NDArray[np.uint8]:
    """Decode encoded image bytes (JPEG, PNG, ...) into BGR uint8.

    Raises:
        ImageError: empty, not an image, corrupt, too small or too large.
    """
    import cv2

    if not data:
        raise ImageError(f"{name}: empty file")
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageError(f"{name}: cannot decode image ({exc.msg.strip() if hasattr(exc, 'msg') else exc})") from exc
    if image is None:
        raise ImageError(f"{name}: not a readable image (corrupt, truncated or unknown format)")
    h, w = image.shape[:2]
    if h * w > MAX_PIXELS:
        raise ImageError(f"{name}: image is {w}x{h}, over the {MAX_PIXELS:,}-pixel limit")
    if min(h, w) < MIN_SIDE_PX:
        raise ImageError(f"{name}: image is {w}x{h}, too small to hold a face")
    return to_bgr8(image)


def load_image(path: str | os.PathLike[str]) -> npt.NDArray[np.uint8]:
    """Read an image file into ``(H, W, 3)`` uint8 BGR.

    Raises:
        ImageError: missing, unreadable, empty, corrupt, not an image, or an unusable size.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError as exc:
        raise ImageError(f"{p}: no such file") from exc
    except IsADirectoryError as exc:
        raise ImageError(f"{p}: is a directory") from exc
    except OSError as exc:
        raise ImageError(f"{p}: cannot read ({exc.strerror or exc})") from exc
    return decode_image(data, name=str(p))


def iter_image_paths(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Expand files and folders (recursively, sorted) into image file paths.

    Files named explicitly are yielded whatever their suffix (so that a bad one gets
    its own error); files found inside folders are filtered by image suffix.
    """
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for child in sorted(p.rglob("*")):
                if child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES:
                    yield child
        else:
            yield p


def save_image(path: str | os.PathLike[str], image: npt.NDArray[np.uint8], *, quality: int = 90) -> None:
    """Write a BGR image; the format follows the suffix (JPEG quality ``quality``).

    Raises:
        ImageError: the file could not be encoded or written.
    """
    import cv2

    p = Path(path)
    suffix = p.suffix.lower() or ".jpg"
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if suffix in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(suffix, image, params)
    if not ok:
        raise ImageError(f"{p}: cannot encode image as {suffix}")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(buf.tobytes())
    except OSError as exc:
        raise ImageError(f"{p}: cannot write ({exc.strerror or exc})") from exc
