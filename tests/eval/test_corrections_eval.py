"""``facesense eval corrections`` on a small real LFW sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from facesense.errors import ConfigError
from facesense.eval.corrections import evaluate_open_set_corrections
from facesense.eval.identify import embed_central_faces, lfw_open_set

LOOSE = 0.62  # an operating threshold loose enough for a small gallery to make mistakes


@pytest.fixture(scope="module")
def mini_open_set(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small LFW folder (links into the real one): 24 people with 3 images, 40 with 1."""
    root = tmp_path_factory.mktemp("mini-open-set")
    files = {
        p.name: sorted(f.name for f in p.iterdir() if f.suffix.lower() == ".jpg")
        for p in sorted(lfw_dir.iterdir())
        if p.is_dir()
    }
    pick = [(n, 3) for n in sorted(files) if len(files[n]) >= 3][:24] + [
        (n, 1) for n in sorted(files) if len(files[n]) == 1
    ][:40]
    for name, count in pick:
        (root / name).mkdir()
        for f in files[name][:count]:
            (root / name / f).symlink_to(lfw_dir / name / f)
    return root


@pytest.fixture(scope="module")
def embedded(mini_open_set: Path, tmp_path_factory: pytest.TempPathFactory):
    from facesense.analyzer import FaceAnalyzer

    analyzer = FaceAnalyzer()
    protocol = lfw_open_set(mini_open_set)
    cache = tmp_path_factory.getbasetemp() / "mini-open-set.npz"
    emb, _ = embed_central_faces(analyzer, protocol.root, protocol.all_paths, cache=cache)
    return protocol, emb, analyzer.model_id, cache


def test_corrections_metrics_on_a_small_sample(embedded) -> None:
    protocol, emb, model_id, _ = embedded
    report = evaluate_open_set_corrections(protocol, emb, model_id=model_id, ks=(0, 50), folds=2, operating_threshold=LOOSE)
    assert (report.enrolled, report.probes, report.strangers) == (24, 48, 40)
    assert [(r.k, r.per_person) for r in report.runs] == [(0, True), (50, False), (50, True)]
    base, veto, both = report.run(0), report.run(50, per_person=False), report.run(50)
    assert base.corrections == 0
    assert 0 < veto.corrections <= 100 and veto.corrections == both.corrections
    for r in report.runs:
        assert 0.0 <= r.default_dir <= 1.0 and 0.0 <= r.default_far <= 1.0
        for cv in r.cross_validated.values():
            assert 0.0 <= cv["dir"] <= 1.0 and 0.0 <= cv["far"] <= 1.0
    # At this loose threshold strangers are often taken for somebody ...
    assert base.default_far > 0.1
    # ... and 50 "not X" vetoes name fewer held-out strangers (people never corrected)
    # while naming as many held-out probes right.
    assert veto.default_far < base.default_far
    assert veto.default_dir >= base.default_dir - 0.03
    text = "\n".join(report.lines())
    assert "veto + per-person" in text
    json.dumps(report.to_dict(), allow_nan=False)


def test_corrections_bad_input(embedded) -> None:
    protocol, emb, model_id, _ = embedded
    with pytest.raises(ConfigError, match="folds"):
        evaluate_open_set_corrections(protocol, emb, model_id=model_id, folds=1)
    with pytest.raises(ConfigError, match="embeddings"):
        evaluate_open_set_corrections(protocol, emb[:-1], model_id=model_id)
    with pytest.raises(ConfigError, match="no calibration"):
        evaluate_open_set_corrections(protocol, emb, model_id="no-such-model")


def test_eval_corrections_cli(embedded, mini_open_set: Path) -> None:
    from facesense.cli import main

    _, _, _, cache = embedded
    args = ["eval", "corrections", "--images", str(mini_open_set), "--cache", str(cache), "--folds", "2", "--k", "0,5"]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert [r["k"] for r in report["runs"]] == [0, 5, 5]
    assert report["operating_threshold"] == pytest.approx(0.534)  # dlib+sface's calibrated threshold
    bad = CliRunner().invoke(main, [*args[:-1], "1,x"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert np.isfinite(report["runs"][0]["default"]["dir"])


@pytest.fixture(scope="module")
def returning_set(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A small LFW folder: 16 people with 3 images, 8 with 6 (returning-stranger candidates),
    30 with 1; embedded once."""
    from facesense.analyzer import FaceAnalyzer

    root = tmp_path_factory.mktemp("returning-set")
    files = {
        p.name: sorted(f.name for f in p.iterdir() if f.suffix.lower() == ".jpg")
        for p in sorted(lfw_dir.iterdir())
        if p.is_dir()
    }
    three = [n for n in sorted(files) if len(files[n]) == 3][:16]
    six = [n for n in sorted(files) if 6 <= len(files[n]) <= 12][:8]
    one = [n for n in sorted(files) if len(files[n]) == 1][40:70]
    for name, count in [(n, 3) for n in three] + [(n, 6) for n in six] + [(n, 1) for n in one]:
        (root / name).mkdir()
        for f in files[name][:count]:
            (root / name / f).symlink_to(lfw_dir / name / f)
    analyzer = FaceAnalyzer()
    protocol = lfw_open_set(root)
    emb, _ = embed_central_faces(analyzer, protocol.root, protocol.all_paths)
    return protocol, emb, analyzer.model_id


def test_returning_strangers_are_vetoed_after_not_x(returning_set) -> None:
    protocol, emb, model_id = returning_set
    report = evaluate_open_set_corrections(
        protocol, emb, model_id=model_id, ks=(0, 50), folds=2, operating_threshold=0.66, returning=6
    )
    # 6 of the 8 six-image people left the gallery: 3 images each seen, 3 held out.
    assert report.returning == 6 and report.returning_images == (18, 18)
    assert (report.enrolled, report.probes, report.strangers) == (18, 42, 30 + 18)
    base, veto = report.run(0), report.run(50, per_person=False)
    assert base.returning_far is not None and veto.returning_far is not None
    # At this loose threshold the returning strangers are mostly named somebody ...
    assert base.returning_far > 0.4
    # ... and "not X" on their earlier faces stops at least half of those names later on,
    # at about the same share of enrolled faces named right.
    assert veto.returning_far <= base.returning_far / 2
    assert veto.default_dir >= base.default_dir - 0.03
    text = "\n".join(report.lines())
    assert "returning strangers: 6 people" in text
    assert json.loads(json.dumps(report.to_dict()))["returning"] == {"people": 6, "seen": 18, "held_out": 18}


def test_returning_needs_enough_people(returning_set) -> None:
    protocol, emb, model_id = returning_set
    with pytest.raises(ConfigError, match="only 8 people have 4 or more images"):
        evaluate_open_set_corrections(protocol, emb, model_id=model_id, returning=9)


def test_reach_counts_the_false_accepts_corrections_can_act_on(returning_set) -> None:
    protocol, emb, model_id = returning_set
    report = evaluate_open_set_corrections(
        protocol, emb, model_id=model_id, ks=(0, 50), folds=2, operating_threshold=0.66, returning=6
    )
    base, veto = report.run(0), report.run(50, per_person=False)
    held_out_fa = round(base.default_far * report.strangers)
    returning_fa = round(base.returning_far * report.returning_images[1])  # type: ignore[operator]
    assert held_out_fa > 0 and returning_fa > 0
    # without corrections nobody was corrected; every run counts the same k=0 false accepts
    assert base.reachable == (0, held_out_fa)
    assert base.reachable_returning == (0, returning_fa)
    assert veto.reachable[1] == held_out_fa and veto.reachable_returning[1] == returning_fa
    # at this loose threshold the user corrects faces of the strangers who come back, and
    # of the people their held-out faces are taken for
    assert 0 < veto.reachable_returning[0] <= returning_fa
    assert 0 < veto.reachable[0] <= held_out_fa
    text = "\n".join(report.lines())
    assert f"of the {held_out_fa} held-out stranger false accepts at k=0, {report.run(50).reachable[0]} were named" in text
    assert json.loads(json.dumps(report.to_dict()))["runs"][0]["reachable"] == {"false_accepts": held_out_fa, "of_corrected_people": 0}
