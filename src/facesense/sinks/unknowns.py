"""Recording recurring unknowns while watching: :class:`UnknownsSink` and its :class:`UnknownsWriter`.

The sink follows every track through the frames it is handed: each face the identity
stage embedded on a frame (the rows of ``result.faces.embeddings`` that are not NaN)
goes to that track's :class:`~facesense.unknowns.TrackRecorder` (one running sum and at
most three crops, encoded only when they would enter the best three). When the track
ends (its ``LEFT`` event: not seen for the tracker's max age, split, shot or stream
ended) and it had settled as unknown (an ``UNKNOWN`` event, and no name when it left),
its :class:`~facesense.unknowns.UnknownRecord` is handed to the writer, if one of its
faces was sharp enough to enroll (:func:`facesense.quality.sharpness` >=
:data:`facesense.enroll.DEFAULT_MIN_SHARPNESS`, 20). A track of only blurred or dark
faces leaves no record: naming it could never enroll a face, and such faces embed close
to one another, so they would gather into one false visitor. On the Hamilton clip with
YuNet the dark audience's faces score 1-2 (four tracks that had formed one "visitor"
with a side-lit actor), the people on stage 20-175.

The writer owns the database: a thread of its own with a bounded queue, so the frame
loop never waits for a write (a full queue drops the record, with one warning). It
opens the store lazily, clusters each record and stores it
(:class:`~facesense.gallery.unknowns.StoredUnknowns`, one transaction per record), and
when the database goes away it logs once, keeps the records queued, and retries with a
growing pause; a store of another model's records turns recording off, with one error.
Record times are wall-clock: frames of a file (media seconds) are shifted by when the
run started.

Where several pipelines record at once (the sources of ``facesense serve``, the cameras
of ``facesense watch --config`` and ``facesense worker``), the process builds one writer
(:func:`make_writer`) and gives each pipeline a :class:`SourceUnknownsSink`, which
leaves the writer open when its pipeline ends; the process closes the writer once
every pipeline has ended.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from facesense.errors import ConfigError, FacesenseError, GalleryError, ModelMismatchError
from facesense.types import EventType

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.gallery.location import GalleryLocation
    from facesense.gallery.unknowns import StoredUnknowns, UnknownStore
    from facesense.types import Event, Frame, FrameResult
    from facesense.unknowns import ClusterConfig, CropLimits, TrackRecorder, UnknownRecord

logger = logging.getLogger(__name__)

__all__ = ["SourceUnknownsSink", "UnknownsSink", "UnknownsWriter", "make_writer"]

QUEUE_SIZE = 256  # records waiting for the database
MAX_TRACKS = 512  # recorders kept at once; the least recently seen goes first
RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)  # pauses between attempts while the database is away
CLOSE_TIMEOUT_S = 15.0  # how long close() waits for the queue to be written
_EPOCH_SANITY_S = 86_400.0  # a frame timestamp this far from the wall clock is media time


class UnknownsWriter:
    """Clusters and stores unknown records on a thread of its own.

    Args:
        open_store: opens the store (called on the writer thread, again after a failure).
        model_id: the embedder's model id.
        config: the clusterer's rule and bounds.
        queue_size: records that may wait; more are dropped (with a warning).
        retry_s: pauses between attempts while the store cannot be reached.
    """

    def __init__(
        self,
        open_store: Callable[[], UnknownStore],
        *,
        model_id: str,
        config: ClusterConfig | None = None,
        queue_size: int = QUEUE_SIZE,
        retry_s: Sequence[float] = RETRY_S,
    ) -> None:
        if queue_size < 1 or not retry_s:
            raise ConfigError("queue_size must be >= 1 and retry_s not empty")
        self._open_store = open_store
        self.model_id = model_id
        self.config = config
        self.retry_s = tuple(float(s) for s in retry_s)
        self._queue: queue.Queue[UnknownRecord | None] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._store: UnknownStore | None = None
        self._book: StoredUnknowns | None = None
        self._failing = False
        self._dropped = 0
        self._lost = 0  # taken from the queue but not stored before close gave up
        self.disabled: str | None = None  # why recording stopped for good
        self.stored = 0
        self.recurring = 0
        self._thread = threading.Thread(target=self._run, name="facesense-unknowns", daemon=True)
        self._thread.start()

    def submit(self, record: UnknownRecord) -> bool:
        """Queue one record (never blocks); ``False`` when it was dropped."""
        if self.disabled is not None or self._stop.is_set():
            return False
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._dropped += 1
            if self._dropped == 1:
                logger.warning("unknowns: the database is behind; dropping unknown tracks until it catches up")
            return False
        return True

    @property
    def pending(self) -> int:
        """Records waiting to be written."""
        return self._queue.qsize()

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Write what is queued (waiting up to ``timeout`` seconds), then stop and close the store."""
        if self._thread.is_alive():
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=timeout)  # after the queued records
            self._thread.join(timeout)
            self._stop.set()  # the database did not answer in time: give up on the rest
            self._thread.join(max(self.retry_s))
        left = self._lost
        while True:
            try:
                left += self._queue.get_nowait() is not None
            except queue.Empty:
                break
        if left:
            logger.warning("unknowns: %d unknown track(s) not stored (the database did not answer in time)", left)
        if self._thread.is_alive():
            logger.warning("unknowns: the database write did not return; leaving it behind")
            return
        self._close_store()

    # -- the thread ------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            record = self._queue.get()
            if record is None:
                return
            if self._stop.is_set():
                self._lost += 1
                return
            if self.disabled is None:
                self._write(record)

    def _write(self, record: UnknownRecord) -> None:
        """Store one record, retrying while the database is away (until close)."""
        attempt = 0
        while True:
            try:
                assignment = self._ready().add(record)
            except ModelMismatchError as exc:
                self._disable(str(exc))
                return
            except GalleryError as exc:
                self._failed(exc)
            except (ConfigError, FacesenseError) as exc:
                self._disable(str(exc))
                return
            else:
                if self._failing:
                    logger.warning("unknowns: the database is back; recording again")
                    self._failing = False
                self.stored += 1
                self.recurring += int(assignment.recurring)
                logger.debug("unknowns: record %d -> cluster %d", assignment.record_id, assignment.cluster_id)
                return
            pause = self.retry_s[min(attempt, len(self.retry_s) - 1)]
            attempt += 1
            if self._stop.wait(pause):
                self._lost += 1
                return

    def _ready(self) -> StoredUnknowns:
        if self._book is None:
            from facesense.gallery.unknowns import StoredUnknowns

            self._close_store()
            self._store = self._open_store()
            self._book = StoredUnknowns(self._store, self.model_id, self.config)
        return self._book

    def _failed(self, exc: GalleryError) -> None:
        if not self._failing:
            logger.warning("unknowns: cannot store unknown tracks (%s); retrying", exc)
            self._failing = True
        else:
            logger.debug("unknowns: still failing: %s", exc)
        self._book = None  # reopen and reload: the database is the truth

    def _disable(self, why: str) -> None:
        self.disabled = why
        logger.error("unknowns: not recording unknown tracks: %s", why)

    def _close_store(self) -> None:
        store, self._store, self._book = self._store, None, None
        if store is not None:
            try:
                store.close()
            except FacesenseError as exc:
                logger.debug("unknowns: closing the store: %s", exc)


class UnknownsSink:
    """Builds a record per track and hands those of tracks that end unknown to a writer.

    Args:
        writer: where records go (closed with the sink).
        model_id: the embedder's model id.
        limits: the crops a record keeps.
        clock: the wall clock (for frames of files, whose timestamps are media seconds).
        min_sharpness: a track is recorded only if one of its faces is at least this
            sharp (:func:`facesense.quality.sharpness`); ``None`` takes enrollment's
            :data:`~facesense.enroll.DEFAULT_MIN_SHARPNESS`, 0 records every track.
    """

    def __init__(
        self,
        writer: UnknownsWriter,
        *,
        model_id: str,
        limits: CropLimits | None = None,
        clock: Callable[[], float] = time.time,
        min_sharpness: float | None = None,
    ) -> None:
        from facesense.enroll import DEFAULT_MIN_SHARPNESS
        from facesense.unknowns import CropLimits

        self.writer = writer
        self.model_id = model_id
        self.limits = limits or CropLimits()
        self.min_sharpness = DEFAULT_MIN_SHARPNESS if min_sharpness is None else float(min_sharpness)
        if not math.isfinite(self.min_sharpness) or self.min_sharpness < 0:
            raise ConfigError(f"min_sharpness must be a number >= 0, got {min_sharpness!r}")
        self._sharp: set[int] = set()  # tracks with a face at least min_sharpness sharp
        self._clock = clock
        self._offset: float | None = None
        self._recorders: OrderedDict[int, TrackRecorder] = OrderedDict()
        self._unknown: set[int] = set()
        self.records = 0  # handed to the writer
        self.blurred = 0  # unknown tracks left unrecorded: no face sharp enough

    def _wall(self, frame: Frame) -> float:
        if self._offset is None:
            now = self._clock()
            far = abs(now - frame.timestamp) > _EPOCH_SANITY_S
            self._offset = now - frame.timestamp if far else 0.0
        return frame.timestamp + self._offset

    def write(self, result: FrameResult) -> None:
        """Add this frame's embedded faces to their tracks; finish the tracks that ended."""
        faces = result.faces
        if faces.embeddings is not None and faces.track_ids is not None and len(faces):
            self._observe(result, faces.embeddings, faces.track_ids)
        self._events(result.events)

    def notify(self, events: Sequence[Event]) -> None:
        """Finish the tracks that ended between frames (the end of the stream)."""
        self._events(events)

    def _observe(self, result: FrameResult, embeddings: npt.NDArray[np.float32], track_ids: npt.NDArray[np.int64]) -> None:
        from facesense.quality import sharpness
        from facesense.unknowns import TrackRecorder

        faces = result.faces
        seen_at = self._wall(result.frame)
        rows = np.flatnonzero(np.all(np.isfinite(embeddings), axis=1))
        for i in rows.tolist():
            tid = int(track_ids[i])
            rec = self._recorders.get(tid)
            if rec is None:
                rec = TrackRecorder(source=result.frame.source_id, model_id=self.model_id, track_id=tid, limits=self.limits)
                self._recorders[tid] = rec
                while len(self._recorders) > MAX_TRACKS:
                    old, _ = self._recorders.popitem(last=False)
                    self._unknown.discard(old)
                    self._sharp.discard(old)
            self._recorders.move_to_end(tid)
            if tid not in self._sharp:
                try:
                    if sharpness(result.frame.image, faces.xyxy[i]) >= self.min_sharpness:
                        self._sharp.add(tid)
                except FacesenseError as exc:  # a box that is not four numbers
                    logger.debug("unknowns: track %d: no sharpness: %s", tid, exc)
            q = 0.0 if faces.quality is None else float(faces.quality[i])
            quality = min(1.0, max(0.0, q)) if math.isfinite(q) else 0.0
            try:
                rec.add(embeddings[i], seen_at=seen_at, quality=quality, image=result.frame.image, xyxy=faces.xyxy[i])
            except FacesenseError as exc:  # a box off the image, a crop that cannot be encoded
                logger.debug("unknowns: track %d: face not recorded: %s", tid, exc)

    def _events(self, events: Sequence[Event]) -> None:
        for event in events:
            tid = event.track_id
            if tid is None:
                continue
            if event.type is EventType.UNKNOWN:
                self._unknown.add(tid)
            elif event.type is EventType.LEFT:
                self._finish(tid, unknown=event.name is None and tid in self._unknown)

    def _finish(self, tid: int, *, unknown: bool) -> None:
        rec = self._recorders.pop(tid, None)
        self._unknown.discard(tid)
        sharp = tid in self._sharp
        self._sharp.discard(tid)
        if not unknown or rec is None or rec.faces == 0:
            return
        if not sharp:
            self.blurred += 1
            logger.debug("unknowns: track %d not recorded: no face with sharpness >= %g", tid, self.min_sharpness)
            return
        if self.writer.submit(rec.record()):
            self.records += 1

    def close(self) -> None:
        """Hand over nothing more; write what is queued and close the writer."""
        self._recorders.clear()
        self._unknown.clear()
        self.writer.close()


def make_writer(location: GalleryLocation, model_id: str) -> UnknownsWriter:
    """A writer of unknown records to the unknowns store of the gallery at ``location``
    (:func:`facesense.gallery.unknowns.open_unknown_store`: beside an SQLite gallery, in
    a PostgreSQL gallery's database).

    The store is opened on the writer's thread, on the first record (and reopened after
    a failure): a database that is away never holds up a pipeline, and a run that meets
    no unknown track leaves no store behind.
    """
    from facesense.gallery.unknowns import open_unknown_store

    return UnknownsWriter(lambda: open_unknown_store(location), model_id=model_id)


class SourceUnknownsSink:
    """One pipeline's recorder of unknown tracks, handing records to a writer it does not own.

    Each run of the pipeline gets a fresh :class:`UnknownsSink` (track ids start again
    with each run); their records all go to ``writer``. :meth:`close` (the end of a
    run) finishes that run's sink but leaves the writer open: its owner closes it once
    every pipeline that shares it has ended.

    Args:
        writer: the shared writer.
        model_id: the embedder's model id.
    """

    def __init__(self, writer: UnknownsWriter, model_id: str) -> None:
        self.writer = writer
        self.model_id = model_id
        self._sink: UnknownsSink | None = None
        self.records = 0  # handed to the writer, over every run

    def _current(self) -> UnknownsSink:
        if self._sink is None:
            self._sink = UnknownsSink(self.writer, model_id=self.model_id)
        return self._sink

    def write(self, result: FrameResult) -> None:
        """See :meth:`UnknownsSink.write`."""
        sink = self._current()
        before = sink.records
        sink.write(result)
        self.records += sink.records - before

    def notify(self, events: Sequence[Event]) -> None:
        """See :meth:`UnknownsSink.notify`."""
        sink = self._current()
        before = sink.records
        sink.notify(events)
        self.records += sink.records - before

    def close(self) -> None:
        """The run ended (its tracks left already): the next run starts a fresh sink."""
        self._sink = None
