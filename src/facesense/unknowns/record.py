"""What an unknown track leaves behind: one compact, bounded record.

An :class:`UnknownRecord` is the whole memory facesense keeps of a track that stayed
unknown: the L2-normalised mean of its embedded faces, when it was first and last
seen, on which source (camera), how many faces were embedded, and a few of its best
face crops (JPEG, chosen by :func:`facesense.quality.face_quality`), bounded in number
and in bytes by :class:`CropLimits`. :class:`TrackRecorder` builds one while the track
runs::

    recorder = TrackRecorder(source="door", model_id=embedder.model_id, track_id=7)
    for each embedded face of track 7:
        recorder.add(embedding, seen_at=frame.timestamp, quality=q, image=frame.image, xyxy=box)
    record = recorder.record()          # UnknownRecord, ready for UnknownClusterer.add

The recorder holds one running sum and at most ``CropLimits.max_crops`` encoded
crops, whatever the track's length; a crop is encoded only when it would enter the
best few.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from facesense.errors import ConfigError, ImageError

if TYPE_CHECKING:
    import numpy.typing as npt

logger = logging.getLogger(__name__)

__all__ = ["Crop", "CropLimits", "TrackRecorder", "UnknownRecord", "encode_face_crop"]


_UNIT_TOLERANCE = 1e-6  # a vector this close to unit length is not normalised again
_MIN_JPEG_QUALITY = 40  # a crop over the byte budget is re-encoded down to this quality, then dropped


@dataclass(frozen=True, kw_only=True)
class CropLimits:
    """How many face crops a record keeps, and how big they may be.

    Attributes:
        max_crops: crops kept per record (the best by quality).
        max_bytes: total JPEG bytes per record; a crop that does not fit is re-encoded
            at a lower quality, or left out.
        size_px: side of the square crop.
        margin_ratio: margin around the square face box, a share of its side.
        jpeg_quality: OpenCV JPEG quality of the first encoding.
    """

    max_crops: int = 3
    max_bytes: int = 32_000
    size_px: int = 112
    margin_ratio: float = 0.25
    jpeg_quality: int = 85

    def __post_init__(self) -> None:
        if self.max_crops < 0:
            raise ConfigError(f"max_crops must be >= 0, got {self.max_crops}")
        if self.max_bytes < 0:
            raise ConfigError(f"max_bytes must be >= 0, got {self.max_bytes}")
        if not 16 <= self.size_px <= 1024:
            raise ConfigError(f"size_px must be in [16, 1024], got {self.size_px}")
        if not 0 <= self.margin_ratio <= 2:
            raise ConfigError(f"margin_ratio must be in [0, 2], got {self.margin_ratio}")
        if not _MIN_JPEG_QUALITY <= self.jpeg_quality <= 100:
            raise ConfigError(f"jpeg_quality must be in [{_MIN_JPEG_QUALITY}, 100], got {self.jpeg_quality}")


@dataclass(frozen=True)
class Crop:
    """One face crop of an unknown.

    Attributes:
        jpeg: the encoded square crop (BGR source, JPEG bytes).
        quality: its :func:`~facesense.quality.face_quality` in ``[0, 1]``.
        seen_at: when it was seen, seconds (the frame's timestamp).
    """

    jpeg: bytes
    quality: float
    seen_at: float

    def __post_init__(self) -> None:
        if not isinstance(self.jpeg, bytes) or not self.jpeg.startswith(b"\xff\xd8"):
            raise ConfigError("crop: expected JPEG bytes")
        if not (math.isfinite(self.quality) and math.isfinite(self.seen_at)):
            raise ConfigError(f"crop: quality and seen_at must be finite, got {self.quality}, {self.seen_at}")


def _unit(embedding: npt.ArrayLike, what: str) -> npt.NDArray[np.float32]:
    e = np.asarray(embedding, dtype=np.float32)
    if e.ndim == 2 and e.shape[0] == 1:
        e = e[0]
    if e.ndim != 1 or e.shape[0] == 0:
        raise ConfigError(f"{what}: expected a (D,) embedding, got shape {e.shape}")
    if not np.all(np.isfinite(e)):
        raise ConfigError(f"{what}: contains NaN or infinity")
    norm = float(np.linalg.norm(e))
    if norm < 1e-6:
        raise ConfigError(f"{what}: has no direction (norm {norm:.2g})")
    if abs(norm - 1.0) <= _UNIT_TOLERANCE:
        return np.array(e, dtype=np.float32)  # already unit: kept bit for bit (a stored record loads as saved)
    return np.asarray(e / norm, dtype=np.float32)


@dataclass(frozen=True, eq=False)
class UnknownRecord:
    """One unknown track, compactly (see the module docstring).

    Attributes:
        embedding: ``(D,)`` float32, the L2-normalised mean of the track's embedded faces
            (normalised again on creation).
        model_id: the embedder's model id (records of different models never mix).
        first_seen, last_seen: seconds (epoch for live sources), ``first_seen <= last_seen``.
        source: the source (camera) id.
        faces: how many embedded faces the mean is over (>= 1).
        crops: the best crops, best first, within the recorder's :class:`CropLimits`.
        track_id: the track, when known.
    """

    embedding: npt.NDArray[np.float32]
    model_id: str
    first_seen: float
    last_seen: float
    source: str = ""
    faces: int = 1
    crops: tuple[Crop, ...] = ()
    track_id: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "embedding", _unit(self.embedding, "record embedding"))
        self.embedding.setflags(write=False)
        if not self.model_id:
            raise ConfigError("record: model_id is empty")
        if not (math.isfinite(self.first_seen) and math.isfinite(self.last_seen)):
            raise ConfigError(f"record: first_seen and last_seen must be finite, got {self.first_seen}, {self.last_seen}")
        if self.first_seen > self.last_seen:
            raise ConfigError(f"record: first_seen {self.first_seen} is after last_seen {self.last_seen}")
        if self.faces < 1:
            raise ConfigError(f"record: faces must be >= 1, got {self.faces}")

    @property
    def crop_bytes(self) -> int:
        """Total size of the crops' JPEGs."""
        return sum(len(c.jpeg) for c in self.crops)


def encode_face_crop(
    image: npt.NDArray[np.uint8], xyxy: npt.ArrayLike, limits: CropLimits, *, quality: int | None = None
) -> bytes:
    """A square JPEG crop of one face (box made square, plus ``limits.margin_ratio``).

    Args:
        image: ``(H, W, 3)`` uint8 BGR.
        xyxy: ``(4,)`` face box, pixels.
        limits: crop size, margin and JPEG quality.
        quality: JPEG quality instead of ``limits.jpeg_quality``.

    Raises:
        ConfigError: the image is not ``(H, W, 3)`` uint8 or the box has no area.
        ImageError: OpenCV could not encode the crop.
    """
    import cv2

    from facesense.align import CropConfig, crop_faces
    from facesense.types import Faces

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or img.shape[0] == 0 or img.shape[1] == 0:
        raise ConfigError(f"image: expected (H, W, 3) uint8 BGR, got {img.shape} {img.dtype}")
    box = np.asarray(xyxy, np.float32).reshape(-1)
    if box.shape != (4,) or not np.all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
        raise ConfigError(f"xyxy: expected a box with area, got {box.tolist()}")
    faces = Faces(xyxy=box[None], scores=np.ones(1, np.float32), landmarks=np.zeros((1, 5, 2), np.float32))
    config = CropConfig(size_px=limits.size_px, margin_ratio=limits.margin_ratio, margin_px=0.0, square=True)
    crop = crop_faces(img, faces, config)[0]
    q = limits.jpeg_quality if quality is None else quality
    try:
        ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, int(q)])
    except cv2.error as exc:
        raise ImageError(f"cannot encode a face crop as JPEG ({getattr(exc, 'msg', exc)})") from exc
    if not ok:
        raise ImageError("cannot encode a face crop as JPEG")
    return bytes(buf.tobytes())


@dataclass
class TrackRecorder:
    """Builds the :class:`UnknownRecord` of one track from its embedded faces.

    Memory is bounded: one running sum of embeddings, and at most ``limits.max_crops``
    JPEG crops within ``limits.max_bytes`` (best quality first; ties keep the earlier).

    Args:
        source: the source (camera) id.
        model_id: the embedder's model id.
        track_id: the track, when known.
        limits: crop bounds.
    """

    source: str
    model_id: str
    track_id: int | None = None
    limits: CropLimits = field(default_factory=CropLimits)
    _sum: npt.NDArray[np.float64] | None = field(default=None, init=False, repr=False)
    _faces: int = field(default=0, init=False)
    _first: float = field(default=math.inf, init=False)
    _last: float = field(default=-math.inf, init=False)
    _crops: list[Crop] = field(default_factory=list, init=False, repr=False)

    @property
    def faces(self) -> int:
        """How many embedded faces were added."""
        return self._faces

    def add(
        self,
        embedding: npt.ArrayLike,
        *,
        seen_at: float,
        quality: float,
        image: npt.NDArray[np.uint8] | None = None,
        xyxy: npt.ArrayLike | None = None,
    ) -> None:
        """Add one embedded face of the track.

        Args:
            embedding: ``(D,)`` the face's embedding (L2-normalised, like every embedder's).
            seen_at: the frame's timestamp, seconds.
            quality: the face's :func:`~facesense.quality.face_quality`.
            image: ``(H, W, 3)`` uint8 BGR frame, to keep a crop of the face (with ``xyxy``).
            xyxy: ``(4,)`` the face box in ``image``, pixels.

        Raises:
            ConfigError: a bad embedding (shape, NaN, another length than earlier faces),
                time, quality, image or box.
            ImageError: the crop cannot be encoded.
        """
        e = _unit(embedding, "face embedding").astype(np.float64)
        if self._sum is not None and e.shape != self._sum.shape:
            raise ConfigError(f"face embedding: expected {self._sum.shape[0]} values like the track's earlier faces, got {e.shape[0]}")
        t, q = float(seen_at), float(quality)
        if not math.isfinite(t):
            raise ConfigError(f"seen_at must be finite, got {seen_at}")
        if not (math.isfinite(q) and 0.0 <= q <= 1.0):
            raise ConfigError(f"quality must be in [0, 1], got {quality}")
        if (image is None) != (xyxy is None):
            raise ConfigError("give both image and xyxy to keep a crop, or neither")
        crop = None
        if image is not None and xyxy is not None and self._wants(q):
            crop = self._encode(image, xyxy, q, t)
        self._sum = e if self._sum is None else self._sum + e
        self._faces += 1
        self._first = min(self._first, t)
        self._last = max(self._last, t)
        if crop is not None:
            self._keep(crop)

    def _wants(self, quality: float) -> bool:
        lim = self.limits
        if lim.max_crops == 0 or lim.max_bytes == 0:
            return False
        return len(self._crops) < lim.max_crops or quality > self._crops[-1].quality

    def _encode(self, image: npt.NDArray[np.uint8], xyxy: npt.ArrayLike, quality: float, seen_at: float) -> Crop | None:
        lim = self.limits
        jpeg_q = lim.jpeg_quality
        while True:
            jpeg = encode_face_crop(image, xyxy, lim, quality=jpeg_q)
            if len(jpeg) <= lim.max_bytes or jpeg_q <= _MIN_JPEG_QUALITY:
                break
            jpeg_q = max(_MIN_JPEG_QUALITY, jpeg_q - 15)
        if len(jpeg) > lim.max_bytes:
            logger.debug("a %d-byte face crop does not fit the %d-byte budget; not kept", len(jpeg), lim.max_bytes)
            return None
        return Crop(jpeg=jpeg, quality=quality, seen_at=seen_at)

    def _keep(self, crop: Crop) -> None:
        lim = self.limits
        crops = sorted([*self._crops, crop], key=lambda c: -c.quality)  # stable: earlier wins ties
        kept: list[Crop] = []
        total = 0
        for c in crops:
            if len(kept) < lim.max_crops and total + len(c.jpeg) <= lim.max_bytes:
                kept.append(c)
                total += len(c.jpeg)
        self._crops = kept

    def record(self) -> UnknownRecord:
        """The track's record so far.

        Raises:
            ConfigError: no face was added.
        """
        if self._sum is None:
            raise ConfigError("the track has no embedded face to make a record from")
        return UnknownRecord(
            embedding=self._sum.astype(np.float32),
            model_id=self.model_id,
            first_seen=self._first,
            last_seen=self._last,
            source=self.source,
            faces=self._faces,
            crops=tuple(self._crops),
            track_id=self.track_id,
        )
