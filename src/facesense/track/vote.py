"""A track's identity vote: many recognition samples, one name that does not flicker."""

from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple

import numpy as np

from facesense.errors import ConfigError

__all__ = ["IdentityVote", "Sample"]

MIN_SAMPLE_WEIGHT = 1e-3
"""A sample's weight (its face quality) is floored here, so every sample counts a little."""


class Sample(NamedTuple):
    """One recognition sample in a vote."""

    name: str | None
    weight: float
    confidence: float
    distance: float


class IdentityVote:
    """A quality-weighted vote over a track's recent recognition samples.

    Every sample adds its quality as weight to the name it was matched to (``None``
    for nobody enrolled). The decided name is the heaviest; a different name takes
    over only when its weight reaches ``switch_ratio`` times the current name's, so one
    odd sample never flips a settled name. Only the last ``window`` samples count, so
    the memory is bounded and an early mistake can be outvoted.

    Args:
        window: samples remembered (>= 1).
        switch_ratio: hysteresis factor (>= 1).

    Raises:
        ConfigError: ``window`` < 1 or ``switch_ratio`` < 1.
    """

    def __init__(self, *, window: int = 16, switch_ratio: float = 1.5) -> None:
        if window < 1:
            raise ConfigError(f"window must be >= 1, got {window}")
        if not switch_ratio >= 1.0:
            raise ConfigError(f"switch_ratio must be >= 1, got {switch_ratio}")
        self._samples: deque[Sample] = deque(maxlen=window)
        self._switch_ratio = switch_ratio
        self._name: str | None = None
        self._decided = False

    def add(self, name: str | None, *, quality: float, confidence: float, distance: float = math.nan) -> None:
        """Record one sample.

        Args:
            name: the matched identity, ``None`` for nobody enrolled.
            quality: the face's :func:`facesense.quality.face_quality` (its weight;
                floored at ``MIN_SAMPLE_WEIGHT``).
            confidence: confidence in this sample's decision, in [0, 1]: that the face is
                ``name``, or for ``None`` that it is nobody enrolled.
            distance: the matcher's distance to its candidate (NaN when there is none).
        """
        weight = max(float(quality), MIN_SAMPLE_WEIGHT) if math.isfinite(quality) else MIN_SAMPLE_WEIGHT
        self._samples.append(Sample(name, weight, float(np.clip(confidence, 0.0, 1.0)), float(distance)))
        totals = self.totals()
        # Ties go to nobody: a name must win outright.
        best = max(totals, key=lambda k: (totals[k], k is None))
        if not self._decided:
            self._name, self._decided = best, True
        elif best != self._name and totals[best] >= self._switch_ratio * totals.get(self._name, 0.0):
            self._name = best

    def totals(self) -> dict[str | None, float]:
        """Summed weight per name over the window."""
        out: dict[str | None, float] = {}
        for s in self._samples:
            out[s.name] = out.get(s.name, 0.0) + s.weight
        return out

    @property
    def samples(self) -> int:
        """Samples in the window."""
        return len(self._samples)

    @property
    def decided(self) -> bool:
        """Whether the vote has any sample (before that, :attr:`name` means nothing)."""
        return self._decided

    @property
    def name(self) -> str | None:
        """The decided name (``None``: nobody enrolled, or no samples yet)."""
        return self._name

    @property
    def confidence(self) -> float:
        """Weighted share of the window that supports the decided name, times the
        confidence of those samples; 0 without samples."""
        total = sum(s.weight for s in self._samples)
        if total <= 0:
            return 0.0
        support = sum(s.weight * s.confidence for s in self._samples if s.name == self._name)
        return float(support / total)

    @property
    def distance(self) -> float:
        """Mean distance of the samples supporting the decided name (NaN if none)."""
        values = [s.distance for s in self._samples if s.name == self._name and not math.isnan(s.distance)]
        return float(np.mean(values)) if values else math.nan
