"""Copy a whole gallery and its events log between two stores (:func:`copy_gallery`).

``facesense gallery copy SRC DST`` is this function between any two stores
:func:`~facesense.gallery.open_gallery` opens (SQLite <-> PostgreSQL, or two of a
kind). The copy is lossless: people with their ``created`` times; samples with their
embeddings (float32, bit for bit), model ids, sources, boxes, thumbnails and ``added``
times; and every event with its crop, embedding and naming.

How: the people and samples go through the portable export (``.npz`` in a temporary
folder): :meth:`GalleryStore.export_file` is the one read of the source that keeps
every field, and :meth:`GalleryStore.import_file` the one write of the destination
that keeps the original times, in **one transaction** (all of the gallery or none of
it). The :class:`~facesense.gallery.events.EventLog` protocol has no transactions
and no batch insert, and the events of an SQLite gallery are in another file anyway,
so events are copied after the gallery has committed, one insert each, oldest first.
Event ids are the destination's own; an event's ``sample_id`` (the sample a named
unknown face became) is mapped to the copied sample (by person, model and source
sha256). If the copy fails part-way through the events, run it again with
``merge=True``: events already there (same time, source, type, track, frame and
name) are skipped, as are samples the destination has.

The destination's pruning applies to the copied events (it keeps the newest
``keep_events`` of the last ``keep_days`` days); open it with wide limits to keep all.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from facesense.errors import GalleryError
from facesense.gallery.base import GalleryStore
from facesense.gallery.events import EventLog, EventQuery, EventRecord, StoredEvent
from facesense.types import Event, EventType

logger = logging.getLogger(__name__)

__all__ = ["CopySummary", "copy_gallery"]

_PAGE = 500  # the largest page EventLog.query gives

_EventKey = tuple[float, str, str, int | None, int | None, str | None]


@dataclass(frozen=True)
class CopySummary:
    """What a copy did.

    Attributes:
        people_added: names of the people created in the destination.
        samples_added: samples written.
        samples_skipped: samples the destination already had (``merge`` only).
        events_added: events written.
        events_skipped: events the destination already had (``merge`` only).
    """

    people_added: tuple[str, ...] = ()
    samples_added: int = 0
    samples_skipped: int = 0
    events_added: int = 0
    events_skipped: int = 0


def _all_events(log: EventLog) -> list[StoredEvent]:
    """Every event of ``log``, oldest (lowest id) first."""
    first = log.query(EventQuery(), page=1, per_page=_PAGE)
    seen = {e.id: e for e in first.events}
    for page in range(2, first.pages + 1):
        seen.update((e.id, e) for e in log.query(EventQuery(), page=page, per_page=_PAGE).events)
    return [seen[i] for i in sorted(seen)]


def _key(e: StoredEvent) -> _EventKey:
    return (e.time, e.source, e.type.value, e.track_id, e.frame, e.name)


def _record(src: EventLog, e: StoredEvent) -> EventRecord:
    """The record that stores ``e`` again (its crop and embedding read from ``src``)."""
    if e.type is EventType.STATUS:
        media_time = e.time  # not stored for status events: Event.time is the wall clock there
    else:
        media_time = e.media_time if e.media_time is not None else e.time
    event = Event(
        type=e.type, time=media_time, frame=0 if e.frame is None else e.frame, source=e.source,
        track_id=e.track_id, name=e.name, confidence=e.confidence, xyxy=e.xyxy, status=e.status, message=e.message,
    )
    embedding = src.embedding(e.id) if e.has_embedding else None
    return EventRecord(
        event=event, seen_at=e.time, crop_jpeg=src.crop(e.id) if e.has_crop else None,
        embedding=embedding, model_id=e.model_id,
    )


def copy_gallery(
    src_store: GalleryStore,
    dst_store: GalleryStore,
    *,
    src_events: EventLog | None = None,
    dst_events: EventLog | None = None,
    merge: bool = False,
) -> CopySummary:
    """Copy every person, sample and (with both logs given) event from one store to another.

    Args:
        src_store: the gallery to read (it is not changed).
        dst_store: the gallery to write.
        src_events, dst_events: the events logs of each (events are copied only when
            both are given).
        merge: allow a destination that already holds people or events; what it
            already has is skipped (samples: same person, model and sha256; events:
            same time, source, type, track, frame and name).

    Returns:
        What was written and skipped.

    Raises:
        GalleryError: source and destination are the same place, or the destination
            is not empty and ``merge`` is false (nothing is written then).
        ModelMismatchError: merging into a gallery of another model (nothing is written).
    """
    if src_store.location == dst_store.location:
        raise GalleryError(f"cannot copy {src_store.location} onto itself")
    if not merge:
        n_people = len(dst_store.people())
        n_events = dst_events.count() if dst_events is not None else 0
        if n_people or n_events:
            raise GalleryError(
                f"{dst_store.location} is not empty ({n_people} people, {n_events} events); "
                "copy into an empty gallery, or merge into this one"
            )
    with tempfile.TemporaryDirectory(prefix="facesense-copy-") as tmp:
        export = Path(tmp) / "gallery.npz"
        src_store.export_file(export)
        imported = dst_store.import_file(export)
    logger.info("copied %d samples (%d skipped) to %s", imported.samples_added, imported.samples_skipped, dst_store.location)
    if src_events is None or dst_events is None:
        return CopySummary(imported.people_added, imported.samples_added, imported.samples_skipped)

    dst_ids = {(s.person, s.model_id, s.source_sha256): s.id for s in dst_store.samples()}
    sample_map = {
        s.id: dst_ids[(s.person, s.model_id, s.source_sha256)]
        for s in src_store.samples()
        if (s.person, s.model_id, s.source_sha256) in dst_ids
    }
    present: set[_EventKey] = {_key(e) for e in _all_events(dst_events)} if merge else set()
    added = skipped = 0
    for e in _all_events(src_events):
        if _key(e) in present:
            skipped += 1
            continue
        new_id = dst_events.add(_record(src_events, e))
        if e.sample_id is not None and e.name is not None:
            # A sample that is gone from the source keeps its old number (it still says "named").
            dst_events.mark_named(new_id, e.name, sample_map.get(e.sample_id, e.sample_id))
        added += 1
    logger.info("copied %d events (%d skipped) to %s", added, skipped, dst_store.location)
    return CopySummary(imported.people_added, imported.samples_added, imported.samples_skipped, added, skipped)
