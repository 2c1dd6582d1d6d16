"""``facesense detect`` and ``facesense embed``: faces in still images."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click

from facesense.cli._common import (
    FileBatch,
    detector_option,
    embedder_option,
    emit_json,
    min_face_option,
    progress,
    rotations_option,
)
from facesense.errors import ImageError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from facesense.detect import DetectorKind
    from facesense.detect.base import Detector
    from facesense.embed import EmbedderKind
    from facesense.embed.base import Embedder
    from facesense.types import Faces

logger = logging.getLogger("facesense.cli")

__all__ = ["detect", "embed", "run_on_images"]

BATCH_RULE = """
\b
Exit status: a file that is not a readable image gets a one-line error (and, with
--json, a {"path", "error"} line) and the others are still processed; the exit code
is 0 when at least one image was processed, even with no faces in it, and that of
the first error (4 for an unreadable image) when none could be.
"""


def run_on_images(
    paths: tuple[str, ...],
    detector: Detector,
    embedder: Embedder | None,
    *,
    as_json: bool,
    annotate: Path | None,
) -> None:
    """Shared loop of ``detect`` and ``embed`` (the rule is :class:`~facesense.cli._common.FileBatch`).

    Raises:
        click.UsageError: no image files in ``paths``.
        click.exceptions.Exit: no file could be processed.
    """
    from facesense.imageio import iter_image_paths, load_image
    from facesense.recognize import detection_records

    files = list(iter_image_paths(paths))
    if not files:
        raise click.UsageError("no image files found in " + ", ".join(paths))
    batch = FileBatch(total=len(files), as_json=as_json)
    with progress(files, length=len(files), label="images") as bar:
        for path in bar:
            try:
                image = load_image(path)
            except ImageError as exc:
                batch.fail(path, exc)
                continue
            faces = detector.detect(image)
            if embedder is not None:
                faces = embedder.embed(image, faces)
            batch.ok()
            if as_json:
                emit_json(
                    {
                        "path": str(path),
                        "width": int(image.shape[1]),
                        "height": int(image.shape[0]),
                        "faces": detection_records(faces, with_embedding=embedder is not None),
                    }
                )
            else:
                click.echo(f"{path}: {len(faces)} face(s)")
            if annotate is not None:
                _write_annotated(annotate / (path.stem + ".jpg"), image, faces)
    batch.finish()


def _write_annotated(target: Path, image: npt.NDArray[np.uint8], faces: Faces) -> None:
    """Save a copy with the faces drawn; failing to write is the command's failure, not the file's."""
    from facesense.imageio import save_image
    from facesense.sinks.draw import annotate_faces

    save_image(target, annotate_faces(image, faces))


@click.command(epilog=BATCH_RULE)
@click.argument("paths", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image per line on stdout.")
@click.option("--annotate", type=click.Path(file_okay=False, path_type=Path), help="Write annotated copies here.")
@min_face_option("image")
@detector_option()
@rotations_option()
def detect(
    paths: tuple[str, ...],
    as_json: bool,
    annotate: Path | None,
    min_face_px: float | None,
    detector_kind: DetectorKind,
    rotations: bool,
) -> None:
    """Find faces (boxes, scores, 5 landmarks) in images or folders of images."""
    from facesense.detect import make_detector

    detector = make_detector(detector_kind, min_face_px=min_face_px, use="image", rotations=rotations)
    run_on_images(paths, detector, None, as_json=as_json, annotate=annotate)


@click.command(epilog=BATCH_RULE)
@click.argument("paths", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image per line, with embeddings.")
@min_face_option("image")
@detector_option()
@embedder_option()
def embed(
    paths: tuple[str, ...],
    as_json: bool,
    min_face_px: float | None,
    detector_kind: DetectorKind,
    embedder_kind: EmbedderKind,
) -> None:
    """Detect faces and print an embedding for each (256-d with the default dlib+sface; 512-d with --embedder facenet)."""
    from facesense.detect import make_detector
    from facesense.embed import make_embedder

    detector = make_detector(detector_kind, min_face_px=min_face_px, use="image")
    run_on_images(paths, detector, make_embedder(embedder_kind), as_json=as_json, annotate=None)
