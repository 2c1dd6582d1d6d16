"""The data that flows between stages: :class:`Frame` and :class:`Faces`.

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Face", "Faces", "Frame", "LANDMARK_NAMES"]

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
        raise ValueError(f"{name}: expected shape {expected}, got {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name}: expected {n} rows to match xyxy, got {arr.shape[0]}")
    return arr


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
    """

    xyxy: FloatArray
    scores: FloatArray
    landmarks: FloatArray
    embeddings: FloatArray | None = None
    track_ids: IntArray | None = None
    names: tuple[str | None, ...] | None = None
    distances: FloatArray | None = None

    def __post_init__(self) -> None:
        xyxy = _as_float("xyxy", self.xyxy, (4,), None)
        n = xyxy.shape[0]
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "scores", _as_float("scores", self.scores, (), n))
        object.__setattr__(self, "landmarks", _as_float("landmarks", self.landmarks, (5, 2), n))
        if self.embeddings is not None:
            emb = np.asarray(self.embeddings, dtype=np.float32)
            if emb.ndim != 2 or emb.shape[0] != n:
                raise ValueError(f"embeddings: expected shape ({n}, D), got {emb.shape}")
            object.__setattr__(self, "embeddings", emb)
        if self.track_ids is not None:
            ids = np.asarray(self.track_ids, dtype=np.int64)
            if ids.shape != (n,):
                raise ValueError(f"track_ids: expected shape ({n},), got {ids.shape}")
            object.__setattr__(self, "track_ids", ids)
        if self.names is not None:
            names = tuple(self.names)
            if len(names) != n:
                raise ValueError(f"names: expected {n} entries, got {len(names)}")
            object.__setattr__(self, "names", names)
        if self.distances is not None:
            object.__setattr__(self, "distances", _as_float("distances", self.distances, (), n))

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
        )

    def replace(self, **changes: Any) -> Faces:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    @property
    def size_px(self) -> FloatArray:
        """``(N,)`` shorter box side of each face, in pixels."""
        wh = self.xyxy[:, 2:4] - self.xyxy[:, 0:2]
        return np.minimum(wh[:, 0], wh[:, 1]).astype(np.float32)

    @staticmethod
    def concatenate(parts: Sequence[Faces]) -> Faces:
        """Join several containers (fields missing in any part are dropped)."""
        if not parts:
            return Faces.empty()

        def join(field: str) -> Any:
            values = [getattr(p, field) for p in parts]
            if any(v is None for v in values):
                return None
            if field == "names":
                return tuple(n for v in values for n in v)
            return np.concatenate(values, axis=0)

        return Faces(**{f.name: join(f.name) for f in dataclasses.fields(Faces)})
