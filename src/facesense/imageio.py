"""Reading images from files and bytes into the BGR uint8 arrays facesense uses.

Every read checks the image's size from its header first (with Pillow, which parses
only the header) and refuses images over :data:`MAX_PIXELS` before a single pixel is
decoded: a few-megabyte PNG can declare 30000 x 30000 pixels and would otherwise take
gigabytes to decode (a decompression bomb). OpenCV then does the decoding, so the
colour order is BGR throughout.
"""

from __future__ import annotations

import io
import logging
import os
import re
import struct
import threading
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from facesense.errors import ImageError

if TYPE_CHECKING:
    import numpy.typing as npt

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "MIN_SIDE_PX",
    "check_image_size",
    "decode_image",
    "iter_image_paths",
    "load_image",
    "read_image_size",
    "save_image",
    "to_bgr8",
]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"})
MAX_PIXELS = 100_000_000  # a 10000x10000 image; larger decodes are refused
MIN_SIDE_PX = 8

# warnings.catch_warnings swaps process-wide state; two threads doing it at once can
# leave a filter behind, so facesense's own header reads take turns.
_PILLOW_LOCK = threading.Lock()


def to_bgr8(image: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
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


def read_image_size(fp: IO[bytes], *, name: str = "<bytes>") -> tuple[int, int]:
    """The ``(width, height)`` an encoded image declares in its header, decoding no pixels.

    Reads only as much of ``fp`` as the header takes (Pillow's ``Image.open``). The
    file position is left wherever the header ended.

    Args:
        fp: a seekable binary file or buffer holding the encoded image.
        name: how to call the image in messages.

    Raises:
        ImageError: not an image format Pillow knows, or a damaged header.
    """
    from PIL import Image, UnidentifiedImageError

    # Pillow's own bomb guard warns above ~89 Mpx and fails above twice that; facesense
    # applies MAX_PIXELS itself (check_image_size), so the warning is silenced here and
    # Pillow's error is reported in facesense's words.
    with _PILLOW_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(fp) as im:
                width, height = im.size
        except Image.DecompressionBombError as exc:
            raise ImageError(_bomb_message(name, str(exc))) from exc
        except UnidentifiedImageError as exc:
            raise ImageError(f"{name}: not a readable image (corrupt, truncated or unknown format)") from exc
        except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
            raise ImageError(f"{name}: not a readable image (damaged header: {exc})") from exc
    return int(width), int(height)


def _bomb_message(name: str, pillow_message: str) -> str:
    """Say why Pillow refused a header, in facesense's words (Pillow names the pixel count only)."""
    found = re.search(r"\((\d+) pixels\)", pillow_message)
    if found is None:
        return f"{name}: image is over the {MAX_PIXELS:,}-pixel limit"
    pixels = int(found[1])
    if pixels > MAX_PIXELS:
        return f"{name}: image has {pixels:,} pixels, over the {MAX_PIXELS:,}-pixel limit"
    # Only when the application lowered PIL.Image.MAX_IMAGE_PIXELS below facesense's limit.
    return f"{name}: image has {pixels:,} pixels, over Pillow's limit (PIL.Image.MAX_IMAGE_PIXELS)"


def check_image_size(width: int, height: int, *, name: str = "<bytes>") -> None:
    """Refuse an image whose pixel count or sides facesense cannot use.

    Raises:
        ImageError: over :data:`MAX_PIXELS` pixels, or a side under :data:`MIN_SIDE_PX`.
    """
    if width * height > MAX_PIXELS:
        raise ImageError(f"{name}: image is {width}x{height}, over the {MAX_PIXELS:,}-pixel limit")
    if min(width, height) < MIN_SIDE_PX:
        raise ImageError(f"{name}: image is {width}x{height}, too small to hold a face")


def decode_image(data: bytes, *, name: str = "<bytes>") -> npt.NDArray[np.uint8]:
    """Decode encoded image bytes (JPEG, PNG, ...) into ``(H, W, 3)`` uint8 BGR.

    The size is checked from the header before decoding (see the module docstring);
    formats Pillow cannot parse (OpenEXR, Radiance HDR) are refused for that reason.

    Raises:
        ImageError: empty, not an image, corrupt, too small or too large.
    """
    if not data:
        raise ImageError(f"{name}: empty file")
    width, height = read_image_size(io.BytesIO(data), name=name)
    check_image_size(width, height, name=name)
    return _decode_checked(data, name=name)


def _decode_checked(data: bytes, *, name: str) -> npt.NDArray[np.uint8]:
    """OpenCV's decode of bytes whose header has passed :func:`check_image_size`."""
    import cv2

    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageError(f"{name}: cannot decode image ({getattr(exc, 'msg', str(exc)).strip()})") from exc
    if image is None:
        raise ImageError(f"{name}: not a readable image (corrupt, truncated or unknown format)")
    h, w = image.shape[:2]
    check_image_size(w, h, name=name)  # a header Pillow and OpenCV read differently
    return to_bgr8(image)


def load_image(path: str | os.PathLike[str]) -> npt.NDArray[np.uint8]:
    """Read an image file into ``(H, W, 3)`` uint8 BGR.

    Only the header is read before the size check, so neither a huge image nor a
    large non-image file (a video passed by mistake) is read into memory.

    Raises:
        ImageError: missing, unreadable, empty, corrupt, not an image, or an unusable size.
    """
    p = Path(path)
    name = str(p)
    try:
        with p.open("rb") as fp:
            if not fp.read(1):
                raise ImageError(f"{p}: empty file")
            fp.seek(0)
            width, height = read_image_size(fp, name=name)
            check_image_size(width, height, name=name)
            fp.seek(0)
            data = fp.read()
    except FileNotFoundError as exc:
        raise ImageError(f"{p}: no such file") from exc
    except IsADirectoryError as exc:
        raise ImageError(f"{p}: is a directory") from exc
    except OSError as exc:
        raise ImageError(f"{p}: cannot read ({exc.strerror or exc})") from exc
    return _decode_checked(data, name=name)


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
