"""Face detection scored against WIDER FACE ground truth.

The ground truth is WIDER FACE's original text format (``wider_face_val_bbx_gt.txt``)::

    0--Parade/0_Parade_marchingband_1_465.jpg     image path, relative to the images folder
    2                                             number of faces
    345 211 4 4 2 0 0 0 2 0                       x1 y1 w h blur expression illumination invalid occlusion pose
    331 126 3 3 2 0 0 0 2 0

An image with no faces has the count ``0`` followed by one all-zero line.

Scoring, for one minimum face size ``min_face_px`` and an IoU threshold (0.5):

* A ground-truth face is a **positive** unless it is flagged ``invalid`` or its
  shorter side is below ``min_face_px``; those faces are **ignored**.
* In each image, detections are taken by descending score. A detection is a **true
  positive** when its best-overlapping still-unmatched positive face has IoU >=
  the threshold; that face is then matched and cannot match again. Otherwise, if it
  has IoU >= the threshold with any ignored face (an ignored face may absorb any
  number of detections), it is **ignored**: neither a true nor a false positive.
  Otherwise it is a **false positive** (this includes a second detection of an
  already matched face).
* Over all images, the scored (not ignored) detections are ranked by score, giving
  a precision/recall curve with recall = TP / positives. **AP** is the area under it
  with VOC's all-point interpolation (precision made monotonically non-increasing
  from the right, then summed over the recall steps). ``recall`` and ``precision``
  are those at the end of the ranking, i.e. with every detection kept.
* Images that are missing or cannot be decoded are logged, counted in
  ``images_failed`` and left out of the scoring (their faces are not positives).

Detection is the slow part, so :func:`run_detection` runs a detector once and
:func:`score_detection` scores that run for any number of face sizes;
:func:`evaluate_detection` does both for several sizes in one pass.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facesense.errors import ConfigError, ImageError
from facesense.geometry import iou_matrix, xywh_to_xyxy
from facesense.imageio import load_image

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.detect.base import Detector
    from facesense.types import Faces

__all__ = [
    "DetectionReport",
    "DetectionRun",
    "ImageDetections",
    "WiderImage",
    "average_precision",
    "evaluate_detection",
    "parse_wider_annotations",
    "read_wider_annotations",
    "run_detection",
    "score_detection",
]

logger = logging.getLogger(__name__)

WIDER_ATTRIBUTES = (
    "blur",
    "expression",
    "illumination",
    "invalid",
    "occlusion",
    "pose",
)
_INVALID_COLUMN = WIDER_ATTRIBUTES.index("invalid")
DEFAULT_IOU_THRESHOLD = 0.5

Progress = Callable[[int, int], None]


@dataclass(frozen=True, eq=False)
class WiderImage:
    """The ground truth of one image.

    Attributes:
        path: image path relative to the images folder, with ``/`` separators.
        xyxy: ``(N, 4)`` float32 face boxes in pixels.
        attributes: ``(N, 6)`` int64 ``blur expression illumination invalid occlusion pose``.
    """

    path: str
    xyxy: npt.NDArray[np.float32]
    attributes: npt.NDArray[np.int64]

    @property
    def invalid(self) -> npt.NDArray[np.bool_]:
        """``(N,)`` faces WIDER FACE flags as invalid."""
        return np.asarray(self.attributes[:, _INVALID_COLUMN] != 0, dtype=np.bool_)

    @property
    def size_px(self) -> npt.NDArray[np.float32]:
        """``(N,)`` shorter side of each face box."""
        wh = self.xyxy[:, 2:4] - self.xyxy[:, 0:2]
        return np.asarray(np.minimum(wh[:, 0], wh[:, 1]), dtype=np.float32)

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])


def parse_wider_annotations(
    lines: str | Iterable[str], *, source: str = "<text>"
) -> list[WiderImage]:
    """Parse WIDER FACE ``*_bbx_gt.txt`` content.

    Args:
        lines: the file's text, or its lines.
        source: a name for error messages.

    Returns:
        One :class:`WiderImage` per image, in file order.

    Raises:
        ConfigError: the text is not in the WIDER FACE format (with the line number).
    """
    if isinstance(lines, str):
        lines = lines.splitlines()
    numbered = ((i, line.strip()) for i, line in enumerate(lines, start=1))
    rows = [(i, line) for i, line in numbered if line]
    images: list[WiderImage] = []
    pos = 0

    def fail(lineno: int, message: str) -> ConfigError:
        return ConfigError(f"{source}:{lineno}: {message}")

    while pos < len(rows):
        lineno, path = rows[pos]
        if not path.lower().endswith((".jpg", ".jpeg", ".png")):
            raise fail(lineno, f"expected an image path, got {path!r}")
        if pos + 1 >= len(rows):
            raise fail(lineno, f"{path}: missing face count")
        count_line, count_text = rows[pos + 1]
        try:
            count = int(count_text)
        except ValueError:
            raise fail(
                count_line, f"expected a face count, got {count_text!r}"
            ) from None
        if count < 0:
            raise fail(count_line, f"negative face count {count}")
        n_lines = max(count, 1)  # a 0-face image still has one all-zero line
        body = rows[pos + 2 : pos + 2 + n_lines]
        if len(body) < n_lines:
            raise fail(
                count_line,
                f"{path}: expected {n_lines} box lines, file ends after {len(body)}",
            )
        values = []
        for box_line, text in body:
            fields = text.split()
            if len(fields) != 4 + len(WIDER_ATTRIBUTES):
                raise fail(
                    box_line,
                    f"expected 10 numbers (x1 y1 w h + 6 attributes), got {len(fields)}",
                )
            try:
                values.append([int(float(f)) for f in fields])
            except ValueError:
                raise fail(box_line, f"expected numbers, got {text!r}") from None
        table = np.asarray(values[:count], dtype=np.int64).reshape(
            count, 4 + len(WIDER_ATTRIBUTES)
        )
        images.append(
            WiderImage(
                path=path.replace("\\", "/"),
                xyxy=xywh_to_xyxy(table[:, 0:4].astype(np.float32)),
                attributes=table[:, 4:],
            )
        )
        pos += 2 + n_lines
    return images


def read_wider_annotations(path: str | Path) -> list[WiderImage]:
    """Read a WIDER FACE ``*_bbx_gt.txt`` file (see :func:`parse_wider_annotations`).

    Raises:
        ConfigError: the file is missing, unreadable or not in the WIDER FACE format.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read annotations {p}: {exc.strerror or exc}"
        ) from exc
    return parse_wider_annotations(text, source=str(p))


@dataclass(frozen=True, eq=False)
class ImageDetections:
    """A detector's output on one annotated image.

    Attributes:
        truth: the image's ground truth.
        faces: the detections, or ``None`` if the image could not be read.
        detect_ms: time spent in ``detector.detect`` (0 when the image failed).
        error: why the image could not be read, if it could not.
    """

    truth: WiderImage
    faces: Faces | None
    detect_ms: float = 0.0
    error: str | None = None


@dataclass(frozen=True, eq=False)
class DetectionRun:
    """A detector's output over an annotated image set, ready to be scored."""

    images: tuple[ImageDetections, ...]


@dataclass(frozen=True)
class DetectionReport:
    """Detection quality on an annotated image set at one minimum face size.

    Attributes:
        min_face_px: faces with a shorter side below this were ignored.
        iou_threshold: IoU a detection needs with a face to count.
        ap: average precision (VOC all-point interpolation), in [0, 1].
        recall: true positives / positives, with every detection kept.
        precision: true positives / scored detections, with every detection kept.
        images: images scored.
        images_failed: images that could not be read (not scored).
        faces: ground-truth faces in the scored images.
        positives: faces that count (not invalid, not too small).
        ignored_faces: faces ignored (invalid or too small).
        detections: every detection in the scored images.
        true_positives: detections matched to a positive face.
        false_positives: detections matching no face.
        ignored_detections: detections matching only ignored faces.
        detect_ms_median: median time of one ``detect`` call, in milliseconds.
    """

    min_face_px: float
    iou_threshold: float
    ap: float
    recall: float
    precision: float
    images: int
    images_failed: int
    faces: int
    positives: int
    ignored_faces: int
    detections: int
    true_positives: int
    false_positives: int
    ignored_detections: int
    detect_ms_median: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary of every field."""
        return asdict(self)


def run_detection(
    detector: Detector,
    annotations: str | Path | Sequence[WiderImage],
    images: str | Path,
    *,
    limit: int | None = None,
    progress: Progress | None = None,
) -> DetectionRun:
    """Run a detector over annotated images.

    Args:
        detector: anything with ``detect(bgr_image) -> Faces``.
        annotations: a WIDER FACE ``*_bbx_gt.txt`` path, or parsed images.
        images: the folder the annotation paths are relative to.
        limit: only the first ``limit`` images.
        progress: called as ``progress(done, total)`` after each image.

    Returns:
        The detections of every image; unreadable images are logged and recorded
        with ``faces=None``.

    Raises:
        ConfigError: unreadable annotations, a missing images folder or a bad limit.
        ImageError: not one of the images could be read.
        ModelError: the detector failed.
    """
    truths = (
        read_wider_annotations(annotations)
        if isinstance(annotations, (str, Path))
        else list(annotations)
    )
    if limit is not None:
        if limit < 0:
            raise ConfigError(f"limit must be >= 0, got {limit}")
        truths = truths[:limit]
    root = Path(images)
    if not root.is_dir():
        raise ConfigError(f"images folder {root} does not exist")
    results = []
    for done, truth in enumerate(truths, start=1):
        try:
            image = load_image(root / truth.path)
        except ImageError as exc:
            logger.warning("skipping %s: %s", truth.path, exc)
            results.append(ImageDetections(truth=truth, faces=None, error=str(exc)))
        else:
            start = time.perf_counter()
            faces = detector.detect(image)
            elapsed_ms = (time.perf_counter() - start) * 1000.0
            results.append(
                ImageDetections(truth=truth, faces=faces, detect_ms=elapsed_ms)
            )
        if progress is not None:
            progress(done, len(truths))
    if results and all(r.faces is None for r in results):
        raise ImageError(f"none of the {len(results)} images under {root} could be read (first: {results[0].error})")
    return DetectionRun(images=tuple(results))


def _label_image(
    truth_xyxy: np.ndarray,
    positive: np.ndarray,
    det_xyxy: np.ndarray,
    det_scores: np.ndarray,
    iou_threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels (1 TP, 0 FP, -1 ignored) of one image's detections."""
    order = np.argsort(-det_scores, kind="stable")
    scores = det_scores[order]
    labels = np.zeros(order.size, dtype=np.int8)
    if truth_xyxy.shape[0] == 0 or order.size == 0:
        return scores, labels
    iou = iou_matrix(det_xyxy[order].astype(np.float64), truth_xyxy.astype(np.float64))
    hits = iou >= iou_threshold
    ignored_hit = (hits & ~positive[None, :]).any(axis=1)
    candidate = np.where(hits & positive[None, :], iou, -1.0)
    free = np.ones(truth_xyxy.shape[0], dtype=bool)
    for i in np.flatnonzero((candidate >= 0).any(axis=1)):  # detections that can match
        row = np.where(free, candidate[i], -1.0)
        j = int(np.argmax(row))
        if row[j] >= 0:
            labels[i] = 1
            free[j] = False
    labels[(labels == 0) & ignored_hit] = -1
    return scores, labels


def average_precision(recall: npt.ArrayLike, precision: npt.ArrayLike) -> float:
    """Area under a precision/recall curve with VOC's all-point interpolation.

    Args:
        recall: ``(K,)`` non-decreasing recall after each ranked detection.
        precision: ``(K,)`` precision after each ranked detection.

    Returns:
        AP in [0, 1]; 0 for an empty curve.
    """
    rec = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64), [1.0]])
    prec = np.concatenate([[0.0], np.asarray(precision, dtype=np.float64), [0.0]])
    prec = np.maximum.accumulate(prec[::-1])[::-1]
    steps = np.flatnonzero(rec[1:] != rec[:-1])
    return float(np.sum((rec[steps + 1] - rec[steps]) * prec[steps + 1]))


def score_detection(
    run: DetectionRun,
    *,
    min_face_px: float,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
) -> DetectionReport:
    """Score a detection run at one minimum face size (rules in the module docstring).

    Raises:
        ConfigError: ``min_face_px`` < 0 or ``iou_threshold`` outside (0, 1].
    """
    if not min_face_px >= 0:
        raise ConfigError(f"min_face_px must be >= 0, got {min_face_px}")
    if not 0.0 < iou_threshold <= 1.0:
        raise ConfigError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    all_scores, all_labels, times = [], [], []
    faces = positives = detections = failed = 0
    for item in run.images:
        if item.faces is None:
            failed += 1
            continue
        truth = item.truth
        positive = ~truth.invalid & (truth.size_px >= min_face_px)
        faces += len(truth)
        positives += int(positive.sum())
        detections += len(item.faces)
        times.append(item.detect_ms)
        scores, labels = _label_image(
            truth.xyxy, positive, item.faces.xyxy, item.faces.scores, iou_threshold
        )
        all_scores.append(scores)
        all_labels.append(labels)
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0, np.float32)
    labels = np.concatenate(all_labels) if all_labels else np.zeros(0, np.int8)
    scored = labels >= 0
    ranked = labels[scored][np.argsort(-scores[scored], kind="stable")]
    tp_cum = np.cumsum(ranked == 1)
    fp_cum = np.cumsum(ranked == 0)
    tp = int(tp_cum[-1]) if ranked.size else 0
    fp = int(fp_cum[-1]) if ranked.size else 0
    if positives > 0 and ranked.size:
        recall_curve = tp_cum / positives
        precision_curve = tp_cum / np.arange(1, ranked.size + 1)
        ap = average_precision(recall_curve, precision_curve)
    else:
        ap = 0.0
    return DetectionReport(
        min_face_px=float(min_face_px),
        iou_threshold=float(iou_threshold),
        ap=ap,
        recall=tp / positives if positives else 0.0,
        precision=tp / (tp + fp) if tp + fp else 0.0,
        images=len(run.images) - failed,
        images_failed=failed,
        faces=faces,
        positives=positives,
        ignored_faces=faces - positives,
        detections=detections,
        true_positives=tp,
        false_positives=fp,
        ignored_detections=int((labels < 0).sum()),
        detect_ms_median=float(np.median(times)) if times else math.nan,
    )


def evaluate_detection(
    detector: Detector,
    annotations: str | Path | Sequence[WiderImage],
    images: str | Path,
    *,
    min_face_px: Sequence[float] = (20.0, 40.0),
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    limit: int | None = None,
    progress: Progress | None = None,
) -> tuple[DetectionReport, ...]:
    """Run a detector over WIDER FACE images once and score it at several face sizes.

    Args:
        detector: anything with ``detect(bgr_image) -> Faces``.
        annotations: a WIDER FACE ``*_bbx_gt.txt`` path, or parsed images.
        images: the folder the annotation paths are relative to.
        min_face_px: one report per minimum face size (faces below it are ignored).
        iou_threshold: IoU for a detection to match a face.
        limit: only the first ``limit`` images.
        progress: called as ``progress(done, total)`` after each image.

    Returns:
        One :class:`DetectionReport` per entry of ``min_face_px``, in that order.

    Raises:
        ConfigError: bad annotations, images folder or parameters.
        ModelError: the detector failed.
    """
    sizes = (
        [min_face_px] if isinstance(min_face_px, (int, float)) else list(min_face_px)
    )
    if not sizes:
        raise ConfigError("min_face_px: give at least one size")
    for size in sizes:  # fail before the slow part
        if not size >= 0:
            raise ConfigError(f"min_face_px must be >= 0, got {size}")
    if not 0.0 < iou_threshold <= 1.0:
        raise ConfigError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    run = run_detection(detector, annotations, images, limit=limit, progress=progress)
    return tuple(
        score_detection(run, min_face_px=s, iou_threshold=iou_threshold) for s in sizes
    )
