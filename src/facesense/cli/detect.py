"""``facesense detect`` and ``facesense embed``: faces in still images."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from facesense.cli._common import embedder_option, emit_json, progress
from facesense.errors import FacesenseError

if TYPE_CHECKING:
    from facesense.analyzer import FaceAnalyzer
    from facesense.types import Faces

logger = logging.getLogger("facesense.cli")


def face_records(faces: Faces, *, with_embedding: bool = False) -> list[dict[str, Any]]:
    """JSON-ready dicts for each face: box, score, landmarks (and embedding)."""
    records = []
    for face in faces:
        rec: dict[str, Any] = {
            "box": [round(float(v), 2) for v in face.xyxy],
            "score": round(float(face.score), 5),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in face.landmarks],
        }
        if with_embedding and face.embedding is not None:
            rec["embedding"] = [round(float(v), 6) for v in face.embedding]
        records.append(rec)
    return records


def run_on_images(
    paths: tuple[str, ...],
    analyzer: FaceAnalyzer,
    *,
    embed: bool,
    as_json: bool,
    annotate: Path | None,
) -> None:
    """Shared loop of ``detect`` and ``embed``: per-file errors never stop the run."""
    from facesense.imageio import iter_image_paths, load_image

    files = list(iter_image_paths(paths))
    if not files:
        raise click.UsageError("no image files found in " + ", ".join(paths))
    done = failed = 0
    with progress(files, length=len(files), label="images") as bar:
        for path in bar:
            try:
                image = load_image(path)
                faces = analyzer.analyze(image) if embed else analyzer.detect(image)
            except FacesenseError as exc:
                failed += 1
                logger.error("%s", exc)
                continue
            done += 1
            if as_json:
                emit_json(
                    {
                        "path": str(path),
                        "width": int(image.shape[1]),
                        "height": int(image.shape[0]),
                        "faces": face_records(faces, with_embedding=embed),
                    }
                )
            else:
                click.echo(f"{path}: {len(faces)} face(s)")
            if annotate is not None:
                from facesense.imageio import save_image
                from facesense.sinks.draw import annotate_faces

                out = annotate / (path.stem + ".jpg")
                save_image(out, annotate_faces(image, faces))
    if done == 0:
        raise click.exceptions.Exit(1)
    if failed:
        logger.warning("%d of %d file(s) could not be processed", failed, len(files))


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image per line on stdout.")
@click.option("--annotate", type=click.Path(file_okay=False, path_type=Path), help="Write annotated copies here.")
@click.option("--min-face", "min_face_px", type=float, default=20.0, show_default=True, help="Smallest face to find, pixels.")
def detect(paths: tuple[str, ...], as_json: bool, annotate: Path | None, min_face_px: float) -> None:
    """Find faces (boxes, scores, 5 landmarks) in images or folders of images."""
    from facesense.analyzer import FaceAnalyzer

    run_on_images(paths, FaceAnalyzer(min_face_px=min_face_px), embed=False, as_json=as_json, annotate=annotate)


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image per line, with embeddings.")
@click.option("--min-face", "min_face_px", type=float, default=20.0, show_default=True, help="Smallest face to find, pixels.")
@embedder_option()
def embed(paths: tuple[str, ...], as_json: bool, min_face_px: float, embedder_kind: str) -> None:
    """Detect faces and print an embedding for each (640-d fusion; 512-d with --embedder facenet)."""
    from facesense.analyzer import FaceAnalyzer
    from facesense.embed.fusion import make_embedder

    analyzer = FaceAnalyzer(min_face_px=min_face_px, embedder=make_embedder(embedder_kind))
    run_on_images(paths, analyzer, embed=True, as_json=as_json, annotate=None)
