"""``POST /api/detect`` and ``POST /api/recognize`` without HTTP: records per face.

Recognition names faces with the server's :class:`~facesense.recognize.LiveMatcher`,
the same one the sources use, so a person enrolled a moment ago (here, or with
``facesense enroll`` in a shell) is recognised at once.

A recognition can be kept so that its names can be corrected (``POST
/api/recognize?correctable=true``): every face becomes an event of the events log,
source :data:`UPLOAD_SOURCE`, with its crop and embedding (the uploaded image itself is
not kept). A face named somebody is a ``recognized`` event, which "not X" / "this is Y"
correct (:mod:`facesense.corrections`); a face nobody was named for is an ``unknown``
event, which the events page can name (:class:`facesense.web.naming.EventNaming`). The
log's own limits (``keep_events``, ``keep_days``) bound what they cost.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from facesense.errors import FacesenseError
from facesense.gallery.events import EventRecord
from facesense.types import Event, EventType

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.gallery.events import EventLog
    from facesense.recognize import LiveMatcher
    from facesense.types import Face, Faces
    from facesense.web.models import WebModels

logger = logging.getLogger(__name__)

__all__ = ["UPLOAD_SOURCE", "RecognitionService"]

UPLOAD_SOURCE = "upload"  # the events' source for the faces of an uploaded photo


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

    def recognize(self, image: npt.NDArray[np.uint8], *, events: EventLog | None = None) -> list[dict[str, Any]]:
        """Records like ``facesense recognize --json``: box, score, name, distance, confidence.

        Every face is ``unknown`` while the gallery is empty.

        Args:
            image: ``(H, W, 3)`` uint8 BGR.
            events: keep every face in this events log, so that it can be corrected or
                named (see the module docstring); each record then also has ``event_id``
                (``None`` when the face could not be stored, logged), ``can_correct`` (a
                face named somebody) and ``can_name`` (an unknown face). ``None``: nothing
                is stored and the records are exactly those of ``facesense recognize``.

        Raises:
            GalleryError: the gallery cannot be used (``ModelMismatchError`` when it
                holds another model's embeddings).
        """
        from facesense.recognize import face_records

        fitted = self.matcher.refresh()  # raises when the gallery is unusable
        if fitted is None and events is None:
            return face_records(self.models.detect(image))
        # Embedded even when nobody is enrolled yet, when the faces are kept: to be named.
        faces = self.models.analyze(image)
        if fitted is not None and len(faces) and faces.embeddings is not None:
            result = fitted.match(faces.embeddings)
            faces = faces.replace(names=result.names, distances=result.distances, confidences=result.confidences)
            records = face_records(faces, result.confidences)
        else:
            records = face_records(faces)
        if events is not None:
            self._keep(image, faces, records, events)
        return records

    def _keep(
        self, image: npt.NDArray[np.uint8], faces: Faces, records: list[dict[str, Any]], events: EventLog
    ) -> None:
        """Store each face as an event and add ``event_id``, ``can_correct``, ``can_name`` to its record."""
        seen_at = time.time()
        model_id = self.models.model_id
        for i, (face, record) in enumerate(zip(faces, records, strict=True)):
            embedding = _embedding(face)
            record_i = _record(image, face, index=i, seen_at=seen_at, embedding=embedding, model_id=model_id)
            event_id = _add(events, record_i)
            kept = event_id is not None and embedding is not None
            record["event_id"] = event_id
            record["can_correct"] = kept and face.name is not None
            record["can_name"] = kept and face.name is None
        stored = sum(r["event_id"] is not None for r in records)
        logger.debug("kept %d of %d faces of an upload as events", stored, len(records))


def _embedding(face: Face) -> npt.NDArray[np.float32] | None:
    """The face's embedding, or ``None`` when it has no usable one."""
    if face.embedding is None:
        return None
    embedding = np.asarray(face.embedding, np.float32)
    return embedding if embedding.size and bool(np.all(np.isfinite(embedding))) else None


def _record(
    image: npt.NDArray[np.uint8],
    face: Face,
    *,
    index: int,
    seen_at: float,
    embedding: npt.NDArray[np.float32] | None,
    model_id: str,
) -> EventRecord:
    """The event of one face of an upload: ``recognized`` when it is named, else ``unknown``."""
    from facesense.web.thumbnails import face_crop_jpeg

    x1, y1, x2, y2 = (float(v) for v in face.xyxy)
    crop: bytes | None
    try:
        crop = face_crop_jpeg(image, face.xyxy)
    except FacesenseError as exc:
        logger.debug("no crop of upload face %d: %s", index, exc)
        crop = None
    event = Event(
        type=EventType.RECOGNIZED if face.name is not None else EventType.UNKNOWN,
        time=seen_at,  # a photo has no media time: when the server saw it, like a live frame
        frame=0,
        source=UPLOAD_SOURCE,
        name=face.name,
        confidence=None if face.confidence is None else float(face.confidence),
        xyxy=(x1, y1, x2, y2),
    )
    return EventRecord(
        event=event, seen_at=seen_at, crop_jpeg=crop, embedding=embedding,
        model_id=None if embedding is None else model_id,
    )  # fmt: skip


def _add(events: EventLog, record: EventRecord) -> int | None:
    """Store ``record``; its id, or ``None`` when it could not be stored (logged)."""
    if events.closed:  # the server is stopping
        logger.warning("the events log is closed: an upload's face is not kept")
        return None
    try:
        return events.add(record)
    except FacesenseError as exc:
        logger.error("cannot store the event of an upload's face: %s", exc)
        return None
