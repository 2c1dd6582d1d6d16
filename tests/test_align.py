"""Crop geometry: margins, similarity transforms, crops on synthetic images and a real face."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facesense.align import (
    ARCFACE_TEMPLATE_112,
    CropConfig,
    CropMethod,
    crop_faces,
    expand_boxes,
    similarity_transform,
)
from facesense.errors import ConfigError
from facesense.types import Faces


@pytest.mark.parametrize(
    ("box", "ratio", "px", "square", "expected"),
    [
        ([10, 20, 30, 60], 0.0, 0.0, False, [10, 20, 30, 60]),
        ([10, 20, 30, 60], 0.0, 16.0, False, [-6, 4, 46, 76]),
        ([10, 20, 30, 60], 0.1, 0.0, False, [6, 16, 34, 64]),  # 10% of the longer side (40)
        ([10, 20, 30, 60], 0.0, 0.0, True, [0, 20, 40, 60]),
        ([10, 20, 30, 60], 0.25, 2.0, True, [-12, 8, 52, 72]),
    ],
)
def test_expand_boxes(box, ratio, px, square, expected) -> None:
    out = expand_boxes([box], margin_ratio=ratio, margin_px=px, square=square)
    np.testing.assert_allclose(out[0], expected)


@pytest.mark.parametrize("angle_deg", [0.0, 17.0, -40.0, 90.0])
@pytest.mark.parametrize("scale", [0.5, 1.0, 2.5])
def test_similarity_transform_recovers_known_transform(angle_deg: float, scale: float) -> None:
    a = np.deg2rad(angle_deg)
    m = np.array([[scale * np.cos(a), -scale * np.sin(a), 12.0], [scale * np.sin(a), scale * np.cos(a), -7.0]])
    src = ARCFACE_TEMPLATE_112
    dst = src @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(similarity_transform(src, dst), m, atol=1e-9)


def test_similarity_transform_rejects_bad_shapes() -> None:
    with pytest.raises(ConfigError, match="point sets"):
        similarity_transform(np.zeros((5, 2)), np.zeros((4, 2)))


def _face(xyxy, landmarks=None) -> Faces:
    lm = np.zeros((1, 5, 2)) if landmarks is None else np.asarray(landmarks)[None]
    return Faces(xyxy=[xyxy], scores=[1.0], landmarks=lm)


def test_box_crop_takes_the_box_and_margin() -> None:
    img = np.zeros((100, 100, 3), np.uint8)
    img[20:60, 30:70] = 255  # a white square exactly where the box is
    crops = crop_faces(img, _face([30, 20, 70, 60]), CropConfig(margin_px=0, size_px=32))
    assert crops.shape == (1, 32, 32, 3)
    assert crops.min() == 255
    with_margin = crop_faces(img, _face([30, 20, 70, 60]), CropConfig(margin_px=10, size_px=60))
    assert with_margin[0, 0, 0, 0] == 0  # margin shows the black surround
    assert with_margin[0, 30, 30, 0] == 255


def test_box_crop_at_border_is_clipped_not_failing() -> None:
    img = np.full((50, 50, 3), 7, np.uint8)
    crops = crop_faces(img, _face([-20, -20, 10, 10]), CropConfig(size_px=40))
    assert crops.shape == (1, 40, 40, 3)
    assert (crops == 7).all()


def test_warp_puts_landmarks_on_the_template() -> None:
    img = np.zeros((200, 200, 3), np.uint8)
    pts = ARCFACE_TEMPLATE_112 * 1.5 + [20, 30]  # the template, scaled and moved
    for x, y in pts:
        img[round(y) - 1 : round(y) + 2, round(x) - 1 : round(x) + 2] = 255
    crop = crop_faces(img, _face([0, 0, 200, 200], pts), CropConfig(method=CropMethod.WARP, size_px=112))[0]
    for x, y in ARCFACE_TEMPLATE_112:
        assert crop[round(y), round(x), 0] > 100


def test_no_faces_gives_empty_batch() -> None:
    out = crop_faces(np.zeros((10, 10, 3), np.uint8), Faces.empty())
    assert out.shape == (0, 160, 160, 3)


@pytest.mark.parametrize(
    "kwargs", [{"size_px": 8}, {"margin_ratio": -0.1}, {"margin_px": -1}, {"warp_scale": 5.0}, {"method": "nope"}]
)
def test_config_validation(kwargs) -> None:
    with pytest.raises(ConfigError):
        CropConfig(**kwargs)


def test_crop_method_typo_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match="did you mean 'warp'"):
        CropConfig(method="wrap")


def test_tag_names_the_preprocessing() -> None:
    assert CropConfig(margin_px=16).tag != CropConfig(margin_px=0, margin_ratio=0.1).tag


# ----------------------------------------------------------------------------- tilted faces


@pytest.fixture(scope="module")
def obama_upright(examples_dir: Path) -> tuple[np.ndarray, Faces]:
    import cv2

    from facesense.detect import make_detector

    image = cv2.imread(str(examples_dir / "obama.jpg"))
    if image is None:
        pytest.skip("obama.jpg is missing")
    faces = make_detector("mtcnn", verify=False).detect(image)
    assert len(faces) == 1
    return image, faces


def _turned(image: np.ndarray, faces: Faces, angle_deg: float) -> tuple[np.ndarray, Faces]:
    """The image turned by ``angle_deg``, and the face in it as the rotating detector reports
    it: landmarks mapped, box = the mapped centre with the upright box's own size."""
    from facesense.geometry import rotate_image, transform_points

    turned, matrix = rotate_image(image, angle_deg)
    box = faces.xyxy[0].astype(np.float64)
    centre = transform_points(((box[:2] + box[2:]) / 2)[None], matrix)[0]
    half = (box[2:] - box[:2]) / 2
    if round(angle_deg / 90.0) % 2:  # a quarter turn: the detector's box is the mapped one
        half = half[::-1]
    return turned, Faces(
        xyxy=np.concatenate([centre - half, centre + half])[None].astype(np.float32),
        scores=faces.scores,
        landmarks=transform_points(faces.landmarks[0], matrix)[None].astype(np.float32),
    )


def _plain_box_crop(image: np.ndarray, faces: Faces) -> np.ndarray:
    """The axis-aligned box crop (default margin), whatever the face's roll."""
    import cv2

    box = expand_boxes(faces.xyxy, margin_ratio=0.0, margin_px=16.0)[0]
    height, width = image.shape[:2]
    x1, y1 = max(int(np.floor(box[0])), 0), max(int(np.floor(box[1])), 0)
    x2, y2 = min(int(np.ceil(box[2])), width), min(int(np.ceil(box[3])), height)
    return np.asarray(cv2.resize(image[y1:y2, x1:x2], (160, 160), interpolation=cv2.INTER_AREA))


@pytest.mark.parametrize("angle", [30.0, -60.0, 90.0, -90.0, 135.0, 180.0])
def test_box_crop_of_a_tilted_face_is_upright(obama_upright: tuple[np.ndarray, Faces], angle: float) -> None:
    image, faces = obama_upright
    upright = crop_faces(image, faces)[0].astype(np.float64)
    turned, turned_faces = _turned(image, faces, angle)
    error = np.mean(np.abs(crop_faces(turned, turned_faces)[0].astype(np.float64) - upright))
    # The same face, resampled once more: close to the upright crop, pixel for pixel,
    # unlike the axis-aligned box around the tilted face.
    assert error < 8.0
    assert np.mean(np.abs(_plain_box_crop(turned, turned_faces).astype(np.float64) - upright)) > 3 * error


def test_box_crop_below_the_upright_roll_is_the_plain_box(obama_upright: tuple[np.ndarray, Faces]) -> None:
    from facesense.align import UPRIGHT_ROLL_DEG
    from facesense.geometry import roll_degrees

    image, faces = obama_upright
    turned, turned_faces = _turned(image, faces, UPRIGHT_ROLL_DEG - 5)
    assert abs(float(roll_degrees(turned_faces.landmarks)[0])) < UPRIGHT_ROLL_DEG
    np.testing.assert_array_equal(crop_faces(turned, turned_faces)[0], _plain_box_crop(turned, turned_faces))
