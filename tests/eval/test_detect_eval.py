"""WIDER FACE parsing and detection scoring: synthetic cases with known answers, then real data."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesense.errors import ConfigError, ImageError
from facesense.eval.detect import (
    DetectionRun,
    ImageDetections,
    WiderImage,
    average_precision,
    evaluate_detection,
    parse_wider_annotations,
    read_wider_annotations,
    run_detection,
    score_detection,
)
from facesense.types import Faces

SAMPLE = """\
0--Parade/a.jpg
2
10 20 30 40 0 0 0 0 0 0
100 100 8 8 2 0 0 0 0 0
0--Parade/empty.jpg
0
0 0 0 0 0 0 0 0 0 0
1--Handshaking/b.jpg
1
5 5 50 60 0 0 0 1 0 0
"""


@pytest.fixture(scope="module")
def wider_dir(data_dir: Path) -> Path:
    path = data_dir / "wider_face_val_subset"
    if not (path / "wider_face_val_bbx_gt.txt").is_file():
        pytest.skip(f"{path} is missing")
    return path


def test_parse_sample() -> None:
    images = parse_wider_annotations(SAMPLE)
    assert [im.path for im in images] == [
        "0--Parade/a.jpg",
        "0--Parade/empty.jpg",
        "1--Handshaking/b.jpg",
    ]
    assert [len(im) for im in images] == [2, 0, 1]
    assert images[0].xyxy.tolist() == [[10, 20, 40, 60], [100, 100, 108, 108]]
    assert images[0].size_px.tolist() == [30, 8]
    assert images[0].attributes[1].tolist() == [2, 0, 0, 0, 0, 0]
    assert images[1].xyxy.shape == (0, 4)
    assert images[2].invalid.tolist() == [True]


def test_parse_zero_face_image_at_the_end() -> None:
    images = parse_wider_annotations("x/only.jpg\n0\n0 0 0 0 0 0 0 0 0 0\n")
    assert len(images) == 1 and len(images[0]) == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a.jpg\n", r"<text>:1: a.jpg: missing face count"),
        ("a.jpg\ntwo\n", r"<text>:2: expected a face count, got 'two'"),
        (
            "a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n",
            r"<text>:2: a.jpg: expected 2 box lines, file ends after 1",
        ),
        ("a.jpg\n1\n1 2 3 4\n", r"<text>:3: expected 10 numbers"),
        ("a.jpg\n1\n1 2 3 x 0 0 0 0 0 0\n", r"<text>:3: expected numbers"),
        ("1\na.jpg\n", r"<text>:1: expected an image path, got '1'"),
        ("a.jpg\n-1\n", r"<text>:2: negative face count"),
    ],
)
def test_parse_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_wider_annotations(text)


def test_read_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read annotations"):
        read_wider_annotations(tmp_path / "nope.txt")


def test_real_annotations(wider_dir: Path) -> None:
    images = read_wider_annotations(wider_dir / "wider_face_val_bbx_gt.txt")
    assert len(images) == 153
    assert sum(len(im) for im in images) == 1207
    assert all((wider_dir / "images" / im.path).is_file() for im in images)


# --------------------------------------------------------------------------- scoring


def _truth(
    path: str, xyxy: list[list[float]], invalid: list[int] | None = None
) -> WiderImage:
    attrs = np.zeros((len(xyxy), 6), np.int64)
    if invalid is not None:
        attrs[:, 3] = invalid
    return WiderImage(
        path=path, xyxy=np.array(xyxy, np.float32).reshape(-1, 4), attributes=attrs
    )


def _faces(xyxy: list[list[float]], scores: list[float]) -> Faces:
    n = len(xyxy)
    return Faces(
        xyxy=np.array(xyxy, np.float32).reshape(-1, 4),
        scores=np.array(scores, np.float32),
        landmarks=np.zeros((n, 5, 2), np.float32),
    )


def _run(*items: tuple[WiderImage, Faces | None]) -> DetectionRun:
    return DetectionRun(
        images=tuple(ImageDetections(truth=t, faces=f, detect_ms=1.0) for t, f in items)
    )


BIG = [0, 0, 100, 100]
BIG2 = [200, 0, 300, 100]
SMALL = [400, 0, 410, 10]


def test_perfect_detector() -> None:
    truth = _truth("a.jpg", [BIG, BIG2])
    report = score_detection(
        _run((truth, _faces([BIG, BIG2], [0.9, 0.8]))), min_face_px=20
    )
    assert (report.ap, report.recall, report.precision) == (1.0, 1.0, 1.0)
    assert (report.true_positives, report.false_positives, report.positives) == (
        2,
        0,
        2,
    )


def test_ignored_faces_count_for_nothing() -> None:
    truth = _truth("a.jpg", [BIG, SMALL, BIG2], invalid=[0, 0, 1])
    # detections on the small face and on the invalid face are neither TP nor FP
    faces = _faces([SMALL, BIG2, BIG], [0.95, 0.9, 0.8])
    report = score_detection(_run((truth, faces)), min_face_px=20)
    assert report.positives == 1 and report.ignored_faces == 2
    assert report.ignored_detections == 2
    assert (report.ap, report.recall, report.precision) == (1.0, 1.0, 1.0)
    # with no size limit the small face is a positive and its detection a TP
    report = score_detection(_run((truth, faces)), min_face_px=0)
    assert (report.positives, report.true_positives, report.ignored_detections) == (
        2,
        2,
        1,
    )


def test_missed_faces_and_false_positives() -> None:
    truth = _truth("a.jpg", [BIG, BIG2])
    # ranked: TP (0.9), FP (0.8), nothing for BIG2
    faces = _faces([BIG, [500, 500, 600, 600]], [0.9, 0.8])
    report = score_detection(_run((truth, faces)), min_face_px=20)
    assert report.recall == 0.5 and report.precision == 0.5
    assert report.ap == pytest.approx(0.5)


def test_known_curve_across_images() -> None:
    # ranked over both images: TP 0.9, FP 0.8, TP 0.7 -> P = 1, 1/2, 2/3; R = 1/2, 1/2, 1
    # AP = 0.5 * 1 + 0.5 * 2/3
    a = (_truth("a.jpg", [BIG]), _faces([BIG, [500, 500, 600, 600]], [0.9, 0.8]))
    b = (_truth("b.jpg", [BIG2]), _faces([BIG2], [0.7]))
    report = score_detection(_run(a, b), min_face_px=20)
    assert report.ap == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert report.recall == 1.0 and report.precision == pytest.approx(2 / 3)


def test_duplicate_is_false_positive_and_iou_threshold() -> None:
    truth = _truth("a.jpg", [BIG])
    shifted = [30, 0, 130, 100]  # IoU 70/130 = 0.54 with BIG
    report = score_detection(
        _run((truth, _faces([BIG, shifted], [0.9, 0.8]))), min_face_px=20
    )
    assert (report.true_positives, report.false_positives) == (1, 1)
    report = score_detection(
        _run((truth, _faces([shifted], [0.9]))), min_face_px=20, iou_threshold=0.6
    )
    assert (report.true_positives, report.false_positives) == (0, 1)


def test_best_overlap_wins_and_lower_score_takes_the_other_face() -> None:
    left, right = [0, 0, 100, 100], [60, 0, 160, 100]
    truth = _truth("a.jpg", [left, right])
    # the top detection sits between both faces but nearer `right`; the next matches `left`
    faces = _faces([[50, 0, 150, 100], [0, 0, 95, 100]], [0.9, 0.8])
    report = score_detection(_run((truth, faces)), min_face_px=20)
    assert report.true_positives == 2


def test_no_detections_and_no_positives() -> None:
    report = score_detection(
        _run((_truth("a.jpg", [BIG]), Faces.empty())), min_face_px=20
    )
    assert (report.ap, report.recall, report.precision, report.false_positives) == (
        0.0,
        0.0,
        0.0,
        0,
    )
    report = score_detection(
        _run((_truth("a.jpg", []), _faces([BIG], [0.9]))), min_face_px=20
    )
    assert (report.positives, report.false_positives, report.ap) == (0, 1, 0.0)


def test_failed_images_are_counted_not_scored() -> None:
    run = _run(
        (_truth("a.jpg", [BIG]), None), (_truth("b.jpg", [BIG]), _faces([BIG], [0.9]))
    )
    report = score_detection(run, min_face_px=20)
    assert (report.images, report.images_failed, report.positives, report.recall) == (
        1,
        1,
        1,
        1.0,
    )


def test_report_to_dict_is_json() -> None:
    report = score_detection(
        _run((_truth("a.jpg", [BIG]), _faces([BIG], [0.9]))), min_face_px=20
    )
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ap"] == 1.0 and data["min_face_px"] == 20.0


@pytest.mark.parametrize(
    ("recall", "precision", "expected"),
    [
        ([], [], 0.0),
        ([1.0], [1.0], 1.0),
        ([0.5, 1.0], [1.0, 0.5], 0.75),
        (
            [0.5, 0.5, 1.0],
            [1.0, 0.5, 2 / 3],
            0.5 + 0.5 * 2 / 3,
        ),  # precision interpolated up
        (
            [0.25, 0.5],
            [0.5, 1.0],
            0.5,
        ),  # the later, higher precision covers the first step
    ],
)
def test_average_precision(
    recall: list[float], precision: list[float], expected: float
) -> None:
    assert average_precision(recall, precision) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_face_px": -1}, "min_face_px must be >= 0"),
        ({"min_face_px": 20, "iou_threshold": 0}, "iou_threshold"),
    ],
)
def test_score_parameter_errors(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        score_detection(_run(), **kwargs)


# --------------------------------------------------------------------------- running


class _FakeDetector:
    """Finds exactly the annotated faces of the images it is given (by image size)."""

    def __init__(self, answers: dict[tuple[int, int], Faces]) -> None:
        self.answers = answers

    def detect(self, image: np.ndarray) -> Faces:
        return self.answers.get(image.shape[:2], Faces.empty())


def test_missing_and_corrupt_images_are_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "ev").mkdir()
    cv2.imwrite(
        str(tmp_path / "ev" / "good.jpg"), np.full((120, 160, 3), 100, np.uint8)
    )
    (tmp_path / "ev" / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    annotations = tmp_path / "gt.txt"
    annotations.write_text(
        "ev/good.jpg\n1\n10 10 50 50 0 0 0 0 0 0\n"
        "ev/corrupt.jpg\n1\n10 10 50 50 0 0 0 0 0 0\n"
        "ev/missing.jpg\n0\n0 0 0 0 0 0 0 0 0 0\n"
    )
    detector = _FakeDetector({(120, 160): _faces([[10, 10, 60, 60]], [0.99])})
    calls: list[tuple[int, int]] = []
    with caplog.at_level(logging.WARNING, logger="facesense.eval.detect"):
        reports = evaluate_detection(
            detector,
            annotations,
            tmp_path,
            min_face_px=(20, 60),
            progress=lambda d, t: calls.append((d, t)),
        )
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert len(caplog.records) == 2
    at_20, at_60 = reports
    assert (at_20.images, at_20.images_failed, at_20.recall, at_20.ap) == (
        1,
        2,
        1.0,
        1.0,
    )
    assert (at_60.positives, at_60.ignored_detections) == (0, 1)


def test_run_detection_limit_and_bad_folder(tmp_path: Path) -> None:
    truths = parse_wider_annotations(SAMPLE)
    (tmp_path / "0--Parade").mkdir()
    cv2.imwrite(str(tmp_path / truths[1].path), np.full((120, 160, 3), 100, np.uint8))
    run = run_detection(_FakeDetector({}), truths, tmp_path, limit=2)
    assert [r.faces is None for r in run.images] == [True, False]  # the first is missing, the second read
    with pytest.raises(ImageError, match=r"none of the 1 images .* could be read .*no such file"):
        run_detection(_FakeDetector({}), truths, tmp_path, limit=1)
    with pytest.raises(ConfigError, match="does not exist"):
        run_detection(_FakeDetector({}), truths, tmp_path / "nope")
    with pytest.raises(ConfigError, match="limit must be >= 0"):
        run_detection(_FakeDetector({}), truths, tmp_path, limit=-1)


def test_real_detector_on_a_slice(wider_dir: Path) -> None:
    from facesense.detect import MTCNNConfig, MTCNNDetector

    reports = evaluate_detection(
        MTCNNDetector(MTCNNConfig(threads=2)),
        wider_dir / "wider_face_val_bbx_gt.txt",
        wider_dir / "images",
        min_face_px=(20, 40),
        limit=5,
    )
    at_20, at_40 = reports
    assert at_20.images == 5 and at_20.images_failed == 0
    assert at_20.faces == at_40.faces == 31
    assert at_40.positives <= at_20.positives
    # measured on these 5 images: all 18 faces of 40 px and more (none is 20-40 px) found,
    # no false positive; one detection on a face too small to count is ignored
    assert at_20.positives == at_40.positives == 18
    assert at_20.recall > 0.9 and at_20.precision > 0.9 and at_20.ap > 0.9
    assert at_20.detect_ms_median > 0
