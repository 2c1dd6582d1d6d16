"""False faces on images without people.

Every detection on an image of a folder known to hold no human face (animals,
textures, objects) is a false face. :func:`evaluate_negatives` runs a detector over
every image of such a folder (recursively, by :func:`facesense.imageio.iter_image_paths`)
and reports how many images had any face, how many false faces there were in all and
per 50 images, and each false face's file, score and box.

Images that cannot be read are logged, counted in ``images_failed`` and left out of
the counts; a folder where not one image could be read (or with no image at all) is
an :class:`~facesense.errors.ImageError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facesense.errors import ConfigError, ImageError
from facesense.imageio import iter_image_paths, load_image

if TYPE_CHECKING:
    from facesense.detect.base import Detector

__all__ = ["FalseFace", "NegativesReport", "evaluate_negatives"]

logger = logging.getLogger(__name__)

# The goal is stated per 50 images ("at most 1 false face per 50 images").
PER_IMAGES = 50

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class FalseFace:
    """One detection on an image without people.

    Attributes:
        file: the image path relative to the folder, with ``/`` separators.
        score: the detector's score.
        xyxy: the box ``(x1, y1, x2, y2)`` in image pixels.
    """

    file: str
    score: float
    xyxy: tuple[float, float, float, float]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {"file": self.file, "score": self.score, "xyxy": list(self.xyxy)}


@dataclass(frozen=True)
class NegativesReport:
    """False faces found on a folder of images without people.

    Attributes:
        folder: the folder searched.
        images: images read and searched.
        images_failed: images that could not be read (not counted).
        images_with_faces: images with at least one detection.
        false_faces: every detection, by descending score.
    """

    folder: str
    images: int
    images_failed: int
    images_with_faces: int
    false_faces: tuple[FalseFace, ...] = field(default_factory=tuple)

    @property
    def total(self) -> int:
        """Number of false faces."""
        return len(self.false_faces)

    @property
    def per_50_images(self) -> float:
        """False faces per :data:`PER_IMAGES` images (0 when no image was searched)."""
        return PER_IMAGES * self.total / self.images if self.images else 0.0

    @property
    def max_score(self) -> float | None:
        """The highest false-face score, ``None`` when there is none."""
        return max((f.score for f in self.false_faces), default=None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary of the counts and every false face."""
        return {
            "folder": self.folder,
            "images": self.images,
            "images_failed": self.images_failed,
            "images_with_faces": self.images_with_faces,
            "false_faces": self.total,
            "false_faces_per_50_images": self.per_50_images,
            "max_score": self.max_score,
            "faces": [f.to_dict() for f in self.false_faces],
        }


def evaluate_negatives(
    detector: Detector,
    folder: str | Path,
    *,
    progress: Progress | None = None,
) -> NegativesReport:
    """Run a detector over every image of a folder without people.

    Args:
        detector: anything with ``detect(bgr_image) -> Faces``.
        folder: the folder (searched recursively, sorted).
        progress: called as ``progress(done, total)`` after each image.

    Returns:
        The report; every detection is a false face.

    Raises:
        ConfigError: ``folder`` is not a folder.
        ImageError: the folder holds no image, or none could be read.
        ModelError: the detector failed.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder")
    paths = list(iter_image_paths([root]))
    if not paths:
        raise ImageError(f"no images under {root}")
    found: list[FalseFace] = []
    read = failed = with_faces = 0
    first_error = ""
    for done, path in enumerate(paths, start=1):
        try:
            image = load_image(path)
        except ImageError as exc:
            logger.warning("skipping %s: %s", path, exc)
            failed += 1
            first_error = first_error or str(exc)
        else:
            faces = detector.detect(image)
            read += 1
            with_faces += int(len(faces) > 0)
            name = path.relative_to(root).as_posix()
            for box, score in zip(faces.xyxy.tolist(), faces.scores.tolist(), strict=True):
                x1, y1, x2, y2 = (round(float(v), 1) for v in box)
                found.append(FalseFace(file=name, score=round(float(score), 4), xyxy=(x1, y1, x2, y2)))
        if progress is not None:
            progress(done, len(paths))
    if read == 0:
        raise ImageError(f"none of the {len(paths)} images under {root} could be read (first: {first_error})")
    found.sort(key=lambda f: (-f.score, f.file))
    return NegativesReport(
        folder=str(root),
        images=read,
        images_failed=failed,
        images_with_faces=with_faces,
        false_faces=tuple(found),
    )
