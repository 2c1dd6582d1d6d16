"""make_detector and the one table of detector defaults."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facesense.analyzer import FaceAnalyzer
from facesense.detect import (
    DEFAULT_DETECTOR,
    DEFAULTS,
    Detector,
    DetectorKind,
    DetectorUse,
    MTCNNConfig,
    MTCNNDetector,
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
    # The non-face check is on for photos and video (there its verdicts are remembered).
    assert isinstance(detector, VerifiedDetector) and DEFAULTS[use].verify
    assert detector.memory_calls == (30 if use is DetectorUse.VIDEO else 0)
    inner = detector.inner if isinstance(detector, VerifiedDetector) else detector
    assert isinstance(inner, MTCNNDetector)
    assert detector.config.min_face_px == DEFAULTS[use].min_face_px
    assert make_detector(use=use.value).config == detector.config
    yunet = make_detector("yunet", use=use, verify=False)  # YuNet is one flag away
    assert isinstance(yunet, YuNetDetector) and yunet.config.min_face_px == DEFAULTS[use].min_face_px


def test_the_table_has_the_measured_values() -> None:
    """Photos from 20 px (the library and `detect`); streams from 40 px (watch, serve, bench)."""
    assert DEFAULTS["image"].min_face_px == 20.0
    assert DEFAULTS["video"].min_face_px == 40.0
    assert MTCNNConfig().min_face_px == YuNetConfig().min_face_px == DEFAULTS[DetectorUse.IMAGE].min_face_px
    assert make_detector().config == MTCNNConfig()
    # MTCNN until the thresholds are calibrated on YuNet's crops (see DEFAULT_DETECTOR)
    assert DEFAULT_DETECTOR is DetectorKind.MTCNN
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
    video = make_detector(use="video", threads=2).detect(image)
    assert len(photo) == len(video) == 2
    np.testing.assert_allclose(video.xyxy, photo.xyxy, atol=3.0)


def test_rotations_wrap_the_detector_with_the_tables_settings() -> None:
    from facesense.detect import DEFAULTS, ROTATED_MIN_SCORE, RotatingDetector, make_detector

    assert not isinstance(make_detector(), RotatingDetector)  # off by default
    photo = make_detector("yunet", rotations=True)
    video = make_detector("mtcnn", use="video", rotations=(0, 90))
    assert isinstance(photo, RotatingDetector) and isinstance(video, RotatingDetector)
    assert photo.every_n == DEFAULTS["image"].rotation_every_n == 1
    assert video.every_n == DEFAULTS["video"].rotation_every_n == 5
    assert photo.rotated_min_score == ROTATED_MIN_SCORE["yunet"] and video.rotated_min_score == ROTATED_MIN_SCORE["mtcnn"]
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

    verified = make_detector("yunet", use="video", verify=True)
    assert isinstance(verified, VerifiedDetector) and isinstance(make_detector("yunet"), VerifiedDetector)
    assert not isinstance(make_detector("yunet", verify=False), VerifiedDetector)
    assert verified.config.min_face_px == DEFAULTS["video"].min_face_px
