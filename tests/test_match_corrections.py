"""Corrections in matching ("not X", "this is Y") and per-person thresholds, on real LFW faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facesense.errors import ConfigError
from facesense.match import (
    NEGATIVE_FLOOR_FAR,
    NEGATIVE_MARGIN,
    VETO_TIE_DISTANCE,
    KNNMatcher,
    MeanMatcher,
    SVMMatcher,
    make_matcher,
)
from facesense.models.registry import calibration

ENROLLED = 10  # people with >= 4 images: the first enrolled, the next three probes
IMPOSTORS = 10  # people with 2-3 images, not enrolled: strangers who come back


@pytest.fixture(scope="session")
def lfw_open(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    from facesense.analyzer import FaceAnalyzer
    from facesense.eval.identify import embed_central_faces

    files = {
        p.name: sorted(f.name for f in p.iterdir() if f.suffix.lower() == ".jpg")
        for p in sorted(lfw_dir.iterdir())
        if p.is_dir()
    }
    enrolled = [n for n in sorted(files) if len(files[n]) >= 4][:ENROLLED]
    impostors = [n for n in sorted(files) if len(files[n]) in (2, 3)][:IMPOSTORS]
    gallery = [f"{n}/{files[n][0]}" for n in enrolled]
    probes = [f"{n}/{f}" for n in enrolled for f in files[n][1:4]]
    others = [f"{n}/{f}" for n in impostors for f in files[n][:2]]
    analyzer = FaceAnalyzer()
    cache = tmp_path_factory.getbasetemp() / "lfw-small-corrections.npz"
    emb, _ = embed_central_faces(analyzer, lfw_dir, gallery + probes + others, cache=cache)
    ng, npr = len(gallery), len(probes)
    return {
        "model_id": analyzer.model_id,
        "g": emb[:ng],
        "gl": enrolled,
        "p": emb[ng : ng + npr],
        "pl": [p.split("/")[0] for p in probes],
        "o": emb[ng + npr :].reshape(IMPOSTORS, 2, -1),
    }


def _matcher(data: dict[str, object], threshold: float | str | None = None) -> KNNMatcher:
    m = make_matcher("knn", model_id=str(data["model_id"]), threshold=threshold)
    assert isinstance(m, KNNMatcher)
    return m


def _returning_impostor(data: dict[str, object]) -> tuple[int, str]:
    """An impostor whose two images are both taken for the same enrolled person X (rejection off)."""
    m = _matcher(data).fit(data["g"], data["gl"])
    o = data["o"]
    for i in range(o.shape[0]):
        first, second = m.match(o[i]).candidates
        if first == second and first is not None:
            return i, first
    pytest.fail("no impostor in the sample is taken twice for the same person")


def test_not_x_stops_a_returning_impostor_being_named_x(lfw_open) -> None:
    i, x = _returning_impostor(lfw_open)
    g, gl, p, pl, o = lfw_open["g"], lfw_open["gl"], lfw_open["p"], lfw_open["pl"], lfw_open["o"]
    plain = _matcher(lfw_open).fit(g, gl)
    before = plain.match(o[i, 1])
    assert before.names == (x,)  # rejection off: the impostor's second face is named X
    corrected = _matcher(lfw_open).fit(g, gl, negatives=o[i, :1], negative_labels=[x])
    after = corrected.match(o[i, 1])
    assert after.names[0] != x and after.candidates[0] != x
    # X's real probes are still named X.
    x_probes = p[[n == x for n in pl]]
    assert len(x_probes) == 3
    named_before = plain.match(x_probes).names
    assert named_before.count(x) >= 2
    assert corrected.match(x_probes).names == named_before


def test_this_is_y_names_the_face_y(lfw_open) -> None:
    """ "this is Y" = the face becomes Y's sample and X's negative: an impostor enrolled that way is named."""
    i, x = _returning_impostor(lfw_open)
    g, gl, o = lfw_open["g"], lfw_open["gl"], lfw_open["o"]
    matcher = _matcher(lfw_open, "auto").fit(
        np.concatenate([g, o[i, :1]]), [*gl, "newcomer"], negatives=o[i, :1], negative_labels=[x]
    )
    assert matcher.match(o[i, 1]).names == ("newcomer",)


@pytest.mark.parametrize("kind", ["knn", "mean", "svm"])
def test_a_face_named_after_not_x_is_named_despite_rounding(lfw_open, kind: str) -> None:
    """The same photo, embedded again, differs by float noise; named Y after "not X", its own
    negative (a hair nearer than Y's sample) must not veto it (``VETO_TIE_DISTANCE``)."""
    i, x = _returning_impostor(lfw_open)
    g, gl, o = lfw_open["g"], lfw_open["gl"], lfw_open["o"]
    face = o[i, 0]
    rng = np.random.default_rng(0)
    for scale in (0.0, 1e-7, 1e-6):  # the same embedding, and re-embeddings a hair apart
        again = face + rng.normal(scale=scale, size=face.shape).astype(np.float32)
        sample = again / np.linalg.norm(again)
        matcher = make_matcher(kind, model_id=str(lfw_open["model_id"]), threshold="auto").fit(
            np.concatenate([g, sample[None]]), [*gl, "newcomer"], negatives=face[None], negative_labels=[x]
        )
        assert matcher.match(np.stack([face, again])).names == ("newcomer", "newcomer"), scale
    assert VETO_TIE_DISTANCE < 0.05  # far below any two photos of one person


def test_per_person_threshold_formula(lfw_open) -> None:
    i, x = _returning_impostor(lfw_open)
    g, gl, p, o = lfw_open["g"], lfw_open["gl"], lfw_open["p"], lfw_open["o"]
    cal = calibration(str(lfw_open["model_id"]))
    plain = _matcher(lfw_open).fit(g, gl)
    s_neg = float(plain.match(o[i, 0]).scores[0])  # the negative's score as X
    floor = float(cal.norm.impostor_distance(NEGATIVE_FLOOR_FAR))
    t_x = max(floor, min(cal.threshold, s_neg - NEGATIVE_MARGIN))
    with_pp = _matcher(lfw_open).fit(g, gl, negatives=o[i, :1], negative_labels=[x], per_person=True)
    veto_only = _matcher(lfw_open).fit(g, gl, negatives=o[i, :1], negative_labels=[x])
    a, b, c = plain.match(p), with_pp.match(p), veto_only.match(p)
    for j, cand in enumerate(a.candidates):
        if cand == x and b.candidates[j] == x and np.isfinite(b.scores[j]):
            # X's scores move up by T - t_X: X is named only below t_X at the calibrated threshold.
            assert b.scores[j] - a.scores[j] == pytest.approx(cal.threshold - t_x, abs=1e-5)
            assert c.scores[j] == a.scores[j]
        elif cand != x:
            assert b.scores[j] == a.scores[j]  # people without negatives: unchanged
    assert any(cand == x for cand in a.candidates)
    # At the calibrated threshold a probe of X is named exactly when its old score is below t_X.
    strict = _matcher(lfw_open, "auto").fit(g, gl, negatives=o[i, :1], negative_labels=[x], per_person=True)
    for j, (cand, old) in enumerate(zip(a.candidates, a.scores, strict=True)):
        if cand == x and b.candidates[j] == x and np.isfinite(b.scores[j]):
            assert (strict.match(p[j]).names[0] == x) == (old + (cal.threshold - t_x) <= cal.threshold)


@pytest.mark.parametrize("kind", ["knn", "mean", "svm"])
def test_no_negatives_gives_identical_results(lfw_open, kind: str) -> None:
    g, gl, p, o = lfw_open["g"], lfw_open["gl"], lfw_open["p"], lfw_open["o"]
    probes = np.concatenate([p, o.reshape(-1, o.shape[-1])])
    mid = str(lfw_open["model_id"])
    base = make_matcher(kind, model_id=mid).fit(g, gl).match(probes)
    variants = [
        make_matcher(kind, model_id=mid).fit(g, gl, negatives=np.zeros((0, g.shape[1]), np.float32), negative_labels=[]),
        # negatives of somebody not in the gallery are ignored
        make_matcher(kind, model_id=mid).fit(g, gl, negatives=o[0, :1], negative_labels=["not enrolled"]),
    ]
    for m in variants:
        r = m.match(probes)
        assert r.names == base.names and r.candidates == base.candidates
        np.testing.assert_array_equal(r.scores, base.scores)
        np.testing.assert_array_equal(r.distances, base.distances)
        np.testing.assert_array_equal(r.confidences, base.confidences)


@pytest.mark.parametrize("cls", [MeanMatcher, SVMMatcher])
def test_other_matchers_leave_a_vetoed_face_unknown(lfw_open, cls: type) -> None:
    i, x = _returning_impostor(lfw_open)
    g, gl, o = lfw_open["g"], lfw_open["gl"], lfw_open["o"]
    plain = cls(threshold=None).fit(g, gl)
    if plain.match(o[i, 1]).candidates[0] != x:
        pytest.skip(f"{cls.__name__} does not take this impostor for {x}")
    corrected = cls(threshold=2.0).fit(g, gl, negatives=o[i, :1], negative_labels=[x])
    assert corrected.match(o[i, 1]).names == (None,)


def test_bad_negatives_are_refused(lfw_open) -> None:
    g, gl = lfw_open["g"], lfw_open["gl"]
    m = _matcher(lfw_open)
    with pytest.raises(ConfigError, match="together"):
        m.fit(g, gl, negatives=g[:1])
    with pytest.raises(ConfigError, match="one label each"):
        m.fit(g, gl, negatives=g[:2], negative_labels=[gl[0]])
    with pytest.raises(ConfigError, match="columns"):
        m.fit(g, gl, negatives=g[:1, :128], negative_labels=[gl[0]])
    with pytest.raises(ConfigError, match="NaN"):
        m.fit(g, gl, negatives=np.full((1, g.shape[1]), np.nan, np.float32), negative_labels=[gl[0]])
