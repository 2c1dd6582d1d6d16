"""The models the server shares: one detector and embedder for uploads, one detector for the sources.

Request threads and source threads use the same objects (the detector and the
embedder are thread-safe); at most :data:`MAX_CONCURRENT_ANALYSES` requests analyse
images at once, so a burst of uploads cannot starve the live sources of CPU.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from facesense.detect.factory import DEFAULT_DETECTOR

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.analyzer import FaceAnalyzer
    from facesense.detect.base import Detector
    from facesense.embed.base import Embedder
    from facesense.types import Faces

__all__ = ["MAX_CONCURRENT_ANALYSES", "WebModels"]

MAX_CONCURRENT_ANALYSES = 2  # requests analysing images at once (2-core boxes)


class WebModels:
    """The server's models, built on first use.

    Args:
        analyzer: detects and embeds uploads; a :class:`~facesense.analyzer.FaceAnalyzer`
            (the library defaults for still images) by default.
        live_detector: the sources' detector; ``make_detector(detector, use="video")`` with
            ``min_face_px`` by default.
        detector: the kind of the default live detector (``mtcnn``, ``yunet``).
        min_face_px: smallest face the default live detector looks for (``None``: the
            video default of :data:`facesense.detect.DEFAULTS`).
    """

    def __init__(
        self,
        *,
        analyzer: FaceAnalyzer | None = None,
        live_detector: Detector | None = None,
        min_face_px: float | None = None,
        detector: str = DEFAULT_DETECTOR.value,
    ) -> None:
        self._analyzer = analyzer
        self.detector_kind = detector
        self._live_detector = live_detector
        self.min_face_px = min_face_px
        self._lock = threading.Lock()
        self._analyses = threading.BoundedSemaphore(MAX_CONCURRENT_ANALYSES)

    @property
    def analyzer(self) -> FaceAnalyzer:
        """Detector and embedder for uploaded images."""
        with self._lock:
            if self._analyzer is None:
                from facesense.analyzer import FaceAnalyzer

                self._analyzer = FaceAnalyzer()
            return self._analyzer

    @property
    def embedder(self) -> Embedder:
        """The embedder (uploads and sources share it)."""
        return self.analyzer.embedder

    @property
    def model_id(self) -> str:
        """The embedder's model id."""
        return self.analyzer.model_id

    @property
    def live_detector(self) -> Detector:
        """The detector the sources use."""
        with self._lock:
            if self._live_detector is None:
                from facesense.detect import make_detector

                self._live_detector = make_detector(self.detector_kind, min_face_px=self.min_face_px, use="video")
            return self._live_detector

    def warm_up(self) -> None:
        """Load the models now (a detection on a blank image, the embedder's sessions)."""
        blank = np.zeros((64, 64, 3), np.uint8)
        self.analyzer.detect(blank)
        self.live_detector.detect(blank)
        load = getattr(self.embedder, "load", None)
        if load is not None:
            load()

    @contextlib.contextmanager
    def analysis(self) -> Iterator[None]:
        """Hold one of the :data:`MAX_CONCURRENT_ANALYSES` slots for analysing an upload."""
        with self._analyses:
            yield

    def detect(self, image: npt.NDArray[np.uint8]) -> Faces:
        """Every face in an uploaded BGR image (boxes, scores, landmarks)."""
        with self.analysis():
            return self.analyzer.detect(image)

    def analyze(self, image: npt.NDArray[np.uint8]) -> Faces:
        """Every face in an uploaded BGR image, embedded."""
        with self.analysis():
            faces = self.analyzer.detect(image)
            return self.analyzer.embed(image, faces) if len(faces) else faces
