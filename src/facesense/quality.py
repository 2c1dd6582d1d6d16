"""The one face-quality measure: how much a face is worth as a recognition sample.

* :func:`sharpness`: the variance of the Laplacian of a face box at a fixed scale
  (grey, resized to ``SHARPNESS_SIZE_PX`` = 112 px square), larger is sharper. Enrollment
  turns away faces under its ``min_sharpness`` (:mod:`facesense.enroll`); the tracker's
  identity vote weights samples by :func:`face_quality`, which folds it in.
* :func:`face_quality`: ``score * size * sharpness`` mapped onto [0, 1].

Both read BGR uint8 images and pixel ``xyxy`` boxes (see :mod:`facesense.types`).
OpenCV is imported only when an image is measured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from facesense.errors import ConfigError

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.types import Faces

__all__ = [
    "QUALITY_REF_SHARPNESS",
    "QUALITY_REF_SIZE_PX",
    "QUALITY_SHARPNESS_FLOOR",
    "SHARPNESS_SIZE_PX",
    "face_quality",
    "sharpness",
]

SHARPNESS_SIZE_PX = 112
"""Side of the grey square a face box is resized to before :func:`sharpness` measures it,
so the number does not depend on the face's resolution."""

QUALITY_REF_SIZE_PX = 80.0
"""A face this many pixels on its shorter side counts as full size in :func:`face_quality`."""

QUALITY_REF_SHARPNESS = 32.0
"""The :func:`sharpness` that counts as fully sharp in :func:`face_quality`.

The tracker used to measure sharpness on its own 64 px grey crop, with 150 as full
sharpness. On the Hamilton clip's 154 MTCNN faces (every 3rd frame, 41-86 px) this
112 px measure is 0.20-0.26 times that one (quartiles), and 32 gives the closest
weights: 43 % of the faces count as fully sharp (42 % before) and the sharpness term
moves by 0.055 on average (correlation 0.90).
"""

QUALITY_SHARPNESS_FLOOR = 0.25
"""A fully blurred face still keeps this share of its weight."""


def _clipped_box(shape: tuple[int, ...], xyxy: npt.ArrayLike) -> tuple[int, int, int, int]:
    """``xyxy`` rounded outwards and clipped to the image, at least one pixel each way."""
    h, w = int(shape[0]), int(shape[1])
    box = np.asarray(xyxy, dtype=np.float64).reshape(-1)
    if box.shape != (4,) or not np.all(np.isfinite(box)):
        raise ConfigError(f"xyxy: expected 4 finite numbers, got {np.asarray(xyxy).tolist()}")
    x1 = int(np.clip(np.floor(box[0]), 0, w - 1))
    y1 = int(np.clip(np.floor(box[1]), 0, h - 1))
    x2 = int(np.clip(np.ceil(box[2]), x1 + 1, w))
    y2 = int(np.clip(np.ceil(box[3]), y1 + 1, h))
    return x1, y1, x2, y2


def sharpness(image: npt.NDArray[np.uint8], xyxy: npt.ArrayLike) -> float:
    """Variance of the Laplacian of a face box, at a fixed scale.

    The box (clipped to the image) is converted to grey and resized to
    ``SHARPNESS_SIZE_PX x SHARPNESS_SIZE_PX`` (area averaging when shrinking, bilinear
    when enlarging) first, so the number does not depend on the face's resolution.
    Sharp LFW faces score ~90 (median), high-resolution photos 300-1400; a Gaussian
    blur of sigma 2 px at this scale brings a face to ~17.

    Args:
        image: ``(H, W, 3)`` uint8 BGR, or ``(H, W)`` grey.
        xyxy: ``(4,)`` face box, pixels.

    Returns:
        The variance of ``cv2.Laplacian`` (CV_64F, 3x3); larger is sharper.

    Raises:
        ConfigError: ``xyxy`` is not four finite numbers.
    """
    import cv2

    x1, y1, x2, y2 = _clipped_box(image.shape, xyxy)
    patch = image[y1:y2, x1:x2]
    grey = cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY) if patch.ndim == 3 else patch
    size = (SHARPNESS_SIZE_PX, SHARPNESS_SIZE_PX)
    shrink = grey.shape[0] > SHARPNESS_SIZE_PX and grey.shape[1] > SHARPNESS_SIZE_PX
    grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def face_quality(
    image: npt.NDArray[np.uint8] | None,
    faces: Faces,
    *,
    ref_size_px: float = QUALITY_REF_SIZE_PX,
    ref_sharpness: float = QUALITY_REF_SHARPNESS,
) -> npt.NDArray[np.float32]:
    """How much each face is worth as a recognition sample, in [0, 1].

    ``score * size * sharp`` where ``score`` is the detector's confidence, ``size`` the
    shorter box side over ``ref_size_px`` (capped at 1) and ``sharp`` maps
    :func:`sharpness` onto [``QUALITY_SHARPNESS_FLOOR``, 1] (full at ``ref_sharpness``).
    Without an image the sharpness term is 1.

    Args:
        image: ``(H, W, 3)`` uint8 BGR, or ``None`` (no sharpness term).
        faces: the faces (boxes and scores are used).
        ref_size_px: shorter box side that counts as full size.
        ref_sharpness: :func:`sharpness` that counts as fully sharp.

    Returns:
        ``(N,)`` float32.
    """
    n = len(faces)
    if n == 0:
        return np.zeros((0,), np.float32)
    size = np.clip(faces.size_px / ref_size_px, 0.0, 1.0)
    score = np.clip(faces.scores, 0.0, 1.0)
    sharp = np.ones(n, np.float32)
    if image is not None:
        for i, box in enumerate(faces.xyxy):
            share = min(sharpness(image, box) / ref_sharpness, 1.0)
            sharp[i] = QUALITY_SHARPNESS_FLOOR + (1.0 - QUALITY_SHARPNESS_FLOOR) * share
    quality: npt.NDArray[np.float32] = np.asarray(score * size * sharp, dtype=np.float32)
    return quality
