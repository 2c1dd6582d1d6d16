"""Recognition: name every face in an image from a gallery, or call it unknown.

    >>> with SQLiteGallery("people.db", create=False) as gallery:
    ...     recognizer = Recognizer(gallery)
    >>> faces = recognizer.recognize(load_image("group.jpg"))
    >>> faces.names, faces.distances
    (('obama', None), array([0.62, 1.31], dtype=float32))
    >>> recognizer.identify(load_image("group.jpg")).records()[0]
    {'box': [...], 'score': 0.9999, 'name': 'obama', 'distance': 0.62, 'confidence': 0.9995}

The gallery is read once, when the recognizer is built; build a new one after enrolling.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from facesense.errors import GalleryError

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.enroll import FaceAnalyzerLike
    from facesense.gallery.base import GalleryStore
    from facesense.match import Matcher
    from facesense.types import Faces

logger = logging.getLogger(__name__)

__all__ = ["UNKNOWN", "Recognition", "Recognizer", "draw_faces", "face_records"]

UNKNOWN = "unknown"
"""The name printed for faces that match nobody."""


@dataclass(frozen=True, eq=False)
class Recognition:
    """Recognised faces plus the matcher's scores.

    Attributes:
        faces: with ``names`` (``None`` = unknown) and ``distances`` (to the candidate) filled in.
        scores: ``(N,)`` float32 what the threshold was applied to (see :mod:`facesense.match`).
        confidences: ``(N,)`` float32 in ``[0, 1]``; >= 0.5 for named faces.
        candidates: the best identity of each face before rejection.
    """

    faces: Faces
    scores: npt.NDArray[np.float32]
    confidences: npt.NDArray[np.float32]
    candidates: tuple[str | None, ...]

    def records(self) -> list[dict[str, Any]]:
        """JSON-able per-face results (see :func:`face_records`)."""
        return face_records(self.faces, self.confidences)


class Recognizer:
    """Detect, embed and match faces against a gallery.

    Args:
        gallery: the store to read people from (read once, here).
        analyzer: detects and embeds; :class:`~facesense.analyzer.FaceAnalyzer` by default.
        matcher: names embeddings; by default ``make_matcher("knn", model_id=analyzer.model_id)``
            (KNN with the model's calibrated score normalisation and threshold). It is fitted here.

    Raises:
        GalleryError: the gallery has nobody in it.
        ModelMismatchError: the gallery's embeddings come from another model.
    """

    def __init__(
        self,
        gallery: GalleryStore,
        *,
        analyzer: FaceAnalyzerLike | None = None,
        matcher: Matcher | None = None,
    ) -> None:
        if analyzer is None:
            from facesense.analyzer import FaceAnalyzer

            analyzer = FaceAnalyzer()
        if matcher is None:
            from facesense.match import make_matcher

            matcher = make_matcher("knn", model_id=analyzer.model_id)
        embeddings = gallery.embeddings(analyzer.model_id)
        if len(embeddings) == 0:
            raise GalleryError(f"{gallery.location}: the gallery has nobody in it; enroll someone first")
        self.analyzer = analyzer
        self.matcher = matcher.fit(embeddings.matrix, embeddings.labels)
        self.people = tuple(sorted(set(embeddings.labels)))
        logger.info("recognizer ready: %d people, %d samples, %r", len(self.people), len(embeddings), matcher)

    def recognize(self, image: npt.NDArray[np.uint8]) -> Faces:
        """Every face in a BGR ``(H, W, 3)`` uint8 image, with ``names`` and ``distances`` filled in."""
        return self.identify(image).faces

    def identify(self, image: npt.NDArray[np.uint8]) -> Recognition:
        """Like :meth:`recognize`, with scores and confidences."""
        return self.match(self.analyzer.embed(image, self.analyzer.detect(image)))

    def match(self, faces: Faces) -> Recognition:
        """Name already-embedded faces."""
        if faces.embeddings is None:
            from facesense.errors import ConfigError

            raise ConfigError("faces have no embeddings; run the embedder first")
        if len(faces) == 0:
            empty = np.zeros((0,), np.float32)
            return Recognition(faces.replace(names=(), distances=empty), empty, empty.copy(), ())
        result = self.matcher.match(faces.embeddings)
        return Recognition(
            faces=faces.replace(names=result.names, distances=result.distances),
            scores=result.scores,
            confidences=result.confidences,
            candidates=result.candidates,
        )


def face_records(faces: Faces, confidences: npt.ArrayLike | None = None) -> list[dict[str, Any]]:
    """One plain dict per face: ``box`` ``[x1, y1, x2, y2]`` (pixels), ``score``,
    ``name`` (``"unknown"`` for strangers), ``distance`` and ``confidence``.

    Numbers are rounded (boxes to 0.1 px, the rest to 4 decimals); a missing or
    infinite distance is ``None``.
    """
    conf = np.zeros((len(faces),), np.float32) if confidences is None else np.asarray(confidences, np.float32)
    out = []
    for i, face in enumerate(faces):
        dist = face.distance
        out.append(
            {
                "box": [round(float(v), 1) for v in face.xyxy],
                "score": round(face.score, 4),
                "name": face.name if face.name is not None else UNKNOWN,
                "distance": None if dist is None or not np.isfinite(dist) else round(dist, 4),
                "confidence": round(float(conf[i]), 4),
            }
        )
    return out


def draw_faces(image: npt.NDArray[np.uint8], faces: Faces) -> npt.NDArray[np.uint8]:
    """A copy of a BGR image with each face's box and name drawn (green known, red unknown)."""
    import cv2

    out = image.copy()
    h, w = out.shape[:2]
    thick = max(1, round(max(h, w) / 500))
    scale = max(0.4, max(h, w) / 1400)
    for face in faces:
        x1, y1, x2, y2 = (round(float(v)) for v in face.xyxy)
        known = face.name is not None
        colour = (40, 200, 40) if known else (40, 40, 220)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick)
        text = face.name if known else UNKNOWN
        if face.distance is not None and np.isfinite(face.distance):
            text += f" {face.distance:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        ty = y2 + th + base + 2 if y2 + th + base + 2 < h else max(th + 2, y1 - base - 2)
        cv2.rectangle(out, (x1, ty - th - base), (x1 + tw + 4, ty + base // 2), colour, cv2.FILLED)
        cv2.putText(out, text, (x1 + 2, ty - base // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out
