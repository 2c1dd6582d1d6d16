"""VerifiedDetector: O-Net's second opinion drops animal faces and keeps human ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from facesense.detect import Detector, make_detector
from facesense.detect.verify import (
    DEFAULT_MIN_CHECKED_PX,
    DEFAULT_MIN_ONET_SCORE,
    VerifiedDetector,
    landmark_boxes,
)
from facesense.errors import ConfigError, ImageError
from facesense.imageio import load_image
from facesense.types import Faces

# Animal photos the inner detector reports a face on (score >= its threshold) and the
# check drops (O-Net on the landmark box: 0.003-0.67 < 0.7).
ANIMAL_FACES = {
    "yunet": [
        "dog_aipnd_Poodle_07927.jpg",
        "dog_stargan_src-dog-pixabay_dog_000321.jpg",
        "other_monkeys_training-n4-n4127.jpg",
    ],
    "mtcnn": ["other_monkeys_training-n7-n7134.jpg", "other_natures_mammals-tiger-2.jpg"],
}
HUMAN_FACES = [
    ("two_people.jpg", 2),
    ("obama.jpg", 1),
    ("biden.jpg", 1),
    ("knn_examples/test/kit_with_rose.jpg", 2),
    ("knn_examples/test/johnsnow_test1.jpg", 1),
    ("knn_examples/test/alex_lacamoire1.jpg", 1),
]


class FakeDetector:
    """Returns the same faces for every image and counts its calls."""

    def __init__(self, faces: Faces) -> None:
        self.faces = faces
        self.calls = 0

    def detect(self, image: npt.NDArray[np.uint8]) -> Faces:
        self.calls += 1
        return self.faces


@pytest.fixture(scope="module")
def inner() -> dict[str, Detector]:
    return {kind: make_detector(kind) for kind in ("yunet", "mtcnn")}


@pytest.fixture(scope="module")
def verified(inner: dict[str, Detector]) -> dict[str, VerifiedDetector]:
    return {kind: VerifiedDetector(d) for kind, d in inner.items()}


def test_is_a_detector() -> None:
    detector = VerifiedDetector(FakeDetector(Faces.empty()))
    assert isinstance(detector, Detector)
    assert detector.min_onet_score == DEFAULT_MIN_ONET_SCORE
    assert detector.min_checked_px == DEFAULT_MIN_CHECKED_PX
    assert "VerifiedDetector(" in repr(detector)


def test_no_faces_loads_no_model() -> None:
    fake = FakeDetector(Faces.empty())
    detector = VerifiedDetector(fake)
    out = detector.detect(np.zeros((64, 64, 3), np.uint8))
    assert len(out) == 0
    assert fake.calls == 1
    assert detector._onet is None  # lazy: nothing to check, nothing loaded


def test_small_faces_pass_unchecked() -> None:
    small = Faces(
        xyxy=np.array([[10, 10, 30, 30]], np.float32),
        scores=np.array([0.9], np.float32),
        landmarks=np.full((1, 5, 2), 20.0, np.float32),
    )
    detector = VerifiedDetector(FakeDetector(small), min_checked_px=40)
    out = detector.detect(np.zeros((64, 64, 3), np.uint8))
    assert len(out) == 1
    assert detector._onet is None


def test_black_image_face_dropped() -> None:
    # a big "face" on a black image: O-Net says no
    face = Faces(
        xyxy=np.array([[20, 20, 120, 120]], np.float32),
        scores=np.array([0.9], np.float32),
        landmarks=np.array([[[50, 55], [90, 55], [70, 75], [55, 95], [85, 95]]], np.float32),
    )
    out = VerifiedDetector(FakeDetector(face)).detect(np.zeros((160, 160, 3), np.uint8))
    assert len(out) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_onet_score": 1.5}, "min_onet_score"),
        ({"min_onet_score": True}, "min_onet_score"),
        ({"min_checked_px": -1}, "min_checked_px"),
        ({"threads": 0}, "threads"),
    ],
)
def test_bad_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        VerifiedDetector(FakeDetector(Faces.empty()), **kwargs)  # type: ignore[arg-type]


def test_not_a_detector() -> None:
    with pytest.raises(ConfigError, match="detector"):
        VerifiedDetector(object())  # type: ignore[arg-type]


def test_not_an_image() -> None:
    face = Faces(
        xyxy=np.array([[0, 0, 50, 50]], np.float32),
        scores=np.array([0.9], np.float32),
        landmarks=np.full((1, 5, 2), 25.0, np.float32),
    )
    with pytest.raises(ImageError):
        VerifiedDetector(FakeDetector(face)).detect(np.zeros((4, 4, 7), np.uint8))


@pytest.mark.parametrize(
    ("landmarks", "expected"),
    [
        # eyes at y=0, mouth at y=10: s = 10, centre = mean + (-1.70, -2.35), side 22.2
        (
            [[[-5, 0], [5, 0], [0, 4], [-4, 10], [4, 10]]],
            [[-1.70 - 11.1, 4.8 - 2.35 - 11.1, -1.70 + 11.1, 4.8 - 2.35 + 11.1]],
        ),
    ],
)
def test_landmark_boxes(landmarks: list[list[list[float]]], expected: list[list[float]]) -> None:
    np.testing.assert_allclose(landmark_boxes(np.array(landmarks, np.float32)), expected, atol=0.05)


@pytest.mark.parametrize(("kind", "name"), [(k, n) for k, names in ANIMAL_FACES.items() for n in names])
def test_animal_faces_dropped(
    data_dir: Path, inner: dict[str, Detector], verified: dict[str, VerifiedDetector], kind: str, name: str
) -> None:
    image = load_image(data_dir / "animals" / name)
    assert len(inner[kind].detect(image)) >= 1  # the inner detector is fooled
    assert len(verified[kind].detect(image)) == 0


@pytest.mark.parametrize("kind", ["yunet", "mtcnn"])
@pytest.mark.parametrize(("name", "count"), HUMAN_FACES)
def test_human_faces_kept_with_every_field(
    examples_dir: Path,
    inner: dict[str, Detector],
    verified: dict[str, VerifiedDetector],
    kind: str,
    name: str,
    count: int,
) -> None:
    image = load_image(examples_dir / name)
    before = inner[kind].detect(image)
    after = verified[kind].detect(image)
    assert len(before) == count
    assert len(after) == count
    np.testing.assert_array_equal(after.xyxy, before.xyxy)
    np.testing.assert_array_equal(after.scores, before.scores)
    np.testing.assert_array_equal(after.landmarks, before.landmarks)


def test_other_fields_kept(examples_dir: Path) -> None:
    image = load_image(examples_dir / "obama.jpg")
    faces = make_detector("yunet").detect(image)
    faces = faces.replace(track_ids=np.arange(len(faces)), names=tuple("x" for _ in range(len(faces))))
    out = VerifiedDetector(FakeDetector(faces)).detect(image)
    assert len(out) == len(faces) == 1
    assert out.track_ids is not None and out.track_ids.tolist() == [0]
    assert out.names == ("x",)
