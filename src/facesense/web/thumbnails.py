"""The small JPEGs the dashboard shows: face crops of events and gallery thumbnails.

* :func:`face_crop_jpeg`: a square crop of one face in a frame (events keep it, so
  an unknown face can be looked at and named later);
* :func:`thumbnail_from_crop`: the gallery's ``96 x 96`` thumbnail made from such a
  crop (when a named event becomes a sample).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from facesense.errors import ConfigError, ImageError

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["CROP_PX", "THUMBNAIL_PX", "face_crop_jpeg", "thumbnail_from_crop"]

CROP_PX = 128
CROP_MARGIN_RATIO = 0.25
CROP_JPEG_QUALITY = 88
THUMBNAIL_PX = 96
THUMBNAIL_JPEG_QUALITY = 85


def _encode_jpeg(image: npt.NDArray[np.uint8], quality: int) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageError(f"cannot encode a {image.shape[1]}x{image.shape[0]} image as JPEG")
    return bytes(buf.tobytes())


def face_crop_jpeg(image: npt.NDArray[np.uint8], xyxy: npt.ArrayLike, *, size_px: int = CROP_PX) -> bytes:
    """A square JPEG of one face (box grown to a square plus 25 % margin per side).

    Args:
        image: ``(H, W, 3)`` uint8 BGR.
        xyxy: ``(4,)`` the face box, pixels.
        size_px: side of the crop.

    Raises:
        ConfigError: the box is not finite or has no area.
        ImageError: the crop cannot be encoded.
    """
    from facesense.align import CropConfig, crop_faces
    from facesense.types import Faces

    box = np.asarray(xyxy, np.float32).reshape(1, 4)
    if not np.all(np.isfinite(box)) or box[0, 2] <= box[0, 0] or box[0, 3] <= box[0, 1]:
        raise ConfigError(f"cannot crop a face from the box {box[0].tolist()}")
    faces = Faces(xyxy=box, scores=np.ones(1, np.float32), landmarks=np.zeros((1, 5, 2), np.float32))
    crop = crop_faces(image, faces, CropConfig(size_px=size_px, margin_ratio=CROP_MARGIN_RATIO, margin_px=0.0, square=True))
    return _encode_jpeg(crop[0], CROP_JPEG_QUALITY)


def thumbnail_from_crop(jpeg: bytes) -> bytes:
    """A ``96 x 96`` JPEG thumbnail from a face crop JPEG (already square).

    Raises:
        ImageError: ``jpeg`` is not a readable image.
    """
    import cv2

    from facesense.imageio import decode_image

    image = decode_image(jpeg, name="face crop")
    small = np.asarray(cv2.resize(image, (THUMBNAIL_PX, THUMBNAIL_PX), interpolation=cv2.INTER_AREA), np.uint8)
    return _encode_jpeg(small, THUMBNAIL_JPEG_QUALITY)
