"""A running :class:`~facesense.recognize.LiveMatcher` applies a correction made meanwhile
(the gallery's revision changes with every negative), and without negatives fits exactly as before."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from facesense.gallery import NewSample, open_gallery
from facesense.recognize import LiveMatcher, fit_matcher

MODEL = "fake-model/v1"


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def sample(e: np.ndarray, tag: str) -> NewSample:
    return NewSample(embedding=unit(e), model_id=MODEL, source_sha256=hashlib.sha256(tag.encode()).hexdigest())


def test_live_matcher_refits_on_a_correction(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    alice, bob = rng.normal(size=8), rng.normal(size=8)
    stranger = unit(alice + 0.6 * rng.normal(size=8))  # nearest to alice, but not her
    with open_gallery(tmp_path / "g.db") as gallery:
        gallery.add_samples("alice", [sample(alice, "a")])
        gallery.add_samples("bob", [sample(bob, "b")])
        live = LiveMatcher(gallery, MODEL, check_interval_s=0.0, threshold=1.2, normalize=False)
        plain = fit_matcher(gallery, MODEL, threshold=1.2, normalize=False)
        assert plain is not None
        first = live.match(stranger[None])
        assert first.names == ("alice",)
        np.testing.assert_array_equal(first.distances, plain.match(stranger[None]).distances)  # no negatives: the same fit
        revision = live.revision
        gallery.add_negative("alice", sample(stranger, "s"), source="event 1")
        after = live.match(stranger[None])
        assert live.revision != revision
        assert after.names != ("alice",)  # vetoed: the face is nearer alice's negative than alice
        assert live.match(unit(alice)[None]).names == ("alice",)  # alice herself still is
