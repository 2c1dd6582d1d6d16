"""False faces on images without people: a fake detector, then MTCNN on real animal photos, then the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from facesense.cli import main
from facesense.detect import make_detector
from facesense.errors import ConfigError, ImageError
from facesense.eval.negatives import NegativesReport, evaluate_negatives
from facesense.imageio import load_image, save_image
from facesense.types import Faces

# MTCNN (image defaults) finds a false face on the first two and none on the last two.
ANIMALS = (
    "cat_kaggle_breed_dataset-cat_breeds-test-Cat3475.jpg",
    "other_natures_mammals-jaguar-1.jpg",
    "dog_kaggle_test_set-dogs-dog.4029.jpg",
    "cat_aipnd_cat_07.jpg",
)
JSON_KEYS = {
    "folder",
    "images",
    "images_failed",
    "images_with_faces",
    "false_faces",
    "false_faces_per_50_images",
    "max_score",
    "faces",
}


class BrightDetector:
    """A fake: one face per image whose mean intensity is above 100."""

    def detect(self, image: np.ndarray) -> Faces:
        if float(image.mean()) <= 100:
            return Faces.empty()
        return Faces(
            xyxy=np.array([[1, 2, 11, 12]], np.float32),
            scores=np.array([image.mean() / 255], np.float32),
            landmarks=np.zeros((1, 5, 2), np.float32),
        )


@pytest.fixture(scope="module")
def animals_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = data_dir / "animals"
    missing = [name for name in ANIMALS if not (source / name).is_file()]
    if missing:
        pytest.skip(f"{source} lacks {missing}")
    folder = tmp_path_factory.mktemp("animals")
    for name in ANIMALS:
        shutil.copy(source / name, folder / name)
    return folder


def test_counts_with_a_fake_detector(tmp_path: Path) -> None:
    save_image(tmp_path / "dark.png", np.full((20, 20, 3), 10, np.uint8))
    save_image(tmp_path / "sub" / "bright.png", np.full((20, 20, 3), 200, np.uint8))
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    report = evaluate_negatives(BrightDetector(), tmp_path)
    assert (report.images, report.images_failed, report.images_with_faces, report.total) == (2, 1, 1, 1)
    assert report.per_50_images == pytest.approx(25.0)
    assert report.false_faces[0].file == "sub/bright.png"
    assert report.false_faces[0].xyxy == (1.0, 2.0, 11.0, 12.0)
    assert report.max_score == pytest.approx(200 / 255, abs=1e-4)
    assert set(report.to_dict()) == JSON_KEYS


def test_no_faces_means_no_max_score(tmp_path: Path) -> None:
    save_image(tmp_path / "dark.png", np.full((20, 20, 3), 10, np.uint8))
    report = evaluate_negatives(BrightDetector(), tmp_path)
    assert (report.total, report.per_50_images, report.max_score) == (0, 0.0, None)
    assert report.to_dict()["faces"] == []


def test_empty_or_unreadable_folder_is_an_image_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no images"):
        evaluate_negatives(BrightDetector(), tmp_path)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(ImageError, match="none of the 1 images"):
        evaluate_negatives(BrightDetector(), tmp_path)


def test_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a folder"):
        evaluate_negatives(BrightDetector(), tmp_path / "nope")


def test_mtcnn_on_animals_matches_a_direct_run(animals_dir: Path) -> None:
    detector = make_detector("mtcnn")
    report = evaluate_negatives(detector, animals_dir)
    direct = {name: detector.detect(load_image(animals_dir / name)) for name in ANIMALS}
    assert isinstance(report, NegativesReport)
    assert report.images == len(ANIMALS) and report.images_failed == 0
    assert report.total == sum(len(f) for f in direct.values())
    assert report.images_with_faces == sum(len(f) > 0 for f in direct.values())
    assert report.total >= 2  # the cat and the jaguar fool MTCNN
    assert [f.score for f in report.false_faces] == sorted((f.score for f in report.false_faces), reverse=True)
    for face in report.false_faces:
        faces = direct[face.file]
        best = int(np.argmin(np.abs(faces.scores - face.score)))
        np.testing.assert_allclose(face.xyxy, faces.xyxy[best], atol=0.06)


def test_cli_json(animals_dir: Path) -> None:
    # MTCNN: its two small jaguar faces (17-21 px, under the non-face check's 40 px) give the JSON a face to show
    result = CliRunner().invoke(main, ["eval", "negatives", "--detector", "mtcnn", "--json", str(animals_dir)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert set(record) == JSON_KEYS | {"detector", "detector_min_face_px"}
    assert record["detector"] == "mtcnn" and record["images"] == len(ANIMALS)
    assert len(record["faces"]) == record["false_faces"]
    assert {"file", "score", "xyxy"} == set(record["faces"][0])


def test_cli_table(animals_dir: Path) -> None:
    result = CliRunner().invoke(main, ["eval", "negatives", "--detector", "yunet", str(animals_dir)])
    assert result.exit_code == 0, result.output
    assert "yunet" in result.stdout and "per 50 images" in result.stdout


def test_cli_empty_folder_exit_4(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["eval", "negatives", str(tmp_path)])
    assert result.exit_code == 4
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"error: no images under {tmp_path}"]


def test_help_states_the_exit_rule() -> None:
    result = CliRunner().invoke(main, ["eval", "negatives", "--help"])
    assert result.exit_code == 0
    assert "Exit status: 0" in result.stdout and "4" in result.stdout
