"""``facesense eval``: accuracy by the standard protocols."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from facesense.cli._common import (
    EnumChoice,
    detector_option,
    embedder_option,
    emit_json,
    matcher_option,
    min_face_option,
    progress_callback,
    rotations_option,
)

if TYPE_CHECKING:
    from facesense.analyzer import FaceAnalyzer
    from facesense.detect import DetectorKind
    from facesense.embed import EmbedderKind
    from facesense.embed.facenet import Backend, Precision
    from facesense.match import MatcherKind

__all__ = ["eval_group"]


@click.group("eval")
def eval_group() -> None:
    """Measure accuracy: LFW verification, WIDER FACE detection, open-set identification,
    false faces on images without people, detection of rotated faces.

    Exit status: 0 when the report was computed. Images that cannot be read are
    logged and counted in the report the way each protocol says (lfw: as wrong
    answers; detect, negatives, rotated: left out of the counts); no readable image
    at all (or a folder without images) is exit 4,
    a bad pairs or annotation file exit 2. identify needs every image of its protocol
    and stops at the first unreadable one (exit 4).
    """


def _analyzer(
    embedder_kind: EmbedderKind, detector_kind: DetectorKind | None = None, **embedder_options: Any
) -> FaceAnalyzer:
    from facesense.analyzer import FaceAnalyzer
    from facesense.detect import make_detector
    from facesense.embed import make_embedder

    return FaceAnalyzer(
        detector=make_detector(detector_kind, use="image"), embedder=make_embedder(embedder_kind, **embedder_options)
    )


@eval_group.command("lfw")
@click.option("--pairs", "pairs_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True, help="LFW pairs.txt (header: folds n).")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True, help="Folder of <name>/<name>_NNNN.jpg.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--subtract-mean", is_flag=True, help="Remove the training folds' mean embedding before distances.")
@click.option("--folds", "limit_folds", type=int, default=None, help="Use only the first N folds (quick check).")
@click.option(
    "--backend",
    type=EnumChoice("facesense.embed.facenet:Backend", "FaceNet backend"),
    default="auto",
    show_default=True,
    help="Where FaceNet runs.",
)
@click.option(
    "--precision",
    type=EnumChoice("facesense.embed.facenet:Precision", "FaceNet precision"),
    default="int8",
    show_default=True,
    help="FaceNet on ONNX Runtime: INT8 (where this CPU's check accepts it) or FP32.",
)
@embedder_option()
@detector_option()
def eval_lfw(
    pairs_path: Path,
    images: Path,
    as_json: bool,
    subtract_mean: bool,
    limit_folds: int | None,
    backend: Backend,
    precision: Precision,
    embedder_kind: EmbedderKind,
    detector_kind: DetectorKind,
) -> None:
    """LFW verification: k-fold accuracy, AUC, TAR@FAR=1e-3."""
    from facesense.eval.lfw import evaluate_lfw

    analyzer = _analyzer(embedder_kind, detector_kind, backend=backend, precision=precision)
    with progress_callback("LFW images") as on_progress:
        report = evaluate_lfw(
            analyzer,
            pairs_path,
            images,
            subtract_mean=subtract_mean,
            limit_folds=limit_folds,
            progress=on_progress,
        )
    if as_json:
        emit_json(report.to_dict())
        return
    click.echo(f"LFW verification, {report.pairs} pairs, {report.folds}-fold")
    click.echo(f"  accuracy        {100 * report.accuracy:.2f}% ± {100 * report.std:.2f}")
    click.echo(f"  AUC             {report.auc:.4f}")
    click.echo(f"  TAR @ FAR=1e-3  {100 * report.tar_at_far_1e_3:.2f}%")
    click.echo(f"  threshold       {report.threshold:.4f} (cosine distance, mean over folds)")
    click.echo(f"  no face found   {report.no_face} image(s), {report.no_face_policy}")
    if report.unreadable:
        click.echo(f"  unreadable      {report.unreadable} image(s), counted as non-matching")


@eval_group.command("detect")
@click.option("--annotations", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True, help="wider_face_val_bbx_gt.txt (WIDER FACE format).")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True, help="Folder the annotation paths are relative to.")
@click.option("--min-face", "min_face_px", type=click.FloatRange(min=0, min_open=True), default=None, help="Detector's minimum face size, pixels [default: the detector's image default].")
@click.option("--ignore-below", "ignore_below", type=float, multiple=True, default=(20.0, 40.0), show_default=True, help="Score faces at least this big; smaller ones are ignored (repeatable).")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Only the first N images.")
@click.option("--json", "as_json", is_flag=True, help="Print the reports as one JSON object.")
@detector_option()
@rotations_option()
def eval_detect(
    annotations: Path,
    images: Path,
    min_face_px: float | None,
    ignore_below: tuple[float, ...],
    limit: int | None,
    as_json: bool,
    detector_kind: DetectorKind,
    rotations: bool,
) -> None:
    """WIDER FACE detection: AP, recall and precision at IoU 0.5."""
    from facesense.detect import make_detector
    from facesense.eval.detect import evaluate_detection

    detector = make_detector(detector_kind, min_face_px=min_face_px, use="image", rotations=rotations)
    used_min_face = float(getattr(getattr(detector, "config", None), "min_face_px", min_face_px or 0.0))
    with progress_callback("images") as on_progress:
        reports = evaluate_detection(
            detector, annotations, images, min_face_px=ignore_below, limit=limit, progress=on_progress
        )
    first = reports[0]
    if as_json:
        emit_json({"detector_min_face_px": used_min_face, "reports": [r.to_dict() for r in reports]})
        return
    click.echo(f"WIDER FACE, IoU {first.iou_threshold:g}, detector min face {used_min_face:g} px")
    click.echo(f"  {'faces >=':>9} {'AP':>6} {'recall':>7} {'precision':>9} {'faces':>6} {'ignored':>7} {'images':>6}")
    for r in reports:
        click.echo(
            f"  {r.min_face_px:>7g}px {r.ap:6.3f} {r.recall:7.3f} {r.precision:9.3f} "
            f"{r.positives:6d} {r.ignored_faces:7d} {r.images:6d}"
        )
    if first.images_failed:
        click.echo(f"  {first.images_failed} image(s) could not be read")


@eval_group.command("identify")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True, help="LFW folder of <name>/<name>_NNNN.jpg.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--cache", "cache", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Reuse/store the embeddings in this .npz.")
@click.option("--folds", type=click.IntRange(2), default=5, show_default=True, help="Cross-validation folds (by person) for the threshold.")
@matcher_option()
@click.option("--no-normalize", is_flag=True, help="Threshold raw distances (no score normalisation).")
@embedder_option()
def eval_identify(
    images: Path,
    as_json: bool,
    cache: Path | None,
    folds: int,
    matcher_kind: MatcherKind,
    no_normalize: bool,
    embedder_kind: EmbedderKind,
) -> None:
    """Open-set identification on LFW: one photo enrolled per person, strangers must be unknown.

    People with two or more images are enrolled from their first image and probed with
    the others; people with one image are strangers. Reports rank-1 accuracy with
    rejection off, the threshold curve, thresholds for 1 % and 2 % stranger
    false-accept rates (in-sample and cross-validated by person), and the default
    threshold's numbers by gallery size.
    """
    from facesense.eval.identify import default_threshold, evaluate_identify
    from facesense.match import make_matcher

    analyzer = _analyzer(embedder_kind)
    matcher = make_matcher(
        matcher_kind,
        model_id=analyzer.model_id,
        threshold=default_threshold(analyzer.model_id),
        normalize=not no_normalize,
    )
    with progress_callback("LFW images") as on_progress:
        report = evaluate_identify(analyzer, images, matcher=matcher, cache=cache, folds=folds, on_progress=on_progress)
    if as_json:
        emit_json(report.to_dict())
        return
    for line in report.lines():
        click.echo(line)


@eval_group.command("cluster")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True, help="LFW folder of <name>/<name>_NNNN.jpg.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--cache", "cache", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Reuse/store the embeddings in this .npz (the same file as `eval identify --cache`).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the records' arrival order.")
@click.option("--link-far", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None, help="Radius for pairing two records seen once, as an impostor-pair share (the join and merge radii keep their defaults) [default: facesense.unknowns.ClusterConfig's].")
@click.option("--no-baselines", is_flag=True, help="Skip scikit-learn's batch DBSCAN and average-linkage rows.")
@embedder_option()
def eval_cluster(
    images: Path,
    as_json: bool,
    cache: Path | None,
    seed: int,
    link_far: float | None,
    no_baselines: bool,
    embedder_kind: EmbedderKind,
) -> None:
    """Recurring unknowns on LFW: people with 3+ images come back, the others are one-off strangers.

    Every image is one unknown record, arriving in a seeded random order and clustered
    incrementally. Reports pairwise precision and recall, BCubed F, and how many
    one-off strangers were merged into someone's cluster.
    """
    from facesense.eval.cluster import evaluate_cluster
    from facesense.unknowns import ClusterConfig

    config = ClusterConfig() if link_far is None else ClusterConfig(link_far=link_far)
    analyzer = _analyzer(embedder_kind)
    with progress_callback("LFW images") as on_progress:
        report = evaluate_cluster(
            analyzer, images, config=config, cache=cache, seed=seed, baselines=not no_baselines, on_progress=on_progress
        )
    if as_json:
        emit_json(report.to_dict())
        return
    for line in report.lines():
        click.echo(line)


def _parse_counts(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated counts, got {value!r}") from None
    if not counts or min(counts) < 0:
        raise click.BadParameter(f"expected counts >= 0, got {value!r}")
    return counts


@eval_group.command("corrections")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True, help="LFW folder of <name>/<name>_NNNN.jpg.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--cache", "cache", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Reuse/store the embeddings in this .npz (the same file as `eval identify --cache`).")
@click.option("--k", "ks", default="0,10,50", show_default=True, callback=_parse_counts, help="Corrections the simulated user makes, comma-separated.")
@click.option("--folds", type=click.IntRange(2), default=5, show_default=True, help="Cross-validation folds (by person).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the folds and of the user's stream.")
@click.option("--threshold", "operating_threshold", type=click.FloatRange(min=0), default=None, help="Threshold the user's stream is recognised at [default: the model's calibrated one].")
@click.option("--returning", type=click.IntRange(0), default=0, show_default=True, help="Take N people with 4+ images out of the gallery as strangers who come back: half their images in the user's stream, the rest held out.")
@embedder_option()
def eval_corrections(
    images: Path,
    as_json: bool,
    cache: Path | None,
    ks: tuple[int, ...],
    folds: int,
    seed: int,
    operating_threshold: float | None,
    returning: int,
    embedder_kind: EmbedderKind,
) -> None:
    """Corrections on LFW: a user marks the first k false accepts "not X" / "this is Y".

    The open-set protocol of `eval identify`, cross-validated by person: the user
    corrects the other folds' faces, and the held-out fold's probes and strangers are
    measured, at the operating threshold and at cross-validated 1 % and 2 % FAR thresholds.
    LFW's strangers never come back; --returning N adds N who do (held out of the
    gallery; their earlier images are corrected, their later ones measured). The
    "reach" lines count the held-out false accepts (without corrections) that were
    taken for a person the user corrected, or were of a stranger the user corrected:
    the most that rules acting on corrected people can stop.
    """
    from facesense.eval.corrections import evaluate_corrections

    analyzer = _analyzer(embedder_kind)
    with progress_callback("LFW images") as on_progress:
        report = evaluate_corrections(
            analyzer,
            images,
            ks=ks,
            cache=cache,
            folds=folds,
            seed=seed,
            operating_threshold=operating_threshold,
            returning=returning,
            on_progress=on_progress,
        )
    if as_json:
        emit_json(report.to_dict())
        return
    for line in report.lines():
        click.echo(line)


@eval_group.command("calibrate")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True, help="LFW folder of <name>/<name>_NNNN.jpg (quantiles, thresholds).")
@click.option("--wider", "wider_images", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True, help="Folder of WIDER FACE images (the fusion scales).")
@click.option("--pairs", "pairs_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="LFW pairs.txt: also report verification accuracy.")
@click.option("--embedder", "kinds", multiple=True, type=EnumChoice("facesense.embed:EmbedderKind", "embedder"), help="Calibrate only these (repeatable) [default: every shipped embedder and fusion].")
@click.option("--far", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.02, show_default=True, help="Stranger false-accept rate the thresholds are read at (0.001, 0.01 or 0.02).")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Keep the embeddings here; <dir>/<kind>.npz also serves `eval identify --cache`.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON Lines, one object per embedder.")
@detector_option()
def eval_calibrate(
    images: Path,
    wider_images: Path,
    pairs_path: Path | None,
    kinds: tuple[EmbedderKind, ...],
    far: float,
    cache_dir: Path | None,
    as_json: bool,
    detector_kind: DetectorKind,
) -> None:
    """Measure every shipped embedder's registry statistics: the one calibration command.

    The impostor median of each network (the fusion scales) on the WIDER faces found by
    --detector (the crops, hence the statistics, follow the detector); then on
    LFW, for every network and fusion: the impostor quantiles, and the normalised and
    raw thresholds with at most --far of the strangers accepted. Prints them as the
    keyword arguments of each entry of facesense.models.registry.EMBEDDERS, with the
    cross-validated identification numbers (and LFW verification with --pairs).
    Every image is detected once.

    Exit status: 0 when every embedder was calibrated; 4 when an LFW image cannot be
    read or the WIDER folder holds none; 2 for bad options or folders.
    """
    import contextlib

    from facesense.detect import make_detector
    from facesense.eval.calibrate import calibrate

    bars: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in bars:  # one bar per stage: WIDER faces, then LFW images
                stack.close()
                bars.clear()
                bars[stage] = stack.enter_context(progress_callback(stage))
            bars[stage](done, total)

        results = calibrate(
            images,
            wider_images,
            pairs_path=pairs_path,
            kinds=[k.value for k in kinds] or None,
            far=far,
            cache_dir=cache_dir,
            detector=make_detector(detector_kind, use="image"),
            on_progress=on_progress,
        )
    measured = (
        f"facesense eval calibrate --images {images} --wider {wider_images} --detector {detector_kind.value} "
        f"(stranger FAR <= {far:g})"
    )
    for r in results:
        if as_json:
            emit_json(r.to_dict())
            continue
        for line in r.registry_lines(measured):
            click.echo(line)
        ident = r.identify
        cv = "; ".join(f"FAR <= {k}: {100 * v['dir']:.2f}% at {100 * v['far']:.2f}%" for k, v in ident["cross_validated"].items())
        click.echo(f"#   identify: rank-1 {100 * ident['rank1']:.2f}%; named right, cross-validated by person: {cv}")
        if r.lfw is not None:
            click.echo(f"#   LFW: {100 * r.lfw['accuracy']:.2f}% ± {100 * r.lfw['std']:.2f} ({r.lfw['folds']}-fold), AUC {r.lfw['auc']:.4f}, TAR@FAR=1e-3 {100 * r.lfw['tar_at_far_1e-3']:.2f}%")


@eval_group.command("negatives")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@min_face_option("image")
@click.option("--json", "as_json", is_flag=True, help="Print the report, with every false face, as one JSON object.")
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True, help="List this many of the highest-scored false faces.")
@detector_option()
@rotations_option()
def eval_negatives(
    folder: Path,
    min_face_px: float | None,
    as_json: bool,
    top: int,
    detector_kind: DetectorKind,
    rotations: bool,
) -> None:
    """False faces on a FOLDER of images without people (animals, textures, objects).

    Every detection is a false face. Reports the images searched, those with any
    face, the false faces in all and per 50 images, and the highest scores.

    Exit status: 0 when the report was computed (whatever it found); 4 when the
    folder holds no image or none could be read (unreadable images are logged and
    left out of the counts); 2 for bad options.
    """
    from facesense.detect import make_detector
    from facesense.eval.negatives import evaluate_negatives

    detector = make_detector(detector_kind, min_face_px=min_face_px, use="image", rotations=rotations)
    used_min_face = float(getattr(getattr(detector, "config", None), "min_face_px", min_face_px or 0.0))
    with progress_callback("images") as on_progress:
        report = evaluate_negatives(detector, folder, progress=on_progress)
    if as_json:
        emit_json({"detector": detector_kind.value, "detector_min_face_px": used_min_face, **report.to_dict()})
        return
    click.echo(f"False faces on {report.folder}, {detector_kind.value}, min face {used_min_face:g} px")
    click.echo(f"  images              {report.images}")
    click.echo(f"  images with a face  {report.images_with_faces}")
    click.echo(f"  false faces         {report.total}")
    click.echo(f"  per 50 images       {report.per_50_images:.2f}")
    if report.max_score is not None:
        click.echo(f"  max score           {report.max_score:.3f}")
    for face in report.false_faces[:top]:
        x1, y1, x2, y2 = face.xyxy
        click.echo(f"    {face.score:.3f}  {x1:g},{y1:g},{x2:g},{y2:g}  {face.file}")
    if report.images_failed:
        click.echo(f"  {report.images_failed} image(s) could not be read")


def _parse_angles(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, ...]:
    try:
        return tuple(float(a) for a in value.split(",") if a.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated degrees, got {value!r}") from None


@eval_group.command("rotated")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None, help="Folder of images with one centred face each (LFW).")
@click.option("--wider-annotations", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="Instead of --images: wider_face_val_bbx_gt.txt (every face counts).")
@click.option("--wider-images", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None, help="Folder the WIDER annotation paths are relative to.")
@click.option("--ignore-below", type=click.FloatRange(min=0), default=40.0, show_default=True, help="WIDER: faces with a shorter side below this are not counted.")
@click.option(
    "--angles",
    default="0,30,-30,45,-45,60,-60,90,-90,180",
    show_default=True,
    callback=_parse_angles,
    help="Rotations, degrees counter-clockwise, comma-separated.",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="LFW: a deterministic sample of N images [default: 300]; WIDER: the first N [default: all].")
@click.option("--seed", type=int, default=0, show_default=True, help="The sample's random seed.")
@click.option(
    "--center-tolerance",
    type=click.FloatRange(min=0, max=1, min_open=True),
    default=None,
    help="Match distance: a fraction of the image's shorter side (LFW, default 0.15) or of the face's size (WIDER, default 0.3).",
)
@min_face_option("image")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option(
    "--pairs",
    "pairs_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="With --images (LFW): also LFW verification accuracy with every image turned by a random angle in [-90, 90].",
)
@detector_option()
@rotations_option()
def eval_rotated(
    images: Path | None,
    wider_annotations: Path | None,
    wider_images: Path | None,
    ignore_below: float,
    angles: tuple[float, ...],
    limit: int | None,
    seed: int,
    center_tolerance: float | None,
    min_face_px: float | None,
    as_json: bool,
    pairs_path: Path | None,
    detector_kind: DetectorKind,
    rotations: bool,
) -> None:
    """Detection recall per rotation angle on rotated copies of centred-face images.

    Each sampled image is rotated about its centre onto a canvas that holds all of
    it; the face is found when a detection's box centre lies near the canvas centre.
    Recall is given per image and relative to upright (0 degrees). With
    --wider-annotations and --wider-images, every WIDER FACE face at least
    --ignore-below px counts, found when a detection of about its size is centred
    near its rotated centre. The landmark columns compare each found face's
    landmarks, mapped back, with the upright detection's.

    Exit status: 0 when the report was computed; 4 when the folder holds no image or
    none could be read (unreadable images are logged and left out); 2 for bad options.
    """
    from facesense.detect import make_detector
    from facesense.eval import rotated

    wider = wider_annotations is not None or wider_images is not None
    if wider == (images is not None) or (wider and (wider_annotations is None or wider_images is None)):
        raise click.UsageError("give either --images, or both --wider-annotations and --wider-images")
    if pairs_path is not None and images is None:
        raise click.UsageError("--pairs needs --images (the LFW folder)")
    detector = make_detector(detector_kind, min_face_px=min_face_px, use="image", rotations=rotations)
    used_min_face = float(getattr(getattr(detector, "config", None), "min_face_px", min_face_px or 0.0))
    verification = None
    if pairs_path is not None and images is not None:
        from facesense.analyzer import FaceAnalyzer
        from facesense.embed import make_embedder

        with progress_callback("LFW images, rotated") as on_progress:
            verification = rotated.evaluate_rotated_lfw(
                FaceAnalyzer(detector=detector, embedder=make_embedder()), pairs_path, images, seed=seed, progress=on_progress
            )
    with progress_callback("images") as on_progress:
        if wider_annotations is not None and wider_images is not None:
            report = rotated.evaluate_rotated_wider(
                detector,
                wider_annotations,
                wider_images,
                angles=angles,
                min_face_px=ignore_below,
                limit=limit,
                center_tolerance=center_tolerance or rotated.DEFAULT_WIDER_CENTER_TOLERANCE,
                progress=on_progress,
            )
        else:
            report = rotated.evaluate_rotated(
                detector,
                images or Path(),  # not None: checked above
                angles=angles,
                limit=limit or rotated.DEFAULT_LIMIT,
                seed=seed,
                center_tolerance=center_tolerance or rotated.DEFAULT_CENTER_TOLERANCE,
                progress=on_progress,
            )
    if as_json:
        extra = {} if verification is None else {"rotated_lfw_verification": verification.to_dict()}
        emit_json({"detector": detector_kind.value, "detector_min_face_px": used_min_face, **report.to_dict(), **extra})
        return
    faces = "" if report.min_face_px is None else f" ({report.faces} faces >= {report.min_face_px:g} px)"
    click.echo(
        f"Rotated faces, {report.images} images{faces} of {report.folder}, {detector_kind.value}, "
        f"min face {used_min_face:g} px, centre tolerance {report.center_tolerance:g}"
    )
    click.echo(
        f"  {'angle':>6} {'found':>6} {'recall':>7} {'vs upright':>10} {'given upright':>13} "
        f"{'lmk err':>7} {'lmk ok':>6} {'ms':>6}"
    )

    def cell(value: float | None, width: int) -> str:
        return f"{'-':>{width}}" if value is None else f"{value:{width}.3f}"

    for a in report.angles:
        click.echo(
            f"  {a.angle_deg:>6g} {a.found:6d} {a.recall:7.3f} {cell(a.relative_to_upright, 10)} "
            f"{cell(a.found_given_upright, 13)} {cell(a.landmark_nme_median, 7)} {cell(a.landmarks_agree, 6)} "
            f"{a.detect_ms_median:6.1f}"
        )
    click.echo(
        "  lmk err: median landmark error vs the upright detection, over the eye distance; "
        "lmk ok: share with error <= 0.25"
    )
    if verification is not None:
        click.echo(
            f"  LFW verification, {verification.pairs} pairs, every image turned by a random angle in [-90, 90]: "
            f"accuracy {100 * verification.accuracy:.2f}% ± {100 * verification.std:.2f} "
            f"({verification.no_face} image(s) without a face found)"
        )
    if report.images_failed:
        click.echo(f"  {report.images_failed} image(s) could not be read")
