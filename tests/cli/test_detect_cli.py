"""``facesense detect``, ``embed`` and ``eval`` end to end on real images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from facesense.cli import main


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_detect_json_two_people(runner: CliRunner, examples_dir: Path) -> None:
    result = runner.invoke(main, ["detect", "--json", str(examples_dir / "two_people.jpg")])
    assert result.exit_code == 0, result.output
    (record,) = _lines(result.stdout)
    assert record["path"].endswith("two_people.jpg")
    assert (record["width"], record["height"]) == cv2.imread(str(examples_dir / "two_people.jpg")).shape[1::-1]
    assert len(record["faces"]) == 2
    for face in record["faces"]:
        x1, y1, x2, y2 = face["box"]
        assert x2 > x1 and y2 > y1
        assert 0.9 < face["score"] <= 1.0
        assert len(face["landmarks"]) == 5


def test_detect_folder_with_bad_files_keeps_going(runner: CliRunner, examples_dir: Path, tmp_path: Path) -> None:
    shutil.copy(examples_dir / "obama.jpg", tmp_path / "a_obama.jpg")
    data = (examples_dir / "biden.jpg").read_bytes()
    (tmp_path / "b_truncated.jpg").write_bytes(data[: len(data) // 3])
    (tmp_path / "c_empty.png").write_bytes(b"")
    (tmp_path / "d_text.jpg").write_text("not an image")
    cv2.imwrite(str(tmp_path / "e_16bit.png"), (np.random.default_rng(0).random((64, 64)) * 65535).astype(np.uint16))
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    result = runner.invoke(main, ["detect", "--json", str(tmp_path)])
    assert result.exit_code == 0, result.output
    records = {Path(r["path"]).name: r for r in _lines(result.stdout)}
    assert sorted(records) == ["a_obama.jpg", "b_truncated.jpg", "c_empty.png", "d_text.jpg", "e_16bit.png"]
    assert len(records["a_obama.jpg"]["faces"]) == 1
    assert records["e_16bit.png"]["faces"] == []
    for bad in ("b_truncated.jpg", "c_empty.png", "d_text.jpg"):
        assert set(records[bad]) == {"path", "error"}
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3
    assert any("c_empty.png: empty file" in e for e in errors)
    assert any("d_text.jpg: not a readable image" in e for e in errors)
    assert "3 of 5 file(s) could not be read" in result.stderr
    assert "Traceback" not in result.output


def test_detect_exit_code_when_nothing_works(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\x00" * 10)
    result = runner.invoke(main, ["detect", "--json", str(bad), str(tmp_path / "missing.jpg")])
    assert result.exit_code == 4  # ImageError's code: nothing could be processed
    assert [r["path"] for r in _lines(result.stdout)] == [str(bad), str(tmp_path / "missing.jpg")]
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"error: {bad}: not a readable image")
    assert lines[1] == f"error: {tmp_path / 'missing.jpg'}: no such file"


def test_a_face_free_image_counts_as_processed(runner: CliRunner, data_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_text("no")
    brick = data_dir / "negatives" / "skimage_brick.png"
    result = runner.invoke(main, ["detect", str(bad), str(brick)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{brick}: 0 face(s)\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["embed", "--embedder", "dlib+sfcae"], "unknown embedder 'dlib+sfcae' (did you mean 'dlib+sface'?); choose one of dlib+sface, facenet, dlib, sface, facenet+dlib, facenet+dlib+sface, facenet+sface"),
        (["detect", "--detector", "mtccn"], "unknown detector 'mtccn' (did you mean 'mtcnn'?)"),
        (["eval", "lfw", "--pairs", "{pairs}", "--images", "{dir}", "--backend", "onnx"], "unknown FaceNet backend 'onnx'"),
        (["eval", "lfw", "--pairs", "{pairs}", "--images", "{dir}", "--precision", "fp16"], "unknown FaceNet precision 'fp16'"),
    ],
)
def test_choices_suggest_the_closest(runner: CliRunner, examples_dir: Path, args: list[str], message: str, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1 1\n")
    subs = {"{pairs}": str(pairs), "{dir}": str(tmp_path)}
    result = runner.invoke(main, [subs.get(a, a) for a in args] + ([str(examples_dir / "obama.jpg")] if args[0] != "eval" else []))
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_detect_empty_folder(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["detect", str(tmp_path)])
    assert result.exit_code == 2
    assert "no image files" in result.output


def test_detect_annotate_writes_images(runner: CliRunner, examples_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "annotated"
    result = runner.invoke(main, ["detect", str(examples_dir / "two_people.jpg"), "--annotate", str(out)])
    assert result.exit_code == 0, result.output
    img = cv2.imread(str(out / "two_people.jpg"))
    original = cv2.imread(str(examples_dir / "two_people.jpg"))
    assert img.shape == original.shape
    assert np.abs(img.astype(int) - original.astype(int)).max() > 100  # something was drawn


@pytest.mark.parametrize(
    ("embedder", "dim", "different_people"),
    [
        (None, 256, 0.527),  # the default dlib+sface's calibrated raw threshold (match.CALIBRATIONS)
        ("fusion", 640, 0.465),  # facenet+dlib's (the old default, by its old name)
        ("facenet", 512, 0.85),  # FaceNet's
        ("dlib", 128, 0.40),  # dlib's 0.6 on unnormalised descriptors (norm ~1.4)
    ],
)
def test_embed_json(runner: CliRunner, examples_dir: Path, embedder: str | None, dim: int, different_people: float) -> None:
    args = ["embed", "--json", str(examples_dir / "obama.jpg"), str(examples_dir / "biden.jpg"), str(examples_dir / "knn_examples" / "train" / "obama" / "obama2.jpg")]
    result = runner.invoke(main, args + (["--embedder", embedder] if embedder else []))
    assert result.exit_code == 0, result.output
    obama, biden, obama2 = (np.array(r["faces"][0]["embedding"]) for r in _lines(result.stdout))
    assert obama.shape == (dim,)
    assert np.linalg.norm(obama) == pytest.approx(1.0, abs=1e-3)
    assert np.linalg.norm(obama - biden) > different_people  # two different people are far apart
    assert np.linalg.norm(obama - obama2) < different_people  # the same person is close


def test_eval_lfw_on_a_slice(runner: CliRunner, lfw_dir: Path, tmp_path: Path) -> None:
    lines = (lfw_dir / "pairs_folds1-5.txt").read_text().splitlines()
    body = lines[1:]
    # Two folds of 10 matched + 10 mismatched pairs, taken from the real folds 1 and 2.
    fold1 = body[0:10] + body[300:310]
    fold2 = body[600:610] + body[900:910]
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("2\t10\n" + "\n".join(fold1 + fold2) + "\n")
    result = runner.invoke(main, ["eval", "lfw", "--pairs", str(pairs), "--images", str(lfw_dir), "--json"])
    assert result.exit_code == 0, result.output
    (report,) = _lines(result.stdout)
    assert report["pairs"] == 40 and report["folds"] == 2
    assert report["accuracy"] >= 0.9
    assert report["auc"] >= 0.95
    assert {"std", "tar_at_far_1e-3", "threshold", "no_face"} <= set(report)
    # FaceNet (in facenet+dlib) INT8, its default, against FP32 on the same pairs: the same
    # decisions, almost the same threshold
    old = ["eval", "lfw", "--pairs", str(pairs), "--images", str(lfw_dir), "--json", "--embedder", "facenet+dlib"]
    result = runner.invoke(main, old)
    assert result.exit_code == 0, result.output
    (report,) = _lines(result.stdout)
    result = runner.invoke(main, [*old, "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    (fp32,) = _lines(result.stdout)
    assert abs(fp32["accuracy"] - report["accuracy"]) <= 0.05  # at most 2 of 40 pairs
    assert fp32["threshold"] == pytest.approx(report["threshold"], abs=0.05)


def test_eval_lfw_bad_pairs_file(runner: CliRunner, lfw_dir: Path, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("garbage\n")
    result = runner.invoke(main, ["eval", "lfw", "--pairs", str(pairs), "--images", str(lfw_dir)])
    assert result.exit_code == 2
    assert "first line" in result.stderr


def test_eval_detect_on_a_slice(runner: CliRunner, data_dir: Path) -> None:
    wider = data_dir / "wider_face_val_subset"
    result = runner.invoke(
        main,
        ["eval", "detect", "--annotations", str(wider / "wider_face_val_bbx_gt.txt"), "--images", str(wider / "images"), "--limit", "4", "--json"],
    )
    assert result.exit_code == 0, result.output
    (out,) = _lines(result.stdout)
    r20, r40 = out["reports"]
    assert (r20["min_face_px"], r40["min_face_px"]) == (20, 40)
    assert r20["images"] == 4
    assert 0 < r20["recall"] <= 1 and 0 < r20["ap"] <= 1
    assert r40["positives"] <= r20["positives"]
