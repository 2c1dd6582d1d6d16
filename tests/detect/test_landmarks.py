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


def test_video_leaves_the_points_to_the_embedder_and_embeds_the_same(shared_cache: Path, examples_dir: Path) -> None:
    """In video only embedded faces get O-Net's points, and they embed as the photo path's faces do."""
    from facesense.analyzer import FaceAnalyzer
    from facesense.detect.landmarks import LandmarkEmbedder, landmark_stage, with_landmark_stage
    from facesense.embed import make_embedder
    from facesense.pipeline import Pipeline
    from facesense.types import Frame

    image = load_image(examples_dir / "two_people.jpg")
    video = make_detector(use="video", threads=2)
    eager = make_detector(use="video", threads=2, verify=False)
    stage = landmark_stage(video)
    assert stage is video and isinstance(stage, OnetLandmarkDetector) and stage.at_embed
    assert landmark_stage(make_detector(threads=2)) is None  # photos: the detector places them
    own = video.detect(image)
    np.testing.assert_array_equal(own.landmarks, make_detector("yunet", use="video", landmark_passes=0).detect(image).landmarks)
    embedder = make_embedder()
    wrapped = with_landmark_stage(video, embedder)
    assert isinstance(wrapped, LandmarkEmbedder) and with_landmark_stage(video, wrapped) is wrapped
    assert with_landmark_stage(make_detector(threads=2), embedder) is embedder and with_landmark_stage(video, None) is None
    assert wrapped.model_id == embedder.model_id and wrapped.dim == embedder.dim
    refined = wrapped.embed(image, own)
    expected = embedder.embed(image, stage.refine(image, own))
    np.testing.assert_allclose(refined.embeddings, expected.embeddings, atol=1e-5)
    np.testing.assert_allclose(refined.landmarks, expected.landmarks)
    assert not np.allclose(refined.landmarks, own.landmarks)
    # the refined points equal the photo path's (boxes from the same shrunk frame)
    assert isinstance(eager, OnetLandmarkDetector)
    np.testing.assert_allclose(refined.landmarks, OnetLandmarkDetector(eager.inner, threads=2).detect(image).landmarks, atol=1e-3)
    unrefined = embedder.embed(image, own).embeddings
    assert unrefined is not None and refined.embeddings is not None
    assert (np.sum(unrefined * refined.embeddings, axis=1) < 0.9999).all()  # the points do change the embedding
    # the pipeline and the analyzer wrap their embedder; a camera's view shares the stage's session
    assert isinstance(Pipeline([Frame(image=image, index=0, timestamp=0.0, source_id="t")], detector=video, embedder=embedder).embedder, LandmarkEmbedder)
    assert isinstance(FaceAnalyzer(use="video", embedder=embedder).embedder, LandmarkEmbedder)
    assert FaceAnalyzer(embedder=embedder).embedder is embedder


def test_tilted_faces_are_re_placed_upright(shared_cache: Path, examples_dir: Path) -> None:
    """O-Net on a face turned by 30-180 degrees places the points it places on the upright face."""
    import cv2

    from facesense.geometry import roll_degrees

    image = load_image(examples_dir / "obama.jpg")
    own = make_detector("yunet", verify=False, landmark_passes=0, threads=2).detect(image)
    session = load_onet(2, "O-Net (test)")
    upright = onet_landmarks(session, image, own.landmarks, 2)
    h, w = image.shape[:2]
    for angle in (30.0, 90.0, -90.0, 180.0):
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        turned = cv2.warpAffine(image, matrix, (w, h))
        start = own.landmarks @ matrix[:, :2].T.astype(np.float32) + matrix[:, 2].astype(np.float32)
        expected = upright @ matrix[:, :2].T + matrix[:, 2]
        assert abs(abs(float(roll_degrees(start)[0])) - abs(angle)) < 3
        got = onet_landmarks(session, turned, start, 2)
        eye = np.linalg.norm(expected[0, 0] - expected[0, 1])
        assert np.linalg.norm(got - expected, axis=2).mean() / eye < 0.03, angle  # measured 0.008
