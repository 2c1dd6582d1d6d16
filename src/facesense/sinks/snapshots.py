"""One crop of each track that is not named, saved once.

While a confirmed track is not ``KNOWN`` (unknown, or not identified yet), the sink
keeps the crop of its best-quality detection so far. The crop is written once, as
``<prefix>track<id>_f<frame>.jpg``, when the track leaves or after it has gone
unnamed for ``after_frames`` frames, whichever comes first; a track that gets a name
before then is never saved.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facesense.align import expand_boxes
from facesense.errors import ConfigError, FacesenseError
from facesense.types import EventType

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.types import Event, FrameResult

logger = logging.getLogger(__name__)

__all__ = ["SnapshotSink"]


@dataclass
class _Candidate:
    crop: npt.NDArray[np.uint8]
    quality: float
    frame_index: int
    first_frame: int


class SnapshotSink:
    """Saves a JPEG crop of every track that stays unknown.

    Args:
        folder: where crops go (created if missing).
        after_frames: save a still-unknown track this many frames after it appeared.
        margin_ratio: crop margin per side, as a fraction of the box's longer side.
        prefix: file name prefix.
        jpeg_quality: 0-100.

    Raises:
        ConfigError: the folder cannot be created.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        after_frames: int = 60,
        margin_ratio: float = 0.25,
        prefix: str = "",
        jpeg_quality: int = 92,
    ) -> None:
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{self.folder}: cannot create snapshot folder ({exc.strerror or exc})") from exc
        if after_frames < 1:
            raise ConfigError(f"after_frames must be >= 1, got {after_frames}")
        self.after_frames = after_frames
        self.margin_ratio = margin_ratio
        self.prefix = prefix
        self.jpeg_quality = int(jpeg_quality)
        self.saved_count = 0
        self.last_saved: Path | None = None
        self._candidates: dict[int, _Candidate] = {}
        self._appeared: dict[int, int] = {}  # confirmed, unknown, not yet saved: id -> first frame

    def _crop(self, image: npt.NDArray[np.uint8], xyxy: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
        box = expand_boxes(xyxy[None], margin_ratio=self.margin_ratio, margin_px=0.0)[0]
        h, w = image.shape[:2]
        x1, y1 = int(max(0, math.floor(box[0]))), int(max(0, math.floor(box[1])))
        x2, y2 = int(min(w, math.ceil(box[2]))), int(min(h, math.ceil(box[3])))
        return image[y1 : max(y2, y1 + 1), x1 : max(x2, x1 + 1)].copy()

    def write(self, result: FrameResult) -> None:
        """Track candidates and save those that are due."""
        self._handle_events(result.events)
        frame, faces = result.frame, result.faces
        known = faces.known_mask()
        if result.detected and faces.track_ids is not None and faces.quality is not None:
            for i, tid in enumerate(faces.track_ids.tolist()):
                if tid not in self._appeared or known[i]:
                    continue
                q = float(faces.quality[i])
                q = q if math.isfinite(q) else 0.0
                best = self._candidates.get(tid)
                if best is None or q > best.quality:
                    self._candidates[tid] = _Candidate(
                        self._crop(frame.image, faces.xyxy[i]), q, frame.index, self._appeared[tid]
                    )
        for tid, first in list(self._appeared.items()):
            if frame.index - first >= self.after_frames and tid in self._candidates:
                self._save(tid)
        if faces.track_ids is not None:
            for tid in faces.track_ids[known].tolist():
                self._forget(tid)

    def notify(self, events: Sequence[Event]) -> None:
        """Handle ``left`` events at the end of the stream."""
        self._handle_events(events)

    def _handle_events(self, events: Sequence[Event]) -> None:
        for event in events:
            if event.track_id is None:
                continue
            tid = event.track_id
            if event.type is EventType.APPEARED and event.name is None:
                self._appeared[tid] = event.frame
            elif event.type is EventType.RECOGNIZED:
                self._forget(tid)
            elif event.type is EventType.LEFT:
                if event.name is None and tid in self._candidates:
                    self._save(tid)
                self._forget(tid)

    def _forget(self, tid: int) -> None:
        self._appeared.pop(tid, None)
        self._candidates.pop(tid, None)

    def _save(self, tid: int) -> None:
        import cv2

        cand = self._candidates.get(tid)
        self._forget(tid)
        if cand is None:
            return
        path = self.folder / f"{self.prefix}track{tid:05d}_f{cand.frame_index:06d}.jpg"
        try:
            ok = cv2.imwrite(str(path), cand.crop, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        except cv2.error as exc:
            raise FacesenseError(f"{path}: cannot write snapshot ({exc})") from exc
        if not ok:
            raise FacesenseError(f"{path}: cannot write snapshot")
        self.saved_count += 1
        self.last_saved = path
        logger.info("saved unknown track %d to %s", tid, path)

    def close(self) -> None:
        """Save the unknown tracks still waiting."""
        for tid in list(self._candidates):
            self._save(tid)
        self._appeared.clear()
