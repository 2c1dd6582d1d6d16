"""Naming and correcting faces from the events page.

Naming: the stored embedding of an unknown face becomes a gallery sample. Correcting
("not X", "this is Y"): :class:`facesense.corrections.Corrections` on the event's face.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from facesense.errors import ConflictError, FacesenseError, ModelMismatchError, NotFoundError
from facesense.gallery.base import NewSample, validate_name

if TYPE_CHECKING:
    from facesense.corrections import Correction
    from facesense.enroll import FaceAnalyzerLike
    from facesense.gallery.base import GalleryStore, Person
    from facesense.gallery.events import EventLog

logger = logging.getLogger(__name__)

__all__ = ["EventNaming"]


class EventNaming:
    """Enroll the face of an ``unknown`` event as a person, or correct a recognised one.

    Args:
        store: the gallery the face goes into.
        events: where the event and its face are kept.
        model_id: the server's embedder model (the face must have been embedded by it).
        analyzer: a function returning the server's analyzer, so that "this is Y" puts
            the event's crop through the enrollment checks; ``None``: the stored face as is.
    """

    def __init__(
        self,
        store: GalleryStore,
        events: EventLog,
        model_id: str,
        *,
        analyzer: Callable[[], FaceAnalyzerLike] | None = None,
    ) -> None:
        self.store = store
        self.events = events
        self.model_id = model_id
        self.analyzer = analyzer

    def correct_event(self, event_id: int, *, not_name: str | None = None, is_name: str | None = None) -> Correction:
        """Say "not X" (``not_name``) or "this is Y" (``is_name``) about the face of an event.

        Raises:
            ConfigError: neither or both given.
            NotFoundError, ConflictError, EnrollmentError, ModelMismatchError: as
                :class:`facesense.corrections.Corrections` raises them.
        """
        from facesense.corrections import Corrections
        from facesense.errors import ConfigError

        corrections = Corrections(self.store, self.events, model_id=self.model_id, analyzer=self.analyzer)
        if not_name is not None and is_name is None:
            return corrections.not_person(event_id, not_name)
        if is_name is not None and not_name is None:
            return corrections.is_person(event_id, is_name)
        raise ConfigError('give exactly one of "not" (who the face is not) and "is" (who it is)')

    def name_event(self, event_id: int, name: str) -> tuple[Person, int]:
        """Enroll the face of an ``unknown`` event as ``name`` (a new or an enrolled person).

        Returns:
            The person and the new sample's id.

        Raises:
            NotFoundError: no such event.
            ConflictError: the event has no stored face, was named already, or the person
                already has this face.
            ModelMismatchError: the face was embedded by another model than the server's.
            ConfigError: ``name`` is not a valid person name.
        """
        from facesense.web.thumbnails import thumbnail_from_crop

        event = self.events.get(event_id)
        if event is None:
            raise NotFoundError(f"no event with id {event_id}")
        if event.sample_id is not None:
            raise ConflictError(f"this face was already named {event.name!r}")
        if not event.can_name:
            raise ConflictError(f"event {event_id} holds no unknown face to name")
        clean = validate_name(name)
        embedding = self.events.embedding(event_id)
        if embedding is None or event.model_id is None:
            raise ConflictError(f"event {event_id} holds no unknown face to name")
        if event.model_id != self.model_id:
            raise ModelMismatchError(
                f"this face was embedded by model {event.model_id!r}, the server uses {self.model_id!r}"
            )
        crop = self.events.crop(event_id)
        thumbnail = b""  # the gallery's "no thumbnail"
        if crop is not None:
            try:
                thumbnail = thumbnail_from_crop(crop)
            except FacesenseError as exc:
                logger.warning("event %d: no thumbnail for the new sample: %s", event_id, exc)
        sha = hashlib.sha256(crop if crop is not None else embedding.tobytes()).hexdigest()
        sample = NewSample(
            embedding=embedding,
            model_id=event.model_id,
            source_sha256=sha,
            source_path=f"event:{event_id}",
            xyxy=event.xyxy or (0.0, 0.0, 0.0, 0.0),
            thumbnail_jpeg=thumbnail,
        )
        if self.store.has_source(clean, sha, sample.model_id):
            raise ConflictError(f"{clean} already has this face")
        (sid,) = self.store.add_samples(clean, [sample], create=True)
        self.events.mark_named(event_id, clean, sid)
        return self.store.person(clean), sid
