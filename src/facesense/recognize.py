"""Recognition: name faces from a gallery, or call them unknown.

:func:`fit_matcher` is the one place a gallery becomes a fitted matcher (the CLI,
``watch``, the web server and ``bench`` all go through it). :class:`LiveMatcher` is the
same matcher kept current: it refits when the gallery's :meth:`~facesense.gallery.base.
GalleryStore.revision` changes, whoever changed it (this process, ``facesense enroll``
in a shell, the web server), so running sources name a person soon after they are
enrolled. :class:`Recognizer` detects, embeds and matches one image at a time::

    >>> with open_gallery("people.db", create=False) as gallery:
    ...     recognizer = Recognizer(gallery)
    >>> faces = recognizer.recognize(load_image("group.jpg"))
    >>> faces.names, faces.distances
    (('obama', None), array([0.62, 1.31], dtype=float32))
    >>> recognizer.identify(load_image("group.jpg")).records()[0]
    {'box': [...], 'score': 0.9999, 'name': 'obama', 'distance': 0.62, 'confidence': 0.9995}

A :class:`Recognizer` reads the gallery once, when it is built; a :class:`LiveMatcher`
keeps reading it.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from facesense.errors import ConfigError, FacesenseError, GalleryError

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.enroll import FaceAnalyzerLike
    from facesense.gallery.base import GalleryStore
    from facesense.match import Matcher, MatchResult
    from facesense.types import Faces

logger = logging.getLogger(__name__)

__all__ = [
    "LIVE_CHECK_S",
    "UNKNOWN",
    "WATCHED_CHECK_S",
    "LiveMatcher",
    "Recognition",
    "Recognizer",
    "draw_faces",
    "detection_records",
    "face_records",
    "fit_matcher",
]

UNKNOWN = "unknown"
"""The name printed for faces that match nobody."""

LIVE_CHECK_S = 0.5
"""How often a :class:`LiveMatcher` asks the gallery whether it changed, seconds."""

WATCHED_CHECK_S = 10.0
"""The same while the store's change notifications are flowing (a safety net only)."""

_MATCHER_ARGS = ("kind", "model_id", "threshold")  # what fit_matcher passes itself


def _make_matcher(model_id: str, kind: str, threshold: float | str | None, options: dict[str, Any]) -> Matcher:
    """``facesense.match.make_matcher`` with unknown options reported as ConfigError (did-you-mean)."""
    from facesense.match import make_matcher

    allowed = [name for name in inspect.signature(make_matcher).parameters if name not in _MATCHER_ARGS]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        from facesense.choices import did_you_mean

        raise ConfigError(
            f"unknown matcher option {unknown[0]!r}{did_you_mean(unknown[0], allowed)}; "
            f"the options are {', '.join(allowed)}"
        )
    matcher: Matcher = make_matcher(kind, model_id=model_id, threshold=threshold, **options)
    return matcher


def _fit(store: GalleryStore, model_id: str, matcher: Matcher) -> tuple[Matcher, tuple[str, ...]] | None:
    """Fit ``matcher`` on every embedding of ``model_id`` and its negatives; ``None`` when there are none.

    Without negatives the matcher is fitted exactly as before corrections existed
    (no ``negatives=`` argument at all), so results stay bit-for-bit the same.
    """
    embeddings = store.embeddings(model_id)
    if len(embeddings) == 0:
        return None
    negatives = store.negatives(model_id)
    if len(negatives) and _takes_negatives(matcher):
        # The Matcher protocol's fit() predates corrections; facesense's matchers all take them.
        fit: Any = matcher.fit
        fit(embeddings.matrix, embeddings.labels, negatives=negatives.matrix, negative_labels=negatives.labels)
        logger.debug("fitted with %d negative(s) from %s", len(negatives), store.location)
    else:
        if len(negatives):
            logger.warning("%r takes no corrections: ignoring %d negative(s)", matcher, len(negatives))
        matcher.fit(embeddings.matrix, embeddings.labels)
    return matcher, tuple(sorted(set(embeddings.labels)))


def _takes_negatives(matcher: Matcher) -> bool:
    """Whether ``matcher.fit`` accepts ``negatives=`` and ``negative_labels=``."""
    try:
        params = inspect.signature(matcher.fit).parameters
    except (TypeError, ValueError):
        return False
    return "negatives" in params and "negative_labels" in params


def fit_matcher(
    store: GalleryStore,
    model_id: str,
    *,
    kind: str = "knn",
    threshold: float | str | None = "auto",
    **options: Any,
) -> Matcher | None:
    """A matcher fitted on the gallery's embeddings of ``model_id``: the one gallery-to-matcher builder.

    The gallery's negatives of the model (corrections: "not X", see
    :meth:`~facesense.gallery.base.GalleryStore.negatives`) are passed to the matcher's
    ``fit`` as ``negatives=`` / ``negative_labels=``.

    Args:
        store: the gallery.
        model_id: the embedder's model id (the gallery must hold this model's embeddings).
        kind: ``knn`` (default), ``svm`` or ``mean`` (see :mod:`facesense.match`).
        threshold: ``"auto"`` for the model's calibrated threshold, a number, or ``None``
            to turn rejection off.
        **options: the rest of :func:`facesense.match.make_matcher`'s options
            (``normalize``, ``k``, ``weighting``, ``c``).

    Returns:
        The fitted matcher, or ``None`` when the gallery holds nobody.

    Raises:
        ConfigError: an unknown kind or option, or a bad value (checked before the
            gallery is read, so also for an empty gallery).
        ModelMismatchError: the gallery holds another model's embeddings.
        GalleryError: the gallery cannot be read.
    """
    matcher = _make_matcher(model_id, kind, threshold, options)
    fitted = _fit(store, model_id, matcher)
    if fitted is None:
        return None
    logger.info("naming faces from %s (%d people): %r", store.location, len(fitted[1]), fitted[0])
    return fitted[0]


class LiveMatcher:
    """A matcher that follows the gallery: refits when :meth:`GalleryStore.revision` changes.

    Args:
        store: the gallery (shared with other threads is fine for
            :class:`~facesense.gallery.sqlite.SQLiteGallery`); the caller closes it.
        model_id: the embedder's model id.
        check_interval_s: ask the store for its revision at most this often.
        watch: when the store offers ``watch_changes(callback)`` (PostgreSQL's
            LISTEN/NOTIFY), refit on its thread as soon as a change is committed, and
            poll only every :data:`WATCHED_CHECK_S` while its notifications flow
            (``check_interval_s`` again while its connection is down).
        kind, threshold, **options: as for :func:`fit_matcher` (checked here).

    :meth:`match` is thread-safe. While the gallery is empty, or cannot be used (another
    model's embeddings, a broken file), every face is unknown; :attr:`problem` says why,
    and the error is logged once. Call :meth:`refresh` to fit now and see errors raised
    (``watch`` does, to fail fast on a mismatched gallery).

    Raises:
        ConfigError: an unknown kind or option.
    """

    def __init__(
        self,
        store: GalleryStore,
        model_id: str,
        *,
        check_interval_s: float = LIVE_CHECK_S,
        watch: bool = True,
        kind: str = "knn",
        threshold: float | str | None = "auto",
        **options: Any,
    ) -> None:
        if not check_interval_s >= 0:
            raise ConfigError(f"check_interval_s must be >= 0, got {check_interval_s}")
        self.store = store
        self.model_id = model_id
        self.check_interval_s = float(check_interval_s)
        self._kind = kind
        self._threshold = threshold
        self._options = dict(options)
        template = _make_matcher(model_id, kind, threshold, self._options)  # fail now on bad options
        self.threshold: float | None = template.threshold
        self._lock = threading.Lock()
        self._matcher: Matcher | None = None
        self._people: tuple[str, ...] = ()
        self._revision: int | None = None
        self._checked_at = -float("inf")
        self._problem: FacesenseError | None = None
        self._logged_problem: str | None = None
        self._watch: Any = None
        watch_changes = getattr(store, "watch_changes", None)
        if watch and callable(watch_changes):
            self._watch = watch_changes(self._changed)

    def close(self) -> None:
        """Stop following the store's change notifications (idempotent; the store stays open)."""
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()

    @property
    def watching(self) -> bool:
        """Whether changes arrive as notifications right now (else the store is polled)."""
        return self._watch is not None and bool(self._watch.connected)

    def _changed(self, revision: int | None) -> None:
        """A change notification (``None``: the listener reconnected): refit now, on its thread."""
        if revision is not None and revision == self._revision:
            return
        with self._lock:
            self._update(raise_errors=False)

    def __repr__(self) -> str:
        return f"LiveMatcher({self.store.location!r}, {self.model_id!r}, people={len(self._people)})"

    @property
    def matcher(self) -> Matcher | None:
        """The fitted matcher in use (``None`` while nobody can be named)."""
        return self._matcher

    @property
    def people(self) -> tuple[str, ...]:
        """The names the current matcher knows, sorted."""
        return self._people

    @property
    def revision(self) -> int | None:
        """The gallery revision the current matcher was fitted at (``None`` before the first fit)."""
        return self._revision

    @property
    def problem(self) -> FacesenseError | None:
        """Why faces cannot be named from the gallery right now, or ``None``."""
        return self._problem

    def invalidate(self) -> None:
        """Check the gallery on the next :meth:`match` instead of waiting for the interval."""
        self._checked_at = -float("inf")

    def refresh(self) -> Matcher | None:
        """Refit now if the gallery changed (or was never read); returns the current matcher.

        Raises:
            ModelMismatchError: the gallery holds another model's embeddings.
            GalleryError: the gallery cannot be read.
        """
        with self._lock:
            self._update(raise_errors=True)
            return self._matcher

    def match(self, embeddings: npt.ArrayLike) -> MatchResult:
        """Name each row of ``(M, D)`` L2-normalised embeddings (``None`` = unknown).

        Checks the gallery's revision first when ``check_interval_s`` has passed.
        """
        interval = max(self.check_interval_s, WATCHED_CHECK_S) if self.watching else self.check_interval_s
        if time.monotonic() - self._checked_at >= interval:
            with self._lock:
                if time.monotonic() - self._checked_at >= interval:
                    self._update(raise_errors=False)
        matcher = self._matcher
        if matcher is None:
            q = np.asarray(embeddings, dtype=np.float32)
            from facesense.match import MatchResult

            return MatchResult.nobody(1 if q.ndim == 1 else int(q.shape[0]))
        return matcher.match(embeddings)

    def _update(self, *, raise_errors: bool) -> None:
        """Refit when the revision moved (caller holds the lock)."""
        self._checked_at = time.monotonic()
        try:
            revision = self.store.revision()
            if revision == self._revision:
                return
            # The revision is read before the embeddings: a write in between only
            # causes one more refit, never a stale matcher labelled as current.
            fitted = _fit(self.store, self.model_id, _make_matcher(self.model_id, self._kind, self._threshold, self._options))
        except FacesenseError as exc:
            self._matcher, self._people, self._problem = None, (), exc
            if str(exc) != self._logged_problem:
                logger.error("cannot name faces from the gallery %s: %s", self.store.location, exc)
                self._logged_problem = str(exc)
            if raise_errors:
                raise
            return
        self._revision = revision
        self._problem = None
        self._logged_problem = None
        if fitted is None:
            self._matcher, self._people = None, ()
            logger.info("the gallery %s holds nobody: every face is unknown", self.store.location)
        else:
            self._matcher, self._people = fitted
            logger.info("naming faces from %s (%d people, revision %d)", self.store.location, len(self._people), revision)


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
    """Detect, embed and match faces against a gallery (read once, here).

    Args:
        gallery: the store to read people from.
        analyzer: detects and embeds; :class:`~facesense.analyzer.FaceAnalyzer` by default.
        matcher: an unfitted matcher to fit on the gallery instead of building one
            from ``kind``, ``threshold`` and ``options``.
        kind, threshold, **options: as for :func:`fit_matcher`.

    Raises:
        GalleryError: the gallery has nobody in it.
        ModelMismatchError: the gallery's embeddings come from another model.
        ConfigError: a bad matcher option.
    """

    def __init__(
        self,
        gallery: GalleryStore,
        *,
        analyzer: FaceAnalyzerLike | None = None,
        matcher: Matcher | None = None,
        kind: str = "knn",
        threshold: float | str | None = "auto",
        **options: Any,
    ) -> None:
        if analyzer is None:
            from facesense.analyzer import FaceAnalyzer

            analyzer = FaceAnalyzer()
        if matcher is not None and (options or kind != "knn" or threshold != "auto"):
            raise ConfigError("pass either a matcher or the options to build one, not both")
        if matcher is None:
            matcher = _make_matcher(analyzer.model_id, kind, threshold, options)
        fitted = _fit(gallery, analyzer.model_id, matcher)
        if fitted is None:
            raise GalleryError(f"{gallery.location}: the gallery has nobody in it; enroll someone first")
        self.analyzer = analyzer
        self.matcher, self.people = fitted
        logger.info("recognizer ready: %d people, %r", len(self.people), self.matcher)

    def recognize(self, image: npt.NDArray[np.uint8]) -> Faces:
        """Every face in a BGR ``(H, W, 3)`` uint8 image, with ``names`` and ``distances`` filled in."""
        return self.identify(image).faces

    def identify(self, image: npt.NDArray[np.uint8]) -> Recognition:
        """Like :meth:`recognize`, with scores and confidences."""
        return self.match(self.analyzer.embed(image, self.analyzer.detect(image)))

    def match(self, faces: Faces) -> Recognition:
        """Name already-embedded faces."""
        if faces.embeddings is None:
            raise ConfigError("faces have no embeddings; run the embedder first")
        from facesense.identity import sample_confidences
        from facesense.types import IdentityState

        if len(faces) == 0:
            empty = np.zeros((0,), np.float32)
            named = faces.replace(names=(), distances=empty, confidences=empty, states=())
            return Recognition(named, empty, empty.copy(), ())
        result = self.matcher.match(faces.embeddings)
        states = tuple(IdentityState.UNKNOWN if n is None else IdentityState.KNOWN for n in result.names)
        return Recognition(
            faces=faces.replace(
                names=result.names,
                distances=result.distances,
                confidences=sample_confidences(result),
                states=states,
            ),
            scores=result.scores,
            confidences=result.confidences,
            candidates=result.candidates,
        )


def detection_records(faces: Faces, *, with_embedding: bool = False) -> list[dict[str, Any]]:
    """One plain dict per detected face, as ``facesense detect --json`` and ``POST
    /api/detect`` give them: ``box`` ``[x1, y1, x2, y2]`` (pixels), detector ``score``,
    five ``landmarks`` ``[x, y]``, and with ``with_embedding`` the ``embedding``."""
    records = []
    for face in faces:
        rec: dict[str, Any] = {
            "box": [round(float(v), 2) for v in face.xyxy],
            "score": round(float(face.score), 5),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in face.landmarks],
        }
        if with_embedding and face.embedding is not None:
            rec["embedding"] = [round(float(v), 6) for v in face.embedding]
        records.append(rec)
    return records


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
        text = face.name if face.name is not None else UNKNOWN
        if face.distance is not None and np.isfinite(face.distance):
            text += f" {face.distance:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        ty = y2 + th + base + 2 if y2 + th + base + 2 < h else max(th + 2, y1 - base - 2)
        cv2.rectangle(out, (x1, ty - th - base), (x1 + tw + 4, ty + base // 2), colour, cv2.FILLED)
        cv2.putText(out, text, (x1 + 2, ty - base // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out
