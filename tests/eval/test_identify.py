"""Open-set identification protocol and scoring, on synthetic embeddings."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from facesense.errors import ConfigError
from facesense.eval.identify import (
    OpenSetProtocol,
    OpenSetScores,
    evaluate_open_set,
    impostor_quantiles,
    lfw_open_set,
)
from facesense.match import KNNMatcher, MeanMatcher, ScoreNorm


def test_lfw_open_set_split(tmp_path: Path) -> None:
    layout = {"Ann": 3, "Bob": 1, "Cid": 2, "Dee": 1}
    for name, n in layout.items():
        (tmp_path / name).mkdir()
        for i in range(1, n + 1):
            (tmp_path / name / f"{name}_{i:04d}.jpg").write_bytes(b"x")
    (tmp_path / "Ann" / "notes.txt").write_text("ignored")
    p = lfw_open_set(tmp_path)
    assert p.gallery == ("Ann/Ann_0001.jpg", "Cid/Cid_0001.jpg")
    assert p.probes == ("Ann/Ann_0002.jpg", "Ann/Ann_0003.jpg", "Cid/Cid_0002.jpg")
    assert p.probe_labels == ("Ann", "Ann", "Cid")
    assert p.strangers == ("Bob/Bob_0001.jpg", "Dee/Dee_0001.jpg")
    assert len(p.all_paths) == 7


def test_lfw_open_set_needs_both_kinds(tmp_path: Path) -> None:
    (tmp_path / "Ann").mkdir()
    (tmp_path / "Ann" / "a.jpg").write_bytes(b"x")
    with pytest.raises(ConfigError):
        lfw_open_set(tmp_path)
    with pytest.raises(ConfigError):
        lfw_open_set(tmp_path / "missing")


@pytest.mark.parametrize(
    ("far", "expected_t", "expected_far"),
    [(0.0, 0.1, 0.0), (0.1, 0.1, 0.0), (0.25, 0.2, 0.25), (0.5, 0.3, 0.5), (1.0, 0.4, 1.0)],
)
def test_threshold_for_far(far: float, expected_t: float, expected_far: float) -> None:
    s = OpenSetScores(np.array([True]), np.array([0.0]), np.array([0.4, 0.1, 0.3, 0.2]))
    t = s.threshold_for_far(far)
    assert s.at(t)[1] == expected_far
    assert t == pytest.approx(expected_t, abs=1e-9) and t <= expected_t


def synthetic(n_people: int = 60, n_strangers: int = 80, dim: int = 48, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_people, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def near(c: np.ndarray, noise: float) -> np.ndarray:
        v = c + noise * rng.normal(size=c.shape) / np.sqrt(dim)
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    names = [f"p{i:03d}" for i in range(n_people)]
    gallery = near(centres, 0.3)
    probes = np.concatenate([near(centres, 0.3), near(centres, 0.5)])
    probe_labels = names + names
    strangers = rng.normal(size=(n_strangers, dim))
    strangers /= np.linalg.norm(strangers, axis=1, keepdims=True)
    protocol = OpenSetProtocol(
        root=Path("."),
        gallery=tuple(f"{n}/0.jpg" for n in names),
        gallery_labels=tuple(names),
        probes=tuple(f"{n}/{i}.jpg" for i, n in enumerate(probe_labels)),
        probe_labels=tuple(probe_labels),
        strangers=tuple(f"s{i}/0.jpg" for i in range(n_strangers)),
        stranger_labels=tuple(f"s{i:03d}" for i in range(n_strangers)),
    )
    emb = np.concatenate([gallery, probes, strangers]).astype(np.float32)
    return protocol, emb


@pytest.mark.parametrize("normalised", [False, True])
def test_evaluate_open_set_on_separable_data(normalised: bool) -> None:
    protocol, emb = synthetic()
    labels = list(protocol.gallery_labels + protocol.probe_labels + protocol.stranger_labels)
    norm = ScoreNorm(impostor_quantiles=impostor_quantiles(emb, labels)) if normalised else None
    report = evaluate_open_set(KNNMatcher(threshold=0.9, norm=norm), protocol, emb, gallery_sizes=(10, 30), repeats=3)
    assert report.rank1 == 1.0
    assert (report.enrolled, report.probes, report.strangers) == (60, 120, 80)
    dirs = [d for _, d, _ in report.curve]
    fars = [f for _, _, f in report.curve]
    assert all(a <= b for a, b in itertools.pairwise(dirs)) and all(a <= b for a, b in itertools.pairwise(fars))
    for key in ("0.01", "0.02"):
        assert report.in_sample[key]["far"] <= float(key)
        assert report.in_sample[key]["dir"] > 0.9
        assert report.cross_validated[key]["dir"] > 0.8
    assert [int(r["people"]) for r in report.by_gallery_size] == [10, 30, 60]
    text = "\n".join(report.lines())
    assert "rank-1" in text and "cross-validated" in text
    json.dumps(report.to_dict(), allow_nan=False)


def test_evaluate_rejection_off_and_other_matchers() -> None:
    protocol, emb = synthetic(seed=1)
    report = evaluate_open_set(MeanMatcher(threshold=None), protocol, emb, gallery_sizes=())
    assert report.default_threshold is None and report.default_far == 1.0
    assert report.rank1 == report.default_dir == 1.0
    assert report.by_gallery_size == ()


def test_impostor_quantiles_ignore_same_person_pairs() -> None:
    emb = np.array([[1, 0], [1, 0], [0, 1], [0, 1]] * 30, np.float32)
    labels = ["a", "a", "b", "b"] * 30
    # Label by direction: every impostor pair is sqrt(2) apart, every genuine pair 0.
    labels = ["a" if e[0] else "b" for e in emb]
    q = impostor_quantiles(emb, labels, ps=(0.01, 0.5))
    assert q == ((0.01, pytest.approx(np.sqrt(2), abs=1e-3)), (0.5, pytest.approx(np.sqrt(2), abs=1e-3)))


def test_an_uncalibrated_model_is_evaluated_without_a_default_threshold() -> None:
    from facesense.embed import make_embedder
    from facesense.eval.identify import default_threshold
    from facesense.match import make_matcher

    assert default_threshold("never-calibrated/v0") is None
    matcher = make_matcher("knn", model_id="never-calibrated/v0", threshold=default_threshold("never-calibrated/v0"))
    assert matcher.threshold is None
    assert default_threshold(make_embedder().model_id) == "auto"  # the shipped default is calibrated
