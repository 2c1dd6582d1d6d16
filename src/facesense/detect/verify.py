"""A second opinion on every face: :class:`VerifiedDetector` drops animal and other non-human faces.

Any detector reports animal faces (dogs, cats, monkeys, lemurs) as human faces now and
then: a face-shaped blob with two eyes and a nose scores high on YuNet and on MTCNN's
final stage alike (``../shared/data/animals``, 67 photos: YuNet 21 false faces, MTCNN 6).
:class:`VerifiedDetector` wraps a detector and checks each face of at least
``min_checked_px`` in two steps, cheap first:

1. MTCNN's O-Net (48x48) on the square box MTCNN would draw from the face's five
   landmarks (:func:`landmark_boxes`). A face it scores at least ``onet_accept_score``
   (0.953) is kept: every animal face of the animals folder scored under 0.77, and
   O-Net accepts 99 % of LFW's and 93 % of WIDER FACE's faces this way, so the second
   step rarely runs on photos (about 40 % of the Hamilton clip's side-lit stage faces).
   A face it scores under ``onet_reject_score`` (0.004; the lowest real face of the
   WIDER subset >= 40 px scored 0.006) is dropped: that is texture, not a face, and
   the second step was fitted on faces and animal faces only (alone it accepts 79 % of
   random background squares of WIDER images; with this floor 40 %).
2. The others are embedded with FaceNet (the face embedder facesense already ships) and
   kept when a linear score of the embedding, ``e @ w + b``, reaches the check's
   threshold. ``w``, ``b`` and the threshold are a logistic regression on FaceNet
   embeddings of WIDER FACE faces against animal/negative detections (file
   ``models/data/nonface_facenet.json``, made by ``benchmarks/nonface_check.py fit``).

Faces smaller than ``min_checked_px`` (40 px) pass unchecked: FaceNet sees them mostly as
upsampling blur, and they are refused for enrollment anyway.

Measured (issue 14; ``benchmarks/nonface_check.py evaluate`` and the same protocol for
the shipped settings, out-of-fold: the images of WIDER, animals and negatives in 5 folds,
each fold checked by a model and threshold fitted on the other four; 67 animal photos is
a small set, so these are estimates): YuNet, three fold splits: animals 21 -> 0-1 false
faces, negatives 0 -> 0, WIDER recall (faces >= 20 px) 0.835 -> 0.830-0.832, none of
300 LFW faces or 119 clip faces dropped. MTCNN's faces checked by a model fitted on
YuNet's candidates only: animals 6 -> 2 (its two 17-21 px jaguar faces, unchecked),
WIDER recall unchanged. What else was tried (same
protocol): O-Net alone at a threshold (the old check: -2.9 recall points for 21 -> 2),
R-Net, O-Net on the detector's own box, landmark-geometry plausibility (residual of the
similarity fit to the ArcFace template, O-Net's landmarks against the detector's) and a
logistic regression on all those cheap features (7 animal faces left at -0.7 points);
a logistic regression on O-Net's 256-d hidden layer (3-6 left, clip faces lost); the
embedding's cosine to the mean WIDER face embedding (animals sit *closer* to the mean
than real faces, like blurred faces do: useless); dlib's 128-d embedding (1 left).

Why FaceNet, with ``dlib+sface`` as the default embedder (issue 15): with a check fitted
on SFace's embeddings a ``dlib+sface`` pipeline would share its SFace part
(:func:`share_embedder`) instead of loading FaceNet (about +90 MB RSS in ``watch``), so
both were measured with the protocol above at the shipped settings (C 0.01, threshold at
the 0.002 quantile of the faces, O-Net accept logit 3, reject logit -5.5), three fold
splits, all embeddings of the same cached detections::

    python benchmarks/nonface_check.py extract --detector yunet --embedder facenet --embedder sface --embedder dlib
    python benchmarks/nonface_check.py evaluate --detector yunet --embedding-only \
        --embedder facenet --embedder sface --embedder dlib --splits 3

(and the same for ``--detector mtcnn``). Animal false faces left, of 21 (YuNet) and 6
(MTCNN), and WIDER recall change (faces >= 20 px), in points:

=========  ====================  ====================
embedder   YuNet                 MTCNN
=========  ====================  ====================
FaceNet    0-1, -0.18            3, 0 to -0.18
SFace      2-3, -0.18 to -0.36   2-4, -0.18 to -0.36
dlib       1-4, 0 to -0.36       4, 0
=========  ====================  ====================

None of 300 LFW faces nor of the clip's faces (127 YuNet, 88 MTCNN) was dropped by any
of them. SFace leaves more animal faces at a larger recall cost; less regularised (C 0.1
to 1) it leaves 0-1 but drops 2-7 of the clip's faces. So the check stays on FaceNet, and
a pipeline whose embedder holds no FaceNet (``dlib+sface``) loads one for the check.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import threading
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

from facesense.detect.landmarks import landmark_boxes, load_onet, onet_outputs
from facesense.errors import ConfigError, ModelError
from facesense.imageio import to_bgr8
from facesense.types import Faces

if TYPE_CHECKING:
    import numpy.typing as npt
    import onnxruntime

    from facesense.detect.base import Detector
    from facesense.embed.base import Embedder

__all__ = [
    "DEFAULT_MIN_CHECKED_PX",
    "NONFACE_CHECK_FILE",
    "NonFaceModel",
    "VerifiedDetector",
    "landmark_boxes",
    "nonface_model",
    "share_embedder",
]

logger = logging.getLogger(__name__)

NONFACE_CHECK_FILE = "nonface_facenet.json"
"""The check's fitted numbers, in :mod:`facesense.models`' ``data`` folder."""

DEFAULT_MIN_CHECKED_PX = 40.0
"""Faces whose box's shorter side is under this many pixels pass unchecked.

Every animal face the detectors reported on the animals folder is at least 45 px; faces
under 40 px are refused for enrollment anyway (:data:`facesense.enroll.DEFAULT_MIN_FACE_PX`).
"""

@dataclass(frozen=True, eq=False)
class NonFaceModel:
    """The fitted numbers of the check (see the module docstring).

    Attributes:
        embedder: the embedder kind whose embeddings ``weights`` apply to.
        model_id: that embedder's model id; another id is refused.
        onet_accept_score: O-Net probability at or above which a face is kept unembedded.
        onet_reject_score: O-Net probability under which a face is dropped unembedded.
        weights: ``(D,)`` float32 ``w`` of the score ``e @ w + b``.
        bias: ``b``.
        threshold: faces scoring under this are not human faces.
    """

    embedder: str
    model_id: str
    onet_accept_score: float
    onet_reject_score: float
    weights: npt.NDArray[np.float32]
    bias: float
    threshold: float

    def scores(self, embeddings: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float32]:
        """``e @ w + b - threshold`` per row of ``(N, D)`` embeddings: >= 0 is a human face."""
        e = np.asarray(embeddings, np.float32).reshape(-1, self.weights.shape[0])
        return np.asarray(e @ self.weights + np.float32(self.bias - self.threshold), np.float32)


@cache
def nonface_model() -> NonFaceModel:
    """The check's fitted numbers, read once from :data:`NONFACE_CHECK_FILE`.

    Raises:
        ModelError: the file is missing or malformed.
    """
    from importlib.resources import files

    source = files("facesense.models").joinpath("data", NONFACE_CHECK_FILE)
    try:
        raw = json.loads(source.read_text(encoding="utf-8"))
        weights = np.asarray(raw["weights"], np.float32)
        model = NonFaceModel(
            embedder=str(raw["embedder"]),
            model_id=str(raw["model_id"]),
            onet_accept_score=float(raw["onet_accept_score"]),
            onet_reject_score=float(raw["onet_reject_score"]),
            weights=weights,
            bias=float(raw["bias"]),
            threshold=float(raw["threshold"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"cannot read the non-face check {NONFACE_CHECK_FILE}: {exc}") from exc
    if (
        weights.ndim != 1
        or not np.isfinite(weights).all()
        or not 0.0 <= model.onet_reject_score <= model.onet_accept_score <= 1.0
    ):
        raise ModelError(f"the non-face check {NONFACE_CHECK_FILE} is malformed")
    return model


def _check_score(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not math.isfinite(value)
        or not 0.0 <= value <= 1.0
    ):
        raise ConfigError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


MEMORY_IOU = 0.5
"""A face keeps a verdict when its box overlaps the remembered one this much (IoU)."""


class _Models:
    """O-Net and the embedder, loaded once and shared by every :meth:`VerifiedDetector.stream` view."""

    def __init__(self, embedder: Embedder | None) -> None:
        self.onet: onnxruntime.InferenceSession | None = None
        self.embedder = embedder
        self.lock = threading.Lock()


class _VerdictMemory:
    """The checked faces of the last call: box, verdict and how many calls ago it was checked."""

    def __init__(self) -> None:
        self.boxes = np.zeros((0, 4), np.float32)
        self.verdicts = np.zeros(0, bool)
        self.ages = np.zeros(0, np.int64)

    def recall(self, boxes: npt.NDArray[np.float32], max_calls: int) -> npt.NDArray[np.int64]:
        """For each of ``boxes``, the remembered face whose verdict it keeps, or -1.

        A remembered face answers for the box overlapping it most (IoU >= ``MEMORY_IOU``),
        if it was checked fewer than ``max_calls`` calls ago.
        """
        from facesense.geometry import iou_matrix

        matched = np.full(len(boxes), -1, np.int64)
        if len(boxes) == 0 or len(self.boxes) == 0:
            return matched
        iou = iou_matrix(boxes, self.boxes)
        for j in range(len(self.boxes)):
            i = int(np.argmax(iou[:, j]))
            if iou[i, j] >= MEMORY_IOU and self.ages[j] + 1 < max_calls and (
                matched[i] < 0 or iou[i, j] > iou[i, matched[i]]
            ):
                matched[i] = j
        return matched

    def remember(self, boxes: npt.NDArray[np.float32], verdicts: npt.NDArray[np.bool_], matched: npt.NDArray[np.int64]) -> None:
        """Keep this call's faces (the others are forgotten): checked ones at age 0, recalled ones a call older."""
        ages = np.zeros(len(boxes), np.int64)
        ages[matched >= 0] = self.ages[matched[matched >= 0]] + 1
        self.boxes = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
        self.verdicts = np.asarray(verdicts, bool).copy()
        self.ages = ages


def _embedder_for(embedder: Any, model_id: str) -> Any:
    """``embedder`` or a view of it that gives ``model_id``'s embeddings, or ``None``."""
    seen: set[int] = set()
    while embedder is not None and id(embedder) not in seen:
        seen.add(id(embedder))
        if getattr(embedder, "model_id", None) == model_id:
            return embedder
        part_view = getattr(embedder, "part_view", None)
        if callable(part_view):
            return part_view(model_id)
        embedder = getattr(embedder, "embedder", None)
    return None


def share_embedder(detector: Any, embedder: Any) -> bool:
    """Let every non-face check in ``detector``'s chain use ``embedder`` (see :meth:`VerifiedDetector.share_embedder`).

    Walks ``detector`` and the detectors it wraps (``inner``: a rotating detector around
    a checked one; ``detector``: a camera's batching view); returns whether any check now
    takes its embeddings from ``embedder``. Safe with any detector and embedder, or ``None``.
    """
    shared = False
    seen: set[int] = set()
    while detector is not None and embedder is not None and id(detector) not in seen:
        seen.add(id(detector))
        if isinstance(detector, VerifiedDetector):
            shared = detector.share_embedder(embedder) or shared
        detector = getattr(detector, "inner", None) or getattr(detector, "detector", None)
    return shared


class VerifiedDetector:
    """A detector whose faces must also pass the non-face check (module docstring).

    Faces that pass keep every field the inner detector gave them (box, score,
    landmarks, and anything else), in the inner detector's order. O-Net is loaded on the
    first :meth:`detect` call that has a face to check, FaceNet on the first face O-Net
    is unsure of. One instance may be shared between threads.

    Args:
        inner: the detector whose faces are checked.
        onet_accept_score: O-Net probability, in [0, 1], at or above which a face is
            kept without the embedding step; ``None`` takes the fitted value (0.953).
            1 embeds every checked face (except those under the fitted floor, 0.004,
            which are dropped).
        min_checked_px: faces whose box's shorter side is below this pass unchecked.
        threads: ONNX Runtime intra-op threads for O-Net and FaceNet; ``None`` uses
            ``$FACESENSE_THREADS`` or every usable core.
        embedder: the embedder of the second step; ``None`` builds the one the check
            was fitted for (FaceNet). Its ``model_id`` must be the fitted one.
        memory_calls: for video: a face found where a face was checked on one of the
            last ``memory_calls`` calls (box IoU >= 0.5 with it on the call before) keeps
            that verdict unchecked, so the check runs about once per face and
            ``memory_calls`` detections instead of on every frame. 0: every face is
            checked every time (photos). The memory belongs to one stream of frames:
            give each camera its own view (:meth:`stream`).

    Raises:
        ConfigError: ``inner`` has no ``detect`` method, or a setting is out of range.
    """

    def __init__(
        self,
        inner: Detector,
        *,
        onet_accept_score: float | None = None,
        min_checked_px: float = DEFAULT_MIN_CHECKED_PX,
        threads: int | None = None,
        embedder: Embedder | None = None,
        memory_calls: int = 0,
    ) -> None:
        if not callable(getattr(inner, "detect", None)):
            raise ConfigError(f"inner must be a detector (with a detect method), got {type(inner).__name__}")
        if (
            isinstance(min_checked_px, bool)
            or not isinstance(min_checked_px, (int, float, np.integer, np.floating))
            or not math.isfinite(min_checked_px)
            or min_checked_px < 0
        ):
            raise ConfigError(f"min_checked_px must be a number >= 0, got {min_checked_px!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"threads must be a positive integer or None, got {threads!r}")
        if isinstance(memory_calls, bool) or not isinstance(memory_calls, int) or memory_calls < 0:
            raise ConfigError(f"memory_calls must be an integer >= 0, got {memory_calls!r}")
        self.inner = inner
        self.memory_calls = memory_calls
        self._memory = _VerdictMemory()
        self._onet_accept_score = None if onet_accept_score is None else _check_score("onet_accept_score", onet_accept_score)
        self.min_checked_px = float(min_checked_px)
        self.threads = threads
        self._models = _Models(embedder)
        self._lock = threading.Lock()  # the memory's

    @property
    def config(self) -> Any:
        """The inner detector's config (``min_face_px`` and the rest), or ``None``."""
        return getattr(self.inner, "config", None)

    @property
    def onet_accept_score(self) -> float:
        """O-Net probability at or above which a face is kept without being embedded."""
        if self._onet_accept_score is not None:
            return self._onet_accept_score
        return nonface_model().onet_accept_score

    def __repr__(self) -> str:
        memory = f", memory_calls={self.memory_calls}" if self.memory_calls else ""
        return f"VerifiedDetector({self.inner!r}, min_checked_px={self.min_checked_px}{memory})"

    def stream(self) -> VerifiedDetector:
        """A view for another stream of frames: same detector and models, its own memory."""
        view = copy.copy(self)  # the models are shared
        view._memory = _VerdictMemory()
        view._lock = threading.Lock()
        stream = getattr(self.inner, "stream", None)
        if callable(stream):
            view.inner = stream()
        return view

    def _load(self) -> onnxruntime.InferenceSession:
        models = self._models
        if models.onet is None:
            with models.lock:
                if models.onet is None:
                    models.onet = load_onet(self.threads, "MTCNN O-Net (verify)")
        return models.onet

    def share_embedder(self, embedder: Any) -> bool:
        """Take the check's embeddings from ``embedder`` instead of loading an embedder of its own.

        ``embedder`` serves when it is the fitted model itself or a fusion holding it
        (:meth:`facesense.embed.fusion.FusedEmbedder.part_view`); a wrapper with an
        ``embedder`` attribute (a camera's batching view) is looked through. Does nothing
        (and returns ``False``) otherwise, or when the check already has its embedder:
        the pipeline's embedder is loaded anyway, so sharing it saves a second copy of
        the fitted model (FaceNet, about 110 MB) in every process that checks and embeds.
        An embedder without that model (``dlib+sface``, the default since issue 15) cannot
        serve: the check then builds its own on the first face O-Net is unsure of.
        """
        source = _embedder_for(embedder, nonface_model().model_id)
        if source is None:
            return False
        models = self._models
        with models.lock:
            if models.embedder is not None:
                return models.embedder is source
            models.embedder = source
        return True

    def _check_embedder(self) -> Embedder:
        model = nonface_model()
        models = self._models
        with models.lock:
            if models.embedder is None:
                from facesense.embed import make_embedder

                models.embedder = make_embedder(model.embedder, threads=self.threads)
            embedder = models.embedder
        if embedder.model_id != model.model_id:
            raise ModelError(
                f"the non-face check was fitted on {model.model_id} embeddings, not {embedder.model_id}"
            )
        return embedder

    def face_scores(self, image: npt.NDArray[Any], faces: Faces) -> npt.NDArray[np.float32]:
        """O-Net's face probability for each face's landmark box (:func:`landmark_boxes`).

        Args:
            image: ``(H, W, 3)`` uint8 BGR (gray and BGRA are converted), the image
                ``faces`` were found in.
            faces: the faces to score.

        Returns:
            ``(N,)`` float32 probabilities in [0, 1].

        Raises:
            ImageError: the array is not an image.
            ModelError: O-Net cannot be loaded or inference fails.
        """
        if len(faces) == 0:
            return np.zeros(0, np.float32)
        try:
            scores, _ = onet_outputs(self._load(), to_bgr8(image), landmark_boxes(faces.landmarks))
        except ModelError as exc:
            raise ModelError(f"face verification: {exc}") from exc
        return scores

    def embedding_scores(self, image: npt.NDArray[Any], faces: Faces) -> npt.NDArray[np.float32]:
        """The embedding step's margin per face: >= 0 is a human face.

        Args:
            image: ``(H, W, 3)`` uint8 BGR, the image ``faces`` were found in.
            faces: the faces to score (their landmarks place the embedder's crop).

        Returns:
            ``(N,)`` float32 ``e @ w + b - threshold``.

        Raises:
            ImageError: the array is not an image.
            ModelError: the embedder cannot be loaded, is not the fitted one, or fails.
        """
        if len(faces) == 0:
            return np.zeros(0, np.float32)
        embedded = self._check_embedder().embed(to_bgr8(image), faces)
        if embedded.embeddings is None:  # pragma: no cover - every embedder fills them
            raise ModelError("the non-face check's embedder returned no embeddings")
        return nonface_model().scores(embedded.embeddings)

    def human(self, image: npt.NDArray[Any], faces: Faces) -> npt.NDArray[np.bool_]:
        """Which faces pass the check (faces under ``min_checked_px`` always do).

        Args:
            image: ``(H, W, 3)`` uint8 BGR, the image ``faces`` were found in.
            faces: the faces to check.

        Returns:
            ``(N,)`` bool.

        Raises:
            ImageError: the array is not an image.
            ModelError: a model cannot be loaded or inference fails.
        """
        keep = np.ones(len(faces), dtype=bool)
        checked = np.flatnonzero(faces.size_px >= self.min_checked_px)
        if self.memory_calls:
            with self._lock:
                matched = self._memory.recall(faces.xyxy[checked], self.memory_calls)
                known = matched >= 0
                keep[checked[known]] = self._memory.verdicts[matched[known]]
            fresh = checked[~known]
            if fresh.size:
                keep[fresh] = self._check(image, faces, fresh)
            with self._lock:
                self._memory.remember(faces.xyxy[checked], keep[checked], matched)
            return keep
        if checked.size == 0:
            return keep
        keep[checked] = self._check(image, faces, checked)
        return keep

    def _check(self, image: npt.NDArray[Any], faces: Faces, checked: npt.NDArray[np.intp]) -> npt.NDArray[np.bool_]:
        """The two steps on ``faces[checked]``: which of them are human."""
        keep = np.ones(checked.size, dtype=bool)
        if checked.size == 0:
            return keep
        onet = self.face_scores(image, faces[checked])
        keep[onet < nonface_model().onet_reject_score] = False
        unsure = np.flatnonzero((onet < self.onet_accept_score) & (onet >= nonface_model().onet_reject_score))
        if unsure.size:
            keep[unsure] = self.embedding_scores(image, faces[checked[unsure]]) >= 0
        if not keep.all():
            logger.debug("dropped %d of %d faces as non-faces (O-Net %s)", int((~keep).sum()), len(faces), onet.round(3))
        return keep

    def detect(self, image: npt.NDArray[Any]) -> Faces:
        """Find faces with the inner detector and keep those that pass the check.

        Args:
            image: ``(H, W, 3)`` uint8 BGR; ``(H, W)`` gray and ``(H, W, 4)`` BGRA are
                converted.

        Returns:
            The inner detector's faces that pass, every field kept, in its order;
            ``Faces.empty()`` when none does.

        Raises:
            ImageError: the array is not an image.
            ModelError: a model cannot be loaded or inference fails.
        """
        faces = self.inner.detect(image)
        if len(faces) == 0:
            return faces
        keep = self.human(image, faces)
        if keep.all():
            return faces
        result: Faces = faces[keep]
        return result
