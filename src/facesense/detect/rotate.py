"""Finding tilted faces: run a detector on rotated copies of the image as well.

MTCNN and YuNet are trained on mostly upright faces; beyond about 45 degrees of roll
they miss faces (``facesense eval rotated``). :class:`RotatingDetector` wraps any
:class:`~facesense.detect.base.Detector`:

1. the inner detector runs on the image and on copies rotated about their centre by
   each of ``angles`` (degrees counter-clockwise as displayed; the whole image is kept
   on a larger canvas, :func:`facesense.geometry.rotate_image`; multiples of 90
   degrees are exact pixel permutations, so they cost no resampling);
2. each copy's landmarks are mapped back to the original image through the inverse
   affine map; the box is the axis-aligned box of the mapped box corners for multiples
   of 90 degrees (exact), and for other angles the mapped box centre with the box's
   own width and height (the corner hull would grow a face box by up to 41 %);
3. duplicates across angles are merged by NMS on the mapped boxes, keeping from each
   group the detection whose landmarks were most level *in its own copy*: the copy in
   which the face was most upright, where the detectors place landmarks best (YuNet's
   landmarks do not turn with a tilted face). Only detections scoring within
   :data:`SCORE_MARGIN` of the group's best compete; among those about as level as the
   best (within :data:`TILT_BAND_DEG`) the highest score wins, because an upside-down
   face can get level but upside-down landmarks (YuNet), at a lower score.

4. a face still more than :data:`REFINE_TILT_DEG` from upright in the image is found
   again in a window cut around it (:data:`REFINE_WINDOW` box sides) and turned upright
   for its roll and the three other quarter turns of it; the best-scoring level detection
   overlapping the face gives the landmarks (``refine``). Detectors place
   landmarks best on upright faces, and a face far from upright is sometimes taken for one
   at another turn, with its five points bunched in the middle of the box; the group's
   detections with such bunched points (:func:`landmark_spread` under
   :data:`SPREAD_FRACTION` of the group's widest) are left out of step 3. The face keeps
   the box step 3 chose: the window's box, drawn in the face's own frame, fits the
   axis-aligned outline of a tilted face worse. On the WIDER FACE subset (``facesense eval
   detect --rotations``, YuNet) taking the window's boxes too cost AP 0.829 -> 0.821
   (faces >= 20 px; 0.821 with the upright image alone and the window), keeping the
   boxes gives 0.833 (recall 0.841, upright 0.835), with the same turned-LFW landmarks.

Measured on turned LFW faces (``python scripts/rotated_cosine.py --limit 40``: the fused
embedding of the turned face against the upright one's, quarter-turn copies): before step
4 and the spread rule, 8 of 40 faces at +-45 degrees had a cosine under 0.8 (landmarks
bunched on a cheek) and the median was 0.975-0.992; after, 1 under 0.8 and a median of
0.997-0.998 at every angle (10th percentile 0.994-0.995); with the photos' +-45 copies
too, none under 0.8. Turned-LFW verification
(``facesense eval rotated --pairs``): 93.9% -> 97.87% with the quarter-turn copies,
98.97% with the photos' +-45 copies too (upright: 99.37%); recall 1.000 at every angle.

Landmark order. :mod:`facesense.types` orders landmarks image-left first, which for an
upright face is the subject's right eye first. For a face that is not upright this
wrapper keeps the **face's own** left and right: index 0 is the eye that is on the
image's left once the face is turned upright (the subject's right eye), in every
angle's output. Mapping points through a rotation never mirrors them, so nothing has to
be swapped: after mapping back from a 180-degree copy, point 0 of an upside-down face
lies on the image's *right*, as it should. Re-sorting the points by image ``x`` instead
would mirror the face: :func:`facesense.align.similarity_transform` fits rotations
without reflection, so embedder crops would come out mirrored and badly fitted.
:func:`roll_degrees` reads the tilt from this order (180 for an upside-down face), and
the warp crop of :mod:`facesense.align` turns every face upright from it.

Measured (``scripts/measure_rotations.py``, 200 LFW images, ``evaluate_rotated``; recall
at 0 / +-45 / +-60 / +-90 / 180 degrees):

* MTCNN alone 1.00 / .97 .945 / .76 .70 / .205 .28 / .46; wrapped with the default
  angles and ``rotated_min_score=0.95`` 1.00 / .975 .975 / .99 1.00 / 1.00 1.00 / 1.00
  (+-30: 1.00 .995; landmark error over eye distance at 90: 0.55 -> 0.00, the upright
  points).
* YuNet alone 1.00 / .95 .965 / .785 .805 / .395 .43 / .865; wrapped with
  ``rotated_min_score=0.8`` 1.00 / .965 .985 / 1.00 1.00 / 1.00 1.00 / 1.00. Adding +-45
  to the angles lifts +-45 to 1.00 and halves YuNet's landmark error at 30-60 degrees
  (0.42 -> 0.05 at 45) for 1.5x the cost.
* False faces: each copy is another chance for one. On ``../shared/data/animals`` (67
  images) MTCNN goes from 6 to 13 false faces wrapped (8 with ``rotated_min_score=0.95``),
  YuNet from 21 to 29 (22 with 0.8); on the Hamilton clip the copies add faces scoring
  0.70-0.78 (YuNet, all dropped at 0.8) and 0.81-0.96 (MTCNN: one face in 60 frames
  left at 0.95).
* Faces under that bar, confirmed (``confirm``; before, they were simply dropped): on
  turned WIDER FACE images (310 faces >= 40 px, ``facesense eval rotated
  --wider-annotations ... --rotations``, default YuNet) the bar alone left 0.887 / 0.887
  at +-60 and 0.906 / 0.903 at +-90 against 0.932 upright; with the copies' faces between
  YuNet's 0.7 and the bar kept when O-Net on the face turned upright gives at least
  :data:`CONFIRM_ONET_SCORE` and the check's embedding step accepts it, 0.916 / 0.926 and
  0.929 / 0.929 (upright unchanged), with the 67 animal photos still at 1 false face (the
  image's own bar for the copies: 4), for 25 more false detections on the 153 upright
  images (precision 0.930 -> 0.885). ``make_detector`` confirms in photos with YuNet only
  (:data:`facesense.detect.ROTATED_CONFIRM`, ``DEFAULTS[use].rotation_confirm``): with
  MTCNN (its band under the bar is 0.8-0.95) the animal photos went from 9 false faces to
  15, and in video, on the Hamilton clip, the 7 faces it added in 275 frames were all
  false (hands, the back of a head).
* Cost: one inner call per angle plus a rotated copy per non-zero angle (a pixel
  permutation for quarter turns), so about 4x the inner detector per frame with the
  default angles; ``every_n=5`` brings the mean to about 1.6x.

Video: with ``every_n > 1`` the rotated copies are searched only on every ``every_n``-th
call of :meth:`RotatingDetector.detect` (the first call included); the other calls run the
inner detector on the image alone. Upright faces are found on every detection frame, and a
tilted face is picked up within ``every_n`` detection frames, after which the tracker
keeps it between searches.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from facesense import geometry
from facesense.detect.landmarks import landmark_boxes
from facesense.errors import ConfigError
from facesense.geometry import invert_affine, roll_degrees, rotate_image, transform_points
from facesense.types import Faces

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.detect.base import Detector
    from facesense.detect.verify import VerifiedDetector

__all__ = ["CONFIRM_ONET_SCORE", "DEFAULT_ROTATION_ANGLES", "DEFAULT_MERGE_IOU", "RotatingDetector", "roll_degrees"]

logger = logging.getLogger(__name__)

# Measured with scripts/measure_rotations.py (LFW, 200 images): the upright pass and
# quarter turns each way cover +-60 and +-90; 180 covers upside-down faces.
DEFAULT_ROTATION_ANGLES: tuple[float, ...] = (0.0, 90.0, -90.0, 180.0)
# Boxes of one face found in different copies overlap this much or more (IoU).
DEFAULT_MERGE_IOU = 0.3
# Detections of one face whose eye lines were within this many degrees of the most
# level one's (each in its own copy) count as equally upright; the score picks among them.
TILT_BAND_DEG = 20.0
# Only detections scoring within this of the group's best compete on levelness: on LFW
# at +-30 degrees, a 0.86 box over part of a 1.00 face, with level landmarks, won otherwise.
SCORE_MARGIN = 0.05
# ... and only those whose landmarks spread at least this share of the group's widest
# (landmark_spread): bunched-up points are a face taken for another turn.
SPREAD_FRACTION = 0.9
# A face tilted more than this in the image is found again in a window turned upright
# around it, where the detector places landmarks best (the upright crop of
# facesense.align starts at the same angle, so upright faces never change).
REFINE_TILT_DEG = 20.0
# That window's side, in face-box sides.
REFINE_WINDOW = 2.0
# The window is turned upright for the face's roll and these other turns of it (a face far
# from upright can be taken for one upside down or a quarter turned).
REFINE_TURNS = (0.0, 180.0, 90.0, -90.0)
CONFIRM_ONET_SCORE = 0.05
"""O-Net's face probability, on a weak copy face turned upright, that confirming it needs.

A face found only in a turned copy and scoring under the copies' bar
(``rotated_min_score``) is kept when the non-face check confirms it strictly
(``confirm``, :meth:`RotatingDetector.detect`): O-Net, on the face turned upright by its
own roll, gives it at least this, and the check's embedding step accepts it whatever
O-Net said. Measured on turned WIDER FACE images (``scripts/wider_rotation_limits.py
confirm``): every animal face the weak copy faces hold scored at most 0.015 here or failed
the embedding step, real faces up to 1.0; 0.1 cost 1-2 more real faces at +-60.
"""


def _map_back(faces: Faces, matrix: npt.NDArray[np.float64], angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and landmarks of a rotated copy's faces in the original image's pixels."""
    inverse = invert_affine(matrix)
    landmarks = transform_points(faces.landmarks, inverse)
    xyxy = faces.xyxy.astype(np.float64)
    quarter = angle_deg / 90.0
    if quarter == round(quarter):
        x1, y1, x2, y2 = xyxy.T
        corners = np.stack(
            [np.stack([x1, y1], 1), np.stack([x2, y1], 1), np.stack([x1, y2], 1), np.stack([x2, y2], 1)], 1
        )
        mapped = transform_points(corners, inverse)
        boxes = np.concatenate([mapped.min(axis=1), mapped.max(axis=1)], axis=1)
    else:
        centre = transform_points((xyxy[:, 0:2] + xyxy[:, 2:4]) / 2.0, inverse)
        half = (xyxy[:, 2:4] - xyxy[:, 0:2]) / 2.0
        boxes = np.concatenate([centre - half, centre + half], axis=1)
    return boxes, landmarks


def _scores_and_tilt(faces: Faces) -> tuple[np.ndarray, np.ndarray]:
    """Each face's score, and how far from upright its landmarks were in the copy the detector saw."""
    return faces.scores.astype(np.float64), np.abs(roll_degrees(faces.landmarks)).astype(np.float64)


def _refine_window(
    image: npt.NDArray[np.uint8], box: npt.NDArray[np.float64], roll: float
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float64]]:
    """The square around ``box`` (:data:`REFINE_WINDOW` box sides), turned by ``-roll``.

    Returns the turned window and the affine map from ``image``'s pixels to the window's.
    """
    h, w = image.shape[:2]
    centre = (box[0:2] + box[2:4]) / 2.0
    half = max(float(box[2] - box[0]), float(box[3] - box[1])) * REFINE_WINDOW / 2.0
    cx, cy = float(centre[0]), float(centre[1])
    x0, y0 = max(0, math.floor(cx - half)), max(0, math.floor(cy - half))
    x1, y1 = min(w, math.ceil(cx + half)), min(h, math.ceil(cy + half))
    turned, matrix = rotate_image(np.ascontiguousarray(image[y0:y1, x0:x1]), -roll)
    shift = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]])
    return turned, (np.vstack([matrix, [0.0, 0.0, 1.0]]) @ shift)[:2]


def landmark_spread(landmarks: npt.NDArray[np.floating[Any]], boxes: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
    """How far apart each face's landmarks lie, for its box: eyes-to-mouth distance over the box side.

    Turning the image changes neither, so detections of one face in different copies
    compare. A detector that takes a face far from upright for one at another turn (eyes
    where a cheek is) bunches the five points into the middle of the box: 0.25-0.34 for
    such faces on turned LFW images, against 0.35-0.43 for correct ones.
    """
    marks = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
    xyxy = np.asarray(boxes, np.float64).reshape(-1, 4)
    side = np.sqrt(np.clip(xyxy[:, 2] - xyxy[:, 0], 1e-9, None) * np.clip(xyxy[:, 3] - xyxy[:, 1], 1e-9, None))
    return np.asarray(np.linalg.norm(marks[:, 3:5].mean(axis=1) - marks[:, 0:2].mean(axis=1), axis=1) / side)


def _merge(
    boxes: np.ndarray, scores: np.ndarray, tilt: np.ndarray, landmarks: np.ndarray, iou_threshold: float
) -> np.ndarray:
    """One detection per face: indices of the kept detections.

    NMS by score groups the detections (each joins the kept box it overlaps most); of
    each group's detections scoring within :data:`SCORE_MARGIN` of its best, the one
    whose landmarks were most level in its own copy wins, the score deciding among those
    within :data:`TILT_BAND_DEG` of the most level: YuNet places level landmarks on an
    upside-down face too, but scores it lower than upright.
    """
    heads = geometry.nms(boxes, scores, iou_threshold)
    group = np.argmax(geometry.iou_matrix(boxes, boxes[heads]), axis=1)
    spread = landmark_spread(landmarks, boxes)
    keep = []
    for g in range(heads.size):
        members = np.flatnonzero(group == g)
        # a partial or false box overlapping a face can have level landmarks too
        members = members[scores[members] >= scores[members].max() - SCORE_MARGIN]
        # landmarks bunched up in the box: a face far from upright taken for another turn
        members = members[spread[members] >= SPREAD_FRACTION * spread[members].max()]
        level = members[tilt[members] <= tilt[members].min() + TILT_BAND_DEG]
        keep.append(int(level[np.argmax(scores[level])]))
    return np.asarray(keep, dtype=np.int64)


def _check_of(detector: Detector) -> VerifiedDetector | None:
    """The non-face check in ``detector``'s chain (it, or under a landmark stage), or ``None``."""
    from facesense.detect.landmarks import OnetLandmarkDetector
    from facesense.detect.verify import VerifiedDetector

    if isinstance(detector, OnetLandmarkDetector):
        detector = detector.inner
    return detector if isinstance(detector, VerifiedDetector) else None


def _unchecked(detector: Detector) -> Detector:
    """``detector`` without its non-face check (a landmark stage around the check is kept)."""
    from facesense.detect.landmarks import OnetLandmarkDetector

    check = _check_of(detector)
    if check is None:
        return detector
    if isinstance(detector, OnetLandmarkDetector):  # the stage around the check
        return detector.around(check.inner)
    return check.inner


class RotatingDetector:
    """A detector that also searches rotated copies of the image (see the module docstring).

    Args:
        inner: the detector run on every copy.
        angles: rotations searched, degrees counter-clockwise; 0 (the image itself)
            is always searched, first, even if not listed.
        merge_iou: boxes of different copies overlapping more than this (IoU) are one face.
        every_n: search the rotated copies on every ``every_n``-th call only (1: always).
        rotated_min_score: detections from the rotated copies (not the image itself)
            must score at least this (or be confirmed, ``confirm``); ``None`` keeps the
            inner detector's threshold. Each copy is another chance for a false face
            near the threshold, so a stricter bar for the copies holds false faces down
            (measured values in the module docstring).
        confirm: a face found only in copies, scoring under ``rotated_min_score``, is
            kept when the non-face check of ``inner``
            (:class:`~facesense.detect.verify.VerifiedDetector`, alone or under a
            landmark stage) confirms it strictly: O-Net gives the face turned upright
            by its roll at least :data:`CONFIRM_ONET_SCORE`, and the check's embedding
            step accepts it (O-Net's outright acceptance, which let two of the three
            animal faces the copies add through, does not count). Without a check in
            ``inner`` such faces are dropped. Off unless asked for:
            :func:`~facesense.detect.make_detector` turns it on where it was measured
            (photos with YuNet, :data:`facesense.detect.ROTATED_CONFIRM`).
        refine: find a face still tilted more than :data:`REFINE_TILT_DEG` again in a
            window turned upright around it, for better landmarks (and so better crops
            for the embedders); upright faces are never refined.

    Raises:
        ConfigError: a non-finite or duplicate angle, ``merge_iou`` or
            ``rotated_min_score`` outside [0, 1], ``every_n`` < 1.
    """

    def __init__(
        self,
        inner: Detector,
        *,
        angles: Sequence[float] = DEFAULT_ROTATION_ANGLES,
        merge_iou: float = DEFAULT_MERGE_IOU,
        every_n: int = 1,
        rotated_min_score: float | None = None,
        refine: bool = True,
        confirm: bool = False,
    ) -> None:
        parsed = [float(a) for a in angles]
        for a in parsed:
            if not math.isfinite(a):
                raise ConfigError(f"angles: expected finite angles, got {a}")
        # normalise to (-180, 180] so 270 and -90 are recognised as the same copy
        normal = [((a + 180.0) % 360.0) - 180.0 for a in parsed]
        normal = [180.0 if a == -180.0 else a for a in normal]
        if len(set(normal)) != len(normal):
            raise ConfigError(f"angles: duplicates in {parsed}")
        if not 0.0 <= merge_iou <= 1.0:
            raise ConfigError(f"merge_iou must be in [0, 1], got {merge_iou}")
        if isinstance(every_n, bool) or not isinstance(every_n, int) or every_n < 1:
            raise ConfigError(f"every_n must be a positive integer, got {every_n!r}")
        if rotated_min_score is not None and not 0.0 <= rotated_min_score <= 1.0:
            raise ConfigError(f"rotated_min_score must be in [0, 1] or None, got {rotated_min_score}")
        self.rotated_min_score = rotated_min_score
        self.inner = inner
        self.angles: tuple[float, ...] = (0.0, *(a for a in normal if a != 0.0))
        self.merge_iou = float(merge_iou)
        self.every_n = every_n
        self.refine = refine
        self.confirm = confirm
        self._calls = 0
        self._lock = threading.Lock()
        self._copies: dict[float, Detector] = {}

    def _copy_view(self, angle: float) -> Detector:
        """The inner detector for the copy turned by ``angle``: its own stream view when it has one.

        A copy is a different picture, so what the inner detector remembers from one call
        to the next (the non-face check's verdicts in video,
        :class:`~facesense.detect.verify.VerifiedDetector` ``memory_calls``) must not carry
        between the image and its copies, nor from one copy to another. Until 2026-12-07 it
        did: each copy's faces replaced the frame's, so the frame's faces were checked again
        after every search (the clip with ``--rotations``: 55.5 fps, now 71.2). A copy's
        view counts its own calls, so with ``every_n`` its verdicts last ``every_n`` times
        as many frames.
        """
        view = self._copies.get(angle)
        if view is None:
            stream = getattr(self.inner, "stream", None)
            view = self._copies.setdefault(angle, stream() if callable(stream) else self.inner)
        return view

    @property
    def config(self) -> Any:
        """The inner detector's config (``min_face_px`` and the rest), or ``None``."""
        return getattr(self.inner, "config", None)

    def __repr__(self) -> str:
        return f"RotatingDetector({self.inner!r}, angles={list(self.angles)}, every_n={self.every_n})"

    def stream(self) -> RotatingDetector:
        """A view for another stream of frames: same detector, its own ``every_n`` count
        (and the inner detector's own view when it has one)."""
        view = copy.copy(self)
        view._calls = 0
        view._lock = threading.Lock()
        stream = getattr(self.inner, "stream", None)
        if callable(stream):
            view.inner = stream()
        view._copies = {}
        return view

    def detect(self, image: npt.NDArray[np.uint8]) -> Faces:
        """Faces at any of the searched rotations, in ``image``'s pixels.

        Args:
            image: ``(H, W, 3)`` uint8 BGR.

        Returns:
            Boxes clipped to the image, scores and landmarks (face-own order, see the
            module docstring), best score first; ``Faces.empty()`` when there is none.
        """
        with self._lock:
            search = self._calls % self.every_n == 0
            self._calls += 1
        angles = self.angles if search else (0.0,)
        h, w = image.shape[:2]
        check = _check_of(self.inner) if self.confirm and self.rotated_min_score is not None else None
        boxes, landmarks, scores, level = [], [], [], []
        weak: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for angle in angles:
            if angle == 0.0:
                faces = self.inner.detect(image)
                mapped_boxes = faces.xyxy.astype(np.float64)
                mapped_points = faces.landmarks.astype(np.float64)
            else:
                rotated, matrix = rotate_image(image, angle)
                faces = self._copy_view(angle).detect(rotated)
                if self.rotated_min_score is not None:
                    strong = faces.scores >= self.rotated_min_score
                    if check is not None and not strong.all():
                        under = faces[~strong]
                        weak.append((*_map_back(under, matrix, angle), *_scores_and_tilt(under)))
                    faces = faces[strong]
                if len(faces) == 0:
                    continue
                mapped_boxes, mapped_points = _map_back(faces, matrix, angle)
            if len(faces) == 0:
                continue
            boxes.append(mapped_boxes)
            landmarks.append(mapped_points)
            score, tilt = _scores_and_tilt(faces)
            scores.append(score)
            level.append(tilt)
        if weak and check is not None:
            found = self._confirmed(image, check, weak, np.concatenate(boxes) if boxes else np.zeros((0, 4)))
            if found is not None:
                for part, values in zip((boxes, landmarks, scores, level), found, strict=True):
                    part.append(values)
        if not boxes:
            return Faces.empty()
        all_boxes = np.concatenate(boxes)
        all_scores = np.concatenate(scores)
        tilt = np.concatenate(level)
        if len(angles) > 1:
            keep = _merge(all_boxes, all_scores, tilt, np.concatenate(landmarks), self.merge_iou)
        else:
            keep = np.arange(all_boxes.shape[0])
        keep = keep[np.argsort(-all_scores[keep], kind="stable")]
        all_points = np.concatenate(landmarks)
        kept_boxes, kept_points = all_boxes[keep], all_points[keep]
        if self.refine:
            for k in np.flatnonzero(np.abs(roll_degrees(kept_points)) > REFINE_TILT_DEG):
                kept_points[k] = self._refine(image, kept_boxes[k], kept_points[k])
        return Faces(
            xyxy=geometry.clip_boxes(kept_boxes, (w, h)).astype(np.float32),
            scores=all_scores[keep].astype(np.float32),
            landmarks=kept_points.astype(np.float32),
        )

    def _confirmed(
        self,
        image: npt.NDArray[np.uint8],
        check: VerifiedDetector,
        weak: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
        kept: npt.NDArray[np.float64],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """The copies' faces under the bar that ``check`` confirms (``confirm``): boxes, landmarks, scores, tilts.

        ``weak`` holds each copy's faces under the bar, mapped back to ``image``. One face
        per group of overlapping ones (the best-scoring) is tried, and none overlapping a
        face already kept (``kept``; those groups keep their strong detection). O-Net runs
        first, on the face turned upright in a window (:func:`_refine_window`), then the
        embedding step on the faces O-Net left; ``None`` when no face is confirmed.
        """
        boxes, points, scores, tilts = (np.concatenate(part) for part in zip(*weak, strict=True))
        heads = geometry.nms(boxes, scores, self.merge_iou)
        if kept.shape[0]:
            heads = heads[geometry.iou_matrix(boxes[heads], kept).max(axis=1) < self.merge_iou]
        passed = []
        for k in heads:
            roll = float(roll_degrees(points[k][None])[0])
            window, matrix = _refine_window(image, boxes[k], roll)
            turned = transform_points(points[k][None], np.asarray(matrix, np.float64)).astype(np.float32)
            upright = Faces(xyxy=landmark_boxes(turned), scores=scores[k : k + 1], landmarks=turned)
            if float(check.face_scores(window, upright)[0]) >= CONFIRM_ONET_SCORE:
                passed.append(int(k))
        if not passed:
            return None
        pick = np.asarray(passed, np.int64)
        candidates = Faces(xyxy=boxes[pick].astype(np.float32), scores=scores[pick], landmarks=points[pick])
        pick = pick[check.embedding_scores(image, candidates) >= 0]
        if pick.size == 0:
            return None
        logger.debug("confirmed %d weak face(s) of the turned copies", pick.size)
        return boxes[pick], points[pick], scores[pick], tilts[pick]

    def _refine(
        self, image: npt.NDArray[np.uint8], box: npt.NDArray[np.float64], points: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """A tilted face's landmarks, found again in a window turned upright around it.

        The detectors place landmarks best on upright faces, and on a face far from
        upright they can take it for one upside down or a quarter turned (eyes where the
        mouth is). So the face is cut out with a margin (:data:`REFINE_WINDOW`) and turned
        upright for its roll and for the three other quarter turns of it, and detected
        again in each (by the inner detector's own detector: the face passed any check
        already). Of the detections overlapping the face (mapped back, IoU >= ``merge_iou``)
        that came out level (within :data:`REFINE_TILT_DEG`), the best-scoring one gives
        the landmarks; without one, the face keeps its own. The face keeps its box: the
        window's box, drawn in the face's own frame, fits the face's axis-aligned outline
        worse (WIDER FACE with ``--rotations``: AP 0.821 with the window's boxes, 0.829
        upright, see the module docstring).
        """
        roll = float(roll_degrees(points)[0])
        detector = _unchecked(self.inner)
        best: tuple[float, npt.NDArray[np.float64]] | None = None
        for turn in REFINE_TURNS:
            angle = roll + turn
            window, matrix = _refine_window(image, box, angle)
            found = detector.detect(window)
            if len(found) == 0:
                continue
            boxes, marks = _map_back(found, np.asarray(matrix, np.float64), -angle)
            iou = geometry.iou_matrix(box[None, :], boxes)[0]
            ok = np.flatnonzero((iou >= self.merge_iou) & (np.abs(roll_degrees(found.landmarks)) <= REFINE_TILT_DEG))
            if ok.size == 0:
                continue
            k = int(ok[np.argmax(found.scores[ok])])
            if best is None or float(found.scores[k]) > best[0]:
                best = (float(found.scores[k]), marks[k])
        return points if best is None else best[1]
