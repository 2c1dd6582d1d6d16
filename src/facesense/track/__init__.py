"""Tracking faces between frames.

* :mod:`~facesense.track.tracker`: :class:`Tracker` (ids, motion, appear / leave);
* :mod:`~facesense.track.assignment`: one-to-one track-detection pairs
  (:func:`match_boxes`, :func:`centre_gain`, :func:`assign`);
* :mod:`~facesense.track.vote`: :class:`IdentityVote`, a track's quality-weighted,
  hysteretic name vote (driven by :class:`facesense.identity.IdentityStage`);
* :mod:`~facesense.track.scenecut`: :class:`SceneCutDetector`, so no track crosses a
  cut to another shot.

Face quality, which weights the vote, is :mod:`facesense.quality`.
"""

from __future__ import annotations

from facesense.track.assignment import Matching, assign, centre_gain, match_boxes
from facesense.track.scenecut import SceneCutDetector
from facesense.track.tracker import Tracker, TrackerConfig, TrackInfo
from facesense.track.vote import IdentityVote

__all__ = [
    "IdentityVote",
    "Matching",
    "SceneCutDetector",
    "TrackInfo",
    "Tracker",
    "TrackerConfig",
    "assign",
    "centre_gain",
    "match_boxes",
]
