"""Matchers on small synthetic galleries: naming, rejection, voting, confidence."""

from __future__ import annotations

import dataclasses
import itertools
import re

import numpy as np
import pytest

from facesense.errors import ConfigError
from facesense.match import (
    DEFAULT_THRESHOLD,
    KNNMatcher,
    Matcher,
    MatcherKind,
    MeanMatcher,
    ScoreNorm,
    SVMMatcher,
    distance_to_confidence,
    make_matcher,
    pairwise_distances,
)
from facesense.models.registry import calibration


def unit(*rows: list[float]) -> np.ndarray:
    a = np.asarray(rows, dtype=np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def at_angle(deg: float) -> np.ndarray:
    """A unit vector in the x-y plane; chord distance to (1, 0, 0) is 2 sin(deg / 2)."""
    r = np.deg2rad(deg)
    return np.array([np.cos(r), np.sin(r), 0.0], dtype=np.float32)


# Gallery in 3-D: alice near +x, bob near +y, carol near +z.
GALLERY = unit([1, 0.05, 0], [1, -0.05, 0], [0.05, 1, 0], [-0.05, 1, 0], [0, 0.05, 1])
LABELS = ["alice", "alice", "bob", "bob", "carol"]
ALL = [
    lambda t: KNNMatcher(threshold=t),
    lambda t: KNNMatcher(k=1, threshold=t),
    lambda t: KNNMatcher(k=5, weighting="distance", threshold=t),
    lambda t: MeanMatcher(threshold=t),
    lambda t: SVMMatcher(threshold=t),
]


@pytest.mark.parametrize("factory", ALL)
@pytest.mark.parametrize(
    ("probe", "expected"),
    [
        ([1, 0, 0], "alice"),
        ([0.9, 0.1, 0.05], "alice"),
        ([0, 1, 0], "bob"),
        ([0.1, 0.9, 0.1], "bob"),
        ([0, 0, 1], "carol"),
        ([0.05, 0.1, 0.95], "carol"),
    ],
)
def test_names_close_probes(factory, probe: list[float], expected: str) -> None:
    m = factory(0.5).fit(GALLERY, LABELS)
    r = m.match(unit(probe))
    assert r.names == (expected,)
    assert r.candidates == (expected,)
    assert r.distances.shape == (1,) and r.distances[0] < 0.5
    assert 0.5 < r.confidences[0] <= 1.0


@pytest.mark.parametrize("factory", ALL)
@pytest.mark.parametrize("probe", [[1, 1, 1], [-1, 0, 0], [0, -1, -1], [1, 1, 0]])
def test_rejects_strangers(factory, probe: list[float]) -> None:
    m = factory(0.5).fit(GALLERY, LABELS)
    r = m.match(unit(probe))
    assert r.names == (None,)
    assert r.candidates[0] in {"alice", "bob", "carol"}
    assert r.distances[0] > 0.5
    assert r.confidences[0] < 0.5


@pytest.mark.parametrize("factory", ALL)
def test_rejection_off_always_names(factory) -> None:
    m = factory(None).fit(GALLERY, LABELS)
    r = m.match(unit([-1, -0.1, 0], [0, 0, -1]))
    assert all(n is not None for n in r.names)
    assert r.names == r.candidates


@pytest.mark.parametrize(
    ("angle", "threshold", "named"),
    [
        (10, 0.2, True),  # chord 0.174
        (10, 0.17, False),
        (60, 1.0, True),  # chord 1.0 exactly: the threshold is inclusive
        (61, 1.0, False),
        (120, None, True),
    ],
)
def test_threshold_is_a_chord_distance(angle: float, threshold: float | None, named: bool) -> None:
    m = KNNMatcher(k=1, threshold=threshold).fit(unit([1, 0, 0]), ["alice"])
    r = m.match(at_angle(angle)[None])
    assert (r.names[0] == "alice") is named
    assert r.distances[0] == pytest.approx(2 * np.sin(np.deg2rad(angle) / 2), abs=1e-5)


def test_knn_vote_beats_single_nearest_when_uniform() -> None:
    # One "eve" sample is nearest, but three "alice" samples outvote it.
    gallery = np.stack([at_angle(5), at_angle(-12), at_angle(13), at_angle(-14)])
    labels = ["eve", "alice", "alice", "alice"]
    probe = at_angle(0)[None]
    assert KNNMatcher(k=1, threshold=None).fit(gallery, labels).match(probe).names == ("eve",)
    r = KNNMatcher(k=4, weighting="uniform", threshold=None).fit(gallery, labels).match(probe)
    assert r.names == ("alice",)
    # The distance is to alice's nearest sample, not to eve.
    assert r.distances[0] == pytest.approx(2 * np.sin(np.deg2rad(12) / 2), abs=1e-5)


def test_knn_distance_weighting_prefers_the_much_closer_sample() -> None:
    gallery = np.stack([at_angle(1), at_angle(-40), at_angle(41)])
    labels = ["eve", "alice", "alice"]
    r = KNNMatcher(k=3, weighting="distance", threshold=None).fit(gallery, labels).match(at_angle(0)[None])
    assert r.names == ("eve",)


def test_knn_tie_goes_to_the_nearer_identity() -> None:
    gallery = np.stack([at_angle(10), at_angle(-20)])
    r = KNNMatcher(k=2, weighting="uniform", threshold=None).fit(gallery, ["a", "b"]).match(at_angle(0)[None])
    assert r.names == ("a",)


def test_k_larger_than_gallery_is_capped() -> None:
    r = KNNMatcher(k=50, threshold=None).fit(GALLERY, LABELS).match(unit([1, 0, 0]))
    assert r.names == ("alice",)


@pytest.mark.parametrize("kind", list(MatcherKind))
def test_batch_matches_one_by_one(kind: MatcherKind) -> None:
    rng = np.random.default_rng(0)
    centres = unit(*rng.normal(size=(20, 64)).tolist())
    gallery = np.repeat(centres, 3, axis=0) + 0.02 * rng.normal(size=(60, 64)).astype(np.float32)
    labels = [f"p{i:02d}" for i in range(20) for _ in range(3)]
    probes = np.vstack([centres[:10] + 0.02 * rng.normal(size=(10, 64)), rng.normal(size=(5, 64))]).astype(np.float32)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    m = make_matcher(kind, threshold=0.8).fit(gallery, labels)
    batch = m.match(probes)
    assert len(batch) == 15
    assert batch.names[:10] == tuple(f"p{i:02d}" for i in range(10))
    assert batch.names[10:] == (None,) * 5
    for i in range(15):
        one = m.match(probes[i])
        assert one.names[0] == batch.names[i]
        assert one.distances[0] == pytest.approx(batch.distances[i], abs=1e-5)


@pytest.mark.parametrize("kind", list(MatcherKind))
def test_single_person_gallery(kind: MatcherKind) -> None:
    m = make_matcher(kind, threshold=0.5).fit(GALLERY[:2], LABELS[:2])
    r = m.match(unit([1, 0, 0], [0, 1, 0]))
    assert r.names == ("alice", None)


@pytest.mark.parametrize("kind", list(MatcherKind))
def test_two_person_svm_and_friends(kind: MatcherKind) -> None:
    m = make_matcher(kind, threshold=0.5).fit(GALLERY[:4], LABELS[:4])
    assert m.match(unit([1, 0, 0], [0, 1, 0])).names == ("alice", "bob")


@pytest.mark.parametrize("kind", list(MatcherKind))
def test_empty_gallery_and_empty_probe(kind: MatcherKind) -> None:
    m = make_matcher(kind, threshold=DEFAULT_THRESHOLD).fit(np.zeros((0, 3), np.float32), [])
    r = m.match(unit([1, 0, 0]))
    assert r.names == (None,) and r.candidates == (None,) and np.isinf(r.distances[0])
    m = make_matcher(kind, threshold=DEFAULT_THRESHOLD).fit(GALLERY, LABELS)
    r = m.match(np.zeros((0, 3), np.float32))
    assert len(r) == 0 and r.distances.shape == (0,)


@pytest.mark.parametrize("kind", list(MatcherKind))
def test_all_matchers_satisfy_the_protocol(kind: MatcherKind) -> None:
    assert isinstance(make_matcher(kind, model_id=FACENET), Matcher)


@pytest.mark.parametrize(
    ("embeddings", "labels", "error"),
    [
        (np.zeros((3,), np.float32), ["a", "b", "c"], "expected shape"),
        (np.zeros((2, 3), np.float32), ["a"], "labels: expected 2 entries"),
        (np.full((1, 3), np.nan, np.float32), ["a"], "NaN"),
    ],
)
def test_fit_validates(embeddings, labels, error) -> None:
    with pytest.raises(ConfigError, match=error):
        KNNMatcher().fit(embeddings, labels)


def test_match_validates_width() -> None:
    m = KNNMatcher().fit(GALLERY, LABELS)
    with pytest.raises(ConfigError, match="expected 3 columns"):
        m.match(np.zeros((1, 4), np.float32))


@pytest.mark.parametrize(
    "build",
    [
        lambda: KNNMatcher(k=0),
        lambda: KNNMatcher(weighting="gaussian"),
        lambda: KNNMatcher(threshold=-0.1),
        lambda: MeanMatcher(threshold=float("nan")),
        lambda: SVMMatcher(c=0),
        lambda: make_matcher("forest", threshold=0.5),
        lambda: make_matcher("knn", model_id=FACENET, threshold="loose"),
    ],
)
def test_bad_parameters(build) -> None:
    with pytest.raises(ConfigError):
        build()


def test_infinite_threshold_means_no_rejection() -> None:
    assert KNNMatcher(threshold=float("inf")).threshold is None


@pytest.mark.parametrize(
    ("distance", "threshold", "expected"),
    [
        (1.0, 1.0, 0.5),
        (0.9, 1.0, 0.8808),
        (1.1, 1.0, 0.1192),
        (0.0, 1.0, 1.0),
        (2.0, 1.0, 0.0),
        (DEFAULT_THRESHOLD, None, 0.5),
    ],
)
def test_confidence_mapping(distance: float, threshold: float | None, expected: float) -> None:
    assert float(distance_to_confidence(distance, threshold)) == pytest.approx(expected, abs=1e-4)


def test_confidence_is_monotone_and_bounded() -> None:
    d = np.linspace(0, 2, 201)
    c = distance_to_confidence(d, 1.0)
    assert np.all(np.diff(c) <= 0) and c.min() >= 0 and c.max() <= 1


def test_pairwise_distances_match_brute_force() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 5)), rng.normal(size=(6, 5))
    brute = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
    np.testing.assert_allclose(pairwise_distances(a, b), brute, rtol=1e-5, atol=1e-5)


def test_knn_far_samples_do_not_outvote_a_close_match() -> None:
    # alice has one close sample; bob has two samples beyond the threshold. Seen with
    # real photos: a one-photo person outvoted by a two-photo stranger.
    gallery = np.stack([at_angle(40), at_angle(70), at_angle(75)])
    labels = ["alice", "bob", "bob"]
    probe = at_angle(0)[None]
    for threshold in (1.0, None):
        r = KNNMatcher(k=3, threshold=threshold).fit(gallery, labels).match(probe)
        assert r.names == ("alice",)


def test_knn_no_neighbour_within_threshold_gives_nearest_candidate() -> None:
    gallery = np.stack([at_angle(80), at_angle(90), at_angle(95)])
    r = KNNMatcher(k=3, threshold=0.5).fit(gallery, ["a", "b", "b"]).match(at_angle(0)[None])
    assert r.names == (None,) and r.candidates == ("a",)


# --- score normalisation and calibration ------------------------------------------------

FACENET = "facenet-20180408-102900/fixed"
NORM = calibration(FACENET).norm


def test_make_matcher_uses_the_model_calibration() -> None:
    cal = calibration(FACENET)
    m = make_matcher("knn", model_id=FACENET)
    assert m.norm == cal.norm and m.threshold == cal.threshold
    raw = make_matcher("knn", model_id=FACENET, normalize=False)
    assert raw.norm is None and raw.threshold == cal.raw_threshold
    assert make_matcher("mean", model_id=FACENET, threshold=None).threshold is None
    assert make_matcher("svm", model_id=FACENET, threshold=0.5).threshold == 0.5


@pytest.mark.parametrize(
    ("model_id", "embedder"),
    [
        ("facenet-20180408-102900/per_image", "facenet"),
        ("facenet-20180408-102900/fixed/box160m0.2+0", "facenet"),  # a custom crop
        ("someone-else/v1", "KIND"),
    ],
)
def test_auto_threshold_for_an_uncalibrated_model_is_refused(model_id: str, embedder: str) -> None:
    """No silent fallback to FaceNet's raw 0.85: the error says how to calibrate."""
    command = f"facesense eval calibrate --images LFW_DIR --wider WIDER_DIR --embedder {embedder}"
    with pytest.raises(ConfigError, match=f"no calibration for model '{re.escape(model_id)}'.*{re.escape(command)}"):
        make_matcher("knn", model_id=model_id)
    explicit = make_matcher("knn", model_id=model_id, threshold=0.4)
    assert explicit.threshold == 0.4 and explicit.norm is None
    assert make_matcher("mean", model_id=model_id, threshold=None).threshold is None


def test_auto_threshold_needs_a_model_id() -> None:
    with pytest.raises(ConfigError, match="needs the embedder's model_id"):
        make_matcher("knn")
    assert make_matcher("knn", threshold=0.7).threshold == 0.7


def test_unknown_matcher_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match="did you mean 'mean'"):
        make_matcher("maen", model_id=FACENET)


@pytest.mark.parametrize(
    "quantiles",
    [((0.1, 1.0),), ((0.1, 1.0), (0.05, 1.1)), ((0.1, 1.2), (0.5, 1.1))],
)
def test_score_norm_validates_quantiles(quantiles) -> None:
    with pytest.raises(ConfigError):
        ScoreNorm(impostor_quantiles=quantiles)


def test_expected_order_statistics_shrink_with_gallery_size() -> None:
    values = [NORM.expected_order_mean(n, 2, 5) for n in (6, 20, 100, 1000, 10_000)]
    assert all(a > b for a, b in itertools.pairwise(values))
    # The median impostor distance is about what two random people are apart.
    assert NORM.expected_order_mean(1, 1, 1) == pytest.approx(float(NORM.impostor_distance(0.5)))


def _ring(d_match: float, d_others: float, n_others: int, dim: int = 64) -> tuple[np.ndarray, list[str], np.ndarray]:
    """A gallery where the probe is d_match from 'target' and d_others from everybody else."""
    rng = np.random.default_rng(3)
    basis, _ = np.linalg.qr(rng.normal(size=(dim, n_others + 2)))
    probe = basis[:, 0]

    def at(dist: float, axis: int) -> np.ndarray:
        c = 1 - dist**2 / 2  # cosine for this chord distance
        return c * probe + np.sqrt(1 - c**2) * basis[:, axis]

    gallery = np.stack([at(d_match, 1)] + [at(d_others, 2 + i) for i in range(n_others)]).astype(np.float32)
    labels = ["target"] + [f"other{i}" for i in range(n_others)]
    return gallery, labels, probe[None].astype(np.float32)


@pytest.mark.parametrize(
    ("d_others", "named"),
    [
        (1.45, True),  # everybody else is as far as random strangers: the match stands out
        (1.00, False),  # the face is nearly as close to many others: not distinctive enough
    ],
)
def test_normalisation_rejects_faces_close_to_many_people(d_others: float, named: bool) -> None:
    gallery, labels, probe = _ring(0.88, d_others, 30)
    raw = KNNMatcher(threshold=0.9).fit(gallery, labels).match(probe)
    assert raw.names == ("target",)  # raw distance 0.88 passes either way
    full = dataclasses.replace(NORM, full_at_people=0)  # the correction in full, even for 31 people
    normed = KNNMatcher(threshold=0.9, norm=full).fit(gallery, labels).match(probe)
    assert normed.distances[0] == pytest.approx(0.88, abs=1e-4)  # the distance is still the raw one
    assert (normed.names == ("target",)) is named
    assert bool(normed.confidences[0] >= 0.5) is named


def test_normalisation_phases_in_with_gallery_size() -> None:
    """31 people: a tenth of the correction with the default ramp to 300 people, all of it with 30."""
    gallery, labels, probe = _ring(0.88, 1.00, 30)

    def score(norm: ScoreNorm | None) -> float:
        return float(KNNMatcher(threshold=None, norm=norm).fit(gallery, labels).match(probe).scores[0])

    raw = score(None)
    full = score(dataclasses.replace(NORM, full_at_people=0))
    assert abs(full - raw) > 0.05
    assert NORM.full_at_people == 300
    assert score(NORM) - raw == pytest.approx(30 / 300 * (full - raw), rel=1e-3)
    assert score(dataclasses.replace(NORM, full_at_people=30)) == pytest.approx(full, abs=1e-6)
    with pytest.raises(ConfigError, match="full_at_people"):
        dataclasses.replace(NORM, full_at_people=-1)


@pytest.mark.parametrize("kind", list(MatcherKind))
def test_normalisation_is_a_no_op_for_one_person(kind: MatcherKind) -> None:
    m = make_matcher(kind, model_id=FACENET).fit(GALLERY[:2], LABELS[:2])
    r = m.match(unit([1, 0.2, 0]))
    np.testing.assert_allclose(r.scores, r.distances)


@pytest.mark.parametrize("kind", list(MatcherKind))
def test_named_iff_confidence_at_least_half(kind: MatcherKind) -> None:
    rng = np.random.default_rng(5)
    g = rng.normal(size=(40, 32)).astype(np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    labels = [f"p{i // 2}" for i in range(40)]
    spread = np.linspace(0.0, 0.4, 14, dtype=np.float32)[:, None]
    probes = g[::3] + spread * rng.normal(size=(14, 32)).astype(np.float32)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    r = make_matcher(kind, model_id=FACENET).fit(g, labels).match(probes)
    named = np.array([n is not None for n in r.names])
    assert named.any() and not named.all()
    np.testing.assert_array_equal(named, r.confidences >= 0.5)
