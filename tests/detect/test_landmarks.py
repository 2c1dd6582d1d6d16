"""The O-Net landmark stage: YuNet's points re-placed the way MTCNN places them, on real images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from facesense.detect import OnetLandmarkDetector, VerifiedDetector, YuNetDetector, make_detector
from facesense.detect.landmarks import landmark_boxes, load_onet, onet_landmarks, onet_outputs
from facesense.detect.rotate import RotatingDetector
from facesense.errors import ConfigError
from facesense.eval.lfw import select_central_face
from facesense.imageio import load_image


def _central_marks(detector: object, images: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
    out = np.full((len(images), 5, 2), np.nan, np.float32)
    for i, image in enumerate(images):
        faces = detector.detect(image)  # type: ignore[attr-defined]
        j = select_central_face(faces, (image.shape[1], image.shape[0]))
        if j is not None:
            out[i] = faces.landmarks[j]
    return out


@pytest.fixture(scope="module")
def lfw_images(lfw_dir: Path) -> list[npt.NDArray[np.uint8]]:
    paths = sorted(lfw_dir.glob("*/*.jpg"))[::97][:40]
    if len(paths) < 20:
        pytest.skip("too few LFW images")
    return [load_image(p) for p in paths]


def test_onet_passes_bring_yunet_landmarks_to_mtcnn_ones(shared_cache: Path, lfw_images: list[npt.NDArray[np.uint8]]) -> None:
    reference = _central_marks(make_detector("mtcnn", verify=False, threads=2), lfw_images)
    eye = np.linalg.norm(reference[:, 0] - reference[:, 1], axis=1)
    errors = {}
    for passes in (0, 1, 2):
        marks = _central_marks(make_detector("yunet", verify=False, threads=2, landmark_passes=passes), lfw_images)
        errors[passes] = float(np.nanmedian(np.linalg.norm(marks - reference, axis=2).mean(axis=1) / eye))
    # measured on 300 LFW images: 0.098 (YuNet's own), 0.026 (one pass)
    assert errors[0] > 0.06
    assert errors[1] < 0.04
    assert errors[2] < 0.04
    assert errors[2] < errors[0] / 2


def test_landmark_stage_keeps_boxes_and_scores(shared_cache: Path, examples_dir: Path) -> None:
    image = load_image(examples_dir / "two_people.jpg")
    own = make_detector("yunet", verify=False, threads=2, landmark_passes=0).detect(image)
    refined = make_detector("yunet", verify=False, threads=2, landmark_passes=2).detect(image)
    assert len(own) == len(refined) == 2
    np.testing.assert_array_equal(own.xyxy, refined.xyxy)
    np.testing.assert_array_equal(own.scores, refined.scores)
    assert not np.allclose(own.landmarks, refined.landmarks)
    # every point stays inside its face's box, in the same order (left eye left of right eye)
    for box, marks in zip(refined.xyxy, refined.landmarks, strict=True):
        assert (marks[:, 0] >= box[0] - 2).all() and (marks[:, 0] <= box[2] + 2).all()
        assert (marks[:, 1] >= box[1] - 2).all() and (marks[:, 1] <= box[3] + 2).all()
        assert marks[0, 0] < marks[1, 0] and marks[3, 0] < marks[4, 0]
        assert marks[:2, 1].max() < marks[2, 1] < marks[3:, 1].min()


def test_onet_outputs_score_faces_above_background(shared_cache: Path, examples_dir: Path) -> None:
    image = load_image(examples_dir / "obama.jpg")
    faces = make_detector("yunet", verify=False, threads=2, landmark_passes=0).detect(image)
    session = load_onet(2, "O-Net (test)")
    background = np.array([[0, 0, 60, 60]], np.float32)
    probs, points = onet_outputs(session, image, np.concatenate([landmark_boxes(faces.landmarks[:1]), background]))
    assert probs.shape == (2,) and points.shape == (2, 5, 2)
    assert probs[0] > 0.95 > 0.1 > probs[1]


def test_zero_passes_and_no_faces_change_nothing(shared_cache: Path, examples_dir: Path) -> None:
    image = load_image(examples_dir / "obama.jpg")
    session = load_onet(1, "O-Net (test)")
    marks = np.random.default_rng(0).uniform(100, 200, (3, 5, 2)).astype(np.float32)
    np.testing.assert_array_equal(onet_landmarks(session, image, marks, 0), marks)
    assert onet_landmarks(session, image, np.zeros((0, 5, 2), np.float32), 2).shape == (0, 5, 2)


@pytest.mark.parametrize("passes", [-1, 5, True, 1.0, "2"])
def test_landmark_passes_is_validated(passes: object) -> None:
    with pytest.raises(ConfigError, match="landmark_passes"):
        make_detector("yunet", landmark_passes=passes)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="landmark_passes"):
        OnetLandmarkDetector(YuNetDetector(), passes=0 if passes == -1 else passes)  # type: ignore[arg-type]


def test_factory_puts_the_stage_outside_the_check() -> None:
    detector = make_detector("yunet")
    assert isinstance(detector, OnetLandmarkDetector) and detector.passes == 2
    assert isinstance(detector.inner, VerifiedDetector) and isinstance(detector.inner.inner, YuNetDetector)
    assert detector.config is detector.inner.inner.config
    assert isinstance(make_detector("mtcnn"), VerifiedDetector)  # MTCNN's own points are O-Net's already
    assert isinstance(make_detector("yunet", landmark_passes=0), VerifiedDetector)
    rotating = make_detector("yunet", use="video", rotations=True)
    assert isinstance(rotating, RotatingDetector) and isinstance(rotating.inner, OnetLandmarkDetector)
    view = rotating.stream().inner
    assert isinstance(view, OnetLandmarkDetector) and view.inner is not detector.inner
    assert view._onet is rotating.inner._onet  # one O-Net session for every camera


def test_check_sees_the_detectors_own_points(shared_cache: Path, examples_dir: Path) -> None:
    """The non-face check was fitted on YuNet's own points: the stage must not change its verdicts."""
    image = load_image(examples_dir / "two_people.jpg")
    staged = make_detector("yunet", threads=2)
    assert isinstance(staged, OnetLandmarkDetector)
    seen: list[np.ndarray] = []
    check = staged.inner
    assert isinstance(check, VerifiedDetector)
    original = check.human

    def spy(img: np.ndarray, faces: object) -> np.ndarray:
        seen.append(faces.landmarks.copy())  # type: ignore[attr-defined]
        return original(img, faces)  # type: ignore[arg-type]

    check.human = spy  # type: ignore[method-assign]
    faces = staged.detect(image)
    own = make_detector("yunet", verify=False, threads=2, landmark_passes=0).detect(image)
    assert len(faces) == 2 and len(seen) == 1
    np.testing.assert_array_equal(seen[0], own.landmarks)
    assert not np.allclose(faces.landmarks, own.landmarks)
