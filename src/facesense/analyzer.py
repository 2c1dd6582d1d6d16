"""FaceAnalyzer: detect, crop and embed every face in an image with one call."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from facesense.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from facesense.detect.base import Detector
    from facesense.detect.factory import DetectorUse
    from facesense.embed.base import Embedder
    from facesense.types import Faces

logger = logging.getLogger(__name__)

__all__ = ["FaceAnalyzer"]


class FaceAnalyzer:
    """The detect -> crop -> embed chain with facesense's measured defaults.

    Models load on first use, not here.

    Args:
        detector: any :class:`~facesense.detect.base.Detector`; by default
            :func:`~facesense.detect.make_detector` for ``use``.
        embedder: any :class:`~facesense.embed.base.Embedder`; by default
            :func:`~facesense.embed.make_embedder` (the dlib ResNet + SFace fusion).
        min_face_px: minimum face size of the default detector; ``None`` takes
            :data:`facesense.detect.DEFAULTS` for ``use``.
        use: ``"image"`` (photos, the default) or ``"video"`` (streams): which defaults
            the default detector gets.

    Raises:
        ConfigError: ``min_face_px`` or ``use`` given together with a ``detector``
            (they configure the default detector only), or a bad value.

    Example:
        >>> analyzer = FaceAnalyzer()
        >>> faces = analyzer.analyze(facesense.load_image("group.jpg"))
        >>> faces.xyxy.shape, faces.embeddings.shape
        ((2, 4), (2, 256))
    """

    def __init__(
        self,
        *,
        detector: Detector | None = None,
        embedder: Embedder | None = None,
        min_face_px: float | None = None,
        use: DetectorUse | str | None = None,
    ) -> None:
        from facesense.detect.factory import DetectorUse, make_detector
        from facesense.embed.factory import make_embedder

        if detector is None:
            detector = make_detector(use=DetectorUse.IMAGE if use is None else use, min_face_px=min_face_px)
        elif min_face_px is not None or use is not None:
            raise ConfigError("min_face_px and use configure the default detector; give them to make_detector instead")
        if embedder is None:
            embedder = make_embedder()
        from facesense.detect.landmarks import with_landmark_stage
        from facesense.detect.verify import share_embedder

        share_embedder(detector, embedder)  # the non-face check reuses the loaded FaceNet
        self.detector = detector
        self.embedder = with_landmark_stage(detector, embedder)  # video: O-Net's points at embedding

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
