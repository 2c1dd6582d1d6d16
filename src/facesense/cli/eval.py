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
    progress_callback,
)

if TYPE_CHECKING:
    from facesense.analyzer import FaceAnalyzer
    from facesense.detect import DetectorKind
    from facesense.embed import EmbedderKind
    from facesense.embed.facenet import Backend
    from facesense.match import MatcherKind

__all__ = ["eval_group"]


@click.group("eval")
def eval_group() -> None:
    """Measure accuracy: LFW verification, WIDER FACE detection, open-set identification.

    Exit status: 0 when the report was computed. Images that cannot be read are
    logged and counted in the report the way each protocol says (lfw: as wrong
    answers; detect: left out of the scoring); no readable image at all is exit 4,
    a bad pairs or annotation file exit 2. identify needs every image of its protocol
    and stops at the first unreadable one (exit 4).
    """


def _analyzer(embedder_kind: EmbedderKind, **embedder_options: Any) -> FaceAnalyzer:
    from facesense.analyzer import FaceAnalyzer
    from facesense.detect import make_detector
    from facesense.embed import make_embedder

    return FaceAnalyzer(detector=make_detector(use="image"), embedder=make_embedder(embedder_kind, **embedder_options))


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
@embedder_option()
def eval_lfw(
    pairs_path: Path,
    images: Path,
    as_json: bool,
    subtract_mean: bool,
    limit_folds: int | None,
    backend: Backend,
    embedder_kind: EmbedderKind,
) -> None:
    """LFW verification: k-fold accuracy, AUC, TAR@FAR=1e-3."""
    from facesense.eval.lfw import evaluate_lfw

    analyzer = _analyzer(embedder_kind, backend=backend)
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
def eval_detect(
    annotations: Path,
    images: Path,
    min_face_px: float | None,
    ignore_below: tuple[float, ...],
    limit: int | None,
    as_json: bool,
    detector_kind: DetectorKind,
) -> None:
    """WIDER FACE detection: AP, recall and precision at IoU 0.5."""
    from facesense.detect import make_detector
    from facesense.eval.detect import evaluate_detection

    detector = make_detector(detector_kind, min_face_px=min_face_px, use="image")
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
