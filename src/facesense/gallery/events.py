"""The events log interface: what the watched sources saw.

:class:`EventLog` is what the web layer uses (add, read, filter, mark a face named,
follow a rename); :mod:`facesense.gallery.sqlite_events` keeps it in an SQLite file
(:class:`~facesense.gallery.sqlite_events.SQLiteEventStore`), and a database store
can implement the same protocol. Events are :class:`facesense.types.Event` (one
vocabulary, :class:`~facesense.types.EventType`) with what the dashboard keeps beside
them (:class:`EventRecord`: when the server saw it, a crop of the face, the embedding
of an unknown face).

``type`` is a track event (``appeared``, ``recognized``, ``left``), a source
``status``, or ``unknown``: the best face of a track that stayed unknown, stored with
its embedding so that naming it enrolls that face (``sample_id`` is then the gallery
sample it became). ``recognized`` events keep the embedding of the face too, so that a
wrong name can be corrected ("not X", "this is Y": :mod:`facesense.corrections`);
``correction`` then records what was said (``not X`` or ``is Y``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from facesense.errors import ConfigError
from facesense.types import Event, EventType

logger = logging.getLogger(__name__)

__all__ = [
    "EVENT_TYPES",
    "EventLog",
    "EventPage",
    "EventQuery",
    "EventRecord",
    "StoredEvent",
    "iso_time",
    "query_where",
]

EVENT_TYPES = tuple(t.value for t in EventType)  # for messages and the API's documentation


@dataclass(frozen=True, kw_only=True)
class EventRecord:
    """An event about to be stored, with what the dashboard keeps beside it.

    Attributes:
        event: what happened (type, media time, frame, source, track, name, box; for
            ``STATUS`` events the status and message).
        seen_at: wall-clock epoch seconds when the server saw it.
        crop_jpeg: a JPEG of the face, or ``None``.
        embedding: ``(D,)`` float32 embedding of that face (``UNKNOWN`` events, so the
            face can be named), or ``None``.
        model_id: the embedder's model id, with ``embedding``.

    Raises:
        ConfigError: an embedding without its model id.
    """

    event: Event
    seen_at: float
    crop_jpeg: bytes | None = None
    embedding: npt.NDArray[np.float32] | None = None
    model_id: str | None = None

    def __post_init__(self) -> None:
        if self.embedding is not None and not self.model_id:
            raise ConfigError("an embedding needs its model_id")


@dataclass(frozen=True, kw_only=True)
class StoredEvent:
    """An event read back (without its crop and embedding bytes).

    Attributes:
        id: the store's id.
        time: wall-clock epoch seconds when the server saw it.
        source: the source id.
        type: what happened.
        track_id, name, confidence, xyxy, frame: as in :class:`facesense.types.Event`
            (``name`` ``None`` = unknown).
        media_time: the frame's own timestamp (``Event.time``; ``None`` for status events).
        status, message: for ``STATUS`` events.
        has_crop: a crop JPEG is stored (:meth:`EventLog.crop`).
        has_embedding: an embedding is stored, so the face can be named (enrolled).
        model_id: the model of that embedding.
        sample_id: the gallery sample this face became when it was named, or ``None``.
        correction: what somebody said about the face, ``"not X"`` or ``"is Y"``, or ``None``.
    """

    id: int
    time: float
    source: str
    type: EventType
    track_id: int | None
    name: str | None
    confidence: float | None
    xyxy: tuple[float, float, float, float] | None
    frame: int | None
    media_time: float | None
    status: str | None
    message: str | None
    has_crop: bool
    has_embedding: bool
    model_id: str | None
    sample_id: int | None
    correction: str | None = None

    @property
    def can_name(self) -> bool:
        """An unknown face that can still be named (enrolled)."""
        return self.type is EventType.UNKNOWN and self.has_embedding and self.sample_id is None

    @property
    def can_correct(self) -> bool:
        """A face named somebody, with its embedding, not corrected yet ("not X" / "this is Y")."""
        return self.name is not None and self.has_embedding and self.correction is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (``time`` as ISO 8601 UTC, ``timestamp`` as epoch seconds)."""
        return {
            "id": self.id,
            "time": iso_time(self.time),
            "timestamp": round(self.time, 3),
            "source": self.source,
            "type": self.type.value,
            "track_id": self.track_id,
            "name": self.name,
            "confidence": None if self.confidence is None else round(self.confidence, 4),
            "box": None if self.xyxy is None else [round(v, 1) for v in self.xyxy],
            "frame": self.frame,
            "media_time": None if self.media_time is None else round(self.media_time, 3),
            "status": self.status,
            "message": self.message,
            "has_crop": self.has_crop,
            "can_name": self.can_name,
            "sample_id": self.sample_id,
            "can_correct": self.can_correct,
            "correction": self.correction,
        }


@dataclass(frozen=True, kw_only=True)
class EventQuery:
    """A filter over events; every field is optional.

    Attributes:
        name: events of this person (``"unknown"``: of faces nobody was named for).
        type: only events of this type.
        source: the source id.
        since, until: wall-clock epoch seconds, inclusive.
    """

    name: str | None = None
    type: EventType | None = None
    source: str | None = None
    since: float | None = None
    until: float | None = None

    def __post_init__(self) -> None:
        if self.type is not None:
            from facesense.choices import parse_choice

            # A member, or its name from a query string: "unknwon" gets a did-you-mean.
            object.__setattr__(self, "type", parse_choice(EventType, self.type, "event type"))


@dataclass(frozen=True)
class EventPage:
    """One page of events, newest first."""

    events: tuple[StoredEvent, ...]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        """How many pages the filter gives (at least 1)."""
        return max(1, -(-self.total // self.per_page))


@runtime_checkable
class EventLog(Protocol):
    """Where the dashboard keeps events (one instance is shared by every thread)."""

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        ...

    def add(self, record: EventRecord) -> int:
        """Store one event; returns its id."""
        ...

    def get(self, event_id: int) -> StoredEvent | None:
        """One event, or ``None``."""
        ...

    def crop(self, event_id: int) -> bytes | None:
        """The JPEG crop of an event, or ``None``."""
        ...

    def embedding(self, event_id: int) -> npt.NDArray[np.float32] | None:
        """The stored embedding of an event, or ``None``."""
        ...

    def query(self, query: EventQuery | None = None, *, page: int = 1, per_page: int = 50) -> EventPage:
        """Events matching ``query``, newest first, one page of them."""
        ...

    def count(self) -> int:
        """How many events are stored."""
        ...

    def mark_named(self, event_id: int, name: str, sample_id: int) -> None:
        """Record that an unknown face became ``sample_id`` of ``name``."""
        ...

    def rename(self, old: str, new: str) -> None:
        """Follow a person's rename in the stored events."""
        ...

    def mark_corrected(self, event_id: int, correction: str) -> None:
        """Record what somebody said about an event's face (``"not X"`` or ``"is Y"``)."""
        ...

    def close(self) -> None:
        """Release the store (idempotent)."""
        ...


def iso_time(epoch_s: float) -> str:
    """Epoch seconds as ISO 8601 UTC with seconds, e.g. ``2024-06-01T12:00:00+00:00``."""
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds")


def query_where(query: EventQuery, *, param: str = "?", time_column: str = "time") -> tuple[str, list[Any]]:
    """The SQL ``WHERE`` clause and its arguments for ``query``, for any SQL store.

    Args:
        param: the driver's placeholder (``?`` for sqlite3, ``%s`` for psycopg).
        time_column: how the ``time`` column is written (quoted where it is a keyword).
    """
    clauses: list[str] = []
    args: list[Any] = []
    if query.name is not None:
        if query.name.lower() == "unknown":
            clauses.append(f"name IS NULL AND type != {param}")
            args.append(EventType.STATUS.value)
        else:
            clauses.append(f"name = {param}")
            args.append(query.name)
    if query.type is not None:
        clauses.append(f"type = {param}")
        args.append(query.type.value)
    if query.source is not None:
        clauses.append(f"source = {param}")
        args.append(query.source)
    if query.since is not None:
        clauses.append(f"{time_column} >= {param}")
        args.append(float(query.since))
    if query.until is not None:
        clauses.append(f"{time_column} <= {param}")
        args.append(float(query.until))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

