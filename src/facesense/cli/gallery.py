"""``facesense enroll | people | recognize | reembed | gallery copy``: the gallery commands.

Every command takes ``--db PATH|URL`` (or ``$FACESENSE_DB``; default ``gallery.db`` in
the user data directory), opened with :func:`facesense.gallery.open_gallery`. Commands
that only read never create a file and work on a gallery the user cannot write;
commands that write say so when the gallery is read-only. A command that fails leaves
the gallery as it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from facesense.cli._common import (
    FileBatch,
    db_option,
    emit_json,
    matcher_option,
    open_db,
    progress,
    progress_callback,
)
from facesense.errors import ConfigError, EnrollmentError, ImageError

if TYPE_CHECKING:
    from facesense.analyzer import FaceAnalyzer
    from facesense.detect import DetectorUse
    from facesense.enroll import EnrollSummary
    from facesense.gallery.location import GalleryLocation
    from facesense.match import MatcherKind

__all__ = ["enroll", "gallery_group", "people", "recognize", "reembed"]

ENROLL_RULE = """
\b
Exit status: every photo is added or skipped with its reason (an unreadable or
missing file is skipped like a photo without a face, with one line on stderr), and
the others are still enrolled. The exit code is 0 when at least one photo is in the
gallery afterwards (added now, or already there from an earlier run); otherwise 4
when no file was a readable image, 7 when no photo had a usable face. With --strict
an unreadable or missing file enrolls nothing (exit 4). With --camera: 0 when at
least one frame was kept, 5 when the camera cannot be opened, 7 when no frame was good.
"""

RECOGNIZE_RULE = """
\b
Exit status: a file that is not a readable image gets a one-line error (and, with
--json, a {"path", "error"} line) and the others are still processed; the exit code
is 0 when at least one image was processed, and that of the first error (4 for an
unreadable image) when none could be. A gallery that is missing, empty or unusable
stops the command first (exit 6).
"""


@contextlib.contextmanager
def _new_gallery_guard(db: str | None) -> Iterator[Callable[[], None]]:
    """Delete a gallery file this command created if the command then fails or adds nothing.

    Yields a function the body calls to say "keep it" (something was written).
    """
    from facesense.gallery.location import parse_location

    location = parse_location(db)
    if location.kind != "sqlite":  # a database server: nothing to clean up on disk
        yield lambda: None
        return
    path = location.path
    existed = path.exists()
    keep = [False]

    def mark() -> None:
        keep[0] = True

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


def _analyzer(use: DetectorUse | str = "image") -> FaceAnalyzer:
    """The default detector (with the defaults for ``use``) and embedder, as one analyzer."""
    from facesense.analyzer import FaceAnalyzer
    from facesense.detect import make_detector
    from facesense.embed import make_embedder

    return FaceAnalyzer(detector=make_detector(use=use), embedder=make_embedder())


@click.command("enroll", epilog=ENROLL_RULE)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--name", help="Enroll every photo in PATHS (or from --camera) as this one person.")
@click.option("--camera", help="Capture from this camera index (or video file/URL) instead of photos; needs --name.")
@click.option("--samples", type=click.IntRange(1, 1000), default=5, show_default=True, help="Frames to keep with --camera.")
@click.option("--min-face", "min_face_px", type=click.FloatRange(0), default=None, help="Smallest face side to accept, pixels [default: 40].")
@click.option("--min-sharpness", type=click.FloatRange(0), default=None, help="Smallest sharpness (variance of Laplacian) to accept, 0 = off [default: 20].")
@click.option("--strict", is_flag=True, help="Enroll nothing at all if any file is unreadable or missing.")
@click.option("--skip-unreadable", is_flag=True, hidden=True, help="Kept for old scripts: skipping is now the default.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as one JSON object on stdout.")
@db_option()
def enroll(
    paths: tuple[Path, ...],
    name: str | None,
    camera: str | None,
    samples: int,
    min_face_px: float | None,
    min_sharpness: float | None,
    strict: bool,
    skip_unreadable: bool,
    as_json: bool,
    db: str | None,
) -> None:
    """Add people to the gallery.

    \b
      facesense enroll DIR                     DIR/<person>/*.jpg, one folder per person
      facesense enroll --name NAME FILE|DIR... photos of one person
      facesense enroll --name NAME --camera 0  capture --samples N frames from a camera

    Each image must hold exactly one face, large and sharp enough; others are skipped
    with the reason, and the same image is never added twice. A summary goes to stderr.
    """
    from facesense.enroll import DEFAULT_MIN_FACE_PX, DEFAULT_MIN_SHARPNESS, EnrollConfig, Enroller

    if strict and skip_unreadable:
        raise ConfigError("--strict and --skip-unreadable contradict each other")
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
        strict=strict,
    )
    if camera is None and name is None and not paths[0].is_dir():
        raise EnrollmentError(f"{paths[0]}: no such directory" if not paths[0].exists() else f"{paths[0]}: not a directory")

    with _new_gallery_guard(db) as keep, contextlib.closing(open_db(db, create=True, read_only=False)) as gallery:
        enroller = Enroller(gallery, _analyzer("image" if camera is None else "video"), config)
        with progress_callback("enrolling") as on_progress:
            if camera is not None and name is not None:
                summary = enroller.enroll_camera(name, camera, samples=samples, on_progress=on_progress)
            elif name is not None:
                summary = enroller.enroll_person(name, paths, on_progress=on_progress)
            else:
                summary = enroller.enroll_folder(paths[0], on_progress=on_progress)
        if summary.added:
            keep()
    if as_json:
        emit_json(summary.to_dict())
    failure = summary.failure()
    if failure is not None and len(summary.skipped) == 1:
        raise failure  # one photo: its one-line reason says it all
    _print_summary(summary)
    if failure is not None:
        raise failure


# --- people --------------------------------------------------------------------------


@click.group("people")
def people() -> None:
    """List, inspect, rename, remove, export and import enrolled people (and their negatives).

    Each subcommand does one thing: exit 0 when done, otherwise a one-line error
    and the gallery unchanged (6 for a missing, read-only or unusable gallery, 7 for
    an unknown person or a name already taken).
    """


@people.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per person.")
@db_option()
def people_list(as_json: bool, db: str | None) -> None:
    """Every enrolled person with their sample count."""
    with contextlib.closing(open_db(db)) as gallery:
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
def people_show(name: str, as_json: bool, thumb_dir: Path | None, db: str | None) -> None:
    """One person's samples: source file, face box, when added."""
    with contextlib.closing(open_db(db)) as gallery:
        person = gallery.person(name)
        samples = gallery.samples(name)
    if thumb_dir is not None:
        try:
            thumb_dir.mkdir(parents=True, exist_ok=True)
            for s in samples:
                if s.thumbnail_jpeg:  # imported samples may come without one
                    (thumb_dir / f"{s.id}.jpg").write_bytes(s.thumbnail_jpeg)
        except OSError as exc:
            raise ImageError(f"{thumb_dir}: cannot write thumbnails ({exc.strerror or exc})") from exc
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


@people.command("negatives")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per negative.")
@db_option()
def people_negatives(name: str | None, as_json: bool, db: str | None) -> None:
    """The faces somebody said are not NAME (everybody's without NAME): corrections
    made with `facesense correct` or on the events page."""
    with contextlib.closing(open_db(db)) as gallery:
        rows = gallery.negative_records(name)
    if as_json:
        for n in rows:
            emit_json(n.to_dict())
        return
    if not rows:
        click.echo(f"no negatives{f' of {name!r}' if name else ''}", err=True)
        return
    for n in rows:
        click.echo(f"  #{n.id}  {n.added}  not {n.person}  ({n.source})")


@people.command("remove-negative")
@click.argument("negative_id", type=click.IntRange(min=1))
@db_option()
def people_remove_negative(negative_id: int, db: str | None) -> None:
    """Take a correction back: remove negative NEGATIVE_ID (see `people negatives`)."""
    with contextlib.closing(open_db(db, read_only=False)) as gallery:
        gallery.remove_negative(negative_id)
    click.echo(f"removed negative #{negative_id}", err=True)


@people.command("rename")
@click.argument("old")
@click.argument("new")
@db_option()
def people_rename(old: str, new: str, db: str | None) -> None:
    """Rename OLD to NEW."""
    with contextlib.closing(open_db(db, read_only=False)) as gallery:
        person = gallery.rename_person(old, new)
    click.echo(f"renamed {old!r} to {person.name!r}", err=True)


@people.command("remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@db_option()
def people_remove(name: str, yes: bool, db: str | None) -> None:
    """Remove NAME and all their samples."""
    with contextlib.closing(open_db(db, read_only=False)) as gallery:
        person = gallery.person(name)
        if not yes:
            click.confirm(f"remove {person.name!r} and their {person.n_samples} samples?", abort=True, err=True)
        n = gallery.remove_person(name)
    click.echo(f"removed {name!r} ({n} samples)", err=True)


@people.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@db_option()
def people_export(file: Path, db: str | None) -> None:
    """Write every person and sample to FILE (portable .npz: embeddings, metadata, thumbnails)."""
    with contextlib.closing(open_db(db)) as gallery:
        n = gallery.export_file(file)
        people_n = len(gallery.people())
    click.echo(f"exported {people_n} people, {n} samples to {file}", err=True)


@people.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@db_option()
def people_import(file: Path, db: str | None) -> None:
    """Merge an export FILE into the gallery (existing people gain its samples; duplicates are skipped).

    All or nothing: exit 0 when the file was merged (even if every sample was
    already there); a file that is not a facesense export changes nothing (exit 6).
    """
    from facesense.gallery.base import read_export

    read_export(file)  # validate before creating a gallery file
    with _new_gallery_guard(db) as keep, contextlib.closing(open_db(db, create=True, read_only=False)) as gallery:
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


@click.command("recognize", epilog=RECOGNIZE_RULE)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image on stdout.")
@click.option("--annotate", "outdir", type=click.Path(file_okay=False, path_type=Path), help="Write copies with boxes and names drawn here.")
@click.option("--threshold", type=click.FloatRange(0), default=None, help="Score above which a face is unknown [default: calibrated, see docs/recognition.md].")
@click.option("--no-reject", is_flag=True, help="Always name the closest person (no unknowns).")
@click.option("--no-normalize", is_flag=True, help="Threshold raw distances instead of normalised scores.")
@matcher_option()
@click.option("-k", "k", type=click.IntRange(1), default=None, help="Neighbours for knn [default: 3].")
@db_option()
def recognize(
    paths: tuple[Path, ...],
    as_json: bool,
    outdir: Path | None,
    threshold: float | None,
    no_reject: bool,
    no_normalize: bool,
    matcher_kind: MatcherKind,
    k: int | None,
    db: str | None,
) -> None:
    """Name every face in the images in PATHS (files or folders).

    Prints one line per image; with --json, one object per line:
    {"path", "faces": [{"box": [x1, y1, x2, y2], "score", "name", "distance", "confidence"}]}
    where name is "unknown" for strangers.
    """
    from facesense.imageio import iter_image_paths, load_image, save_image
    from facesense.match import DEFAULT_K
    from facesense.recognize import Recognizer, draw_faces

    if no_reject and threshold is not None:
        raise ConfigError("--threshold and --no-reject contradict each other")
    files = list(iter_image_paths(paths))
    if not files:
        raise ConfigError(f"no image files in {', '.join(map(str, paths))}")
    with contextlib.closing(open_db(db)) as gallery:
        # Recognizer fits its matcher through the same code as facesense.recognize.fit_matcher.
        recognizer = Recognizer(
            gallery,
            analyzer=_analyzer(),
            kind=matcher_kind,
            threshold=None if no_reject else ("auto" if threshold is None else threshold),
            normalize=not no_normalize,
            k=DEFAULT_K if k is None else k,
        )
    used: set[str] = set()
    batch = FileBatch(total=len(files), as_json=as_json)
    with progress(files, length=len(files), label="recognizing") as bar:
        for path in bar:
            try:
                image = load_image(path)
            except ImageError as exc:
                batch.fail(path, exc)
                continue
            result = recognizer.identify(image)
            batch.ok()
            records = result.records()
            if as_json:
                emit_json({"path": str(path), "faces": records})
            else:
                found = ", ".join(
                    f"{r['name']} ({r['distance']:.2f})" if r["distance"] is not None else r["name"] for r in records
                )
                click.echo(f"{path}: {found or 'no faces'}")
            if outdir is not None:
                save_image(_annotate_path(outdir, path, used), draw_faces(image, result.faces))
    batch.finish()


# --- reembed -------------------------------------------------------------------------


@click.command("reembed")
@click.option("--drop-missing", is_flag=True, help="Remove samples whose source photo is gone or changed instead of failing.")
@click.option(
    "--from-thumbnails",
    is_flag=True,
    help="Embed samples without a usable source photo (camera frames, deleted photos) from their stored 96 px thumbnail.",
)
@db_option()
def reembed(drop_missing: bool, from_thumbnails: bool, db: str | None) -> None:
    """Recompute every embedding with the current model from the original photos.

    Needed after the model or its preprocessing changes. All samples are replaced in
    one transaction: if any source photo is gone the gallery is left unchanged and
    the exit code is 7 (unless --from-thumbnails, which embeds such samples from their
    stored thumbnail, or --drop-missing, which removes those it cannot embed; both exit 0).
    Negatives (corrections) keep only a thumbnail: when the model changes they are
    re-embedded from it; one without a face found again in it is dropped (said on stderr).
    """
    from facesense.enroll import reembed as do_reembed

    with contextlib.closing(open_db(db, read_only=False)) as gallery, progress_callback("reembedding") as on_progress:
        negatives_before = len(gallery.negative_records())
        result = do_reembed(
            gallery, _analyzer(), drop_missing=drop_missing, from_thumbnails=from_thumbnails, on_progress=on_progress
        )
        negatives_after = len(gallery.negative_records())
    for sid, src, why in result.dropped:
        click.echo(f"dropped sample {sid} ({src}): {why}", err=True)
    if negatives_after < negatives_before:
        click.echo(
            f"dropped {negatives_before - negatives_after} negative(s) (corrections): no face found again in their "
            "thumbnail, or their person is gone; correct those faces again",
            err=True,
        )
    thumbs = f" ({result.from_thumbnails} from their thumbnails)" if result.from_thumbnails else ""
    negs = f" and {result.negatives} negative(s) from their thumbnails" if result.negatives else ""
    click.echo(f"reembedded {result.reembedded} samples{thumbs}{negs} with {result.model_id}", err=True)


# --- gallery copy ----------------------------------------------------------------------

# Copying must neither prune the source's events nor the copied ones.
_KEEP_ALL_EVENTS = 2**62
_KEEP_ALL_DAYS = 1e7


def _events_file(location: GalleryLocation) -> Path | None:
    """The events file beside an SQLite gallery (``None`` for a database server)."""
    if location.kind != "sqlite":
        return None
    return location.path.with_name(location.path.stem + ".events.db")


@click.group("gallery")
def gallery_group() -> None:
    """Whole-gallery operations (copy between SQLite and PostgreSQL)."""


@gallery_group.command("copy")
@click.argument("src", metavar="SRC")
@click.argument("dst", metavar="DST")
@click.option("--merge", is_flag=True, help="Copy into a gallery that is not empty, skipping what it already has.")
@click.option("--no-events", is_flag=True, help="Copy people and samples only, not the events log.")
@click.option("--json", "as_json", is_flag=True, help="Print what was copied as one JSON object on stdout.")
def gallery_copy(src: str, dst: str, merge: bool, no_events: bool, as_json: bool) -> None:
    """Copy the gallery SRC and its events into DST, losslessly (paths or URLs, e.g.
    gallery.db and postgresql://user@host/db).

    People keep their enrollment times; samples their embeddings, sources, boxes,
    thumbnails and times; events their crops, embeddings and names. DST must be
    empty unless --merge. Exit 0 when copied; otherwise a one-line error (6 for a
    missing, unusable or non-empty gallery; 2 for a bad location), with the
    people and samples of DST unchanged.
    """
    from facesense.gallery import open_gallery, parse_location
    from facesense.gallery.copy import copy_gallery
    from facesense.gallery.location import open_event_log

    src_loc, dst_loc = parse_location(src), parse_location(dst)
    if src_loc == dst_loc:
        raise ConfigError(f"SRC and DST are the same gallery ({src_loc.display})")
    src_file, dst_file = _events_file(src_loc), _events_file(dst_loc)
    dst_file_existed = dst_file is not None and dst_file.exists()
    try:
        with contextlib.ExitStack() as stack:
            source = stack.enter_context(contextlib.closing(open_gallery(src, create=False, read_only=True)))
            src_events = dst_events = None
            if not no_events and (src_file is None or src_file.exists()):  # never create a log in the source
                src_events = stack.enter_context(contextlib.closing(
                    open_event_log(src_loc, keep_events=_KEEP_ALL_EVENTS, keep_days=_KEEP_ALL_DAYS)))
            keep = stack.enter_context(_new_gallery_guard(dst))
            target = stack.enter_context(contextlib.closing(open_gallery(dst, create=True, read_only=False)))
            if src_events is not None:
                dst_events = stack.enter_context(contextlib.closing(
                    open_event_log(dst_loc, keep_events=_KEEP_ALL_EVENTS, keep_days=_KEEP_ALL_DAYS)))
            summary = copy_gallery(source, target, src_events=src_events, dst_events=dst_events, merge=merge)
            keep()
    except BaseException:
        if dst_file is not None and not dst_file_existed:  # an events file this command created
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(str(dst_file) + suffix).unlink(missing_ok=True)
        raise
    if as_json:
        emit_json({
            "src": src_loc.display, "dst": dst_loc.display, "people_added": list(summary.people_added),
            "samples_added": summary.samples_added, "samples_skipped": summary.samples_skipped,
            "events_added": summary.events_added, "events_skipped": summary.events_skipped,
        })
    click.echo(
        f"copied {len(summary.people_added)} new people, {summary.samples_added} samples "
        f"({summary.samples_skipped} already there), {summary.events_added} events "
        f"({summary.events_skipped} already there) from {src_loc.display} to {dst_loc.display}",
        err=True,
    )
