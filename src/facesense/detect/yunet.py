"""YuNet face detection (libfacedetection, 2023mar) on ONNX Runtime.

One small fully convolutional network (about 75 k parameters) with three heads at strides
8, 16 and 32, run once per image at its own resolution: no pyramid, so its cost grows with
the image's pixels only. The network and its conversion (block-quantised weights folded to
FP32, dynamic input size) are in :mod:`facesense.models.yunet_onnx`; this module holds the
decoding, which follows OpenCV's ``cv::FaceDetectorYN`` (``face_detect.cpp``):

1. the image is padded with black on the right and bottom to a multiple of 32 pixels
   (images longer than ``max_side_px`` are first shrunk so their long side fits, and
   images searched for large faces so that a face of ``min_face_px`` reaches the network
   at ``network_face_px``: video at min face 40 runs at 0.6 of its size);
2. each grid cell of each stride ``s`` scores ``sqrt(cls * obj)``; cells scoring at least
   ``score_threshold`` give a box centred at ``((col + dx) * s, (row + dy) * s)`` with
   size ``(exp(dw) * s, exp(dh) * s)`` and five landmarks ``((col + lx) * s, (row + ly) * s)``;
3. greedy NMS (IoU ``iou_threshold``), then faces whose box is smaller than
   ``min_face_px`` on its longer side are dropped and boxes are clipped to the image.

YuNet's landmarks come as right eye, left eye, nose tip, right and left mouth corner in
the subject's terms, which is image-left first for a face looking at the camera: the same
order as :data:`facesense.types.LANDMARK_NAMES` (checked on ``obama.jpg`` in the tests).
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from facesense import geometry
from facesense.detect.factory import DEFAULTS, DetectorUse
from facesense.errors import ConfigError, ModelError
from facesense.imageio import to_bgr8
from facesense.types import Faces

if TYPE_CHECKING:
    import numpy.typing as npt
    import onnxruntime

__all__ = ["YuNetConfig", "YuNetDetector"]

logger = logging.getLogger(__name__)

# Score threshold measured with `facesense eval detect --detector yunet` on the WIDER FACE
# subset (faces >= 20 px) and false faces on ../shared/data/animals (67 images):
#   0.5: AP 0.870, precision 0.84, 41 animal faces   0.6: AP 0.856, precision 0.92, 33
#   0.7: AP 0.829, precision 0.95, 21                 0.8: AP 0.763, precision 0.98, 11
#   0.9 (OpenCV's default, set for the FP32 model): AP 0.456, precision 0.99, 0
# The int8 block-quantised model scores faces lower than the FP32 one (obama.jpg: 0.946),
# so OpenCV's 0.9 loses half the faces. 0.7 keeps AP >= 0.8 (MTCNN: 0.718) with better
# precision than MTCNN's (0.909); the animal faces are for a face/non-face check to reject.
DEFAULT_SCORE_THRESHOLD = 0.7
DEFAULT_IOU_THRESHOLD = 0.3  # OpenCV's FaceDetectorYN and opencv_zoo's demo
# Frames longer than this are shrunk before the network: its activations take about
# 1 kB per input pixel, and faces in such photos are rarely under 20 px after shrinking.
DEFAULT_MAX_SIDE_PX = 2560
# The size a face of min_face_px is shrunk to before the network. WIDER FACE subset, faces
# >= 40 px, min face 40 (310 faces; `python scripts/yunet_network_face.py`; ms per image
# on a loaded 2-core AVX2 EPYC):
#   full size: AP 0.904, recall 0.906, 79 ms    30 px: 0.906 / 0.910, 56 ms
#   24 px: 0.897 / 0.900, 42 ms                 20 px: 0.881 / 0.884, 27 ms
#   16 px: 0.848 / 0.852, 20 ms
# 24 px costs 2 of 310 faces for half the time; photos (min face 20) are never shrunk.
DEFAULT_NETWORK_FACE_PX: float | None = 24.0


@dataclass(frozen=True, kw_only=True)
class YuNetConfig:
    """Settings of :class:`YuNetDetector`.

    Attributes:
        min_face_px: faces whose box's longer side is under this many image pixels are
            dropped (YuNet itself finds faces from about 10 px). Defaults to the photo
            entry of :data:`facesense.detect.DEFAULTS`.
        score_threshold: minimum ``sqrt(class score * objectness)``, in [0, 1].
        iou_threshold: NMS overlap above which the lower-scored box goes, in [0, 1].
        max_side_px: images whose longer side exceeds this are shrunk to it before the
            network (boxes come back in the original's pixels); at least 32.
        network_face_px: shrink the image so that a face of ``min_face_px`` reaches the
            network at this size (never enlarged; ``None``: never shrunk for it). YuNet
            finds faces from about 10 px, so looking for 40 px faces at full resolution
            spends most of the network on sizes nobody asked for: a 640x360 frame at
            min face 40 runs at 320x192, a quarter of the pixels (see
            :data:`DEFAULT_NETWORK_FACE_PX` for what it costs in recall).
        threads: ONNX Runtime intra-op threads; ``None`` uses ``$FACESENSE_THREADS``
            or every usable core.
    """

    min_face_px: float = DEFAULTS[DetectorUse.IMAGE].min_face_px
    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    iou_threshold: float = DEFAULT_IOU_THRESHOLD
    max_side_px: int = DEFAULT_MAX_SIDE_PX
    network_face_px: float | None = DEFAULT_NETWORK_FACE_PX
    threads: int | None = None

    def __post_init__(self) -> None:
        if not _is_real(self.min_face_px) or not math.isfinite(self.min_face_px) or self.min_face_px < 0:
            raise ConfigError(f"min_face_px must be a number >= 0, got {self.min_face_px!r}")
        for name in ("score_threshold", "iou_threshold"):
            value = getattr(self, name)
            if not _is_real(value) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be a number in [0, 1], got {value!r}")
            object.__setattr__(self, name, float(value))
        if isinstance(self.max_side_px, bool) or not isinstance(self.max_side_px, int) or self.max_side_px < 32:
            raise ConfigError(f"max_side_px must be an integer >= 32, got {self.max_side_px!r}")
        if self.network_face_px is not None and (
            not _is_real(self.network_face_px) or not 8.0 <= self.network_face_px <= 1e4
        ):
            raise ConfigError(f"network_face_px must be a number in [8, 10000] or None, got {self.network_face_px!r}")
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1
        ):
            raise ConfigError(f"threads must be a positive integer or None, got {self.threads!r}")


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


class YuNetDetector:
    """YuNet face detector; see the module docstring.

    The model is converted (once, cached) and loaded on the first :meth:`detect` call.
    One detector may be shared between threads.

    Args:
        config: detector settings; the defaults when ``None``.
    """

    def __init__(self, config: YuNetConfig | None = None) -> None:
        self.config = config if config is not None else YuNetConfig()
        if not isinstance(self.config, YuNetConfig):
            raise ConfigError(f"config must be a YuNetConfig, got {type(self.config).__name__}")
        self._session: onnxruntime.InferenceSession | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"YuNetDetector({self.config!r})"

    def _load(self) -> onnxruntime.InferenceSession:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    from facesense.models.runtime import create_session
                    from facesense.models.yunet_onnx import yunet_onnx_path

                    self._session = create_session(yunet_onnx_path(), threads=self.config.threads, name="YuNet")
        return self._session

    def _scale(self, width: int, height: int) -> float:
        """How much the image is shrunk before the network (1.0: not at all)."""
        cfg = self.config
        scale = min(1.0, cfg.max_side_px / max(height, width))
        if cfg.network_face_px is not None and cfg.min_face_px > 0:
            scale = min(scale, cfg.network_face_px / cfg.min_face_px)
        return scale

    def detect(self, image: npt.NDArray[Any]) -> Faces:
        """Find faces in one image.

        Args:
            image: ``(H, W, 3)`` uint8 BGR; ``(H, W)`` gray and ``(H, W, 4)`` BGRA are
                converted.

        Returns:
            Boxes (float32, clipped to the image), scores and landmarks in image pixels,
            sorted by score, best first; ``Faces.empty()`` when nothing is found.

        Raises:
            ImageError: the array is not an image.
            ModelError: the model cannot be converted or loaded, or inference fails.
        """
        from facesense.models.yunet_onnx import INPUT_NAME, OUTPUT_NAMES, STRIDE_PX, STRIDES_PX

        bgr = to_bgr8(image)
        height, width = bgr.shape[:2]
        if height == 0 or width == 0:
            return Faces.empty()
        scale = self._scale(width, height)
        if scale < 1.0:
            import cv2

            size_wh = (max(1, round(width * scale)), max(1, round(height * scale)))
            bgr = np.asarray(cv2.resize(bgr, size_wh, interpolation=cv2.INTER_AREA), dtype=np.uint8)
        h, w = bgr.shape[:2]
        padded_h, padded_w = -(-h // STRIDE_PX) * STRIDE_PX, -(-w // STRIDE_PX) * STRIDE_PX
        if (padded_h, padded_w) != (h, w):
            canvas = np.zeros((padded_h, padded_w, 3), np.uint8)
            canvas[:h, :w] = bgr
            bgr = canvas
        session = self._load()
        try:
            outputs = dict(zip(OUTPUT_NAMES, session.run(list(OUTPUT_NAMES), {INPUT_NAME: bgr[None]}), strict=True))
        except Exception as exc:  # onnxruntime raises its own, unexported classes
            raise ModelError(f"YuNet inference failed: {exc}") from exc

        boxes, scores, marks = [], [], []
        for stride in STRIDES_PX:
            cols = padded_w // stride
            cls = np.clip(outputs[f"cls_{stride}"][0, :, 0], 0.0, 1.0)
            obj = np.clip(outputs[f"obj_{stride}"][0, :, 0], 0.0, 1.0)
            score = np.sqrt(cls * obj)
            (cells,) = np.nonzero(score >= self.config.score_threshold)
            if cells.size == 0:
                continue
            grid = np.stack([cells % cols, cells // cols], axis=1).astype(np.float32)  # (col, row)
            box = outputs[f"bbox_{stride}"][0, cells]
            centre = (grid + box[:, 0:2]) * stride
            size = np.exp(box[:, 2:4]) * stride
            boxes.append(np.concatenate([centre - size / 2, centre + size / 2], axis=1))
            kps = outputs[f"kps_{stride}"][0, cells].reshape(-1, 5, 2)
            marks.append((kps + grid[:, None, :]) * stride)
            scores.append(score[cells])
        if not boxes:
            return Faces.empty()
        xyxy = np.concatenate(boxes).astype(np.float32)
        score = np.concatenate(scores).astype(np.float32)
        landmarks = np.concatenate(marks).astype(np.float32)
        if scale < 1.0:
            xyxy[:, 0::2] *= width / w
            xyxy[:, 1::2] *= height / h
            landmarks[..., 0] *= width / w
            landmarks[..., 1] *= height / h
        pick = geometry.nms(xyxy, score, self.config.iou_threshold)
        xyxy, score, landmarks = xyxy[pick], score[pick], landmarks[pick]
        big = np.maximum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]) >= self.config.min_face_px
        xyxy, score, landmarks = xyxy[big], score[big], landmarks[big]
        if len(xyxy) == 0:
            return Faces.empty()
        return Faces(xyxy=geometry.clip_boxes(xyxy, (width, height)), scores=score, landmarks=landmarks)
