"""Enrollment: turn photos (or camera frames) of people into gallery samples.

Every image goes through the same checks, in this order, and is either added (one
sample, one transaction) or skipped with a :class:`SkipReason`:

1. ``unreadable``: not a decodable image (:class:`~facesense.errors.ImageError`).
2. ``duplicate``: this person already has a sample from a file with the same sha256
   (in the gallery, or earlier in the same run).
3. ``no_face`` / ``several_faces``: enrolling a person needs exactly one face per
   image, so that a sample can never be somebody else. Detections scoring under
   ``min_detection_score`` (0.85; MTCNN's false positives on hands and fabric score
   0.7-0.8; YuNet scores the knn_examples photos 0.89-0.95) are not counted as faces, nor are background faces whose shorter side is
   under ``background_ratio`` (40 %) of the largest face's.
4. ``too_small``: the face's shorter box side is under ``min_face_px``
   (:data:`DEFAULT_MIN_FACE_PX` = 40 px; the embedders see 112-160 px chips, and smaller
   faces are mostly upsampling blur).
5. ``too_blurry``: the face's sharpness (:func:`facesense.quality.sharpness`, the
   variance of the Laplacian of the grey face box resized to 112 x 112: the one
   face-quality measure the tracker uses too) is under ``min_sharpness``
   (:data:`DEFAULT_MIN_SHARPNESS` = 20; see its docstring for how it was measured).

Photo enrollment runs in two passes: first every image is read and analysed, then the
accepted samples are written, one transaction per image. An unreadable file is
skipped like any other bad photo (the default); with ``strict=True`` it stops the run
after the first pass instead, so a typo'd path or a stray non-image leaves the
gallery unchanged. Camera enrollment reads frames through
:class:`facesense.capture.VideoSource` and writes each accepted frame as it goes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from facesense.errors import ConfigError, EnrollmentError, FacesenseError, ImageError, SourceError
from facesense.gallery.base import NewSample, validate_name

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.capture import VideoSource
    from facesense.gallery.base import GalleryStore
    from facesense.types import Faces

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MIN_FACE_PX",
    "DEFAULT_MIN_SHARPNESS",
    "Added",
    "EnrollConfig",
    "EnrollSummary",
    "Enroller",
    "FaceAnalyzerLike",
    "ReembedSummary",
    "SkipReason",
    "Skipped",
    "face_from_thumbnail",
    "reembed",
    "thumbnail_jpeg",
]

DEFAULT_MIN_FACE_PX = 40.0

DEFAULT_MIN_SHARPNESS = 20.0
"""Minimum :func:`facesense.quality.sharpness` of an enrollment face.

Measured with ``python benchmarks/enroll_sharpness.py`` (600 LFW faces, FaceNet):

=====================  ===================  ===========================
face                   sharpness (median)   embedding moves by (median)
=====================  ===================  ===========================
as is                  92 (1st pct: 27)     0
blur sigma 1 px*       43                   0.14
blur sigma 2 px*       17                   0.39
blur sigma 3 px*       9                    0.61
=====================  ===================  ===========================

(* Gaussian sigma at the 112 px scale of the measurement.) The default threshold,
0.85-0.91, is only about twice the sigma-2 shift, so 20 keeps nearly every real face
(LFW's faces are small, soft JPEGs; sharp high-resolution photos score 300-1400) and
turns away most faces as smeared as sigma 2.

Re-checked when enrollment moved to the shared measure (same 112 px scale, identical
values to the old enrollment-only function on every face): 400 random LFW faces
(central MTCNN face) have median 92, 1st percentile 29, none under 20; blurred by
sigma 1 / 2 / 3, 4 % / 61 % / 99 % fall under 20. The 14 knn_examples photos: median
582, 1st percentile 360; at sigma 2, 7 % under 20 (sharp large photos keep more
texture when smeared).
"""

THUMBNAIL_PX = 96
THUMBNAIL_QUALITY = 85


class FaceAnalyzerLike(Protocol):
    """What enrollment needs from :class:`~facesense.analyzer.FaceAnalyzer`."""

    @property
    def model_id(self) -> str: ...

    def detect(self, image: npt.NDArray[np.uint8]) -> Faces: ...

    def embed(self, image: npt.NDArray[np.uint8], faces: Faces) -> Faces: ...


class SkipReason(str, enum.Enum):
    """Why an image or frame was not enrolled."""

    UNREADABLE = "unreadable"
    DUPLICATE = "duplicate"
    NO_FACE = "no_face"
    SEVERAL_FACES = "several_faces"
    TOO_SMALL = "too_small"
    TOO_BLURRY = "too_blurry"


@dataclass(frozen=True, kw_only=True)
class EnrollConfig:
    """Quality gates for enrollment.

    Attributes:
        min_face_px: smallest acceptable shorter side of the face box, pixels.
        min_sharpness: smallest acceptable :func:`facesense.quality.sharpness` (0 turns
            the check off).
        min_detection_score: detections scoring less are ignored.
        background_ratio: other faces smaller than this share of the largest face's
            shorter side are background and do not make a photo "several faces".
        strict: photo enrollment fails without writing anything when a file is
            unreadable or missing (by default such files are skipped and reported).
    """

    min_face_px: float = DEFAULT_MIN_FACE_PX
    min_sharpness: float = DEFAULT_MIN_SHARPNESS
    min_detection_score: float = 0.85
    background_ratio: float = 0.4
    strict: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_detection_score <= 1.0:
            raise ConfigError(f"min_detection_score must be in [0, 1], got {self.min_detection_score}")
        if not 0.0 <= self.background_ratio <= 1.0:
            raise ConfigError(f"background_ratio must be in [0, 1], got {self.background_ratio}")
        if not self.min_face_px >= 0:
            raise ConfigError(f"min_face_px must be >= 0, got {self.min_face_px}")
        if not self.min_sharpness >= 0:
            raise ConfigError(f"min_sharpness must be >= 0, got {self.min_sharpness}")


@dataclass(frozen=True)
class Added:
    """One image (or frame) that became a sample."""

    person: str
    path: str
    sample_id: int


@dataclass(frozen=True)
class Skipped:
    """One image (or frame) that did not, and why."""

    person: str
    path: str
    reason: SkipReason
    detail: str


@dataclass(frozen=True)
class EnrollSummary:
    """The outcome of an enrollment run.

    Attributes:
        added: the samples written, in order.
        skipped: the images or frames passed over, with reasons.
    """

    added: tuple[Added, ...] = ()
    skipped: tuple[Skipped, ...] = ()

    @property
    def in_gallery(self) -> int:
        """Images now in the gallery: added by this run, or found already there (duplicates)."""
        return len(self.added) + sum(s.reason is SkipReason.DUPLICATE for s in self.skipped)

    def failure(self) -> FacesenseError | None:
        """The error that ends a run in which nothing could be enrolled, or ``None``.

        A run fails when none of its images is in the gallery afterwards
        (:attr:`in_gallery` is 0). One image: its own reason. Several: an
        :class:`~facesense.errors.ImageError` when none was a readable image, an
        :class:`~facesense.errors.EnrollmentError` otherwise, with the counts.
        """
        if self.in_gallery or not self.skipped:
            return None
        if len(self.skipped) == 1:
            s = self.skipped[0]
            cls: type[FacesenseError] = ImageError if s.reason is SkipReason.UNREADABLE else EnrollmentError
            return cls(f"{s.path}: {s.detail}; nothing was enrolled")
        counts = Counter(s.reason.value for s in self.skipped)
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))
        if set(counts) == {SkipReason.UNREADABLE.value}:
            return ImageError(f"none of the {len(self.skipped)} files is a readable image; nothing was enrolled")
        return EnrollmentError(f"no usable face in any of the {len(self.skipped)} images ({why}); nothing was enrolled")

    def people(self) -> list[str]:
        """Every person the run touched, sorted."""
        return sorted({a.person for a in self.added} | {s.person for s in self.skipped})

    def table(self) -> list[dict[str, Any]]:
        """One row per person: ``person``, ``added``, and a count per :class:`SkipReason`."""
        rows = []
        for name in self.people():
            reasons = Counter(s.reason for s in self.skipped if s.person == name)
            row: dict[str, Any] = {"person": name, "added": sum(a.person == name for a in self.added)}
            row.update({r.value: reasons.get(r, 0) for r in SkipReason})
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        return {
            "added": [{"person": a.person, "path": a.path, "sample_id": a.sample_id} for a in self.added],
            "skipped": [
                {"person": s.person, "path": s.path, "reason": s.reason.value, "detail": s.detail} for s in self.skipped
            ],
        }


def thumbnail_jpeg(image: npt.NDArray[np.uint8], faces: Faces) -> bytes:
    """A ``96 x 96`` JPEG of the first face in ``faces`` (box plus 20 % margin).

    Args:
        image: ``(H, W, 3)`` uint8 BGR.
        faces: at least one face; the first is used.

    Raises:
        ConfigError: ``faces`` is empty.
        ImageError: OpenCV could not encode the crop.
    """
    import cv2

    from facesense.align import CropConfig, crop_faces

    if len(faces) == 0:
        raise ConfigError("thumbnail_jpeg needs a face, got none")
    crop = crop_faces(image, faces[:1], CropConfig(size_px=THUMBNAIL_PX, margin_ratio=0.2, margin_px=0.0, square=True))
    try:
        ok, buf = cv2.imencode(".jpg", crop[0], [cv2.IMWRITE_JPEG_QUALITY, THUMBNAIL_QUALITY])
    except cv2.error as exc:
        raise ImageError(f"cannot encode the face thumbnail as JPEG ({getattr(exc, 'msg', exc)})") from exc
    if not ok:
        raise ImageError("cannot encode the face thumbnail as JPEG")
    return bytes(buf.tobytes())


@dataclass(frozen=True)
class _Prepared:
    person: str
    path: str
    sample: NewSample


class Enroller:
    """Checks photos and camera frames and adds the good ones to a gallery.

    Args:
        gallery: where samples go.
        analyzer: detects and embeds (a :class:`~facesense.analyzer.FaceAnalyzer`).
        config: quality gates; the defaults when ``None``.

    Raises:
        ModelMismatchError: the gallery holds another model's embeddings.
    """

    def __init__(self, gallery: GalleryStore, analyzer: FaceAnalyzerLike, config: EnrollConfig | None = None) -> None:
        self.gallery = gallery
        self.analyzer = analyzer
        self.config = config or EnrollConfig()

    def _check_model(self) -> None:
        from facesense.errors import ModelMismatchError

        stored = self.gallery.model_id
        if stored is not None and stored != self.analyzer.model_id:
            raise ModelMismatchError(
                f"{self.gallery.location}: the gallery holds embeddings from model {stored!r}, not "
                f"{self.analyzer.model_id!r}; run `facesense reembed --db {self.gallery.location}` first"
            )

    # --- one face ------------------------------------------------------------------

    def _subject(self, faces: Faces) -> Faces:
        """The faces that count: confident detections not dwarfed by the largest one."""
        faces = faces[faces.scores >= self.config.min_detection_score]
        if len(faces) > 1:
            sizes = faces.size_px
            faces = faces[sizes >= self.config.background_ratio * float(sizes.max())]
        return faces

    def _check_faces(self, person: str, label: str, image: npt.NDArray[np.uint8], faces: Faces) -> Skipped | None:
        if len(faces) == 0:
            return Skipped(person, label, SkipReason.NO_FACE, "no face found")
        if len(faces) > 1:
            return Skipped(person, label, SkipReason.SEVERAL_FACES, f"{len(faces)} faces; need exactly one")
        size = float(faces.size_px[0])
        if size < self.config.min_face_px:
            return Skipped(person, label, SkipReason.TOO_SMALL, f"face is {size:.0f} px, under {self.config.min_face_px:g} px")
        if self.config.min_sharpness > 0:
            from facesense.quality import sharpness

            sharp = sharpness(image, faces.xyxy[0])
            if sharp < self.config.min_sharpness:
                return Skipped(
                    person, label, SkipReason.TOO_BLURRY, f"sharpness {sharp:.1f}, under {self.config.min_sharpness:g}"
                )
        return None

    def _sample(self, image: npt.NDArray[np.uint8], faces: Faces, sha: str, label: str) -> NewSample:
        embedded = self.analyzer.embed(image, faces)
        if embedded.embeddings is None:
            raise EnrollmentError(f"{label}: the embedder returned no embedding")
        return NewSample(
            embedding=embedded.embeddings[0],
            model_id=self.analyzer.model_id,
            source_sha256=sha,
            source_path=label,
            xyxy=tuple(float(v) for v in faces.xyxy[0]),  # type: ignore[arg-type]
            thumbnail_jpeg=thumbnail_jpeg(image, faces),
        )

    def _prepare(self, person: str, path: Path, seen: set[tuple[str, str]]) -> _Prepared | Skipped:
        label = str(path.resolve())
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return Skipped(person, label, SkipReason.UNREADABLE, "no such file")
        except IsADirectoryError:
            return Skipped(person, label, SkipReason.UNREADABLE, "is a directory")
        except OSError as exc:
            return Skipped(person, label, SkipReason.UNREADABLE, f"cannot read ({exc.strerror or exc})")
        item = self.prepare_bytes(person, data, name=str(path), label=label, seen=seen)
        if isinstance(item, Skipped):
            # Skipped.path names the file already; keep only the reason in the detail.
            prefix = f"{path}: "
            if item.detail.startswith(prefix):
                item = dataclasses.replace(item, detail=item.detail[len(prefix) :])
            return item
        return _Prepared(person, label, item)

    def prepare_bytes(
        self,
        person: str,
        data: bytes,
        *,
        name: str,
        label: str | None = None,
        seen: set[tuple[str, str]] | None = None,
    ) -> NewSample | Skipped:
        """Check one encoded photo and turn it into a sample, or say why it is skipped.

        Args:
            person: who the photo is of.
            data: the encoded image (JPEG, PNG, ...).
            name: how to call the photo in messages.
            label: the sample's stored source; ``upload:<sha256>`` when ``None``.
            seen: ``(person, sha256)`` pairs already taken in this batch (updated).
        """
        from facesense.imageio import decode_image

        seen = set() if seen is None else seen
        sha = hashlib.sha256(data).hexdigest()
        label = label or f"upload:{sha}"
        if (person, sha) in seen or self.gallery.has_source(person, sha, self.analyzer.model_id):
            return Skipped(person, label, SkipReason.DUPLICATE, f"{person} already has this image (sha256 {sha[:12]})")
        try:
            image = decode_image(data, name=name)
        except ImageError as exc:
            return Skipped(person, label, SkipReason.UNREADABLE, str(exc))
        faces = self._subject(self.analyzer.detect(image))
        skip = self._check_faces(person, label, image, faces)
        if skip is not None:
            return skip
        seen.add((person, sha))
        return self._sample(image, faces, sha, label)

    # --- photos --------------------------------------------------------------------

    def enroll_items(
        self,
        items: Sequence[tuple[str, Path]],
        *,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> EnrollSummary:
        """Enroll ``(person, image path)`` pairs (the other entry points end here).

        Args:
            items: which image goes to whom; names must be valid person names.
            on_progress: called as ``(done, total)`` after each image is analysed.

        Raises:
            ImageError: ``config.strict`` and some files are unreadable (nothing written).
            ModelMismatchError: the gallery holds another model's embeddings.
        """
        for name in {n for n, _ in items}:
            validate_name(name)
        self._check_model()
        seen: set[tuple[str, str]] = set()
        prepared: list[_Prepared | Skipped] = []
        for i, (person, path) in enumerate(items):
            prepared.append(self._prepare(person, path, seen))
            if on_progress is not None:
                on_progress(i + 1, len(items))
        bad = [p for p in prepared if isinstance(p, Skipped) and p.reason is SkipReason.UNREADABLE]
        if bad and self.config.strict:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise ImageError(f"{bad[0].path}: {bad[0].detail}{more}; nothing was enrolled")
        added: list[Added] = []
        skipped: list[Skipped] = []
        for p in prepared:
            if isinstance(p, Skipped):
                skipped.append(p)
                continue
            (sid,) = self.gallery.add_samples(p.person, [p.sample], create=True)
            added.append(Added(p.person, p.path, sid))
            logger.debug("added %s for %s as sample %d", p.path, p.person, sid)
        return EnrollSummary(tuple(added), tuple(skipped))

    def enroll_person(
        self,
        name: str,
        paths: Iterable[str | os.PathLike[str]],
        *,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> EnrollSummary:
        """Add photos of one person (files, or folders searched recursively).

        Raises:
            EnrollmentError: no image files were given or found.
            ImageError: ``config.strict`` and some files are unreadable (nothing written).
        """
        from facesense.imageio import iter_image_paths

        name = validate_name(name)
        paths = list(paths)
        missing = [raw for raw in paths if not Path(raw).exists()]
        if missing and self.config.strict:
            raise ImageError(f"{missing[0]}: no such file or directory; nothing was enrolled")
        files = list(iter_image_paths(paths))
        if not files:
            raise EnrollmentError(f"no image files found in {', '.join(str(p) for p in paths) or 'the arguments'}")
        return self.enroll_items([(name, f) for f in files], on_progress=on_progress)

    def enroll_folder(
        self,
        root: str | os.PathLike[str],
        *,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> EnrollSummary:
        """Enroll ``root/<person>/<image>`` (one sub-folder per person, searched recursively).

        Files directly inside ``root`` are ignored with a warning.

        Raises:
            EnrollmentError: ``root`` is missing, not a folder, or holds no person folder with images.
            ConfigError: a folder name is not a valid person name.
        """
        from facesense.imageio import iter_image_paths

        base = Path(root)
        if not base.exists():
            raise EnrollmentError(f"{base}: no such directory")
        if not base.is_dir():
            raise EnrollmentError(f"{base}: not a directory (to enroll single photos use --name NAME FILE...)")
        people = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
        loose = [p for p in base.iterdir() if p.is_file() and not p.name.startswith(".")]
        if loose:
            logger.warning("%s: ignoring %d file(s) outside person folders", base, len(loose))
        items: list[tuple[str, Path]] = []
        for folder in people:
            name = validate_name(folder.name)
            files = list(iter_image_paths([folder]))
            if not files:
                logger.warning("%s: no images, skipped", folder)
            items.extend((name, f) for f in files)
        if not items:
            raise EnrollmentError(f"{base}: no images in person folders (expected {base}/<name>/*.jpg)")
        return self.enroll_items(items, on_progress=on_progress)

    # --- camera --------------------------------------------------------------------

    def enroll_camera(
        self,
        name: str,
        source: int | str | os.PathLike[str] | VideoSource,
        *,
        samples: int = 5,
        max_frames: int | None = None,
        min_gap_s: float = 0.3,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> EnrollSummary:
        """Capture ``samples`` good frames of one person from a camera (or a video file).

        Frames come through :class:`facesense.capture.VideoSource`, like ``watch``'s. A
        frame is kept when it holds exactly one face that passes the size and sharpness
        gates; kept frames are at least ``min_gap_s`` apart by the frames' timestamps
        (media time for files, wall clock for cameras) so the samples differ. Each kept
        frame is written at once, in its own transaction. A live source that drops out
        ends the capture with what was kept so far.

        Args:
            name: the person.
            source: a camera index, a video file, a stream URL or folder (anything
                :func:`facesense.capture.open_source` takes), or a ``VideoSource``
                not yet iterated (it is consumed and closed).
            samples: how many frames to keep.
            max_frames: give up after this many frames (default ``200 * samples``).
            min_gap_s: least time between kept frames.
            on_progress: called as ``(kept, samples)`` after each kept frame.

        Raises:
            SourceError: the source cannot be opened or yields no frame.
        """
        from facesense.capture import SourceStatus, StatusKind, VideoSource, open_source

        name = validate_name(name)
        if samples < 1:
            raise ConfigError(f"samples must be >= 1, got {samples}")
        self._check_model()
        limit = max_frames if max_frames is not None else 200 * samples
        video = source.open() if isinstance(source, VideoSource) else open_source(source)
        with contextlib.closing(video):
            label = video.source_id
            added: list[Added] = []
            skipped: list[Skipped] = []
            last_kept = -float("inf")
            frames = 0
            for item in video.items():
                if isinstance(item, SourceStatus):
                    if item.kind is StatusKind.DISCONNECTED:
                        logger.warning("%s: the source dropped out; stopping the capture", label)
                        break
                    continue
                if item is None:
                    continue
                frames += 1
                if item.timestamp - last_kept >= min_gap_s:
                    kept = self._camera_frame(name, label, item.image, frames, added, skipped)
                    if kept:
                        last_kept = item.timestamp
                        if on_progress is not None:
                            on_progress(len(added), samples)
                if len(added) >= samples or frames >= limit:
                    break
        if frames == 0:
            raise SourceError(f"{label} opened but gave no frame")
        if len(added) < samples:
            logger.warning("kept %d of %d samples from %s after %d frames", len(added), samples, label, frames)
        return EnrollSummary(tuple(added), tuple(skipped))

    def _camera_frame(
        self,
        name: str,
        label: str,
        image: npt.NDArray[np.uint8],
        number: int,
        added: list[Added],
        skipped: list[Skipped],
    ) -> bool:
        """Check one captured frame and write it when it passes; True when kept."""
        where = f"{label}#frame{number}"
        faces = self._subject(self.analyzer.detect(image))
        skip = self._check_faces(name, where, image, faces)
        if skip is not None:
            skipped.append(skip)
            return False
        sha = hashlib.sha256(image.tobytes()).hexdigest()
        if self.gallery.has_source(name, sha, self.analyzer.model_id):
            skipped.append(Skipped(name, where, SkipReason.DUPLICATE, "identical frame already enrolled"))
            return False
        (sid,) = self.gallery.add_samples(name, [self._sample(image, faces, sha, label)], create=True)
        added.append(Added(name, where, sid))
        return True


# --- reembedding -----------------------------------------------------------------


@dataclass(frozen=True)
class ReembedSummary:
    """The outcome of :func:`reembed`.

    Attributes:
        reembedded: samples recomputed (from their photos or, with ``from_thumbnails``,
            their thumbnails).
        dropped: ``(sample id, source path, reason)`` for samples removed (``drop_missing``).
        model_id: the gallery's model id now.
        from_thumbnails: how many of ``reembedded`` came from the stored thumbnail.
        negatives: negatives (corrections) of another model re-embedded from their thumbnail.
        negatives_dropped: negatives of another model dropped (no face in their thumbnail).
    """

    reembedded: int
    dropped: tuple[tuple[int, str, str], ...] = field(default=())
    model_id: str = ""
    from_thumbnails: int = 0
    negatives: int = 0
    negatives_dropped: int = 0


def _iou(a: npt.NDArray[np.float32], b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    bb = np.asarray(b, dtype=np.float64)
    aa = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(aa[:, 2], bb[2]) - np.maximum(aa[:, 0], bb[0]), 0, None)
    iy = np.clip(np.minimum(aa[:, 3], bb[3]) - np.maximum(aa[:, 1], bb[1]), 0, None)
    inter = ix * iy
    area = (aa[:, 2] - aa[:, 0]) * (aa[:, 3] - aa[:, 1]) + (bb[2] - bb[0]) * (bb[3] - bb[1]) - inter
    return np.asarray(inter / np.maximum(area, 1e-9), dtype=np.float64)


def face_from_thumbnail(thumbnail: bytes, analyzer: FaceAnalyzerLike) -> tuple[npt.NDArray[np.uint8], Faces] | str:
    """A sample's stored thumbnail (:func:`thumbnail_jpeg`) and the face ``analyzer`` finds in
    it (the largest), ready for ``analyzer.embed``; or, as a string, why it cannot be used."""
    from facesense.imageio import decode_image

    if not thumbnail:
        return "no thumbnail"
    try:
        image = decode_image(thumbnail, name="thumbnail")
    except ImageError as exc:
        return f"thumbnail unreadable ({exc})"
    faces = analyzer.detect(image)
    if len(faces) == 0:
        return "no face in its thumbnail"
    areas = (faces.xyxy[:, 2] - faces.xyxy[:, 0]) * (faces.xyxy[:, 3] - faces.xyxy[:, 1])
    return image, faces[[int(np.argmax(areas))]]


def reembed(
    gallery: GalleryStore,
    analyzer: FaceAnalyzerLike,
    *,
    drop_missing: bool = False,
    from_thumbnails: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> ReembedSummary:
    """Recompute every sample's embedding with ``analyzer`` from its source image.

    Each source must still exist with the same sha256; the face is found again as the
    detection overlapping the stored box most (IoU >= 0.3). Negatives ("not X"
    corrections) of another model keep no photo: they are re-embedded from their
    thumbnail (the face found again in it), and dropped with a warning when none is
    found. All samples and negatives are replaced in one transaction, so a failure leaves
    the gallery as it was.

    Args:
        drop_missing: remove samples whose source is gone, changed, or whose face is not
            found again, instead of failing.
        from_thumbnails: a sample whose source cannot be used (a camera frame, a deleted
            or changed photo) is embedded from its stored 96 px thumbnail instead (the
            face found again in it). Off by default: a thumbnail's face is about 70 px, so
            such a sample is less exact than one from its photo (measured in
            ``docs/recognition.md``, "Re-embedding").

    Raises:
        EnrollmentError: some sources are unusable and ``drop_missing`` is false.
    """
    from facesense.imageio import load_image

    samples = gallery.samples()
    replacements: dict[int, NewSample] = {}
    problems: list[tuple[int, str, str]] = []
    thumbnailed = 0
    for i, s in enumerate(samples):
        src = s.source_path or ""
        path = Path(src)
        problem = ""
        if not src or src.startswith("camera:") or not path.is_file():
            problem = "source file is gone" if src and not src.startswith("camera:") else "no source file (camera frame or import)"
        else:
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError as exc:
                digest = f"unreadable: {exc.strerror or exc}"
            if digest.startswith("unreadable"):
                problem = f"source file is {digest}"
            elif digest != s.source_sha256:
                problem = "source file has changed since enrollment"
            else:
                try:
                    image = load_image(path)
                except ImageError as exc:
                    problem = str(exc)
                else:
                    faces = analyzer.detect(image)
                    overlap = _iou(faces.xyxy, s.xyxy) if len(faces) else np.zeros(0)
                    if len(faces) == 0 or float(overlap.max()) < 0.3:
                        problem = "face not found again"
                    else:
                        one = faces[[int(np.argmax(overlap))]]
                        embedded = analyzer.embed(image, one).embeddings
                        if embedded is None:
                            raise EnrollmentError(f"{src}: the embedder returned no embedding")
                        replacements[s.id] = NewSample(
                            embedding=embedded[0],
                            model_id=analyzer.model_id,
                            source_sha256=s.source_sha256,
                            source_path=src,
                            xyxy=tuple(float(v) for v in one.xyxy[0]),  # type: ignore[arg-type]
                            thumbnail_jpeg=thumbnail_jpeg(image, one),
                        )
        if problem and from_thumbnails and s.id not in replacements:
            found = face_from_thumbnail(s.thumbnail_jpeg, analyzer)
            if isinstance(found, str):
                problem = f"{problem}; {found}"
            else:
                thumb, face = found
                embedded = analyzer.embed(thumb, face).embeddings
                if embedded is None:
                    raise EnrollmentError(f"sample {s.id}: the embedder returned no embedding")
                replacements[s.id] = NewSample(
                    embedding=embedded[0],
                    model_id=analyzer.model_id,
                    source_sha256=s.source_sha256,
                    source_path=s.source_path,
                    xyxy=s.xyxy,
                    thumbnail_jpeg=s.thumbnail_jpeg,
                )
                thumbnailed += 1
                problem = ""
        if problem:
            problems.append((s.id, src or "-", problem))
        if on_progress is not None:
            on_progress(i + 1, len(samples))
    if problems and not drop_missing:
        sid, src, why = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise EnrollmentError(
            f"cannot reembed sample {sid} from {src}: {why}{more}; gallery unchanged "
            "(restore the files, pass --from-thumbnails to embed them from their thumbnails, "
            "or --drop-missing to remove those samples)"
        )
    negatives: dict[int, npt.NDArray[np.float32]] = {}
    lost_negatives = 0
    for n in gallery.negative_records():
        if n.model_id == analyzer.model_id:
            continue
        found = face_from_thumbnail(n.thumbnail_jpeg, analyzer)
        embedded = None if isinstance(found, str) else analyzer.embed(*found).embeddings
        if embedded is None or len(embedded) == 0:
            logger.warning("negative %d (not %s, %s): %s; dropped", n.id, n.person, n.source, found if isinstance(found, str) else "no embedding")
            lost_negatives += 1
        else:
            negatives[n.id] = np.asarray(embedded[0], np.float32)
    gallery.replace_samples(replacements, negatives)
    return ReembedSummary(
        reembedded=len(replacements),
        dropped=tuple(problems),
        model_id=analyzer.model_id,
        from_thumbnails=thumbnailed,
        negatives=len(negatives),
        negatives_dropped=lost_negatives,
    )
