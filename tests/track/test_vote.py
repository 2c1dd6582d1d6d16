"""A track's identity vote."""

from __future__ import annotations

import math

import pytest

from facesense.errors import ConfigError
from facesense.track import IdentityVote


def test_vote_does_not_flicker_on_odd_samples() -> None:
    vote = IdentityVote(window=16, switch_ratio=1.5)
    decided = []
    for name in ["ann", "ann", "bob", "ann", None, "ann", "bob", "ann", "ann", "bob"]:
        vote.add(name, quality=0.8, confidence=0.9)
        decided.append(vote.name)
    assert decided == ["ann"] * 10
    assert 0.5 < vote.confidence < 0.9


def test_vote_weights_samples_by_quality() -> None:
    vote = IdentityVote()
    vote.add("ann", quality=0.9, confidence=0.9)
    for _ in range(5):
        vote.add("bob", quality=0.1, confidence=0.9)  # small, blurry glimpses
    assert vote.name == "ann"


def test_vote_changes_its_mind_when_the_evidence_does() -> None:
    vote = IdentityVote(window=8)
    vote.add("ann", quality=0.5, confidence=0.6)
    for _ in range(8):
        vote.add("bob", quality=0.9, confidence=0.9)
    assert vote.name == "bob"
    assert vote.confidence == pytest.approx(0.9)
    assert vote.samples == 8


def test_vote_prefers_nobody_on_a_tie() -> None:
    vote = IdentityVote()
    vote.add(None, quality=0.5, confidence=0.8)
    vote.add("ann", quality=0.5, confidence=0.8)
    assert vote.name is None
    assert math.isnan(vote.distance)


def test_an_empty_vote_is_undecided() -> None:
    vote = IdentityVote()
    assert not vote.decided and vote.name is None and vote.confidence == 0.0 and vote.samples == 0
    vote.add(None, quality=0.5, confidence=0.7, distance=1.3)
    assert vote.decided and vote.name is None
    assert vote.confidence == pytest.approx(0.7) and vote.distance == pytest.approx(1.3)


def test_an_unmeasured_quality_weighs_almost_nothing() -> None:
    vote = IdentityVote()
    vote.add("ann", quality=0.4, confidence=0.9)
    for _ in range(10):
        vote.add("bob", quality=math.nan, confidence=0.9)
    assert vote.name == "ann"
    assert vote.totals()["bob"] == pytest.approx(10e-3)


@pytest.mark.parametrize(("kwargs", "match"), [({"window": 0}, "window"), ({"switch_ratio": 0.5}, "switch_ratio")])
def test_vote_rejects_bad_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        IdentityVote(**kwargs)
