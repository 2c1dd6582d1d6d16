"""The data that flows between stages, all of it, in one place.

* :class:`Frame`: one image from a source (capture -> every stage).
* :class:`Faces`: every face of one image as parallel arrays; each stage returns a new
  one with more fields filled in (detect: boxes, scores, landmarks; quality; track:
  ``track_ids``; identity: ``embeddings``, ``names``, ``distances``, ``confidences``,
  ``states``).
* :class:`IdentityState`: whether a face is known, unknown, or still pending a decision.
* :class:`Event` / :class:`EventType`: the one event vocabulary (a track appeared, was
  recognized, settled as unknown, left; a live source's status changed).
* :class:`StageTimings` / :class:`FrameResult`: what the pipeline yields per frame and
  hands to every sink.

Conventions used everywhere in facesense:

* Images are ``numpy.uint8`` arrays in **BGR** order (OpenCV's), shape ``(H, W, 3)``.
* Coordinates are pixels in the full image, ``x`` to the right, ``y`` down, origin at
  the top-left corner of the top-left pixel. Boxes are ``xyxy`` = ``(x1, y1, x2, y2)``
  floats with ``x2 > x1``; width is ``x2 - x1``.
* Landmarks are ``(5, 2)`` ``(x, y)`` points in this order: left eye, right eye, nose,
  left mouth corner, right mouth corner, where "left" is the image's left (the
  subject's right eye).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from facesense.errors import ConfigError

__all__ = [
    "LANDMARK_NAMES",
    "Event",
    "EventType",
    "Face",
    "Faces",
    "Frame",
    "FrameResult",
    "IdentityState",
    "PendingEvent",
    "StageTimings",
]

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class Frame:
    """One image from a source.

    Attributes:
        image: ``(H, W, 3)`` uint8 BGR.
        index: 0-based frame number within the source.
        timestamp: seconds; the media position for files, wall-clock time for live sources.
        source_id: a name for the source (a path, URL or camera index).
    """

    image: npt.NDArray[np.uint8]
    index: int = 0
    timestamp: float = 0.0
    source_id: str = ""

    @property
    def size_wh(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        return int(self.image.shape[1]), int(self.image.shape[0])


def _as_float(name: str, value: Any, shape_tail: tuple[int, ...], n: int | None) -> FloatArray:
    arr = np.asarray(value, dtype=np.float32)
    if arr.size == 0 and n in (0, None):
        arr = arr.reshape((0, *shape_tail))
    if arr.ndim != 1 + len(shape_tail) or tuple(arr.shape[1:]) != shape_tail:
        expected = "(N" + "".join(f", {d}" for d in shape_tail) + ")"
        raise ConfigError(f"{name}: expected shape {expected}, got {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ConfigError(f"{name}: expected {n} rows to match xyxy, got {arr.shape[0]}")
    return arr


class IdentityState(str, enum.Enum):
    """What the identity stage has decided about a face.

    * ``KNOWN``: named (``names[i]`` is a person).
    * ``UNKNOWN``: embedded and matched nobody enrolled (``names[i]`` is ``None``).
    * ``PENDING``: not decided yet (not embedded, or a track whose vote has no samples);
      ``names[i]`` is ``None``.
    """

    KNOWN = "known"
    UNKNOWN = "unknown"
    PENDING = "pending"


@dataclass(frozen=True, eq=False)
class Face:
    """A light read-only view of one face in a :class:`Faces`."""

    xyxy: FloatArray
    score: float
    landmarks: FloatArray
    embedding: FloatArray | None
    track_id: int | None
    name: str | None
    distance: float | None
    confidence: float | None = None
    quality: float | None = None
    state: IdentityState | None = None

    @property
    def size_px(self) -> float:
        """The shorter side of the box, in pixels."""
        return float(min(self.xyxy[2] - self.xyxy[0], self.xyxy[3] - self.xyxy[1]))


@dataclass(frozen=True, eq=False)
class Faces:
    """Every face found in one image, as parallel arrays.

    Stages return a new :class:`Faces` (``dataclasses.replace``) with more fields
    filled in; they never mutate their input.

    Attributes:
        xyxy: ``(N, 4)`` float32 boxes.
        scores: ``(N,)`` float32 detector confidence in [0, 1].
        landmarks: ``(N, 5, 2)`` float32 points (see the module docstring).
        embeddings: ``(N, D)`` float32 L2-normalised, or ``None`` before embedding.
        track_ids: ``(N,)`` int64, or ``None`` before tracking.
        names: one name per face (``None`` entries mean unknown), or ``None`` before matching.
        distances: ``(N,)`` float32 distance to the matched identity, or ``None``.
        confidences: ``(N,)`` float32 confidence in each face's decision in [0, 1] (that
            it is ``names[i]``, or for an unknown face that it is nobody enrolled), or
            ``None``.
        quality: ``(N,)`` float32 worth of each face as a recognition sample in [0, 1]
            (:func:`facesense.quality.face_quality`; NaN where not measured), or ``None``.
        states: one :class:`IdentityState` per face, or ``None`` before identification.
    """

    xyxy: FloatArray
    scores: FloatArray
    landmarks: FloatArray
    embeddings: FloatArray | None = None
    track_ids: IntArray | None = None
    names: tuple[str | None, ...] | None = None
    distances: FloatArray | None = None
    confidences: FloatArray | None = None
    quality: FloatArray | None = None
    states: tuple[IdentityState, ...] | None = None

    def __post_init__(self) -> None:
        xyxy = _as_float("xyxy", self.xyxy, (4,), None)
        n = xyxy.shape[0]
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "scores", _as_float("scores", self.scores, (), n))
        object.__setattr__(self, "landmarks", _as_float("landmarks", self.landmarks, (5, 2), n))
        if self.embeddings is not None:
            emb = np.asarray(self.embeddings, dtype=np.float32)
            if emb.ndim != 2 or emb.shape[0] != n:
                raise ConfigError(f"embeddings: expected shape ({n}, D), got {emb.shape}")
            object.__setattr__(self, "embeddings", emb)
        if self.track_ids is not None:
            ids = np.asarray(self.track_ids, dtype=np.int64)
            if ids.shape != (n,):
                raise ConfigError(f"track_ids: expected shape ({n},), got {ids.shape}")
            object.__setattr__(self, "track_ids", ids)
        if self.names is not None:
            names = tuple(self.names)
            if len(names) != n:
                raise ConfigError(f"names: expected {n} entries, got {len(names)}")
            object.__setattr__(self, "names", names)
        for name in ("distances", "confidences", "quality"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _as_float(name, value, (), n))
        if self.states is not None:
            states = tuple(IdentityState(v) for v in self.states)
            if len(states) != n:
                raise ConfigError(f"states: expected {n} entries, got {len(states)}")
            object.__setattr__(self, "states", states)

    @classmethod
    def empty(cls) -> Faces:
        """A container with no faces."""
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            landmarks=np.zeros((0, 5, 2), np.float32),
        )

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def __iter__(self) -> Iterator[Face]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, index: Any) -> Any:
        """An ``int`` gives a :class:`Face`; a slice, index array or boolean mask a :class:`Faces`."""
        if isinstance(index, (int, np.integer)):
            i = int(index)
            if not -len(self) <= i < len(self):
                raise IndexError(f"face index {i} out of range for {len(self)} faces")
            return Face(
                xyxy=self.xyxy[i],
                score=float(self.scores[i]),
                landmarks=self.landmarks[i],
                embedding=None if self.embeddings is None else self.embeddings[i],
                track_id=None if self.track_ids is None else int(self.track_ids[i]),
                name=None if self.names is None else self.names[i],
                distance=None if self.distances is None else float(self.distances[i]),
                confidence=None if self.confidences is None else float(self.confidences[i]),
                quality=None if self.quality is None else float(self.quality[i]),
                state=None if self.states is None else self.states[i],
            )
        if isinstance(index, slice):
            idx = np.arange(len(self))[index]
        else:
            idx = np.asarray(index)
            if idx.dtype == bool:
                if idx.shape != (len(self),):
                    raise IndexError(f"boolean mask: expected shape ({len(self)},), got {idx.shape}")
                idx = np.flatnonzero(idx)
            idx = idx.astype(np.int64).reshape(-1)
        return Faces(
            xyxy=self.xyxy[idx],
            scores=self.scores[idx],
            landmarks=self.landmarks[idx],
            embeddings=None if self.embeddings is None else self.embeddings[idx],
            track_ids=None if self.track_ids is None else self.track_ids[idx],
            names=None if self.names is None else tuple(self.names[i] for i in idx),
            distances=None if self.distances is None else self.distances[idx],
            confidences=None if self.confidences is None else self.confidences[idx],
            quality=None if self.quality is None else self.quality[idx],
            states=None if self.states is None else tuple(self.states[i] for i in idx),
        )

    def replace(self, **changes: Any) -> Faces:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    @property
    def size_px(self) -> FloatArray:
        """``(N,)`` shorter box side of each face, in pixels."""
        wh = self.xyxy[:, 2:4] - self.xyxy[:, 0:2]
        sides: FloatArray = np.minimum(wh[:, 0], wh[:, 1]).astype(np.float32)
        return sides

    @staticmethod
    def concatenate(parts: Sequence[Faces]) -> Faces:
        """Join several containers (fields missing in any part are dropped)."""
        if not parts:
            return Faces.empty()

        def join(field: str) -> Any:
            values = [getattr(p, field) for p in parts]
            if any(v is None for v in values):
                return None
            if field in ("names", "states"):
                return tuple(n for v in values for n in v)
            return np.concatenate(values, axis=0)

        return Faces(**{f.name: join(f.name) for f in dataclasses.fields(Faces)})

    def known_mask(self) -> npt.NDArray[np.bool_]:
        """``(N,)`` True where the face is named (state ``KNOWN``)."""
        if self.states is None:
            return np.zeros(len(self), bool)
        return np.array([s is IdentityState.KNOWN for s in self.states], bool)


# --------------------------------------------------------------------------- events


class EventType(str, enum.Enum):
    """Kinds of :class:`Event`: the one vocabulary of the pipeline, sinks and web."""

    APPEARED = "appeared"
    """A track was confirmed (a face is in view)."""
    RECOGNIZED = "recognized"
    """A track's voted name became a person."""
    UNKNOWN = "unknown"
    """A track's vote settled on nobody enrolled."""
    LEFT = "left"
    """A track ended (the face left, the shot changed, the stream ended)."""
    STATUS = "status"
    """A live source's connection changed (``status``: disconnected / reconnecting / reconnected)."""


@dataclass(frozen=True, kw_only=True)
class Event:
    """Something that happened, with the time and frame it happened at.

    Attributes:
        type: see :class:`EventType`.
        time: the frame's timestamp (media seconds for files and folders, epoch
            seconds for live sources); wall-clock epoch seconds for status events.
        frame: the frame index (for status events: the next frame's index).
        source: the source (camera) id.
        track_id: the track, for track events.
        name: the track's voted name (``None`` = unknown or pending).
        confidence: the vote's confidence in [0, 1].
        xyxy: the track's box in pixels.
        status: for status events, ``disconnected`` / ``reconnecting`` / ``reconnected``.
        message: for status events, a one-line description.
    """

    type: EventType
    time: float
    frame: int
    source: str | None = None
    track_id: int | None = None
    name: str | None = None
    confidence: float | None = None
    xyxy: tuple[float, float, float, float] | None = None
    status: str | None = None
    message: str | None = None

    @property
    def is_track(self) -> bool:
        """Whether the event is about a track (every type but ``STATUS``)."""
        return self.type is not EventType.STATUS

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"time", "frame", "type", "source", "track_id", "name",
        "confidence", "box"}`` for track events, ``{"time", "frame", "type", "status",
        "message", "source"}`` for status events."""
        if self.type is EventType.STATUS:
            return {
                "time": round(self.time, 3),
                "frame": self.frame,
                "type": self.type.value,
                "status": self.status,
                "message": self.message,
                "source": self.source,
            }
        return {
            "time": round(self.time, 3),
            "frame": self.frame,
            "type": self.type.value,
            "source": self.source,
            "track_id": self.track_id,
            "name": self.name,
            "confidence": None if self.confidence is None else round(float(self.confidence), 4),
            "box": None if self.xyxy is None else [round(v, 1) for v in self.xyxy],
        }


class PendingEvent(NamedTuple):
    """A track event noted by a stage, waiting to be stamped with the frame it is
    reported in (:meth:`stamp`)."""

    type: EventType
    track_id: int
    name: str | None
    confidence: float
    xyxy: tuple[float, float, float, float]

    def stamp(self, frame: Frame) -> Event:
        """The event, at ``frame``'s timestamp, index and source."""
        return Event(
            type=self.type,
            time=frame.timestamp,
            frame=frame.index,
            source=frame.source_id,
            track_id=self.track_id,
            name=self.name,
            confidence=self.confidence,
            xyxy=self.xyxy,
        )


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, kw_only=True)
class StageTimings:
    """Milliseconds spent on one frame, per stage (0 for stages that did not run).

    Attributes:
        wait_ms: waiting for the capture thread to hand over the frame.
        decode_ms: decoding the frame on the capture thread (0 where unknown).
        cut_ms: scene-cut check.
        detect_ms: face detection (0 on frames between detections).
        quality_ms: face quality (sharpness) of new detections.
        track_ms: tracking (matching, prediction).
        embed_ms: crops and embeddings of the faces that needed one.
        match_ms: naming the embeddings.
        identify_ms: the identity stage's own work around embed and match (voting).
        sinks_ms: the sinks' ``write`` calls (encoding runs on its own thread).
        total_ms: from handing over the frame to the end of the sinks.
    """

    wait_ms: float = 0.0
    decode_ms: float = 0.0
    cut_ms: float = 0.0
    detect_ms: float = 0.0
    quality_ms: float = 0.0
    track_ms: float = 0.0
    embed_ms: float = 0.0
    match_ms: float = 0.0
    identify_ms: float = 0.0
    sinks_ms: float = 0.0
    total_ms: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """The timings as a plain dict."""
        return {f.name: float(getattr(self, f.name)) for f in dataclasses.fields(self)}


@dataclass(frozen=True, kw_only=True, eq=False)
class FrameResult:
    """Everything the pipeline knows about one frame: what every sink receives.

    Attributes:
        frame: the frame (BGR image, index, timestamp, source id).
        faces: the faces with every per-face field the stages filled in: ``track_ids``,
            ``quality`` (NaN between detections), ``names`` / ``states`` /
            ``confidences`` / ``distances`` from the identity stage. Boxes are
            detections on detection frames and predictions between them.
        detected: whether detection ran on this frame.
        events: events of this frame (appeared / recognized / unknown / left).
        timings: per-stage milliseconds.
        fps: frames per second the pipeline processed over the last ~30 frames.
    """

    frame: Frame
    faces: Faces
    detected: bool
    events: tuple[Event, ...] = ()
    timings: StageTimings = field(default_factory=StageTimings)
    fps: float = 0.0
