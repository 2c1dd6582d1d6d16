"""``facesense enroll | people | recognize | reembed``: the gallery commands.

Every command takes ``--db PATH`` (or ``$FACESENSE_DB``; default ``gallery.db`` in the
user data directory). Commands that only read never create a gallery file; a command
that fails leaves the gallery as it was.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from facesense.cli._common import (
    db_option,
    embedder_option,
    emit_json,
    progress,
    progress_callback,
)
from facesense.errors import ConfigError, EnrollmentError, FacesenseError

if TYPE_CHECKING:
    from facesense.enroll import EnrollSummary
    from facesense.gallery.sqlite import SQLiteGallery

__all__ = ["enroll", "eval_identify", "people", "recognize", "reembed"]


def _open(db: Path | None, *, create: bool) -> SQLiteGallery:
    from facesense.gallery.sqlite import SQLiteGallery

    return SQLiteGallery(db, create=create)


@contextlib.contextmanager
def _new_gallery_guard(db: Path | None) -> Iterator[Callable[[], bool]]:
    """Delete a gallery file this command created if the command then fails or adds nothing.

    Yields a function the body calls to say "keep it" (something was written).
    """
    from facesense.gallery.sqlite import default_db_path

    path = Path(db).expanduser() if db is not None else default_db_path()
    existed = path.exists()
    keep = [False]

    def mark() -> bool:
        keep[0] = True
        return True

    try:
        yield mark
    finally:
        if not existed and not keep[0]:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(str(path) + suffix).unlink(missing_ok=True)


def _print_summary(summary: EnrollSummary) -> None:
    from facesense.enroll import SkipReason

    for s in summary.skipped:
        click.echo(f"skipped {s.path}: {s.reason.value} ({s.detail})", err=True)
    rows = summary.table()
    reasons = [r.value for r in SkipReason]
    width = max([len("person"), len("total"), *(len(r["person"]) for r in rows)])
    head = f"{'person':<{width}}  {'added':>5}  " + "  ".join(f"{r:>{max(len(r), 3)}}" for r in reasons)
    click.echo(head, err=True)
    for row in rows:
        click.echo(
            f"{row['person']:<{width}}  {row['added']:>5}  "
            + "  ".join(f"{row[r]:>{max(len(r), 3)}}" for r in reasons),
            err=True,
        )
    totals = {r: sum(row[r] for row in rows) for r in reasons}
    click.echo(
        f"{'total':<{width}}  {len(summary.added):>5}  " + "  ".join(f"{totals[r]:>{max(len(r), 3)}}" for r in reasons),
        err=True,
    )


def _camera_source(value: str) -> int | str:
    return int(value) if value.strip().lstrip("-").isdigit() else value


@click.command("enroll")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--name", help="Enroll every photo in PATHS (or from --camera) as this one person.")
@click.option("--camera", help="Capture from this camera index (or video file/URL) instead of photos; needs --name.")
@click.option("--samples", type=click.IntRange(1, 1000), default=5, show_default=True, help="Frames to keep with --camera.")
@click.option("--min-face", "min_face_px", type=click.FloatRange(0), default=None, help="Smallest face side to accept, pixels [default: 40].")
@click.option("--min-sharpness", type=click.FloatRange(0), default=None, help="Smallest sharpness (variance of Laplacian) to accept, 0 = off [default: 20].")
@click.option("--skip-unreadable", is_flag=True, help="Skip files that are not readable images instead of failing.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as one JSON object on stdout.")
@db_option()
def enroll(
    paths: tuple[Path, ...],
    name: str | None,
    camera: str | None,
    samples: int,
    min_face_px: float | None,
    min_sharpness: float | None,
    skip_unreadable: bool,
    as_json: bool,
    db: Path | None,
) -> None:
    """Add people to the gallery.

    \b
      facesense enroll DIR                     DIR/<person>/*.jpg, one folder per person
      facesense enroll --name NAME FILE|DIR... photos of one person
      facesense enroll --name NAME --camera 0  capture --samples N frames from a camera

    Each image must hold exactly one face, large and sharp enough; others are skipped
    with the reason, and the same image is never added twice. A summary goes to stderr.
    """
    from facesense.enroll import (
        DEFAULT_MIN_FACE_PX,
        DEFAULT_MIN_SHARPNESS,
        EnrollConfig,
        Enroller,
    )

    if camera is not None:
        if name is None:
            raise ConfigError("--camera needs --name NAME")
        if paths:
            raise ConfigError("give either --camera or photo paths, not both")
    elif name is None:
        if len(paths) != 1:
            raise ConfigError("without --name, give exactly one DIR holding one folder per person")
    elif not paths:
        raise ConfigError("--name needs photo files or folders (or --camera INDEX)")
    config = EnrollConfig(
        min_face_px=DEFAULT_MIN_FACE_PX if min_face_px is None else min_face_px,
        min_sharpness=DEFAULT_MIN_SHARPNESS if min_sharpness is None else min_sharpness,
        strict=not skip_unreadable,
    )
    if camera is None and name is None and not paths[0].is_dir():
        raise EnrollmentError(f"{paths[0]}: no such directory" if not paths[0].exists() else f"{paths[0]}: not a directory")
    from facesense.analyzer import FaceAnalyzer

    with _new_gallery_guard(db) as keep, _open(db, create=True) as gallery:
        enroller = Enroller(gallery, FaceAnalyzer(), config)
        with progress_callback("enrolling") as on_progress:
            if camera is not None and name is not None:
                summary = enroller.enroll_camera(name, _camera_source(camera), samples=samples, on_progress=on_progress)
            elif name is not None:
                summary = enroller.enroll_person(name, paths, on_progress=on_progress)
            else:
                summary = enroller.enroll_folder(paths[0], on_progress=on_progress)
        if summary.added:
            keep()
    if as_json:
        emit_json(summary.to_dict())
    _print_summary(summary)
    if not summary.added and any(s.reason.value != "duplicate" for s in summary.skipped):
        raise EnrollmentError("no usable face in any image; nothing was enrolled")


# --- people --------------------------------------------------------------------------


@click.group("people")
def people() -> None:
    """List, inspect, rename, remove, export and import enrolled people."""


@people.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per person.")
@db_option()
def people_list(as_json: bool, db: Path | None) -> None:
    """Every enrolled person with their sample count."""
    with _open(db, create=False) as gallery:
        rows = gallery.people()
        model = gallery.model_id
    if as_json:
        for p in rows:
            emit_json({"name": p.name, "samples": p.n_samples, "created": p.created})
        return
    if not rows:
        click.echo("the gallery is empty", err=True)
        return
    width = max(len("name"), *(len(p.name) for p in rows))
    click.echo(f"{'name':<{width}}  {'samples':>7}  created")
    for p in rows:
        click.echo(f"{p.name:<{width}}  {p.n_samples:>7}  {p.created}")
    click.echo(f"{len(rows)} people, {sum(p.n_samples for p in rows)} samples, model {model}", err=True)


@people.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.option("--thumbnails", "thumb_dir", type=click.Path(file_okay=False, path_type=Path), help="Write each sample's face thumbnail here.")
@db_option()
def people_show(name: str, as_json: bool, thumb_dir: Path | None, db: Path | None) -> None:
    """One person's samples: source file, face box, when added."""
    with _open(db, create=False) as gallery:
        person = gallery.person(name)
        samples = gallery.samples(name)
    if thumb_dir is not None:
        thumb_dir.mkdir(parents=True, exist_ok=True)
        for s in samples:
            (thumb_dir / f"{s.id}.jpg").write_bytes(s.thumbnail_jpeg)
    if as_json:
        emit_json(
            {
                "name": person.name,
                "created": person.created,
                "samples": [
                    {
                        "id": s.id,
                        "source": s.source_path,
                        "sha256": s.source_sha256,
                        "box": [round(v, 1) for v in s.xyxy],
                        "model_id": s.model_id,
                        "added": s.added,
                    }
                    for s in samples
                ],
            }
        )
        return
    click.echo(f"{person.name}: {person.n_samples} samples, enrolled {person.created}")
    for s in samples:
        box = ",".join(f"{v:.0f}" for v in s.xyxy)
        click.echo(f"  #{s.id}  {s.added}  box {box}  {s.source_path or '-'}")


@people.command("rename")
@click.argument("old")
@click.argument("new")
@db_option()
def people_rename(old: str, new: str, db: Path | None) -> None:
    """Rename OLD to NEW."""
    with _open(db, create=False) as gallery:
        person = gallery.rename_person(old, new)
    click.echo(f"renamed {old!r} to {person.name!r}", err=True)


@people.command("remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@db_option()
def people_remove(name: str, yes: bool, db: Path | None) -> None:
    """Remove NAME and all their samples."""
    with _open(db, create=False) as gallery:
        person = gallery.person(name)
        if not yes:
            click.confirm(f"remove {person.name!r} and their {person.n_samples} samples?", abort=True, err=True)
        n = gallery.remove_person(name)
    click.echo(f"removed {name!r} ({n} samples)", err=True)


@people.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@db_option()
def people_export(file: Path, db: Path | None) -> None:
    """Write every person and sample to FILE (portable .npz: embeddings, metadata, thumbnails)."""
    with _open(db, create=False) as gallery:
        n = gallery.export_file(file)
        people_n = len(gallery.people())
    click.echo(f"exported {people_n} people, {n} samples to {file}", err=True)


@people.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@db_option()
def people_import(file: Path, db: Path | None) -> None:
    """Merge an export FILE into the gallery (existing people gain its samples; duplicates are skipped)."""
    from facesense.gallery.base import read_export

    read_export(file)  # validate before creating a gallery file
    with _new_gallery_guard(db) as keep, _open(db, create=True) as gallery:
        result = gallery.import_file(file)
        if result.samples_added or gallery.people():
            keep()
    click.echo(
        f"imported {result.samples_added} samples ({len(result.people_added)} new people); "
        f"{result.samples_skipped} already present",
        err=True,
    )


# --- recognize -----------------------------------------------------------------------


def _annotate_path(outdir: Path, src: Path, used: set[str]) -> Path:
    stem, i = src.stem, 0
    name = f"{stem}.jpg"
    while name in used:
        i += 1
        name = f"{stem}_{i}.jpg"
    used.add(name)
    return outdir / name


@click.command("recognize")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image on stdout.")
@click.option("--annotate", "outdir", type=click.Path(file_okay=False, path_type=Path), help="Write copies with boxes and names drawn here.")
@click.option("--threshold", type=click.FloatRange(0), default=None, help="Score above which a face is unknown [default: calibrated, see docs/recognition.md].")
@click.option("--no-reject", is_flag=True, help="Always name the closest person (no unknowns).")
@click.option("--no-normalize", is_flag=True, help="Threshold raw distances instead of normalised scores.")
@click.option("--matcher", "matcher_kind", type=click.Choice(["knn", "svm", "mean"]), default="knn", show_default=True)
@click.option("-k", "k", type=click.IntRange(1), default=None, help="Neighbours for knn [default: 3].")
@db_option()
def recognize(
    paths: tuple[Path, ...],
    as_json: bool,
    outdir: Path | None,
    threshold: float | None,
    no_reject: bool,
    no_normalize: bool,
    matcher_kind: str,
    k: int | None,
    db: Path | None,
) -> None:
    """Name every face in the images in PATHS (files or folders).

    Prints one line per image; with --json, one object per line:
    {"path", "faces": [{"box": [x1, y1, x2, y2], "score", "name", "distance", "confidence"}]}
    where name is "unknown" for strangers.
    """
    from facesense.analyzer import FaceAnalyzer
    from facesense.imageio import iter_image_paths, load_image
    from facesense.match import DEFAULT_K, make_matcher
    from facesense.recognize import Recognizer, draw_faces

    if no_reject and threshold is not None:
        raise ConfigError("--threshold and --no-reject contradict each other")
    files = list(iter_image_paths(paths))
    if not files:
        raise ConfigError(f"no image files in {', '.join(map(str, paths))}")
    analyzer = FaceAnalyzer()
    matcher = make_matcher(
        matcher_kind,
        model_id=analyzer.model_id,
        threshold=None if no_reject else ("auto" if threshold is None else threshold),
        normalize=not no_normalize,
        k=DEFAULT_K if k is None else k,
    )
    with _open(db, create=False) as gallery:
        recognizer = Recognizer(gallery, analyzer=analyzer, matcher=matcher)
    if outdir is not None:
        outdir.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    failed: list[FacesenseError] = []
    with progress(files, length=len(files), label="recognizing") as bar:
        for path in bar:
            try:
                image = load_image(path)
                result = recognizer.identify(image)
            except FacesenseError as exc:
                failed.append(exc)
                click.echo(f"error: {exc}", err=True)
                if as_json:
                    emit_json({"path": str(path), "faces": [], "error": str(exc)})
                continue
            records = result.records()
            if as_json:
                emit_json({"path": str(path), "faces": records})
            else:
                found = ", ".join(
                    f"{r['name']} ({r['distance']:.2f})" if r["distance"] is not None else r["name"] for r in records
                )
                click.echo(f"{path}: {found or 'no faces'}")
            if outdir is not None:
                import cv2

                target = _annotate_path(outdir, path, used)
                if not cv2.imwrite(str(target), draw_faces(image, result.faces)):
                    raise ConfigError(f"{target}: cannot write the annotated image")
    if failed:
        if len(files) > 1:
            click.echo(f"{len(failed)} of {len(files)} images failed", err=True)
        sys.exit(failed[0].exit_code)


# --- reembed -------------------------------------------------------------------------


@click.command("reembed")
@click.option("--drop-missing", is_flag=True, help="Remove samples whose source photo is gone or changed instead of failing.")
@db_option()
def reembed(drop_missing: bool, db: Path | None) -> None:
    """Recompute every embedding with the current model from the original photos.

    Needed after the model or its preprocessing changes. All samples are replaced in
    one transaction: if any source photo is gone the gallery is left unchanged
    (unless --drop-missing).
    """
    from facesense.analyzer import FaceAnalyzer
    from facesense.enroll import reembed as do_reembed

    with _open(db, create=False) as gallery, progress_callback("reembedding") as on_progress:
        result = do_reembed(gallery, FaceAnalyzer(), drop_missing=drop_missing, on_progress=on_progress)
    for sid, src, why in result.dropped:
        click.echo(f"dropped sample {sid} ({src}): {why}", err=True)
    click.echo(f"reembedded {result.reembedded} samples with {result.model_id}", err=True)


# --- eval identify ---------------------------------------------------------------------


@click.command("identify")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True, help="LFW folder of <name>/<name>_NNNN.jpg.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--cache", "cache", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Reuse/store the embeddings in this .npz.")
@click.option("--folds", type=click.IntRange(2), default=5, show_default=True, help="Cross-validation folds (by person) for the threshold.")
@click.option("--matcher", "matcher_kind", type=click.Choice(["knn", "svm", "mean"]), default="knn", show_default=True)
@click.option("--no-normalize", is_flag=True, help="Threshold raw distances (no score normalisation).")
@embedder_option()
def eval_identify(images: Path, as_json: bool, cache: Path | None, folds: int, matcher_kind: str, no_normalize: bool, embedder_kind: str) -> None:
    """Open-set identification on LFW: one photo enrolled per person, strangers must be unknown.

    People with two or more images are enrolled from their first image and probed with
    the others; people with one image are strangers. Reports rank-1 accuracy with
    rejection off, the threshold curve, thresholds for 1 % and 2 % stranger
    false-accept rates (in-sample and cross-validated by person), and the default
    threshold's numbers by gallery size.
    """
    from facesense.analyzer import FaceAnalyzer
    from facesense.embed.fusion import make_embedder
    from facesense.eval.identify import evaluate_identify
    from facesense.match import make_matcher

    analyzer = FaceAnalyzer(embedder=make_embedder(embedder_kind))
    matcher = make_matcher(matcher_kind, model_id=analyzer.model_id, normalize=not no_normalize)
    with progress_callback("LFW images") as on_progress:
        report = evaluate_identify(analyzer, images, matcher=matcher, cache=cache, folds=folds, on_progress=on_progress)
    if as_json:
        emit_json(report.to_dict())
        return
    for line in report.lines():
        click.echo(line)
