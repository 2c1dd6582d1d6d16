"""Recurring unknowns: records and the incremental clusterer, on real LFW faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facesense.errors import ConfigError, ModelMismatchError, NotFoundError
from facesense.unknowns import (
    ClusterConfig,
    CropLimits,
    TrackRecorder,
    UnknownClusterer,
    UnknownRecord,
    eps_for,
)

RECURRING = 8  # people with >= 4 images, 4 images each
STRANGERS = 12  # people with one image


@pytest.fixture(scope="session")
def lfw_small(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, list[str], str]:
    """Embeddings of a few LFW people (4 images each) and one-image strangers, embedded once per session."""
    from facesense.analyzer import FaceAnalyzer
    from facesense.eval.identify import embed_central_faces

    people = sorted(p for p in lfw_dir.iterdir() if p.is_dir())
    files = {p.name: sorted(f.name for f in p.iterdir() if f.suffix.lower() == ".jpg") for p in people}
    recurring = [n for n in sorted(files) if len(files[n]) >= 4][:RECURRING]
    strangers = [n for n in sorted(files) if len(files[n]) == 1][:STRANGERS]
    paths = [f"{n}/{f}" for n in recurring for f in files[n][:4]] + [f"{n}/{files[n][0]}" for n in strangers]
    analyzer = FaceAnalyzer()
    cache = tmp_path_factory.getbasetemp() / "lfw-small-unknowns.npz"
    emb, _ = embed_central_faces(analyzer, lfw_dir, paths, cache=cache)
    return emb, [p.split("/")[0] for p in paths], analyzer.model_id


def record(e: np.ndarray, model_id: str, t: float = 0.0, source: str = "door") -> UnknownRecord:
    return UnknownRecord(embedding=e, model_id=model_id, first_seen=t, last_seen=t, source=source)


def run(emb: np.ndarray, labels: list[str], model_id: str, seed: int = 0) -> tuple[UnknownClusterer, dict[int, str]]:
    clusterer = UnknownClusterer(model_id)
    order = np.random.default_rng(seed).permutation(len(labels))
    truth = {}
    for step, i in enumerate(order.tolist()):
        truth[clusterer.add(record(emb[i], model_id, t=60.0 * step)).record_id] = labels[i]
    return clusterer, truth


def test_eps_comes_from_the_models_calibration(lfw_small) -> None:
    from facesense.models.registry import calibration

    _, _, model_id = lfw_small
    eps = eps_for(model_id)
    assert eps == pytest.approx(float(calibration(model_id).norm.impostor_distance(ClusterConfig().link_far)))
    assert 0.48 < eps < 0.58  # dlib+sface's scale: a typical stranger is at ~0.73 (q(3e-5) = 0.529)
    assert eps_for("no-such-model/x", ClusterConfig(eps=0.3)) == 0.3
    with pytest.raises(ConfigError, match="no calibration"):
        UnknownClusterer("no-such-model/x")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_person_clusters_and_different_people_do_not(lfw_small, seed: int) -> None:
    emb, labels, model_id = lfw_small
    clusterer, truth = run(emb, labels, model_id, seed)
    clusters = clusterer.clusters()
    assert clusters, "no recurring cluster at all"
    # Every recurring cluster shows one person: no two people merged, no stranger pulled in.
    for c in clusters:
        assert len({truth[r] for r in c.record_ids}) == 1, [truth[r] for r in c.record_ids]
    # Most of the recurring people come back as a cluster of their own.
    found = {truth[c.record_ids[0]] for c in clusters}
    assert len(found) >= RECURRING - 2
    strangers = [r for r, name in truth.items() if labels.count(name) == 1]
    assert all(clusterer.summary(clusterer.cluster_of(r)).size == 1 for r in strangers)


def test_a_record_stays_alone_until_it_recurs(lfw_small) -> None:
    emb, labels, model_id = lfw_small
    clusterer = UnknownClusterer(model_id)
    first = clusterer.add(record(emb[0], model_id, 0.0))
    assert (first.size, first.recurring, first.linkage) == (1, False, None)
    again = clusterer.add(record(emb[1], model_id, 60.0))  # the same person's second image
    assert labels[0] == labels[1]
    assert again.cluster_id == first.cluster_id and again.recurring and again.size == 2
    assert again.linkage is not None and again.linkage <= clusterer.eps
    other = clusterer.add(record(emb[-1], model_id, 120.0))  # a stranger
    assert other.cluster_id != first.cluster_id and not other.recurring


def test_clustering_is_deterministic(lfw_small) -> None:
    emb, labels, model_id = lfw_small
    a, _ = run(emb, labels, model_id, seed=3)
    b, _ = run(emb, labels, model_id, seed=3)
    assert [(s.cluster_id, s.record_ids) for s in a.clusters(min_size=1)] == [
        (s.cluster_id, s.record_ids) for s in b.clusters(min_size=1)
    ]


def _two_clusters(lfw_small) -> tuple[UnknownClusterer, int, int, list[str]]:
    emb, labels, model_id = lfw_small
    clusterer = UnknownClusterer(model_id)
    a = [clusterer.add(record(emb[i], model_id, float(i))) for i in range(4)]  # person 0
    b = [clusterer.add(record(emb[i], model_id, float(i))) for i in range(4, 8)]  # person 1
    assert labels[0] != labels[4]
    assert len({x.cluster_id for x in a}) == 1 and len({x.cluster_id for x in b}) == 1
    return clusterer, a[0].cluster_id, b[0].cluster_id, labels


def test_merge_remove_and_name(lfw_small) -> None:
    emb, _, model_id = lfw_small
    clusterer, ca, cb, _ = _two_clusters(lfw_small)
    assert clusterer.merge(ca, cb) == ca
    assert clusterer.summary(ca).size == 8
    with pytest.raises(NotFoundError):
        clusterer.summary(cb)
    with pytest.raises(ConfigError):
        clusterer.merge(ca, ca)
    wrong = clusterer.summary(ca).record_ids[-1]
    assert clusterer.remove(wrong) == ca
    assert clusterer.summary(ca).size == 7 and wrong not in clusterer.summary(ca).record_ids
    with pytest.raises(NotFoundError):
        clusterer.record(wrong)
    named = clusterer.name(ca, " Visitor ")
    assert named.name == "Visitor" and named.embeddings.shape == (7, emb.shape[1]) and named.model_id == model_id
    np.testing.assert_allclose(np.linalg.norm(named.embeddings, axis=1), 1.0, atol=1e-5)
    assert len(clusterer) == 0 and clusterer.clusters(min_size=1) == []
    with pytest.raises(NotFoundError):
        clusterer.name(ca, "again")


def test_ignored_cluster_suppresses_later_records(lfw_small) -> None:
    emb, labels, model_id = lfw_small
    clusterer = UnknownClusterer(model_id)
    for i in range(3):
        clusterer.add(record(emb[i], model_id, float(i)))
    cid = clusterer.cluster_of(1)
    clusterer.ignore(cid)
    assert clusterer.clusters() == [] and clusterer.clusters(include_ignored=True)[0].ignored
    later = clusterer.add(record(emb[3], model_id, 10.0))  # the same person comes back
    assert labels[3] == labels[0]
    assert later.cluster_id == cid and later.suppressed
    stranger = clusterer.add(record(emb[-1], model_id, 11.0))
    assert not stranger.suppressed
    clusterer.ignore(cid, False)
    assert [c.cluster_id for c in clusterer.clusters()] == [cid]


def test_prune_by_age_and_count_keeps_ignored(lfw_small) -> None:
    emb, _, model_id = lfw_small
    day = 86_400.0
    clusterer = UnknownClusterer(model_id, ClusterConfig(keep_days=10, keep_records=6, keep_ignored=2))
    ids = [clusterer.add(record(emb[i], model_id, t=i * day)).record_id for i in range(len(emb))]
    ignored = clusterer.cluster_of(ids[0])
    clusterer.ignore(ignored)
    dropped = clusterer.prune(now=(len(emb) - 1) * day)
    assert len(clusterer) <= 6 + 2
    remaining = [r for r in ids if r not in dropped]
    # Everything older than 10 days went, except the newest two of the ignored cluster.
    for r in remaining:
        if clusterer.cluster_of(r) != ignored:
            assert clusterer.record(r).last_seen >= (len(emb) - 11) * day
    assert sum(clusterer.cluster_of(r) == ignored for r in remaining) == 2
    with pytest.raises(ConfigError):
        clusterer.prune(now=float("nan"))


def test_state_round_trip(lfw_small) -> None:
    emb, labels, model_id = lfw_small
    clusterer, _ = run(emb, labels, model_id, seed=5)
    clusterer.ignore(clusterer.clusters()[0].cluster_id)
    copy = UnknownClusterer.from_state(clusterer.state())
    assert copy.state().records == clusterer.state().records
    assert copy.state().ignored == clusterer.state().ignored
    assert copy.state().provisional == clusterer.state().provisional
    a, b = clusterer.add(record(emb[0], model_id, 1e6)), copy.add(record(emb[0], model_id, 1e6))
    assert a == b


def test_bad_records_are_refused(lfw_small) -> None:
    emb, _, model_id = lfw_small
    clusterer = UnknownClusterer(model_id)
    with pytest.raises(ModelMismatchError):
        clusterer.add(record(emb[0], "facenet-20180408-102900/fixed"))
    with pytest.raises(ConfigError, match="NaN"):
        record(np.full(emb.shape[1], np.nan, np.float32), model_id)
    with pytest.raises(ConfigError, match="after last_seen"):
        UnknownRecord(embedding=emb[0], model_id=model_id, first_seen=2.0, last_seen=1.0)
    clusterer.add(record(emb[0], model_id))
    with pytest.raises(ConfigError, match=f"expected {emb.shape[1]}"):
        clusterer.add(record(emb[0][:128], model_id))


def test_track_recorder_keeps_the_best_crops_within_bounds(lfw_dir: Path, lfw_small) -> None:
    from facesense.imageio import decode_image, load_image

    emb, _, model_id = lfw_small
    person = sorted(p for p in lfw_dir.iterdir() if p.is_dir() and len(list(p.iterdir())) >= 4)[0]
    images = [load_image(f) for f in sorted(person.iterdir())[:4]]
    limits = CropLimits(max_crops=2, max_bytes=9_000)
    rec = TrackRecorder(source="door", model_id=model_id, track_id=7, limits=limits)
    qualities = [0.3, 0.9, 0.5, 0.8]
    for i, (image, q) in enumerate(zip(images, qualities, strict=True)):
        h, w = image.shape[:2]
        rec.add(emb[i], seen_at=100.0 + i, quality=q, image=image, xyxy=(w * 0.3, h * 0.3, w * 0.7, h * 0.7))
    out = rec.record()
    assert out.faces == 4 and (out.first_seen, out.last_seen) == (100.0, 103.0) and out.track_id == 7
    assert [c.quality for c in out.crops] == [0.9, 0.8]
    assert out.crop_bytes <= 9_000
    assert decode_image(out.crops[0].jpeg).shape == (limits.size_px, limits.size_px, 3)
    mean = emb[:4].sum(axis=0)
    np.testing.assert_allclose(out.embedding, mean / np.linalg.norm(mean), atol=1e-5)
    # A budget too small for any crop keeps none, and says so by keeping the count at 0.
    tiny = TrackRecorder(source="door", model_id=model_id, limits=CropLimits(max_bytes=200))
    tiny.add(emb[0], seen_at=0.0, quality=1.0, image=images[0], xyxy=(10, 10, 200, 200))
    assert tiny.record().crops == ()
    with pytest.raises(ConfigError, match="no embedded face"):
        TrackRecorder(source="x", model_id=model_id).record()
    with pytest.raises(ConfigError, match="quality"):
        rec.add(emb[0], seen_at=1.0, quality=1.5)
    with pytest.raises(ConfigError, match="both image and xyxy"):
        rec.add(emb[0], seen_at=1.0, quality=0.5, image=images[0])


# --- the repair rule on synthetic geometry (no model, no data) ---------------------------------

SYNTH = "synthetic/test"


def points(dist: list[list[float]], dim: int = 16) -> np.ndarray:
    """Unit vectors with the given pairwise distances (from their Gram matrix)."""
    d = np.asarray(dist, np.float64)
    gram = 1.0 - d**2 / 2.0
    out = np.zeros((len(d), dim))
    out[:, : len(d)] = np.linalg.cholesky(gram)
    return out.astype(np.float32)


def synth(e: np.ndarray, t: float = 0.0) -> UnknownRecord:
    return record(e, SYNTH, t)


# A1 and B1 (two people) are close enough to pair; A2, A's second face, is near A1 and far from B1.
A1_B1_A2 = [[0.0, 0.45, 0.2], [0.45, 0.0, 0.6], [0.2, 0.6, 0.0]]


def test_a_wrong_pair_is_undone_when_a_later_record_shows_it() -> None:
    a1, b1, a2 = points(A1_B1_A2)
    clusterer = UnknownClusterer(SYNTH, ClusterConfig(eps=0.5))
    first, second = clusterer.add(synth(a1)), clusterer.add(synth(b1))
    assert second.cluster_id == first.cluster_id and second.size == 2  # provisional
    third = clusterer.add(synth(a2))
    assert third.moved == (second.record_id,)
    assert third.cluster_id == first.cluster_id and third.size == 2
    assert clusterer.cluster_of(second.record_id) != first.cluster_id
    assert clusterer.summary(clusterer.cluster_of(second.record_id)).size == 1


def test_settled_records_never_move() -> None:
    """Records loaded without their provisional flags (a store that does not keep them) stay put."""
    from dataclasses import replace

    a1, b1, a2 = points(A1_B1_A2)
    clusterer = UnknownClusterer(SYNTH, ClusterConfig(eps=0.5))
    clusterer.add(synth(a1))
    clusterer.add(synth(b1))
    state = clusterer.state()
    assert state.provisional == frozenset({1, 2})
    kept = UnknownClusterer.from_state(state, ClusterConfig(eps=0.5))
    assert kept.state().provisional == state.provisional
    assert kept.add(synth(a2)).moved == (2,)
    settled = UnknownClusterer.from_state(replace(state, provisional=frozenset()), ClusterConfig(eps=0.5))
    third = settled.add(synth(a2))
    assert third.moved == () and settled.cluster_of(1) == settled.cluster_of(2) == third.cluster_id


def test_a_persons_merge_is_never_undone() -> None:
    # B1 is too far from A1 to pair (0.55 > eps); the person says they are one anyway.
    a1, b1, a2 = points([[0.0, 0.55, 0.2], [0.55, 0.0, 0.6], [0.2, 0.6, 0.0]])
    rng = np.random.default_rng(0)
    clusterer = UnknownClusterer(SYNTH, ClusterConfig(eps=0.5))
    ca, cb = clusterer.add(synth(a1)).cluster_id, clusterer.add(synth(b1)).cluster_id
    assert ca != cb
    clusterer.merge(ca, cb)
    assert clusterer.state().provisional == frozenset()
    for _ in range(6):  # more of A, each pulling towards A1 and away from B1
        e = a2 + 0.05 * rng.standard_normal(a2.shape).astype(np.float32)
        clusterer.add(synth(e / np.linalg.norm(e)))
    assert clusterer.cluster_of(1) == clusterer.cluster_of(2) == ca


def test_ignoring_settles_a_cluster() -> None:
    a1, b1, a2 = points(A1_B1_A2)
    clusterer = UnknownClusterer(SYNTH, ClusterConfig(eps=0.5))
    cid = clusterer.add(synth(a1)).cluster_id
    clusterer.add(synth(b1))
    clusterer.ignore(cid)
    third = clusterer.add(synth(a2))
    assert third.moved == () and third.suppressed and clusterer.summary(cid).size == 3


def two_tight_groups(shift: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three records around each of two means ``shift`` apart, spread ~0.07 around their means."""
    rng = np.random.default_rng(seed)
    a, b = points([[0.0, shift], [shift, 0.0]], dim=64)
    out = []
    for centre in (a, b):
        rows = centre + 0.07 / np.sqrt(64) * rng.standard_normal((3, 64))
        out.append((rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32))
    return out[0], out[1]


@pytest.mark.parametrize(("separation", "clusters"), [(None, 1), (3.0, 2)])
def test_separation_keeps_two_tight_groups_apart(separation: float | None, clusters: int) -> None:
    # The RMS linkage between the groups (~0.36) is within eps, but their means are ~0.35
    # apart while each group's records lie ~0.07 from their own mean.
    group_a, group_b = two_tight_groups(0.35)
    clusterer = UnknownClusterer(SYNTH, ClusterConfig(eps=0.5, separation=separation))
    for e in [*group_a, *group_b]:
        clusterer.add(synth(e))
    assert len(clusterer.clusters()) == clusters
    if clusters == 2:
        assert [s.record_ids for s in clusterer.clusters(min_size=1)] in ([(1, 2, 3), (4, 5, 6)], [(4, 5, 6), (1, 2, 3)])


def test_records_settle_once_enough_newer_ones_joined() -> None:
    group, _ = two_tight_groups(0.35)
    more, _ = two_tight_groups(0.35, seed=1)
    clusterer = UnknownClusterer(SYNTH, ClusterConfig(eps=0.5, settle=2))
    for e in [*group, more[0]]:
        clusterer.add(synth(e))
    assert clusterer.summary(1).size == 4
    assert clusterer.state().provisional == frozenset({3, 4})


@pytest.mark.parametrize(
    "kwargs",
    [{"join_far": 0.0}, {"merge_far": 1.5}, {"separation": 0.0}, {"separation": float("nan")}, {"min_variance": 0.0}, {"settle": -1}],
)
def test_bad_rule_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        ClusterConfig(**kwargs)
