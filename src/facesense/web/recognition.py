"""``POST /api/detect`` and ``POST /api/recognize`` without HTTP: records per face.

Recognition names faces with the server's :class:`~facesense.recognize.LiveMatcher`,
the same one the sources use, so a person enrolled a moment ago (here, or with
``facesense enroll`` in a shell) is recognised at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from facesense.recognize import LiveMatcher
    from facesense.web.models import WebModels

__all__ = ["RecognitionService"]


class RecognitionService:
    """Detect or recognise the faces of one uploaded image.

    Args:
        models: the shared detector and embedder.
        matcher: names embeddings from the gallery (refits when the gallery changes).
    """

    def __init__(self, models: WebModels, matcher: LiveMatcher) -> None:
        self.models = models
        self.matcher = matcher

    def detect(self, image: npt.NDArray[np.uint8]) -> list[dict[str, Any]]:
        """Records like ``facesense detect --json``: box, score, landmarks per face."""
        from facesense.recognize import detection_records

        return detection_records(self.models.detect(image))

    def recognize(self, image: npt.NDArray[np.uint8]) -> list[dict[str, Any]]:
        """Records like ``facesense recognize --json``: box, score, name, distance, confidence.

        Every face is ``unknown`` while the gallery is empty.

        Raises:
            GalleryError: the gallery cannot be used (``ModelMismatchError`` when it
                holds another model's embeddings).
        """
        from facesense.recognize import face_records

        fitted = self.matcher.refresh()  # raises when the gallery is unusable
        if fitted is None:
            return face_records(self.models.detect(image))
        faces = self.models.analyze(image)
        if len(faces) == 0 or faces.embeddings is None:
            return face_records(faces)
        result = fitted.match(faces.embeddings)
        named = faces.replace(names=result.names, distances=result.distances, confidences=result.confidences)
        return face_records(named, result.confidences)
