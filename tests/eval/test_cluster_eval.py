"""``facesense eval cluster``: metrics on hand-made clusterings, and the protocol on a small real LFW sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from facesense.errors import ConfigError
from facesense.eval.cluster import cluster_metrics, evaluate_clustering


@pytest.mark.parametrize(
    ("pred", "precision", "recall", "merged"),
    [
        ([0, 0, 0, 1, 1, 2], 1.0, 1.0, 0),  # perfect
        ([0, 0, 0, 1, 1, 1], 4 / 6, 1.0, 1),  # the stranger joined b
        ([-1, -1, -1, -1, -1, -1], 1.0, 0.0, 0),  # everybody alone
        ([0, 0, 1, 2, 2, 3], 1.0, 2 / 4, 0),  # a split in two
        ([0, 0, 0, 0, 0, 0], 4 / 15, 1.0, 1),  # one big cluster
    ],
)
def test_pairwise_metrics(pred: list[int], precision: float, recall: float, merged: int) -> None:
    truth = ["a", "a", "a", "b", "b", "s"]
    recurring = [True, True, True, True, True, False]
    m = cluster_metrics(truth, pred, recurring)
    assert m.pairwise_precision == pytest.approx(precision)
    assert m.pairwise_recall == pytest.approx(recall)
    assert m.strangers_merged == merged
    assert 0.0 <= m.bcubed_f <= 1.0


def test_bcubed_by_hand() -> None:
    # Cluster {a, a, b}: each a has precision 2/3, b 1/3; recall: a 2/2, b 1/1.
    m = cluster_metrics(["a", "a", "b"], [0, 0, 0], [True, True, True])
    assert m.bcubed_precision == pytest.approx((2 / 3 + 2 / 3 + 1 / 3) / 3)
    assert m.bcubed_recall == pytest.approx(1.0)
    assert m.visitors_found == 1 and m.clusters == 1
    with pytest.raises(ConfigError):
        cluster_metrics(["a"], [0, 1], [True])


@pytest.fixture(scope="module")
def mini_lfw(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small LFW folder (links into the real one): 8 people with 4 images, 4 with 2, 12 with 1."""
    root = tmp_path_factory.mktemp("mini-lfw")
    files = {
        p.name: sorted(f.name for f in p.iterdir() if f.suffix.lower() == ".jpg")
        for p in sorted(lfw_dir.iterdir())
        if p.is_dir()
    }
    pick = (
        [(n, 4) for n in sorted(files) if len(files[n]) >= 4][:8]
        + [(n, 2) for n in sorted(files) if len(files[n]) == 2][:4]
        + [(n, 1) for n in sorted(files) if len(files[n]) == 1][:12]
    )
    for name, count in pick:
        (root / name).mkdir()
        for f in files[name][:count]:
            (root / name / f).symlink_to(lfw_dir / name / f)
    return root


def test_eval_cluster_cli_on_a_small_sample(mini_lfw: Path, tmp_path: Path) -> None:
    from facesense.cli import main

    cache = tmp_path / "emb.npz"
    result = CliRunner().invoke(main, ["eval", "cluster", "--images", str(mini_lfw), "--cache", str(cache), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert (report["records"], report["recurring_people"], report["recurring_records"], report["stranger_records"]) == (
        52,
        8,
        32,
        20,
    )
    inc = report["incremental"]
    assert inc["pairwise"]["precision"] >= 0.9
    assert inc["pairwise"]["recall"] >= 0.6
    assert inc["bcubed"]["f"] >= 0.8
    assert inc["strangers_merged"] <= 2
    assert inc["visitors_found"] >= 6
    assert set(report["baselines"]) == {"DBSCAN (batch, sklearn)", "average linkage (batch)"}
    # The cache is eval identify's: the same file, reused.
    with np.load(cache) as npz:
        assert npz["embeddings"].shape == (52, 256)  # the default dlib+sface
    again = CliRunner().invoke(main, ["eval", "cluster", "--images", str(mini_lfw), "--cache", str(cache), "--seed", "1"])
    assert again.exit_code == 0, again.output
    assert "pairwise" in again.output and "incremental (facesense)" in again.output


def test_evaluate_clustering_refuses_bad_input() -> None:
    with pytest.raises(ConfigError, match="one label each"):
        evaluate_clustering(np.zeros((3, 4), np.float32), ["a"], model_id="x", baselines=False)
    with pytest.raises(ConfigError, match="no calibration"):
        evaluate_clustering(np.eye(4, dtype=np.float32), ["a", "a", "b", "c"], model_id="no-such-model", baselines=False)


def test_eval_cluster_cli_bad_option(mini_lfw: Path) -> None:
    from facesense.cli import main

    result = CliRunner().invoke(main, ["eval", "cluster", "--images", str(mini_lfw), "--link-far", "2"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
