"""FaceAnalyzer: detect, crop and embed every face in an image with one call."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from facesense.detect.base import Detector
    from facesense.embed.base import Embedder
    from facesense.types import Faces

logger = logging.getLogger(__name__)

__all__ = ["FaceAnalyzer"]


class FaceAnalyzer:
    """The detect -> crop -> embed chain with facesense's measured defaults.

    Models load on first use, not here.

    Args:
        detector: any :class:`~facesense.detect.base.Detector`; MTCNN by default.
        embedder: any :class:`~facesense.embed.base.Embedder`; by default
            :func:`~facesense.embed.fusion.make_embedder` (FaceNet + dlib ResNet fusion).
        min_face_px: minimum face size for the default detector.

    Example:
        >>> analyzer = FaceAnalyzer()
        >>> faces = analyzer.analyze(facesense.load_image("group.jpg"))
        >>> faces.xyxy.shape, faces.embeddings.shape
        ((2, 4), (2, 640))
    """

    def __init__(
        self,
        *,
        detector: Detector | None = None,
        embedder: Embedder | None = None,
        min_face_px: float = 20.0,
    ) -> None:
        if detector is None:
            from facesense.detect.mtcnn import MTCNNConfig, MTCNNDetector

            detector = MTCNNDetector(MTCNNConfig(min_face_px=min_face_px))
        if embedder is None:
            from facesense.embed.fusion import make_embedder

            embedder = make_embedder()
        self.detector = detector
        self.embedder = embedder

    @property
    def model_id(self) -> str:
        """The embedder's model and preprocessing id."""
        return self.embedder.model_id

    def detect(self, image: npt.NDArray[np.uint8]) -> Faces:
        """Boxes, scores and landmarks of every face in a BGR image."""
        return self.detector.detect(image)

    def embed(self, image: npt.NDArray[np.uint8], faces: Faces) -> Faces:
        """``faces`` with embeddings filled in."""
        return self.embedder.embed(image, faces)

    def analyze(self, image: npt.NDArray[np.uint8]) -> Faces:
        """Detect and embed every face in a BGR ``(H, W, 3)`` uint8 image."""
        return self.embed(image, self.detect(image))
