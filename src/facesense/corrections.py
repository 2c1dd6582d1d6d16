"""Corrections of recognised faces: "not X" and "this is Y", from the events log.

A face the watchers named wrongly is corrected through its event (the event keeps the
face's embedding and a crop, see :mod:`facesense.gallery.events`):

* **"not X"** stores the face as a *negative* of X
  (:meth:`~facesense.gallery.base.GalleryStore.add_negative`). X must be enrolled; it
  need not be the name the event was recognised as (it is a statement about the face).
* **"this is Y"** makes the face a sample of Y and a negative of X, the name the event
  was recognised as, in one transaction (:meth:`~facesense.gallery.base.GalleryStore.correct`).
  When the event has a crop and an analyzer is at hand, the crop goes through the
  normal enrollment checks first (one face, big and sharp enough: :class:`facesense.enroll.Enroller`)
  and Y's sample is embedded from it; otherwise the event's stored embedding is used.

Either way the event is marked (``correction``: ``not X`` / ``is Y``) and the gallery's
revision changes, so every :class:`~facesense.recognize.LiveMatcher` refits and the
matchers apply the corrections (:mod:`facesense.match`, "Corrections")::

    >>> corrections = Corrections(gallery, events, model_id=analyzer.model_id, analyzer=analyzer)
    >>> corrections.not_person(12, "alice").to_dict()
    {'event_id': 12, 'correction': 'not alice', 'not': 'alice', 'is': None, 'negative_id': 3, 'sample_id': None}
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from facesense.errors import ConflictError, EnrollmentError, FacesenseError, ModelMismatchError, NotFoundError
from facesense.gallery.base import NewSample

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.enroll import EnrollConfig, FaceAnalyzerLike
    from facesense.gallery.base import GalleryStore
    from facesense.gallery.events import EventLog, StoredEvent

logger = logging.getLogger(__name__)

__all__ = ["Correction", "Corrections", "event_source"]


def event_source(event_id: int) -> str:
    """How a negative made from event ``event_id`` names its source (``event 12``)."""
    return f"event {int(event_id)}"


@dataclass(frozen=True, kw_only=True)
class Correction:
    """What a correction stored.

    Attributes:
        event_id: the corrected event.
        correction: ``"not X"`` or ``"is Y"`` (as the event now records it).
        wrong: X, whom the face is not.
        right: Y, whom the face is (``None`` for "not X").
        negative_id: X's new negative (``None`` when X had this face as a negative already).
        sample_id: Y's new sample, or ``None``.
    """

    event_id: int
    correction: str
    wrong: str
    right: str | None
    negative_id: int | None
    sample_id: int | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        return {
            "event_id": self.event_id,
            "correction": self.correction,
            "not": self.wrong,
            "is": self.right,
            "negative_id": self.negative_id,
            "sample_id": self.sample_id,
        }


class Corrections:
    """Apply "not X" / "this is Y" to the faces of stored events.

    Args:
        store: the gallery.
        events: the events log the event ids refer to.
        model_id: the embedder's model id (an event's face must have been embedded by it).
        analyzer: detects and embeds the event's crop for "this is Y" (or a function that
            returns one, called on first use); ``None`` uses the stored embedding as is.
        config: the enrollment checks for "this is Y" (defaults: :class:`~facesense.enroll.EnrollConfig`).
    """

    def __init__(
        self,
        store: GalleryStore,
        events: EventLog,
        *,
        model_id: str,
        analyzer: FaceAnalyzerLike | Callable[[], FaceAnalyzerLike] | None = None,
        config: EnrollConfig | None = None,
    ) -> None:
        self.store = store
        self.events = events
        self.model_id = model_id
        self._analyzer = analyzer
        self.config = config

    def _the_analyzer(self) -> FaceAnalyzerLike | None:
        """The analyzer (a factory is called once, on first use)."""
        analyzer = self._analyzer
        if analyzer is not None and not hasattr(analyzer, "detect") and callable(analyzer):
            analyzer = analyzer()
            self._analyzer = analyzer
        return analyzer  # type: ignore[return-value]

    # --- the two statements ----------------------------------------------------------

    def not_person(self, event_id: int, name: str) -> Correction:
        """Say the face of event ``event_id`` is not ``name`` (stores a negative of ``name``).

        Raises:
            NotFoundError: no such event, or nobody named ``name``.
            ConflictError: the event keeps no face embedding, or was corrected already.
            ModelMismatchError: the face was embedded by another model.
        """
        event = self._event(event_id)
        wrong = self._enrolled(name)
        face = self._face(event)
        # The same face said "not X" before (another event of the same photo or crop): X has it.
        nid = None if self._is_negative(wrong, face) else self.store.add_negative(wrong, face, source=event_source(event_id))
        return self._mark(event, f"not {wrong}", wrong=wrong, right=None, negative_id=nid, sample_id=None)

    def is_person(self, event_id: int, name: str) -> Correction:
        """Say the face of event ``event_id`` is ``name``, not whom it was recognised as:
        one transaction adds the face to ``name`` and a negative to the old name.

        Raises:
            NotFoundError: no such event, or nobody named ``name``.
            ConflictError: the event keeps no face embedding, was not recognised as
                anybody, was recognised as ``name`` already, or was corrected already.
            EnrollmentError: the crop fails the enrollment checks (no face, too small, blurry).
            ModelMismatchError: the face was embedded by another model.
        """
        event = self._event(event_id, allow_not=True)
        right = self._enrolled(name)
        face = self._face(event)
        wrong = event.name
        if wrong is None:
            raise ConflictError(f"event {event_id} was not recognised as anybody; name the face instead")
        if wrong == right:
            raise ConflictError(f"event {event_id} was recognised as {right!r} already")
        sample = self._sample_of(event, right, face)
        if self._is_negative(wrong, sample) or self._is_negative(wrong, face):
            # "not X" came first (from this event or the same crop): X has the negative
            # already, made from the event's embedding. Y's sample gets that embedding too:
            # re-embedded from the crop it would lie a little off, and the same face seen
            # again would be nearer X's negative than Y's sample, so named nobody.
            sample = dataclasses.replace(sample, embedding=face.embedding)
            (sid,) = self.store.add_samples(right, [sample], create=False)
            nid: int | None = None
        else:
            sid, nid = self.store.correct(wrong, right, sample, source=event_source(event_id))
        return self._mark(event, f"is {right}", wrong=wrong, right=right, negative_id=nid, sample_id=sid)

    # --- the parts -------------------------------------------------------------------

    def _event(self, event_id: int, *, allow_not: bool = False) -> StoredEvent:
        """The event, not corrected yet (``allow_not``: or only with "not X")."""
        event = self.events.get(event_id)
        if event is None:
            raise NotFoundError(f"no event with id {event_id}")
        if event.correction is not None and not (allow_not and event.correction.startswith("not ")):
            raise ConflictError(f"event {event_id} was corrected already ({event.correction})")
        return event

    def _face(self, event: StoredEvent) -> NewSample:
        """The event's face as a sample (the stored embedding, the crop's sha256 and thumbnail)."""
        event_id = event.id
        embedding = self.events.embedding(event_id) if event.has_embedding else None
        if embedding is not None and (embedding.size == 0 or not np.all(np.isfinite(embedding))):
            embedding = None  # a stored row that is no usable embedding
        if embedding is None or event.model_id is None:
            raise ConflictError(
                f"event {event_id} keeps no face embedding to correct (only recognised and unknown faces "
                "seen by `facesense serve` keep one)"
            )
        if event.model_id != self.model_id:
            raise ModelMismatchError(
                f"the face of event {event_id} was embedded by model {event.model_id!r}, not {self.model_id!r}"
            )
        crop = self.events.crop(event_id)
        return NewSample(
            embedding=embedding,
            model_id=event.model_id,
            source_sha256=_face_sha(crop, embedding),
            source_path=f"event:{event_id}",
            xyxy=event.xyxy or (0.0, 0.0, 0.0, 0.0),
            thumbnail_jpeg=_thumbnail(event_id, crop),
        )

    def _is_negative(self, name: str, sample: NewSample) -> bool:
        """Whether ``name`` has this face (same model and sha256) as a negative already."""
        return any(
            n.model_id == sample.model_id and n.source_sha256 == sample.source_sha256
            for n in self.store.negative_records(name)
        )

    def _enrolled(self, name: str) -> str:
        """``name`` as the gallery spells it (NotFoundError when nobody is called that)."""
        try:
            return self.store.person(name.strip()).name
        except EnrollmentError as exc:
            raise NotFoundError(f"nobody named {name.strip()!r} is enrolled in {self.store.location}") from exc

    def _sample_of(self, event: StoredEvent, person: str, face: NewSample) -> NewSample:
        """Y's sample: the crop through the enrollment checks when possible, else the stored face."""
        crop = self.events.crop(event.id) if event.has_crop else None
        analyzer = None if crop is None else self._the_analyzer()  # models load only when needed
        if analyzer is None or crop is None:
            return face
        from facesense.enroll import Enroller, Skipped

        label = f"event:{event.id}"
        prepared = Enroller(self.store, analyzer, self.config).prepare_bytes(
            person, crop, name=event_source(event.id), label=label
        )
        if isinstance(prepared, Skipped):
            raise EnrollmentError(f"cannot add the face of event {event.id} to {person!r}: {prepared.detail}")
        return prepared

    def _mark(
        self, event: StoredEvent, correction: str, *, wrong: str, right: str | None, negative_id: int | None,
        sample_id: int | None,
    ) -> Correction:
        try:
            self.events.mark_corrected(event.id, correction)
        except FacesenseError as exc:  # the gallery has it; only the event's mark is missing
            logger.error("event %d: the gallery was corrected, but the event could not be marked: %s", event.id, exc)
        logger.info("event %d: %s (negative %s, sample %s)", event.id, correction, negative_id, sample_id)
        return Correction(
            event_id=event.id, correction=correction, wrong=wrong, right=right, negative_id=negative_id,
            sample_id=sample_id,
        )


def _face_sha(crop: bytes | None, embedding: npt.NDArray[np.float32]) -> str:
    """The sha256 a corrected face is kept under: its crop's (what enrollment hashes), else its embedding's."""
    return hashlib.sha256(crop if crop is not None else embedding.tobytes()).hexdigest()


def _thumbnail(event_id: int, crop: bytes | None) -> bytes:
    if crop is None:
        return b""
    from facesense.web.thumbnails import thumbnail_from_crop

    try:
        return thumbnail_from_crop(crop)
    except FacesenseError as exc:
        logger.warning("event %d: no thumbnail for the correction: %s", event_id, exc)
        return b""
