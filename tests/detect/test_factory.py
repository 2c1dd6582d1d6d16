"""make_detector and the one table of detector defaults."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facesense.analyzer import FaceAnalyzer
from facesense.detect import (
    DEFAULT_DETECTOR,
    DEFAULTS,
    LANDMARK_PASSES,
    Detector,
    DetectorKind,
    DetectorUse,
    MTCNNConfig,
    MTCNNDetector,
    OnetLandmarkDetector,
    VerifiedDetector,
    YuNetConfig,
    YuNetDetector,
    make_detector,
)
from facesense.errors import ConfigError
from facesense.imageio import load_image


@pytest.mark.parametrize("use", list(DetectorUse))
def test_defaults_come_from_the_table(use: DetectorUse) -> None:
    detector = make_detector(use=use)
    assert isinstance(detector, Detector)
    # YuNet, its points re-placed by O-Net around the non-face check (on for photos and
    # video; there its verdicts are remembered), which sees YuNet's own points.
    assert isinstance(detector, OnetLandmarkDetector) and detector.passes == LANDMARK_PASSES[DetectorKind.YUNET] == 2
    assert detector.at_embed == DEFAULTS[use].landmarks_at_embed == (use is DetectorUse.VIDEO)
    check = detector.inner
    assert isinstance(check, VerifiedDetector) and DEFAULTS[use].verify
    assert check.memory_calls == (30 if use is DetectorUse.VIDEO else 0)
    assert isinstance(check.inner, YuNetDetector)
    assert detector.config.min_face_px == DEFAULTS[use].min_face_px
    assert make_detector(use=use.value).config == detector.config
    mtcnn = make_detector("mtcnn", use=use, verify=False)  # MTCNN is one flag away, with its own points
    assert isinstance(mtcnn, MTCNNDetector) and mtcnn.config.min_face_px == DEFAULTS[use].min_face_px


def test_the_table_has_the_measured_values() -> None:
    """Photos from 20 px (the library and `detect`); streams from 40 px (watch, serve, bench)."""
    assert DEFAULTS["image"].min_face_px == 20.0
    assert DEFAULTS["video"].min_face_px == 40.0
    assert MTCNNConfig().min_face_px == YuNetConfig().min_face_px == DEFAULTS[DetectorUse.IMAGE].min_face_px
    assert make_detector().config == YuNetConfig()
    # YuNet since issue 14: AP 0.829 against MTCNN's 0.718, LFW 99.60% with O-Net's points
    assert DEFAULT_DETECTOR is DetectorKind.YUNET
    assert LANDMARK_PASSES == {DetectorKind.YUNET: 2, DetectorKind.MTCNN: 0}
    assert DEFAULTS["image"].verify and DEFAULTS["video"].verify


def test_explicit_settings_win() -> None:
    detector = make_detector(DetectorKind.MTCNN, use="video", min_face_px=60, threads=2, thresholds=(0.5, 0.6, 0.7))
    assert detector.config == MTCNNConfig(min_face_px=60, threads=2, thresholds=(0.5, 0.6, 0.7))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: make_detector("mtcn"), r"unknown detector 'mtcn' \(did you mean 'mtcnn'\?\); choose one of mtcnn"),
        (lambda: make_detector("retinaface"), "unknown detector 'retinaface'; choose one of mtcnn"),
        (lambda: make_detector(use="vidoe"), "unknown detector use 'vidoe' .did you mean 'video'"),
        (lambda: make_detector("mtcnn", threshold=(0.5, 0.5, 0.5)), "unknown mtcnn option 'threshold' .did you mean 'thresholds'"),
        (lambda: make_detector("yunet", score_treshold=0.5), "unknown yunet option 'score_treshold' .did you mean 'score_threshold'"),
        (lambda: make_detector("mtcnn", min_face_px=5), "min_face_px must be >= 12"),
    ],
)
def test_bad_choices_are_config_errors(call, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call()


def test_analyzer_builds_its_detector_with_the_factory() -> None:
    assert FaceAnalyzer().detector.config == make_detector().config  # type: ignore[attr-defined]
    assert FaceAnalyzer(use="video").detector.config.min_face_px == DEFAULTS["video"].min_face_px  # type: ignore[attr-defined]
    assert FaceAnalyzer(min_face_px=30).detector.config.min_face_px == 30  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="configure the default detector"):
        FaceAnalyzer(detector=make_detector(), min_face_px=30)


def test_video_defaults_still_find_the_two_people(examples_dir: Path) -> None:
    """Both faces in two_people.jpg are well above 40 px: the stream defaults find them too."""
    image = load_image(examples_dir / "two_people.jpg")
    photo = make_detector(threads=2).detect(image)
    streams = make_detector(use="video", threads=2)  # YuNet sees the frame shrunk
    assert isinstance(streams, OnetLandmarkDetector) and streams.at_embed
    own = streams.detect(image)  # video: YuNet's own points; O-Net's for the faces embedded
    video = streams.refine(image, own)
    np.testing.assert_array_equal(video.xyxy, own.xyxy)
    assert len(photo) == len(video) == 2
    left_first = np.argsort(photo.xyxy[:, 0]), np.argsort(video.xyxy[:, 0])
    size = photo.size_px[left_first[0]][:, None]
    assert (np.abs(video.xyxy[left_first[1]] - photo.xyxy[left_first[0]]) <= 0.1 * size).all()
    eyes = np.linalg.norm(photo.landmarks[:, 0] - photo.landmarks[:, 1], axis=1)[left_first[0]]
    moved = np.linalg.norm(video.landmarks[left_first[1]] - photo.landmarks[left_first[0]], axis=2).mean(axis=1)
    assert (moved <= 0.05 * eyes).all()  # O-Net places the points on the full-size frame


def test_rotations_wrap_the_detector_with_the_tables_settings() -> None:
    from facesense.detect import DEFAULTS, ROTATED_CONFIRM, ROTATED_MIN_SCORE, RotatingDetector, make_detector

    assert not isinstance(make_detector(), RotatingDetector)  # off by default
    photo = make_detector("yunet", rotations=True)
    video = make_detector("mtcnn", use="video", rotations=(0, 90))
    assert isinstance(photo, RotatingDetector) and isinstance(video, RotatingDetector)
    assert photo.every_n == DEFAULTS["image"].rotation_every_n == 1
    assert video.every_n == DEFAULTS["video"].rotation_every_n == 5
    assert photo.rotated_min_score == ROTATED_MIN_SCORE["yunet"] and video.rotated_min_score == ROTATED_MIN_SCORE["mtcnn"]
    # photos confirm the copies' weak faces with YuNet; video and MTCNN do not (false faces)
    assert photo.confirm is DEFAULTS["image"].rotation_confirm is ROTATED_CONFIRM["yunet"] is True
    assert DEFAULTS["video"].rotation_confirm is False and not video.confirm
    assert ROTATED_CONFIRM["mtcnn"] is False
    mtcnn_photo = make_detector("mtcnn", rotations=True)
    assert isinstance(mtcnn_photo, RotatingDetector) and not mtcnn_photo.confirm
    assert video.config.min_face_px == DEFAULTS["video"].min_face_px  # the inner detector's settings show through


def test_a_tilted_face_is_found_only_with_rotations(examples_dir) -> None:
    import numpy as np

    from facesense.detect import make_detector
    from facesense.imageio import load_image

    image = np.ascontiguousarray(np.rot90(load_image(examples_dir / "obama.jpg")))  # a quarter turn
    assert len(make_detector().detect(image)) == 0
    assert len(make_detector(rotations=True).detect(image)) == 1


def test_verify_wraps_the_detector_and_keeps_its_settings() -> None:
    from facesense.detect import DEFAULTS, VerifiedDetector, make_detector

    verified = make_detector("yunet", use="video", verify=True, landmark_passes=0)
    assert isinstance(verified, VerifiedDetector) and isinstance(make_detector("mtcnn"), VerifiedDetector)
    assert isinstance(make_detector("yunet").inner, VerifiedDetector)  # inside the landmark stage
    assert not isinstance(make_detector("yunet", verify=False), VerifiedDetector)
    assert not isinstance(make_detector("yunet", verify=False).inner, VerifiedDetector)
    assert verified.config.min_face_px == DEFAULTS["video"].min_face_px
