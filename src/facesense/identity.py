"""The identity stage: who each tracked face is.

:class:`IdentityStage` takes the faces the tracker returned (with ``track_ids`` and
``quality``) and returns them with ``names``, ``states``, ``confidences`` and
``distances``. Per frame it

1. **decides whom to embed** (:meth:`IdentityStage.due`): a confirmed track matched by
   this frame's detection that was never embedded, was last embedded
   ``reembed_every`` frames ago (a third of that while it has fewer than
   ``warmup_samples`` samples), or shows a face whose quality beats the best one
   embedded so far by ``reembed_quality_gain``. Everything else keeps its vote, so
   FaceNet runs on a few faces a second, not on every face of every frame;
2. **embeds and matches** those faces (the embedder and matcher it was given);
3. **splits** a track whose new embedding is far from its earlier ones (two faces
   crossed, ``split_distance``): the tracker ends it and starts a new track, so a
   name never passes from one person to another;
4. **votes**: each sample goes to the track's :class:`~facesense.track.IdentityVote`,
   weighted by face quality, with the confidence of the sample's own decision
   (:func:`sample_confidences`);
5. **names** every face from its track's vote: ``KNOWN`` (the vote is a person),
   ``UNKNOWN`` (the vote is nobody enrolled) or ``PENDING`` (no sample yet).

Events: ``RECOGNIZED`` when a track's voted name becomes a person (again when it
changes to another person), ``UNKNOWN`` once per track when its vote has settled on
nobody enrolled (after ``unknown_after_samples`` samples), drained with
:meth:`IdentityStage.drain_events`. The tracker's own ``APPEARED`` / ``LEFT`` events
carry the voted name the stage hands it (:meth:`facesense.track.Tracker.set_name`).

Example:
    >>> tracker = Tracker()
    >>> identity = IdentityStage(tracker, embedder, matcher)
    >>> faces = detector.detect(image)
    >>> faces = faces.replace(quality=face_quality(image, faces))
    >>> named = identity.identify(image, tracker.update(faces))
    >>> named.names, named.states
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from facesense.errors import ConfigError, ModelError
from facesense.quality import face_quality
from facesense.track.vote import IdentityVote
from facesense.types import Event, EventType, Faces, IdentityState, PendingEvent

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.embed.base import Embedder
    from facesense.track.tracker import Tracker
    from facesense.types import Frame

logger = logging.getLogger(__name__)

__all__ = [
    "EmbeddingMatcher",
    "IdentityConfig",
    "IdentityStage",
    "IdentityTimings",
    "MatchLike",
    "sample_confidences",
]


class MatchLike(Protocol):
    """What a matcher returns for ``M`` embeddings (``facesense.match.MatchResult``)."""

    @property
    def names(self) -> Sequence[str | None]:
        """The identity of each embedding, ``None`` for nobody enrolled."""
        ...

    @property
    def distances(self) -> npt.NDArray[np.float32]:
        """``(M,)`` distance to each embedding's candidate."""
        ...

    @property
    def confidences(self) -> npt.NDArray[np.float32]:
        """``(M,)`` confidence in [0, 1] that the embedding is its candidate."""
        ...


@runtime_checkable
class EmbeddingMatcher(Protocol):
    """Names embeddings, or says nobody enrolled: any fitted :class:`facesense.match.Matcher`
    or a hot-reloading gallery matcher."""

    def match(self, embeddings: npt.NDArray[np.float32]) -> MatchLike:
        """Name each row of ``(M, D)`` L2-normalised embeddings (``None`` = nobody enrolled)."""
        ...


def sample_confidences(match: MatchLike) -> npt.NDArray[np.float32]:
    """The confidence of each match's own decision, for the vote.

    A matcher's confidence is about its candidate (that the face is that person); when
    it rejected the candidate, the decision is "nobody enrolled", whose confidence is
    one minus that.

    Returns:
        ``(M,)`` float32 in [0, 1].
    """
    conf = np.clip(np.asarray(match.confidences, np.float32).reshape(-1), 0.0, 1.0)
    nobody = np.array([n is None for n in match.names], bool)
    return np.where(nobody, 1.0 - conf, conf).astype(np.float32)


@dataclass(frozen=True, kw_only=True)
class IdentityConfig:
    """Settings of the identity stage.

    Attributes:
        reembed_every: frames between two embeddings of the same track.
        warmup_samples: a track with fewer samples than this is embedded three times as
            often, so its name settles quickly.
        reembed_quality_gain: embed early when the face's quality beats the best
            embedded one by this fraction.
        vote_window: samples a track's vote remembers.
        switch_ratio: a challenger name needs this many times the current name's
            weight to take over (hysteresis).
        split_distance: when a track's new embedding is farther than this (L2, on
            normalised embeddings) from the mean of its earlier ones, the track has
            jumped to another person (two faces crossed): it ends and a new track takes
            over. 0 turns it off. Measured on the Hamilton clip with FaceNet: a face
            against its own track's mean stays under 1.08 (a profile turning frontal),
            different people's means are 1.0-1.5 apart.
        unknown_after_samples: a track's ``UNKNOWN`` event waits for this many samples
            (a name is announced at once and can be corrected by a later
            ``RECOGNIZED``; "nobody" is announced once per track, so it waits for the
            warm-up).
    """

    reembed_every: int = 15
    warmup_samples: int = 3
    reembed_quality_gain: float = 0.25
    vote_window: int = 16
    switch_ratio: float = 1.5
    split_distance: float = 1.2
    unknown_after_samples: int = 3

    def __post_init__(self) -> None:
        for name in ("reembed_every", "vote_window", "unknown_after_samples"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_samples < 0:
            raise ConfigError(f"warmup_samples must be >= 0, got {self.warmup_samples}")
        if self.reembed_quality_gain < 0:
            raise ConfigError(f"reembed_quality_gain must be >= 0, got {self.reembed_quality_gain}")
        if self.split_distance < 0:
            raise ConfigError(f"split_distance must be >= 0, got {self.split_distance}")
        if not self.switch_ratio >= 1.0:
            raise ConfigError(f"switch_ratio must be >= 1, got {self.switch_ratio}")


@dataclass(frozen=True)
class IdentityTimings:
    """Milliseconds of the last :meth:`IdentityStage.identify` call.

    Attributes:
        embed_ms: the embedder (crops and inference).
        match_ms: the matcher.
        total_ms: the whole call (embed, match, voting and naming).
        embedded: how many faces were embedded in the call.
    """

    embed_ms: float = 0.0
    match_ms: float = 0.0
    total_ms: float = 0.0
    embedded: int = 0




def _frame_embeddings(n: int, due: npt.NDArray[np.bool_], embedded: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``(n, D)``: the embeddings of the faces embedded on this frame in their rows, NaN in the others."""
    emb = np.asarray(embedded, np.float32)
    out = np.full((n, emb.shape[1]), np.nan, np.float32)
    out[due] = emb
    return out


@dataclass(eq=False)
class _TrackIdentity:
    """What the stage remembers about one track."""

    vote: IdentityVote
    embedded_at: int | None = None  # tracker frame of the last embedding (None: never)
    best_embedded_quality: float = 0.0
    embedding_sum: npt.NDArray[np.float64] | None = None  # of the embeddings seen so far
    announced_name: str | None = None  # the last RECOGNIZED name
    announced_unknown: bool = False


class IdentityStage:
    """Decides whom to embed, votes per track and names faces.

    Args:
        tracker: the tracker whose ``track_ids`` the faces carry (read for which tracks
            are confirmed and matched now; told the voted names; asked to split).
        embedder: ``embed(image, faces) -> Faces`` with embeddings; needed with a matcher.
        matcher: ``match(embeddings)`` (:class:`EmbeddingMatcher`); ``None``: nothing is
            embedded and every face stays ``PENDING``.
        config: the stage's settings.

    Raises:
        ConfigError: a matcher without an embedder.
    """

    def __init__(
        self,
        tracker: Tracker,
        embedder: Embedder | None = None,
        matcher: EmbeddingMatcher | None = None,
        config: IdentityConfig | None = None,
    ) -> None:
        if matcher is not None and embedder is None:
            raise ConfigError("a matcher needs an embedder")
        self.tracker = tracker
        self.embedder = embedder
        self.matcher = matcher
        self.config = config or IdentityConfig()
        self.last_timings = IdentityTimings()
        self._tracks: dict[int, _TrackIdentity] = {}
        self._events: list[PendingEvent] = []

    # -- the stage -----------------------------------------------------------------
    def identify(self, image: npt.NDArray[np.uint8], faces: Faces) -> Faces:
        """Name one frame's tracked faces, embedding those that need it.

        Call it once per frame, after the tracker (detection frames and the frames it
        predicts between them alike).

        Args:
            image: ``(H, W, 3)`` uint8 BGR, the frame the faces are in.
            faces: the tracker's output (``track_ids`` set; ``quality`` from
                :func:`facesense.quality.face_quality`, or score times size when absent).

        Returns:
            ``faces`` with ``names``, ``states``, ``confidences`` (of each face's
            decision) and ``distances`` (mean matcher distance of the samples behind
            the decision; NaN while pending) filled, and ``track_ids`` changed where a
            track was split. On a frame where some faces were embedded, ``embeddings``
            holds those faces' embeddings in their rows and NaN in the others (a
            recorder of unknown tracks reads them, :mod:`facesense.sinks.unknowns`);
            ``None`` on frames where nothing was embedded.

        Raises:
            ConfigError: the faces have no ``track_ids``.
            ModelError: the embedder or matcher returned something else than asked for
                (no embeddings, or not one result per embedding).
        """
        start = time.perf_counter()
        if faces.track_ids is None:
            raise ConfigError("identify: faces have no track_ids (run them through the tracker first)")
        quality = self._quality(faces)
        due = self.due(faces)
        embed_ms = match_ms = 0.0
        n_embedded = 0
        ids = faces.track_ids.copy()
        fresh: npt.NDArray[np.float32] | None = None
        if due.any() and self.embedder is not None and self.matcher is not None:
            t0 = time.perf_counter()
            embedded = self.embedder.embed(image, faces[due])
            t1 = time.perf_counter()
            if embedded.embeddings is None:
                raise ModelError(f"{type(self.embedder).__name__}.embed returned faces without embeddings")
            matched = self.matcher.match(embedded.embeddings)
            t2 = time.perf_counter()
            embed_ms, match_ms = (t1 - t0) * 1000.0, (t2 - t1) * 1000.0
            n_embedded = len(embedded)
            self._vote(ids, np.flatnonzero(due), matched, embedded.embeddings, quality)
            fresh = _frame_embeddings(len(faces), due, embedded.embeddings)
        self._forget_gone()
        named = self._name(faces, ids, fresh)
        self.last_timings = IdentityTimings(
            embed_ms, match_ms, (time.perf_counter() - start) * 1000.0, embedded=n_embedded
        )
        return named

    def due(self, faces: Faces) -> npt.NDArray[np.bool_]:
        """Which of the faces need an embedding now (see the module docstring).

        Args:
            faces: the tracker's output for this frame.

        Returns:
            ``(N,)`` bool; all False for faces without ``track_ids``.
        """
        cfg = self.config
        mask = np.zeros(len(faces), bool)
        if faces.track_ids is None:
            return mask
        quality = self._quality(faces)
        for i, tid in enumerate(faces.track_ids.tolist()):
            info = self.tracker.track(tid)
            if info is None or not info.confirmed or info.since_update != 0:
                continue
            rec = self._tracks.get(tid)
            if rec is None or rec.embedded_at is None:
                mask[i] = True
                continue
            warm = rec.vote.samples >= cfg.warmup_samples
            period = cfg.reembed_every if warm else max(1, cfg.reembed_every // 3)
            age = self.tracker.frames - rec.embedded_at
            mask[i] = age >= period or quality[i] > rec.best_embedded_quality * (1.0 + cfg.reembed_quality_gain)
        return mask

    def drain_events(self, frame: Frame) -> list[Event]:
        """``RECOGNIZED`` / ``UNKNOWN`` events since the last call, oldest first.

        Args:
            frame: the frame they happened in (its timestamp, index and source id).
        """
        pending, self._events = self._events, []
        return [p.stamp(frame) for p in pending]

    def forget(self, track_id: int) -> bool:
        """Drop what the stage knows of track ``track_id``: its vote, embeddings and
        announced name, so that it is embedded on its next detection and named afresh by
        the matcher as it is then (after somebody corrected the track's name).

        The track is ``PENDING`` until then, and a ``RECOGNIZED`` event follows when its
        new vote names somebody (the same name again too). Call it on the thread that
        calls :meth:`identify`.

        Returns:
            Whether the stage knew the track.
        """
        known = self._tracks.pop(track_id, None) is not None
        if self.tracker.track(track_id) is not None:
            self.tracker.set_name(track_id, None, 0.0)  # its LEFT event must not carry the old name
        return known

    # -- internals -----------------------------------------------------------------
    @staticmethod
    def _quality(faces: Faces) -> npt.NDArray[np.float32]:
        """Each face's weight: its measured quality, else score times size."""
        fallback = face_quality(None, faces)
        if faces.quality is None:
            return fallback
        return np.where(np.isfinite(faces.quality), faces.quality, fallback).astype(np.float32)

    def _record(self, tid: int) -> _TrackIdentity:
        rec = self._tracks.get(tid)
        if rec is None:
            cfg = self.config
            rec = _TrackIdentity(IdentityVote(window=cfg.vote_window, switch_ratio=cfg.switch_ratio))
            self._tracks[tid] = rec
        return rec

    def _vote(
        self,
        ids: npt.NDArray[np.int64],
        rows: npt.NDArray[np.intp],
        matched: MatchLike,
        embeddings: npt.NDArray[np.float32],
        quality: npt.NDArray[np.float32],
    ) -> None:
        """Add one sample per embedded face to its track's vote; split tracks that jumped."""
        cfg = self.config
        names = list(matched.names)
        conf = sample_confidences(matched)
        dist = np.asarray(matched.distances, np.float64).reshape(-1)
        if not len(names) == len(conf) == len(dist) == len(rows):
            raise ModelError(
                f"matcher returned {len(names)} names, {len(conf)} confidences and {len(dist)} distances"
                f" for {len(rows)} embeddings"
            )
        emb = np.asarray(embeddings, np.float64)
        for k, i in enumerate(rows.tolist()):
            tid = int(ids[i])
            rec = self._record(tid)
            if rec.embedding_sum is not None and cfg.split_distance > 0:
                ref = rec.embedding_sum / max(float(np.linalg.norm(rec.embedding_sum)), 1e-12)
                jump = float(np.linalg.norm(emb[k] - ref))
                if jump > cfg.split_distance:
                    logger.debug("track %d: embedding jumped %.2f: split", tid, jump)
                    tid = self.tracker.split(tid)
                    ids[i] = tid
                    rec = self._record(tid)
            rec.embedding_sum = emb[k].copy() if rec.embedding_sum is None else rec.embedding_sum + emb[k]
            q = float(quality[i])
            rec.vote.add(names[k], quality=q, confidence=float(conf[k]), distance=float(dist[k]))
            rec.embedded_at = self.tracker.frames
            rec.best_embedded_quality = max(rec.best_embedded_quality, q)
            self.tracker.set_name(tid, rec.vote.name, rec.vote.confidence)
            self._announce(tid, rec)

    def _announce(self, tid: int, rec: _TrackIdentity) -> None:
        vote = rec.vote
        kind: EventType | None = None
        if vote.name is not None and vote.name != rec.announced_name:
            rec.announced_name = vote.name
            kind = EventType.RECOGNIZED
        elif vote.name is None and not rec.announced_unknown and vote.samples >= self.config.unknown_after_samples:
            rec.announced_unknown = True
            kind = EventType.UNKNOWN
        if kind is None:
            return
        info = self.tracker.track(tid)
        box = np.full(4, np.nan) if info is None else info.xyxy
        xyxy = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
        self._events.append(PendingEvent(kind, tid, vote.name, vote.confidence, xyxy))

    def _forget_gone(self) -> None:
        for tid in [t for t in self._tracks if self.tracker.track(t) is None]:
            del self._tracks[tid]

    def _name(self, faces: Faces, ids: npt.NDArray[np.int64], embeddings: npt.NDArray[np.float32] | None) -> Faces:
        """``faces`` with track ``ids``, this frame's ``embeddings``, and the names, states,
        confidences and distances of their tracks' votes."""
        names: list[str | None] = []
        states: list[IdentityState] = []
        conf = np.zeros(len(faces), np.float32)
        dist = np.full(len(faces), np.nan, np.float32)
        for i, tid in enumerate(ids.tolist()):
            rec = self._tracks.get(tid)
            info = self.tracker.track(tid)
            if rec is None or not rec.vote.decided or info is None or not info.confirmed:
                names.append(None)
                states.append(IdentityState.PENDING)
                continue
            names.append(rec.vote.name)
            states.append(IdentityState.KNOWN if rec.vote.name is not None else IdentityState.UNKNOWN)
            conf[i] = rec.vote.confidence
            dist[i] = rec.vote.distance
        return faces.replace(
            track_ids=ids, names=tuple(names), states=tuple(states), confidences=conf, distances=dist, embeddings=embeddings
        )
