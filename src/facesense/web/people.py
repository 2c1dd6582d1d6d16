"""The People page's work, without HTTP: list, rename and remove people, enroll uploads.

:class:`PeopleService` works on any :class:`~facesense.gallery.base.GalleryStore`
(people are addressed by the store's id, :meth:`~facesense.gallery.base.GalleryStore.
person_by_id`). Uploads are checked by :class:`facesense.enroll.Enroller`, the same
gates as ``facesense enroll``; each photo gets its own outcome.

Uploads are bytes from the request; their client-side file names are only ever
echoed back in messages, and the samples they become record ``upload:<sha256>`` as
their source, never a path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from facesense.errors import ConfigError, ConflictError, EnrollmentError, ModelMismatchError, NotFoundError
from facesense.gallery.base import validate_name

if TYPE_CHECKING:
    from facesense.gallery.base import GalleryStore, Person, Sample
    from facesense.web.models import WebModels

logger = logging.getLogger(__name__)

__all__ = ["MAX_UPLOAD_FILES", "PeopleService", "Upload", "UploadOutcome", "clean_filename"]

MAX_FILENAME_CHARS = 120
MAX_UPLOAD_FILES = 50  # photos per request


def clean_filename(name: str | None) -> str:
    """A client's file name fit for messages: base name, printable, at most 120 characters."""
    text = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(ch for ch in text if ch.isprintable()).strip()
    if len(text) > MAX_FILENAME_CHARS:
        text = text[: MAX_FILENAME_CHARS - 1] + "…"
    return text or "upload"


@dataclass(frozen=True)
class Upload:
    """One uploaded file: its bytes and the name the client gave it (display only)."""

    filename: str
    data: bytes


@dataclass(frozen=True)
class UploadOutcome:
    """What became of one uploaded photo.

    Attributes:
        filename: the client's file name (cleaned; for display).
        outcome: ``added`` or a :class:`~facesense.enroll.SkipReason` value
            (``unreadable``, ``duplicate``, ``no_face``, ``several_faces``,
            ``too_small``, ``too_blurry``).
        detail: a one-line explanation.
        sample_id: the new sample, when added.
    """

    filename: str
    outcome: str
    detail: str
    sample_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        return {"file": self.filename, "outcome": self.outcome, "detail": self.detail, "sample_id": self.sample_id}


def _check_count(uploads: Sequence[Upload]) -> None:
    if not uploads:
        raise ConfigError("add at least one photo")
    if len(uploads) > MAX_UPLOAD_FILES:
        raise ConfigError(f"at most {MAX_UPLOAD_FILES} photos at a time, got {len(uploads)}")


class PeopleService:
    """People and their face samples in the server's gallery.

    Args:
        store: the gallery (shared with the sources' matcher).
        models: detect and embed uploads.
        on_rename: called as ``(old, new)`` after a person is renamed (the events store
            follows the new name).
    """

    def __init__(
        self,
        store: GalleryStore,
        models: WebModels,
        *,
        on_rename: Callable[[str, str], None] | None = None,
    ) -> None:
        self.store = store
        self.models = models
        self.on_rename = on_rename

    # --- reads ---------------------------------------------------------------------

    def people(self) -> list[Person]:
        """Everybody, sorted by name."""
        return self.store.people()

    def person(self, person_id: int) -> Person:
        """One person by id.

        Raises:
            NotFoundError: no such person.
        """
        try:
            return self.store.person_by_id(person_id)
        except EnrollmentError as exc:
            raise NotFoundError(f"no person with id {person_id}") from exc

    def samples(self, person_id: int) -> list[Sample]:
        """A person's samples, oldest first.

        Raises:
            NotFoundError: no such person.
        """
        person = self.person(person_id)
        try:
            return self.store.samples(person.name)
        except EnrollmentError as exc:  # removed meanwhile
            raise NotFoundError(f"no person with id {person_id}") from exc

    def all_samples(self) -> list[Sample]:
        """Everybody's samples, oldest first."""
        return self.store.samples()

    def sample(self, person_id: int, sample_id: int) -> Sample:
        """One sample of one person.

        Raises:
            NotFoundError: no such person, or the sample is not theirs.
        """
        for s in self.samples(person_id):
            if s.id == sample_id:
                return s
        raise NotFoundError(f"person {person_id} has no face sample with id {sample_id}")

    def thumbnail(self, person_id: int) -> bytes:
        """The JPEG thumbnail of a person's first sample that has one.

        Raises:
            NotFoundError: no such person, or none of their samples has a thumbnail.
        """
        for s in self.samples(person_id):
            if s.thumbnail_jpeg:
                return s.thumbnail_jpeg
        raise NotFoundError(f"person {person_id} has no thumbnail")

    # --- changes -------------------------------------------------------------------

    def rename(self, person_id: int, new_name: str) -> Person:
        """Rename a person (events follow, through ``on_rename``).

        Raises:
            NotFoundError: no such person.
            ConflictError: the new name is taken.
            ConfigError: the new name is not valid.
        """
        person = self.person(person_id)
        clean = validate_name(new_name)
        if clean == person.name:
            return person
        if self._exists(clean):
            raise ConflictError(f"there is already a person named {clean!r}")
        try:
            renamed = self.store.rename_person(person.name, clean)
        except EnrollmentError as exc:  # removed, or the name taken, meanwhile
            if self._exists(clean):
                raise ConflictError(f"there is already a person named {clean!r}") from exc
            raise NotFoundError(f"no person with id {person_id}") from exc
        if self.on_rename is not None:
            self.on_rename(person.name, clean)
        return renamed

    def delete(self, person_id: int) -> int:
        """Remove a person and their samples; returns how many samples went.

        Raises:
            NotFoundError: no such person.
        """
        person = self.person(person_id)
        try:
            return self.store.remove_person(person.name)
        except EnrollmentError as exc:
            raise NotFoundError(f"no person with id {person_id}") from exc

    def remove_sample(self, person_id: int, sample_id: int) -> bool:
        """Remove one of a person's samples; returns whether the person is still there
        (removing the last sample removes them).

        Raises:
            NotFoundError: no such person, or the sample is not theirs.
        """
        self.sample(person_id, sample_id)
        try:
            self.store.remove_sample(sample_id)
        except EnrollmentError as exc:
            raise NotFoundError(f"person {person_id} has no face sample with id {sample_id}") from exc
        try:
            self.store.person_by_id(person_id)
        except EnrollmentError:
            return False
        return True

    def create_person(self, name: str, uploads: Sequence[Upload]) -> tuple[Person | None, list[UploadOutcome]]:
        """Enroll a new person from photos.

        Returns:
            The person (``None`` when no photo was usable, and then nothing is stored)
            and one outcome per photo.

        Raises:
            ConflictError: the name is taken.
            ConfigError: the name is not valid, or no photos (or too many).
            ModelMismatchError: the gallery holds another model's embeddings.
        """
        clean = validate_name(name)
        _check_count(uploads)
        if self._exists(clean):
            raise ConflictError(f"there is already a person named {clean!r}; add photos to them instead")
        outcomes = self._enroll(clean, uploads, create=True)
        person = self.store.person(clean) if any(o.sample_id is not None for o in outcomes) else None
        return person, outcomes

    def add_faces(self, person_id: int, uploads: Sequence[Upload]) -> tuple[Person, list[UploadOutcome]]:
        """Add photos to an existing person; returns them (updated) and one outcome per photo.

        Raises:
            NotFoundError: no such person.
            ConfigError: no photos (or too many).
            ModelMismatchError: the gallery holds another model's embeddings.
        """
        person = self.person(person_id)
        _check_count(uploads)
        try:
            outcomes = self._enroll(person.name, uploads, create=False)
        except EnrollmentError as exc:  # removed meanwhile
            raise NotFoundError(f"no person with id {person_id}") from exc
        return self.person(person_id), outcomes

    def _exists(self, name: str) -> bool:
        try:
            self.store.person(name)
        except EnrollmentError:
            return False
        return True

    def _enroll(self, name: str, uploads: Sequence[Upload], *, create: bool) -> list[UploadOutcome]:
        """Check each photo with the enrollment gates and add the good ones one by one."""
        from facesense.enroll import EnrollConfig, Enroller, Skipped

        models = self.models
        stored = self.store.model_id
        if stored is not None and stored != models.model_id:
            raise ModelMismatchError(
                f"the gallery holds embeddings from model {stored!r}, not {models.model_id!r}; "
                f"run `facesense reembed --db {self.store.location}` first"
            )
        # Uploads are never strict: each photo gets its own outcome.
        enroller = Enroller(self.store, models.analyzer, EnrollConfig(strict=False))
        seen: set[tuple[str, str]] = set()
        outcomes: list[UploadOutcome] = []
        for upload in uploads:
            filename = clean_filename(upload.filename)
            with models.analysis():
                item = enroller.prepare_bytes(name, upload.data, name=filename, seen=seen)
            if isinstance(item, Skipped):
                outcomes.append(UploadOutcome(filename, item.reason.value, item.detail))
                continue
            (sid,) = self.store.add_samples(name, [item], create=create)
            create = False  # the person exists from the first sample on
            outcomes.append(UploadOutcome(filename, "added", "added as a face sample", sid))
        return outcomes
