"""The LFW verification protocol: pairs parsing, fold thresholds, metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facesense.errors import ConfigError
from facesense.eval.lfw import (
    LFWPairs,
    _best_threshold,
    _tar_at_far,
    read_pairs,
    select_central_face,
    verification_report,
)
from facesense.types import Faces

PAIRS = """2\t2
Alice\t1\t2
Bob\t1\t3
Alice\t1\tBob\t2
Carol\t1\tDan\t1
Eve\t2\t4
Frank\t1\t2
Eve\t1\tFrank\t3
Gina\t1\tAlice\t2
"""


def test_read_pairs(tmp_path: Path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text(PAIRS)
    pairs = read_pairs(path)
    assert pairs.folds == 2
    assert len(pairs) == 8
    assert pairs.same.tolist() == [True, True, False, False] * 2
    assert pairs.fold.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert pairs.left[2] == ("Alice", 1) and pairs.right[2] == ("Bob", 2)
    assert ("Gina", 1) in pairs.images


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "first line"),
        ("2 2\nAlice 1 2\n", "found 1"),
        ("1 1\nA 1 2\nB 1 C 1\n", "header says"),
        ("2 1\nA 1 2\nB 1 C\nA 1 2\nB 1 C 1\n", "line 3"),
    ],
)
def test_read_pairs_rejects_bad_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_pairs(path)


def test_read_pairs_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        read_pairs(tmp_path / "nope.txt")


def test_real_pairs_file(lfw_dir: Path) -> None:
    pairs = read_pairs(lfw_dir / "pairs_folds1-5.txt")
    assert pairs.folds == 5
    assert len(pairs) == 3000
    assert int(pairs.same.sum()) == 1500
    missing = [k for k in pairs.images if not (lfw_dir / k[0] / f"{k[0]}_{k[1]:04d}.jpg").is_file()]
    assert missing == []


@pytest.mark.parametrize(
    ("dist", "same", "expected"),
    [
        ([0.1, 0.2, 0.8, 0.9], [True, True, False, False], 0.5),
        ([0.1, 0.3, 0.2, 0.9], [True, True, False, False], 0.15),  # 3/4 is the best; the first such cut
        ([0.5, 0.5, 0.5], [True, False, True], 0.5 + 1e-6),  # ties: never cut between equal distances
    ],
)
def test_best_threshold(dist, same, expected) -> None:
    assert _best_threshold(np.array(dist), np.array(same)) == pytest.approx(expected, abs=1e-5)


def test_tar_at_far() -> None:
    neg = np.linspace(0.5, 1.0, 1000)
    pos = np.array([0.1, 0.2, 0.49, 0.51, 0.6])
    dist = np.concatenate([pos, neg])
    same = np.concatenate([np.ones(5, bool), np.zeros(1000, bool)])
    # 1 negative may be accepted: the cut is the second-smallest negative (0.5005).
    assert _tar_at_far(dist, same, 1e-3) == pytest.approx(3 / 5)
    assert _tar_at_far(dist, same, 0.02) == pytest.approx(4 / 5)  # 20 negatives: cut ~0.51


def _pairs(n_per_fold: int, folds: int) -> LFWPairs:
    same = np.tile(np.r_[np.ones(n_per_fold, bool), np.zeros(n_per_fold, bool)], folds)
    keys = tuple(("p", i) for i in range(len(same)))
    return LFWPairs(left=keys, right=keys, same=same, fold=np.repeat(np.arange(folds), 2 * n_per_fold), folds=folds)


def test_verification_report_perfect_and_chance() -> None:
    rng = np.random.default_rng(0)
    pairs = _pairs(50, 4)
    left = rng.normal(size=(len(pairs), 16)).astype(np.float32)
    noise = rng.normal(size=left.shape).astype(np.float32)
    right = np.where(pairs.same[:, None], left + 0.01 * noise, noise)
    report = verification_report(left, right, pairs)
    assert report.accuracy == 1.0
    assert report.auc == 1.0
    assert report.tar_at_far_1e_3 == 1.0
    assert report.folds == 4 and report.pairs == 400
    chance = verification_report(left, noise, pairs)
    assert 0.35 < chance.accuracy < 0.65
    assert set(report.to_dict()) >= {"accuracy", "std", "auc", "tar_at_far_1e-3", "threshold", "pairs", "folds", "no_face"}


def test_select_central_face_prefers_big_central_faces() -> None:
    faces = Faces(
        xyxy=[[0, 0, 30, 30], [80, 80, 170, 170], [200, 200, 250, 250]],
        scores=[0.99, 0.9, 0.99],
        landmarks=np.zeros((3, 5, 2)),
    )
    assert select_central_face(faces, (250, 250)) == 1
    assert select_central_face(Faces.empty(), (250, 250)) is None


class _FakeAnalyzer:
    """Finds a fixed central face except in images it is told to miss; embeds box centres."""

    class embedder:
        dim = 4

    def __init__(self, miss: set[int]) -> None:
        self.miss = miss
        self.calls = 0

    def detect(self, image: np.ndarray) -> Faces:
        self.calls += 1
        if self.calls in self.miss:
            return Faces.empty()
        return Faces(xyxy=[[60, 70, 180, 200]], scores=[1.0], landmarks=np.zeros((1, 5, 2)))

    def embed(self, image: np.ndarray, faces: Faces) -> Faces:
        x1, y1, x2, y2 = faces.xyxy[0]
        return faces.replace(embeddings=[[x1, y1, x2, y2]])


def test_faceless_images_use_the_median_box_and_unreadable_ones_are_counted(lfw_dir: Path, tmp_path: Path) -> None:
    from facesense.eval.lfw import embed_lfw_images

    names = sorted(p.name for p in lfw_dir.iterdir() if p.is_dir())[:3]
    keys = [(n, 1) for n in names]
    broken = tmp_path / "Broken_Person"
    broken.mkdir()
    (broken / "Broken_Person_0001.jpg").write_bytes(b"not a jpeg")
    for n in names:
        (tmp_path / n).symlink_to(lfw_dir / n)
    out = embed_lfw_images(_FakeAnalyzer(miss={2}), tmp_path, [*keys, ("Broken_Person", 1)])
    assert out.no_face == (keys[1],)
    assert out.unreadable == (("Broken_Person", 1),)
    np.testing.assert_allclose(out.embeddings[1], [60, 70, 180, 200])  # the median of the found boxes
    assert not out.embeddings[3].any()


def test_no_readable_image_is_an_image_error(tmp_path: Path) -> None:
    from facesense.errors import ImageError
    from facesense.eval.lfw import evaluate_lfw

    pairs = tmp_path / "pairs.txt"
    pairs.write_text(PAIRS)
    images = tmp_path / "images"
    images.mkdir()
    analyzer = _FakeAnalyzer(miss=set())
    with pytest.raises(ImageError, match=r"none of the 14 LFW images .* could be read"):
        evaluate_lfw(analyzer, pairs, images)
    assert analyzer.calls == 0
