"""Face crops for the embedder: pure geometry plus one OpenCV resample.

Two ways to turn a detection into the ``160x160`` input FaceNet expects:

* ``CropMethod.BOX``: the detector's box grown by a margin on each side, clipped to the
  image, and resized to ``size_px`` square. This matches how the FaceNet model was
  trained (davidsandberg/facenet aligned its data with MTCNN box crops).
  A face tilted by more than :data:`UPRIGHT_ROLL_DEG` (its roll read from the eye line,
  :func:`facesense.geometry.roll_degrees`; a face found by the rotating detector, say)
  is cut out turned upright instead: the same box about its centre, in the face's own
  frame. An upright network fed a face at 60 degrees sees a stranger (rotated LFW pairs:
  see ``facesense eval rotated --pairs``).
* ``CropMethod.WARP``: a similarity transform that maps the five landmarks onto a
  reference template (ArcFace's, scaled to ``size_px``).

The margin is given relative to the box size (``margin_ratio`` per side), so the crop
is the same for a face at any resolution; ``margin_px`` adds a fixed number of pixels
per side on top (LFW-style crops use ``margin_px=16``). Which default wins is measured
on LFW by ``facesense eval lfw`` (see docs/preprocessing.md).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from facesense.choices import parse_choice
from facesense.errors import ConfigError
from facesense.geometry import roll_degrees

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.types import Faces

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "DLIB_CHIP_TEMPLATE_150",
    "UPRIGHT_ROLL_DEG",
    "CropConfig",
    "CropMethod",
    "crop_faces",
    "expand_boxes",
    "similarity_transform",
    "warp_to_template",
]

UPRIGHT_ROLL_DEG = 20.0
"""Box crops of faces rolled by more than this are turned upright. No face of 600 upright
LFW images is tilted this far (99th percentile 10 degrees, largest 18), so upright crops,
embeddings and the calibration measured on them are unchanged."""

# ArcFace / insightface reference positions of the five landmarks in a 112x112 crop.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)

# Where MTCNN's five landmarks sit in dlib's 150x150 face chip (``get_face_chip`` with
# padding 0.25, the input of dlib's face-recognition ResNet). Measured, not published:
# the median over the 101 faces >= 80 px of the WIDER FACE subset of MTCNN's landmarks
# mapped through the chip transform dlib's own 5-point shape predictor gives, then made
# left-right symmetric (scripts/fit_dlib_template.py).
DLIB_CHIP_TEMPLATE_150 = np.array(
    [
        [47.38, 44.41],
        [101.62, 44.41],
        [74.50, 77.47],
        [50.73, 104.51],
        [98.27, 104.51],
    ],
    dtype=np.float64,
)


class CropMethod(str, enum.Enum):
    """How a face is cut out of the image."""

    BOX = "box"
    WARP = "warp"


@dataclass(frozen=True, kw_only=True)
class CropConfig:
    """Settings of the crop stage.

    Attributes:
        method: box crop or landmark warp.
        size_px: side of the square output crop.
        margin_ratio: box crop margin per side, as a fraction of the box's longer side.
        margin_px: extra fixed margin per side, in source pixels.
        square: grow the box to a square (about its centre) before the margin.
        warp_scale: for the warp, how much of the template's frame to show (1.0 = ArcFace's
            112 px framing scaled to size_px; larger values zoom out).
    """

    method: CropMethod = CropMethod.BOX
    size_px: int = 160
    margin_ratio: float = 0.0
    margin_px: float = 16.0
    square: bool = False
    warp_scale: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", parse_choice(CropMethod, self.method, "crop method"))
        if self.size_px < 16:
            raise ConfigError(f"size_px must be >= 16, got {self.size_px}")
        if not 0.0 <= self.margin_ratio <= 1.0:
            raise ConfigError(f"margin_ratio must be in [0, 1], got {self.margin_ratio}")
        if self.margin_px < 0:
            raise ConfigError(f"margin_px must be >= 0, got {self.margin_px}")
        if not 0.5 <= self.warp_scale <= 3.0:
            raise ConfigError(f"warp_scale must be in [0.5, 3], got {self.warp_scale}")

    @property
    def tag(self) -> str:
        """A short string naming this preprocessing (stored with embeddings)."""
        if self.method is CropMethod.WARP:
            return f"warp{self.size_px}s{self.warp_scale:g}"
        sq = "sq" if self.square else ""
        return f"box{self.size_px}m{self.margin_ratio:g}+{self.margin_px:g}{sq}"


def expand_boxes(
    xyxy: npt.ArrayLike, *, margin_ratio: float, margin_px: float, square: bool = False
) -> npt.NDArray[np.float64]:
    """Grow ``(N, 4)`` xyxy boxes by a relative and a fixed margin on each side.

    Args:
        xyxy: ``(N, 4)`` boxes in pixels.
        margin_ratio: margin per side as a fraction of each box's longer side.
        margin_px: extra margin per side in pixels.
        square: first grow each box to a square about its centre.

    Returns:
        ``(N, 4)`` float64 boxes, not clipped to any image.
    """
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4).copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    if square:
        side = np.maximum(w, h)
        cx = (boxes[:, 0] + boxes[:, 2]) / 2
        cy = (boxes[:, 1] + boxes[:, 3]) / 2
        boxes = np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)
        w = h = side
    pad = margin_ratio * np.maximum(w, h) + margin_px
    return boxes + np.stack([-pad, -pad, pad, pad], axis=1)


def similarity_transform(src: npt.ArrayLike, dst: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src to dst.

    Umeyama's closed form, without reflection.

    Args:
        src: ``(K, 2)`` source points.
        dst: ``(K, 2)`` target points, K >= 2.

    Returns:
        ``(2, 3)`` affine matrix ``M`` with ``dst ~= M @ [x, y, 1]``.
    """
    s = np.asarray(src, dtype=np.float64)
    d = np.asarray(dst, dtype=np.float64)
    if s.shape != d.shape or s.ndim != 2 or s.shape[1] != 2 or s.shape[0] < 2:
        raise ConfigError(f"expected two (K, 2) point sets with K >= 2, got {s.shape} and {d.shape}")
    mu_s, mu_d = s.mean(axis=0), d.mean(axis=0)
    sc, dc = s - mu_s, d - mu_d
    var_s = (sc**2).sum() / len(s)
    cov = dc.T @ sc / len(s)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    scale = (sig * sign).sum() / var_s if var_s > 0 else 1.0
    trans = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, trans[:, None]])


def _warp_template(size_px: int, warp_scale: float) -> npt.NDArray[np.float64]:
    """ArcFace's template scaled to ``size_px`` and zoomed out by ``warp_scale``."""
    centre = np.array([56.0, 56.0])
    pts = (ARCFACE_TEMPLATE_112 - centre) / warp_scale + centre
    return np.asarray(pts * (size_px / 112.0), dtype=np.float64)


def crop_faces(
    image: npt.NDArray[np.uint8], faces: Faces, config: CropConfig | None = None
) -> npt.NDArray[np.uint8]:
    """Cut every face out of ``image`` as a square crop.

    Args:
        image: ``(H, W, 3)`` uint8 BGR.
        faces: detections (boxes, and landmarks for the warp).
        config: crop settings; the defaults when ``None``.

    Returns:
        ``(N, size_px, size_px, 3)`` uint8 BGR crops, in the order of ``faces``.
    """
    import cv2

    cfg = config or CropConfig()
    size = cfg.size_px
    out = np.empty((len(faces), size, size, 3), dtype=np.uint8)
    if len(faces) == 0:
        return out
    h, w = image.shape[:2]
    if cfg.method is CropMethod.WARP:
        return warp_to_template(image, faces.landmarks, _warp_template(size, cfg.warp_scale), size)
    boxes = expand_boxes(
        faces.xyxy, margin_ratio=cfg.margin_ratio, margin_px=cfg.margin_px, square=cfg.square
    )
    x1 = np.clip(np.floor(boxes[:, 0]), 0, w - 1).astype(int)
    y1 = np.clip(np.floor(boxes[:, 1]), 0, h - 1).astype(int)
    x2 = np.clip(np.ceil(boxes[:, 2]), x1 + 1, w).astype(int)
    y2 = np.clip(np.ceil(boxes[:, 3]), y1 + 1, h).astype(int)
    rolls = roll_degrees(faces.landmarks)
    for i in range(len(faces)):
        if abs(float(rolls[i])) > UPRIGHT_ROLL_DEG:
            out[i] = _upright_box_crop(image, boxes[i], float(rolls[i]), size)
            continue
        patch = image[y1[i] : y2[i], x1[i] : x2[i]]
        shrink = patch.shape[0] > size and patch.shape[1] > size
        out[i] = cv2.resize(
            patch, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        )
    return out


def _upright_box_crop(
    image: npt.NDArray[np.uint8], box: npt.NDArray[np.float64], roll_deg: float, size: int
) -> npt.NDArray[np.uint8]:
    """The box crop of a tilted face, turned upright: the box about its centre, in the face's frame.

    ``box`` is the (expanded) box in the image; its width and height are taken along the
    face's own axes, swapped when the face lies on its side (roll nearer 90 than 0 or
    180, where a box around it has its sides the other way round). Outside the image is
    black, as in the warp crop.
    """
    import cv2

    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    half_w, half_h = (box[2] - box[0]) / 2, (box[3] - box[1]) / 2
    if round(roll_deg / 90.0) % 2:
        half_w, half_h = half_h, half_w
    theta = math.radians(roll_deg)
    # The face's x axis (its left eye to its right eye) and y axis (downwards on the face),
    # in image pixels (y down): roll is counter-clockwise as displayed.
    x_axis = np.array([math.cos(theta), -math.sin(theta)])
    y_axis = np.array([math.sin(theta), math.cos(theta)])
    top_left = centre - half_w * x_axis - half_h * y_axis
    # Turned at the image's own scale first, then resized as the plain box crop is (area
    # averaging when shrinking), so a tilted face and the same face upright give the
    # same crop up to one more bilinear resample.
    box_w, box_h = max(1, math.ceil(2 * half_w)), max(1, math.ceil(2 * half_h))
    src = np.array([top_left, top_left + 2 * half_w * x_axis, top_left + 2 * half_h * y_axis], np.float32)
    dst = np.array([[0, 0], [box_w, 0], [0, box_h]], np.float32)
    # Boxes are in pixel-edge coordinates, OpenCV's maps in pixel-centre ones: half a pixel apart.
    matrix = cv2.getAffineTransform(src - np.float32(0.5), dst - np.float32(0.5))
    patch = cv2.warpAffine(image, matrix, (box_w, box_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    shrink = box_h > size and box_w > size
    return np.asarray(
        cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR),
        dtype=np.uint8,
    )


def warp_to_template(
    image: npt.NDArray[np.uint8], landmarks: npt.ArrayLike, template: npt.ArrayLike, size_px: int
) -> npt.NDArray[np.uint8]:
    """Warp each face so its five landmarks land on ``template`` (least-squares similarity).

    Args:
        image: ``(H, W, 3)`` uint8.
        landmarks: ``(N, 5, 2)`` points in ``image``.
        template: ``(5, 2)`` target points in the ``size_px`` square output.
        size_px: output side.

    Returns:
        ``(N, size_px, size_px, 3)`` uint8 chips; outside the image is black.
    """
    import cv2

    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
    out = np.empty((len(pts), size_px, size_px, 3), dtype=np.uint8)
    for i, p in enumerate(pts):
        m = similarity_transform(p, template)
        out[i] = cv2.warpAffine(image, m, (size_px, size_px), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return out
