"""Detection recall on rotated copies of centred-face images (LFW).

LFW's images are 250x250 with one face in the middle. :func:`evaluate_rotated` takes
a deterministic sample of them, rotates each about its centre by every angle onto a
canvas just large enough to hold the whole rotated image (:func:`rotate_image`; the
corners are black), runs the detector on each copy, and counts the central face as
**found** when some detection's box centre lies within ``center_tolerance`` (a
fraction of the original image's shorter side) of the canvas centre, which is where
the original centre lands. Recall at an angle is found / images; it is also given
relative to upright (recall / recall at 0 degrees) and as the share of the images
found upright that are found at that angle too. Each found face's five landmarks are
mapped back to the upright image and compared with the upright detection's (error
over the eye distance), since a detector may find a turned face but place its
landmarks as if it were upright.

Angles are in degrees, counter-clockwise as the image is displayed (OpenCV's
``getRotationMatrix2D`` convention). Coordinates are facesense's continuous pixel
coordinates (:mod:`facesense.types`): the image's centre is ``(w / 2, h / 2)``.

:func:`evaluate_rotated_wider` does the same for every face of WIDER FACE images
(each true face's centre is mapped by the rotation; see its docstring for the match
rule).

Images that cannot be read are logged and counted in ``images_failed``; when none
can be read the evaluation raises :class:`~facesense.errors.ImageError`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facesense.errors import ConfigError, ImageError
from facesense.geometry import invert_affine, rotate_image, rotation_matrix, transform_points
from facesense.imageio import iter_image_paths, load_image

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.detect.base import Detector
    from facesense.eval.detect import WiderImage
    from facesense.types import Faces

__all__ = [
    "DEFAULT_ANGLES",
    "DEFAULT_CENTER_TOLERANCE",
    "DEFAULT_LIMIT",
    "DEFAULT_WIDER_CENTER_TOLERANCE",
    "DEFAULT_WIDER_MIN_FACE_PX",
    "LANDMARK_AGREE_NME",
    "AngleResult",
    "RotatedReport",
    "WIDER_SIZE_RATIO",
    "DEFAULT_MAX_ANGLE_DEG",
    "evaluate_rotated",
    "evaluate_rotated_lfw",
    "evaluate_rotated_wider",
    "invert_affine",
    "rotate_image",
    "rotation_matrix",
    "sample_images",
    "transform_points",
]

logger = logging.getLogger(__name__)

# The angles issue 14 asks about.
DEFAULT_ANGLES: tuple[float, ...] = (0.0, 30.0, -30.0, 45.0, -45.0, 60.0, -60.0, 90.0, -90.0, 180.0)
# A detection's centre may lie this fraction of the image's shorter side from the
# expected face centre: 37.5 px on LFW's 250 px images, where faces are ~110 px wide.
DEFAULT_CENTER_TOLERANCE = 0.15
DEFAULT_LIMIT = 300
# Five landmarks agree with the upright detection's when their mean distance (mapped
# back to the upright image) is at most this fraction of the upright eye distance.
LANDMARK_AGREE_NME = 0.25
# WIDER FACE: count faces at least this big (the video default; smaller faces are
# mostly missed upright already), matched within this fraction of the face's size,
# by a detection no more than this factor larger or smaller.
DEFAULT_WIDER_MIN_FACE_PX = 40.0
DEFAULT_WIDER_CENTER_TOLERANCE = 0.3
WIDER_SIZE_RATIO = 2.0
DEFAULT_SEED = 0

Progress = Callable[[int, int], None]


def sample_images(folder: str | Path, limit: int | None, *, seed: int = DEFAULT_SEED) -> list[Path]:
    """A deterministic sample of the images under a folder.

    Args:
        folder: searched recursively (sorted paths).
        limit: how many; ``None`` (or more than there are) takes them all.
        seed: the sample's random seed.

    Returns:
        The chosen paths, in sorted order.

    Raises:
        ConfigError: ``folder`` is not a folder, or ``limit`` < 1.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be >= 1, got {limit}")
    paths = list(iter_image_paths([root]))
    if limit is None or limit >= len(paths):
        return paths
    chosen = np.random.default_rng(seed).choice(len(paths), size=limit, replace=False)
    return [paths[i] for i in sorted(chosen.tolist())]


@dataclass(frozen=True)
class AngleResult:
    """Detection of the central face at one rotation.

    Attributes:
        angle_deg: the rotation, degrees counter-clockwise.
        found: images whose central face was found.
        recall: found / images.
        relative_to_upright: recall / recall at 0 degrees (``None`` without a 0-degree
            run, or when nothing was found upright).
        found_given_upright: of the images found at 0 degrees, the share also found
            here (``None`` as above).
        landmark_nme_median: of the images found both upright and here, the median
            mean landmark distance (mapped back to the upright image) from the upright
            detection's landmarks, over the upright eye distance (``None`` without
            such images).
        landmarks_agree: the share of those images with that error at most
            :data:`LANDMARK_AGREE_NME` (``None`` as above).
        detections: every detection on the rotated images (central or not).
        detect_ms_median: median time of one ``detect`` call.
    """

    angle_deg: float
    found: int
    recall: float
    relative_to_upright: float | None
    found_given_upright: float | None
    landmark_nme_median: float | None
    landmarks_agree: float | None
    detections: int
    detect_ms_median: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary of every field."""
        return {
            "angle_deg": self.angle_deg,
            "found": self.found,
            "recall": self.recall,
            "relative_to_upright": self.relative_to_upright,
            "found_given_upright": self.found_given_upright,
            "landmark_nme_median": self.landmark_nme_median,
            "landmarks_agree": self.landmarks_agree,
            "detections": self.detections,
            "detect_ms_median": self.detect_ms_median,
        }


@dataclass(frozen=True)
class RotatedReport:
    """Recall of the central face per rotation angle.

    Attributes:
        folder: the image folder.
        images: images read and rotated.
        images_failed: sampled images that could not be read (not counted).
        faces: faces counted (one per image for centred faces; WIDER FACE's positives).
        min_face_px: WIDER FACE faces smaller than this were ignored (``None`` for
            centred faces).
        center_tolerance: the match tolerance, as a fraction of the image's shorter
            side (centred faces) or of the face's size (WIDER FACE).
        angles: one result per angle, in the order asked.
    """

    folder: str
    images: int
    images_failed: int
    faces: int
    min_face_px: float | None
    center_tolerance: float
    angles: tuple[AngleResult, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary of every field."""
        return {
            "folder": self.folder,
            "images": self.images,
            "images_failed": self.images_failed,
            "faces": self.faces,
            "min_face_px": self.min_face_px,
            "center_tolerance": self.center_tolerance,
            "angles": [a.to_dict() for a in self.angles],
        }


def _parse_angles(angles: Sequence[float]) -> tuple[float, ...]:
    out = tuple(float(a) for a in angles)
    if not out:
        raise ConfigError("angles: give at least one angle")
    for a in out:
        if not math.isfinite(a):
            raise ConfigError(f"angles: expected finite angles, got {a}")
    if len(set(out)) != len(out):
        raise ConfigError(f"angles: duplicates in {list(out)}")
    return out


def _angle_results(
    angle_list: tuple[float, ...],
    found: npt.NDArray[np.bool_],
    points: npt.NDArray[np.float64],
    detections: npt.NDArray[np.int64],
    times: list[list[float]],
) -> tuple[AngleResult, ...]:
    """Per-angle results from ``found (faces, angles)`` and the found faces' landmarks
    ``points (faces, angles, 5, 2)`` in upright-image coordinates."""
    n = found.shape[0]
    upright = angle_list.index(0.0) if 0.0 in angle_list else None
    results = []
    for j, angle in enumerate(angle_list):
        count = int(found[:, j].sum())
        recall = count / n if n else 0.0
        relative = given = nme_median = agree = None
        if upright is not None and found[:, upright].any():
            upright_found = found[:, upright]
            relative = recall / (int(upright_found.sum()) / n)
            given = float(found[upright_found, j].mean())
            both = upright_found & found[:, j]
            if both.any():
                reference = points[both, upright]
                eye_px = np.linalg.norm(reference[:, 1] - reference[:, 0], axis=1)
                error = np.linalg.norm(points[both, j] - reference, axis=2).mean(axis=1)
                nme = error / np.maximum(eye_px, 1e-6)
                nme_median = float(np.median(nme))
                agree = float((nme <= LANDMARK_AGREE_NME).mean())
        results.append(
            AngleResult(
                angle_deg=angle,
                found=count,
                recall=recall,
                relative_to_upright=relative,
                found_given_upright=given,
                landmark_nme_median=nme_median,
                landmarks_agree=agree,
                detections=int(detections[j]),
                detect_ms_median=float(np.median(times[j])) if times[j] else math.nan,
            )
        )
    return tuple(results)


def evaluate_rotated(
    detector: Detector,
    folder: str | Path,
    *,
    angles: Sequence[float] = DEFAULT_ANGLES,
    limit: int | None = DEFAULT_LIMIT,
    seed: int = DEFAULT_SEED,
    center_tolerance: float = DEFAULT_CENTER_TOLERANCE,
    progress: Progress | None = None,
) -> RotatedReport:
    """Detection recall of a centred face on rotated copies of each image.

    Args:
        detector: anything with ``detect(bgr_image) -> Faces``.
        folder: images with one centred face each (LFW), searched recursively.
        angles: rotations to test, degrees counter-clockwise.
        limit: a deterministic sample of this many images (``None``: all).
        seed: the sample's random seed.
        center_tolerance: how far a detection's box centre may be from the canvas
            centre, as a fraction of the original image's shorter side.
        progress: called as ``progress(done, total)`` after each image.

    Returns:
        The report, one :class:`AngleResult` per angle in the order given.

    Raises:
        ConfigError: bad folder, angles, limit or tolerance.
        ImageError: the folder holds no image, or none could be read.
        ModelError: the detector failed.
    """
    angle_list = _parse_angles(angles)
    if not 0.0 < center_tolerance <= 1.0:
        raise ConfigError(f"center_tolerance must be in (0, 1], got {center_tolerance}")
    paths = sample_images(folder, limit, seed=seed)
    if not paths:
        raise ImageError(f"no images under {folder}")
    found = np.zeros((len(paths), len(angle_list)), dtype=bool)
    # the central face's landmarks at each angle, mapped back to the upright image
    points = np.full((len(paths), len(angle_list), 5, 2), np.nan)
    detections = np.zeros(len(angle_list), dtype=np.int64)
    times: list[list[float]] = [[] for _ in angle_list]
    ok = np.zeros(len(paths), dtype=bool)
    first_error = ""
    for i, path in enumerate(paths):
        try:
            image = load_image(path)
        except ImageError as exc:
            logger.warning("skipping %s: %s", path, exc)
            first_error = first_error or str(exc)
        else:
            ok[i] = True
            tolerance_px = center_tolerance * min(image.shape[:2])
            for j, angle in enumerate(angle_list):
                rotated, matrix = rotate_image(image, angle)
                start = time.perf_counter()
                faces = detector.detect(rotated)
                times[j].append((time.perf_counter() - start) * 1000.0)
                detections[j] += len(faces)
                if len(faces):
                    centre = np.array([rotated.shape[1] / 2.0, rotated.shape[0] / 2.0])
                    box_centres = (faces.xyxy[:, 0:2] + faces.xyxy[:, 2:4]).astype(np.float64) / 2.0
                    distance = np.linalg.norm(box_centres - centre, axis=1)
                    nearest = int(np.argmin(distance))
                    if distance[nearest] <= tolerance_px:
                        found[i, j] = True
                        points[i, j] = transform_points(faces.landmarks[nearest], invert_affine(matrix))
        if progress is not None:
            progress(i + 1, len(paths))
    n = int(ok.sum())
    if n == 0:
        raise ImageError(f"none of the {len(paths)} sampled images under {folder} could be read (first: {first_error})")
    found = found[ok]
    points = points[ok]
    return RotatedReport(
        folder=str(folder),
        images=n,
        images_failed=len(paths) - n,
        faces=n,
        min_face_px=None,
        center_tolerance=center_tolerance,
        angles=_angle_results(angle_list, found, points, detections, times),
    )


def _match_rotated_faces(
    truth_centres: npt.NDArray[np.float64],
    truth_sizes: npt.NDArray[np.float64],
    faces: Faces,
    center_tolerance: float,
) -> npt.NDArray[np.int64]:
    """For each true face, the index of the detection matched to it, or -1.

    Detections are taken by descending score; each takes the nearest still-free face
    whose centre is within ``center_tolerance * size`` of its box centre and whose size
    (square root of the area) is within a factor :data:`WIDER_SIZE_RATIO` of its own.
    """
    matched = np.full(truth_centres.shape[0], -1, dtype=np.int64)
    if len(faces) == 0 or truth_centres.shape[0] == 0:
        return matched
    xyxy = faces.xyxy.astype(np.float64)
    centres = (xyxy[:, 0:2] + xyxy[:, 2:4]) / 2.0
    sizes = np.sqrt(np.maximum(xyxy[:, 2] - xyxy[:, 0], 0) * np.maximum(xyxy[:, 3] - xyxy[:, 1], 0))
    distance = np.linalg.norm(centres[:, None, :] - truth_centres[None, :, :], axis=2)
    ratio = sizes[:, None] / np.maximum(truth_sizes[None, :], 1e-6)
    ok = (
        (distance <= center_tolerance * truth_sizes[None, :])
        & (ratio >= 1 / WIDER_SIZE_RATIO)
        & (ratio <= WIDER_SIZE_RATIO)
    )
    for d in np.argsort(-faces.scores, kind="stable"):
        candidates = np.where(ok[d] & (matched < 0), distance[d], np.inf)
        t = int(np.argmin(candidates))
        if np.isfinite(candidates[t]):
            matched[t] = d
    return matched


def evaluate_rotated_wider(
    detector: Detector,
    annotations: str | Path | Sequence[WiderImage],
    images: str | Path,
    *,
    angles: Sequence[float] = DEFAULT_ANGLES,
    min_face_px: float = DEFAULT_WIDER_MIN_FACE_PX,
    limit: int | None = None,
    center_tolerance: float = DEFAULT_WIDER_CENTER_TOLERANCE,
    progress: Progress | None = None,
) -> RotatedReport:
    """Detection recall of WIDER FACE faces on rotated copies of each image.

    The faces counted are those not flagged invalid with a shorter side of at least
    ``min_face_px``. Each is rotated with its image (its box centre mapped by the
    rotation, its size, the square root of the box area, unchanged) and is **found**
    when a detection's box centre lies within ``center_tolerance`` times that size of
    it and the detection's size is within a factor :data:`WIDER_SIZE_RATIO` of it
    (one detection per face, by descending score). An axis-aligned box cannot follow
    a turned face, so IoU would penalise correct detections at 45 degrees.

    Args:
        detector: anything with ``detect(bgr_image) -> Faces``.
        annotations: a WIDER FACE ``*_bbx_gt.txt`` path, or parsed images.
        images: the folder the annotation paths are relative to.
        angles: rotations to test, degrees counter-clockwise.
        min_face_px: faces with a shorter side below this are not counted.
        limit: only the first ``limit`` images.
        center_tolerance: match distance, as a fraction of the face's size.
        progress: called as ``progress(done, total)`` after each image.

    Returns:
        The report (``faces`` = faces counted), one :class:`AngleResult` per angle.

    Raises:
        ConfigError: bad annotations, images folder or parameters.
        ImageError: no annotated image, or none could be read.
        ModelError: the detector failed.
    """
    from facesense.eval.detect import read_wider_annotations

    angle_list = _parse_angles(angles)
    if not 0.0 < center_tolerance <= 1.0:
        raise ConfigError(f"center_tolerance must be in (0, 1], got {center_tolerance}")
    if not min_face_px >= 0:
        raise ConfigError(f"min_face_px must be >= 0, got {min_face_px}")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be >= 1, got {limit}")
    truths = read_wider_annotations(annotations) if isinstance(annotations, (str, Path)) else list(annotations)
    truths = truths[:limit] if limit is not None else truths
    root = Path(images)
    if not root.is_dir():
        raise ConfigError(f"images folder {root} does not exist")
    if not truths:
        raise ImageError("no annotated images")
    found_parts: list[npt.NDArray[np.bool_]] = []
    point_parts: list[npt.NDArray[np.float64]] = []
    detections = np.zeros(len(angle_list), dtype=np.int64)
    times: list[list[float]] = [[] for _ in angle_list]
    read = 0
    first_error = ""
    for done, truth in enumerate(truths, start=1):
        try:
            image = load_image(root / truth.path)
        except ImageError as exc:
            logger.warning("skipping %s: %s", truth.path, exc)
            first_error = first_error or str(exc)
        else:
            read += 1
            positive = ~truth.invalid & (truth.size_px >= min_face_px)
            boxes = truth.xyxy[positive].astype(np.float64)
            if boxes.shape[0]:
                centres = (boxes[:, 0:2] + boxes[:, 2:4]) / 2.0
                sizes = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
                found = np.zeros((boxes.shape[0], len(angle_list)), dtype=bool)
                points = np.full((boxes.shape[0], len(angle_list), 5, 2), np.nan)
                for j, angle in enumerate(angle_list):
                    rotated, matrix = rotate_image(image, angle)
                    start = time.perf_counter()
                    faces = detector.detect(rotated)
                    times[j].append((time.perf_counter() - start) * 1000.0)
                    detections[j] += len(faces)
                    matched = _match_rotated_faces(transform_points(centres, matrix), sizes, faces, center_tolerance)
                    hit = matched >= 0
                    found[hit, j] = True
                    if hit.any():
                        points[hit, j] = transform_points(faces.landmarks[matched[hit]], invert_affine(matrix))
                found_parts.append(found)
                point_parts.append(points)
        if progress is not None:
            progress(done, len(truths))
    if read == 0:
        raise ImageError(f"none of the {len(truths)} images under {root} could be read (first: {first_error})")
    all_found = np.concatenate(found_parts) if found_parts else np.zeros((0, len(angle_list)), dtype=bool)
    all_points = np.concatenate(point_parts) if point_parts else np.zeros((0, len(angle_list), 5, 2))
    return RotatedReport(
        folder=str(root),
        images=read,
        images_failed=len(truths) - read,
        faces=int(all_found.shape[0]),
        min_face_px=float(min_face_px),
        center_tolerance=center_tolerance,
        angles=_angle_results(angle_list, all_found, all_points, detections, times),
    )


DEFAULT_MAX_ANGLE_DEG = 90.0
"""Rotated LFW verification turns each image by a random angle in ``[-90, 90]`` degrees."""


class _RotatedAnalyzer:
    """An analyzer that sees every image turned by a random angle (fixed per image).

    The angle comes from the image's bytes and the seed, so the left and right images of
    every pair, and the detect and embed calls on one image, agree from run to run.
    """

    def __init__(self, analyzer: Any, max_angle_deg: float, seed: int) -> None:
        self.analyzer = analyzer
        self.embedder = analyzer.embedder
        self.max_angle_deg = max_angle_deg
        self.seed = seed
        self._last: tuple[int, npt.NDArray[np.uint8], npt.NDArray[np.float32]] | None = None

    def _rotated(self, image: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]:
        """The turned copy and the shift from its centre to the original's centre."""
        if self._last is not None and self._last[0] == id(image):
            return self._last[1], self._last[2]
        import zlib

        key = zlib.crc32(np.ascontiguousarray(image).data) ^ self.seed
        angle = float(np.random.default_rng(key).uniform(-self.max_angle_deg, self.max_angle_deg))
        rotated, _ = rotate_image(image, angle)
        shift = np.array(
            [(image.shape[1] - rotated.shape[1]) / 2.0, (image.shape[0] - rotated.shape[0]) / 2.0], np.float32
        )
        self._last = (id(image), rotated, shift)
        return rotated, shift

    @staticmethod
    def _moved(faces: Faces, shift: npt.NDArray[np.float32]) -> Faces:
        moved: Faces = faces.replace(xyxy=faces.xyxy + np.tile(shift, 2), landmarks=faces.landmarks + shift)
        return moved

    def detect(self, image: npt.NDArray[np.uint8]) -> Faces:
        # The protocol picks the face nearest the image centre: the copy's centre is
        # moved onto the original's, so that rule still finds the turned face.
        rotated, shift = self._rotated(image)
        return self._moved(self.analyzer.detect(rotated), shift)

    def embed(self, image: npt.NDArray[np.uint8], faces: Faces) -> Faces:
        rotated, shift = self._rotated(image)
        out: Faces = self.analyzer.embed(rotated, self._moved(faces, -shift))
        return out


def evaluate_rotated_lfw(
    analyzer: Any,
    pairs_path: str | Path,
    images: str | Path,
    *,
    max_angle_deg: float = DEFAULT_MAX_ANGLE_DEG,
    seed: int = DEFAULT_SEED,
    limit_folds: int | None = None,
    progress: Progress | None = None,
) -> Any:
    """LFW verification with every image turned by a random angle in ``[-max, max]``.

    Each image is rotated about its centre onto a canvas that holds all of it
    (:func:`rotate_image`), then detected and embedded as in
    :func:`facesense.eval.lfw.evaluate_lfw`; the embedder's crop is made upright from the
    landmarks, so a detector that finds the turned face with the right landmarks (for
    example with ``rotations``) should score as on upright LFW. A face not found is
    embedded from the median box, as the LFW protocol here says.

    Args:
        analyzer: a :class:`~facesense.analyzer.FaceAnalyzer` (detector + embedder).
        pairs_path: LFW ``pairs.txt``.
        images: folder with ``<name>/<name>_<NNNN>.jpg``.
        max_angle_deg: the largest rotation, degrees (> 0, at most 180).
        seed: mixes into each image's angle.
        limit_folds: only the first N folds.
        progress: called as ``progress(done, total)``.

    Returns:
        The :class:`~facesense.eval.lfw.LFWReport`.

    Raises:
        ConfigError: a bad angle, pairs file or folder.
        ImageError: no image could be read.
    """
    from facesense.eval.lfw import evaluate_lfw

    if not 0.0 < max_angle_deg <= 180.0:
        raise ConfigError(f"max_angle_deg must be in (0, 180], got {max_angle_deg}")
    rotated = _RotatedAnalyzer(analyzer, float(max_angle_deg), int(seed))
    return evaluate_lfw(
        rotated,  # type: ignore[arg-type]  # detect/embed/embedder, all evaluate_lfw reads
        Path(pairs_path),
        Path(images),
        limit_folds=limit_folds,
        progress=progress,
    )
