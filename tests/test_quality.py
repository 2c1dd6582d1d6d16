"""The one face-quality measure: sharpness and face_quality."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facesense.errors import ConfigError
from facesense.quality import QUALITY_SHARPNESS_FLOOR, SHARPNESS_SIZE_PX, face_quality, sharpness
from facesense.types import Faces


def faces_at(boxes: list[tuple[float, float, float, float]], score: float = 0.99) -> Faces:
    xyxy = np.array(boxes, np.float32).reshape(-1, 4)
    return Faces(xyxy=xyxy, scores=np.full(len(xyxy), score, np.float32), landmarks=np.zeros((len(xyxy), 5, 2)))


def test_quality_prefers_large_sharp_confident_faces() -> None:
    rng = np.random.default_rng(1)
    image = np.full((400, 800, 3), 128, np.uint8)
    image[50:250, 50:250] = rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)  # sharp texture
    image[50:250, 450:650] = 128  # flat: blurry
    faces = faces_at([(50, 50, 250, 250), (450, 50, 650, 250), (50, 300, 80, 330)])
    q = face_quality(image, faces)
    assert q.dtype == np.float32 and q.shape == (3,)
    assert q[0] == pytest.approx(0.99, abs=0.01)
    assert q[1] == pytest.approx(0.99 * QUALITY_SHARPNESS_FLOOR, abs=0.01)  # no texture at all
    assert q[2] < 0.5 * q[0]  # 30 px face
    low_score = face_quality(image, faces_at([(50, 50, 250, 250)], score=0.5))
    assert low_score[0] == pytest.approx(q[0] * 0.5 / 0.99, rel=1e-3)
    assert face_quality(image, Faces.empty()).shape == (0,)
    # Without an image: score times size only.
    np.testing.assert_allclose(face_quality(None, faces), [0.99, 0.99, 0.99 * 30 / 80], rtol=1e-5)


def test_blur_lowers_sharpness_at_any_resolution(examples_dir: Path) -> None:
    image = cv2.imread(str(examples_dir / "obama.jpg"))
    assert image is not None
    h, w = image.shape[:2]
    box = (w * 0.3, h * 0.2, w * 0.7, h * 0.7)
    sharp = sharpness(image, box)
    blurred = sharpness(cv2.GaussianBlur(image, (0, 0), 4), box)
    assert blurred < 0.5 * sharp
    # The same face at half the resolution measures about the same: the box is resized
    # to SHARPNESS_SIZE_PX first (here from 200+ px, so both shrink).
    half = cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    assert min(box[2] - box[0], box[3] - box[1]) / 2 > SHARPNESS_SIZE_PX
    assert sharpness(half, [v / 2 for v in box]) == pytest.approx(sharp, rel=0.35)


def test_sharpness_clips_boxes_and_takes_grey_images() -> None:
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 255, (100, 100), dtype=np.uint8)
    inside = sharpness(grey, (0, 0, 100, 100))
    assert sharpness(grey, (-50, -50, 150, 150)) == pytest.approx(inside)
    assert sharpness(np.dstack([grey] * 3), (0, 0, 100, 100)) == pytest.approx(inside, rel=1e-6)
    with pytest.raises(ConfigError, match="4 finite numbers"):
        sharpness(grey, (0, 0, np.nan, 10))


def test_the_same_number_enrollment_has_always_used() -> None:
    # facesense.enroll's thresholds (DEFAULT_MIN_SHARPNESS = 20) were measured with this
    # definition: variance of a 3x3 CV_64F Laplacian of the grey box at 112 x 112.
    rng = np.random.default_rng(5)
    image = rng.integers(0, 255, (300, 300, 3), dtype=np.uint8)
    box = (40.2, 30.7, 250.0, 260.5)
    grey = cv2.cvtColor(image[30:261, 40:250], cv2.COLOR_BGR2GRAY)
    expected = cv2.Laplacian(cv2.resize(grey, (112, 112), interpolation=cv2.INTER_AREA), cv2.CV_64F).var()
    assert SHARPNESS_SIZE_PX == 112
    assert sharpness(image, box) == pytest.approx(float(expected))
