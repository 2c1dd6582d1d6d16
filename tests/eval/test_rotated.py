"""Rotated-face evaluation: the rotation geometry on synthetic arrays, then detectors on LFW, then the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from facesense.cli import main
from facesense.detect import DEFAULT_DETECTOR, make_detector
from facesense.errors import ConfigError, ImageError
from facesense.eval.rotated import (
    evaluate_rotated,
    invert_affine,
    rotate_image,
    rotation_matrix,
    sample_images,
    transform_points,
)
from facesense.imageio import load_image
from facesense.types import Faces

W, H = 60, 40


def marked_image() -> np.ndarray:
    """A black 60x40 image with one white pixel at column 50, row 5 (centre (50.5, 5.5))."""
    image = np.zeros((H, W, 3), np.uint8)
    image[5, 50] = 255
    return image


@pytest.mark.parametrize(
    ("angle", "canvas_wh", "expected"),
    [
        (0, (60, 40), (50.5, 5.5)),
        # counter-clockwise on screen: the top-right corner goes to the top-left
        (90, (40, 60), (5.5, 9.5)),
        (-90, (40, 60), (34.5, 50.5)),
        (180, (60, 40), (9.5, 34.5)),
        (270, (40, 60), (34.5, 50.5)),
        (360, (60, 40), (50.5, 5.5)),
    ],
)
def test_quarter_turns_move_pixels_exactly(
    angle: float, canvas_wh: tuple[int, int], expected: tuple[float, float]
) -> None:
    rotated, matrix = rotate_image(marked_image(), angle)
    assert (rotated.shape[1], rotated.shape[0]) == canvas_wh
    np.testing.assert_allclose(transform_points([50.5, 5.5], matrix), expected, atol=1e-9)
    ys, xs = np.nonzero(rotated[:, :, 0])
    assert (xs.tolist(), ys.tolist()) == ([int(expected[0])], [int(expected[1])])


@pytest.mark.parametrize(
    ("angle", "canvas_wh"),
    [(30, (72, 65)), (-30, (72, 65)), (45, (71, 71)), (60, (65, 72)), (135, (71, 71))],
)
def test_canvas_holds_the_whole_image(angle: float, canvas_wh: tuple[int, int]) -> None:
    matrix, size = rotation_matrix((W, H), angle)
    assert size == canvas_wh
    corners = transform_points([[0, 0], [W, 0], [0, H], [W, H]], matrix)
    assert corners.min() >= -1e-9
    assert (corners.max(axis=0) <= np.array(size) + 1e-9).all()
    # the image centre lands on the canvas centre
    np.testing.assert_allclose(transform_points([W / 2, H / 2], matrix), np.array(size) / 2)


@pytest.mark.parametrize("angle", [30, -45, 60, 90, 180])
def test_inverse_maps_back(angle: float) -> None:
    matrix, _ = rotation_matrix((W, H), angle)
    points = np.array([[0.0, 0.0], [50.5, 5.5], [W, H], [12.25, 33.0]])
    back = transform_points(transform_points(points, matrix), invert_affine(matrix))
    np.testing.assert_allclose(back, points, atol=1e-9)


def test_bilinear_rotation_puts_the_mark_where_the_matrix_says() -> None:
    image = np.zeros((H, W, 3), np.uint8)
    image[4:8, 48:52] = 255  # a 4x4 block centred at (50, 6)
    rotated, matrix = rotate_image(image, 30)
    weights = rotated[:, :, 0].astype(np.float64)
    ys, xs = np.mgrid[0 : rotated.shape[0], 0 : rotated.shape[1]]
    centroid = np.array([(weights * (xs + 0.5)).sum(), (weights * (ys + 0.5)).sum()]) / weights.sum()
    np.testing.assert_allclose(centroid, transform_points([50.0, 6.0], matrix), atol=0.1)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: rotation_matrix((0, 10), 30), "positive sides"),
        (lambda: rotation_matrix((10, 10), float("nan")), "finite"),
        (lambda: transform_points([1, 2, 3], np.eye(2, 3)), r"\(\.\.\., 2\)"),
        (lambda: invert_affine(np.zeros((2, 3))), "singular"),
        (lambda: rotate_image(np.zeros((0, 5, 3), np.uint8), 10), "expected"),
    ],
)
def test_bad_geometry_inputs(call: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        call()  # type: ignore[operator]


def test_sample_is_deterministic_and_sorted(lfw_dir: Path) -> None:
    first = sample_images(lfw_dir, 10, seed=1)
    assert first == sample_images(lfw_dir, 10, seed=1)
    assert first == sorted(first) and len(set(first)) == 10
    assert first != sample_images(lfw_dir, 10, seed=2)


class CentreDetector:
    """A fake that finds a 20 px face at the image centre, or nowhere on wide images."""

    def detect(self, image: np.ndarray) -> Faces:
        h, w = image.shape[:2]
        if w > h:
            return Faces.empty()
        return Faces(
            xyxy=np.array([[w / 2 - 10, h / 2 - 10, w / 2 + 10, h / 2 + 10]], np.float32),
            scores=np.array([0.9], np.float32),
            landmarks=np.zeros((1, 5, 2), np.float32),
        )


def test_report_with_a_fake_detector(tmp_path: Path) -> None:
    from facesense.imageio import save_image

    save_image(tmp_path / "a.png", np.zeros((40, 30, 3), np.uint8))  # tall: found at 0 and 180
    save_image(tmp_path / "b.png", np.zeros((30, 40, 3), np.uint8))  # wide: found at 90 only
    (tmp_path / "c.jpg").write_bytes(b"broken")
    report = evaluate_rotated(CentreDetector(), tmp_path, angles=(0, 90, 180), limit=None)
    assert (report.images, report.images_failed) == (2, 1)
    by_angle = {a.angle_deg: a for a in report.angles}
    assert [by_angle[a].found for a in (0, 90, 180)] == [1, 1, 1]
    assert by_angle[90].recall == 0.5 and by_angle[90].relative_to_upright == 1.0
    assert by_angle[90].found_given_upright == 0.0 and by_angle[180].found_given_upright == 1.0


def test_no_upright_angle_leaves_relative_empty(tmp_path: Path) -> None:
    from facesense.imageio import save_image

    save_image(tmp_path / "a.png", np.zeros((40, 30, 3), np.uint8))
    (only,) = evaluate_rotated(CentreDetector(), tmp_path, angles=(180,), limit=None).angles
    assert (only.recall, only.relative_to_upright, only.found_given_upright) == (1.0, None, None)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"angles": ()}, ConfigError, "at least one"),
        ({"angles": (0, 0)}, ConfigError, "duplicates"),
        ({"center_tolerance": 0.0}, ConfigError, "center_tolerance"),
        ({"limit": 0}, ConfigError, "limit"),
        ({}, ImageError, "no images"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        evaluate_rotated(CentreDetector(), tmp_path, **kwargs)  # type: ignore[arg-type]


def test_mtcnn_landmarks_follow_a_small_rotation(lfw_dir: Path) -> None:
    report = evaluate_rotated(make_detector("mtcnn"), lfw_dir, angles=(0, 20), limit=5, seed=0)
    tilted = report.angles[1]
    assert tilted.found == 5
    assert tilted.landmark_nme_median is not None and tilted.landmark_nme_median < 0.1
    assert tilted.landmarks_agree == 1.0


@pytest.mark.parametrize("kind", ["mtcnn", "yunet"])
def test_real_detector_on_lfw(lfw_dir: Path, kind: str) -> None:
    report = evaluate_rotated(make_detector(kind), lfw_dir, angles=(0, 180), limit=10, seed=0)
    assert report.images == 10 and report.images_failed == 0
    upright, flipped = report.angles
    assert (upright.angle_deg, flipped.angle_deg) == (0.0, 180.0)
    assert upright.recall >= 0.9
    assert upright.relative_to_upright == 1.0 and upright.found_given_upright == 1.0
    assert (upright.landmark_nme_median, upright.landmarks_agree) == (0.0, 1.0)
    assert 0.0 <= flipped.recall <= 1.0 and flipped.detections >= flipped.found
    assert set(report.to_dict()) == {
        "folder",
        "images",
        "images_failed",
        "faces",
        "min_face_px",
        "center_tolerance",
        "angles",
    }


def test_cli_json(lfw_dir: Path) -> None:
    result = CliRunner().invoke(
        main, ["eval", "rotated", "--images", str(lfw_dir), "--angles", "0,90", "--limit", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    record = json.loads(line)
    assert record["detector"] == DEFAULT_DETECTOR.value and record["images"] == 3
    assert [a["angle_deg"] for a in record["angles"]] == [0.0, 90.0]
    assert set(record["angles"][0]) == {
        "angle_deg",
        "found",
        "recall",
        "relative_to_upright",
        "found_given_upright",
        "landmark_nme_median",
        "landmarks_agree",
        "detections",
        "detect_ms_median",
    }


def test_cli_table(lfw_dir: Path) -> None:
    result = CliRunner().invoke(main, ["eval", "rotated", "--images", str(lfw_dir), "--angles", "0", "--limit", "2"])
    assert result.exit_code == 0, result.output
    assert "vs upright" in result.stdout


def test_cli_empty_folder_exit_4(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["eval", "rotated", "--images", str(tmp_path)])
    assert result.exit_code == 4
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"error: no images under {tmp_path}"]


def test_cli_bad_angles_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["eval", "rotated", "--images", str(tmp_path), "--angles", "0,x"])
    assert result.exit_code == 2
    assert "comma-separated degrees" in result.stderr


class BrightBlobDetector:
    """A fake that reports the bounding box of the bright pixels as one face."""

    def detect(self, image: np.ndarray) -> Faces:
        ys, xs = np.nonzero(image[:, :, 0] > 128)
        if xs.size == 0:
            return Faces.empty()
        box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        eyes = [[box[0] + 5, box[1] + 5], [box[2] - 5, box[1] + 5]]
        return Faces(
            xyxy=np.array([box], np.float32),
            scores=np.array([0.9], np.float32),
            landmarks=np.array([eyes + [[(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]] * 3], np.float32),
        )


def test_wider_faces_follow_the_rotation(tmp_path: Path) -> None:
    from facesense.eval.detect import WiderImage
    from facesense.eval.rotated import evaluate_rotated_wider
    from facesense.imageio import save_image

    image = np.zeros((120, 200, 3), np.uint8)
    image[20:70, 120:170] = 255  # the one face the fake can see
    save_image(tmp_path / "a.png", image)
    truth = WiderImage(
        path="a.png",
        # seen; unseen; too small (ignored); invalid (ignored)
        xyxy=np.array([[120, 20, 170, 70], [10, 10, 60, 60], [5, 80, 15, 90], [70, 70, 110, 110]], np.float32),
        attributes=np.array([[0] * 6, [0] * 6, [0] * 6, [0, 0, 0, 1, 0, 0]], np.int64),
    )
    report = evaluate_rotated_wider(BrightBlobDetector(), [truth], tmp_path, angles=(0, 45, 90, 180), min_face_px=40)
    assert (report.images, report.faces, report.min_face_px) == (1, 2, 40.0)
    assert [a.found for a in report.angles] == [1, 1, 1, 1]
    assert [a.recall for a in report.angles] == [0.5] * 4
    assert all(a.found_given_upright == 1.0 for a in report.angles)
    # the fake places its landmarks as if every face were upright: the metric must say so
    nme = [a.landmark_nme_median for a in report.angles]
    assert nme[0] == 0.0
    assert all(e is not None and e > 0.25 for e in nme[1:])
    assert [a.landmarks_agree for a in report.angles] == [1.0, 0.0, 0.0, 0.0]


def test_wider_real_detector(data_dir: Path) -> None:
    from facesense.eval.rotated import evaluate_rotated_wider

    root = data_dir / "wider_face_val_subset"
    if not (root / "wider_face_val_bbx_gt.txt").is_file():
        pytest.skip(f"{root} is missing")
    report = evaluate_rotated_wider(
        make_detector("yunet"), root / "wider_face_val_bbx_gt.txt", root / "images", angles=(0,), limit=5
    )
    assert report.images == 5 and report.faces > 0
    assert report.angles[0].recall >= 0.5


def test_cli_needs_one_source(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["eval", "rotated"])
    assert result.exit_code == 2 and "--images" in result.stderr
    result = CliRunner().invoke(main, ["eval", "rotated", "--images", str(tmp_path), "--wider-images", str(tmp_path)])
    assert result.exit_code == 2 and "both --wider-annotations and --wider-images" in result.stderr


# ----------------------------------------------------------------------------- rotated LFW verification


@pytest.fixture(scope="module")
def small_pairs(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two folds of 4 same and 4 different pairs, taken from the real pairs file."""
    lines = (lfw_dir / "pairs_folds1-5.txt").read_text().splitlines()
    per_fold = int(lines[0].split()[1])
    body = lines[1:]
    chosen = []
    for fold in range(2):
        start = 2 * per_fold * fold
        chosen += body[start : start + 4] + body[start + per_fold : start + per_fold + 4]
    path = tmp_path_factory.mktemp("pairs") / "pairs.txt"
    path.write_text("2\t4\n" + "\n".join(chosen) + "\n")
    return path


def test_rotated_lfw_turns_every_image_and_rotations_find_the_faces(lfw_dir: Path, small_pairs: Path) -> None:
    from facesense.analyzer import FaceAnalyzer
    from facesense.eval.rotated import evaluate_rotated_lfw

    upright_faces_missed = []
    for rotations in (False, True):
        analyzer = FaceAnalyzer(detector=make_detector(rotations=rotations))
        report = evaluate_rotated_lfw(analyzer, small_pairs, lfw_dir)
        assert report.pairs == 16
        upright_faces_missed.append(report.no_face)
    # without rotations some turned faces are not found; with them (nearly) all are
    assert upright_faces_missed[0] > upright_faces_missed[1]
    assert upright_faces_missed[1] <= 1


def test_rotated_lfw_angles_are_fixed_per_image(lfw_dir: Path) -> None:
    from facesense.eval.rotated import _RotatedAnalyzer

    class Recorder:
        embedder = None

        def __init__(self) -> None:
            self.shapes: list[tuple[int, ...]] = []

        def detect(self, image: np.ndarray) -> Faces:
            self.shapes.append(image.shape)
            return Faces.empty()

    images = [load_image(p) for p in sorted(lfw_dir.glob("A*/*.jpg"))[:4]]
    shapes = []
    for _ in range(2):
        recorder = Recorder()
        rotated = _RotatedAnalyzer(recorder, 90.0, 0)
        for image in images:
            rotated.detect(image.copy())
        shapes.append(recorder.shapes)
    assert shapes[0] == shapes[1]  # the same angle for the same image, run after run
    assert len(set(shapes[0])) > 1 and all(s != (250, 250, 3) for s in shapes[0])  # turned, by different angles


def test_cli_pairs_need_images(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1\t1\n")
    result = CliRunner().invoke(
        main, ["eval", "rotated", "--wider-annotations", str(pairs), "--wider-images", str(tmp_path), "--pairs", str(pairs)]
    )
    assert result.exit_code == 2
    assert "--pairs needs --images" in result.stderr
