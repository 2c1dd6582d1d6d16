"""``facesense eval``: accuracy by the standard protocols."""

from __future__ import annotations

from pathlib import Path

import click

from facesense.cli._common import embedder_option, emit_json, progress_callback
from facesense.cli.gallery import eval_identify


@click.group("eval")
def eval_group() -> None:
    """Measure accuracy: LFW verification, WIDER FACE detection, open-set identification."""


eval_group.add_command(eval_identify)


@eval_group.command("lfw")
@click.option("--pairs", "pairs_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True, help="LFW pairs.txt (header: folds n).")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True, help="Folder of <name>/<name>_NNNN.jpg.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--subtract-mean", is_flag=True, help="Remove the training folds' mean embedding before distances.")
@click.option("--folds", "limit_folds", type=int, default=None, help="Use only the first N folds (quick check).")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "opencv"]), default="auto", show_default=True, help="Where FaceNet runs.")
@embedder_option()
def eval_lfw(pairs_path: Path, images: Path, as_json: bool, subtract_mean: bool, limit_folds: int | None, backend: str, embedder_kind: str) -> None:
    """LFW verification: k-fold accuracy, AUC, TAR@FAR=1e-3."""
    from facesense.analyzer import FaceAnalyzer
    from facesense.embed.fusion import make_embedder
    from facesense.eval.lfw import evaluate_lfw

    analyzer = FaceAnalyzer(embedder=make_embedder(embedder_kind, backend=backend))
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
@click.option("--min-face", "min_face_px", type=float, default=20.0, show_default=True, help="Detector's minimum face size, pixels.")
@click.option("--ignore-below", "ignore_below", type=float, multiple=True, default=(20.0, 40.0), show_default=True, help="Score faces at least this big; smaller ones are ignored (repeatable).")
@click.option("--limit", type=int, default=None, help="Only the first N images.")
@click.option("--json", "as_json", is_flag=True, help="Print the reports as one JSON object.")
def eval_detect(annotations: Path, images: Path, min_face_px: float, ignore_below: tuple[float, ...], limit: int | None, as_json: bool) -> None:
    """WIDER FACE detection: AP, recall and precision at IoU 0.5."""
    from facesense.detect.mtcnn import MTCNNConfig, MTCNNDetector
    from facesense.eval.detect import evaluate_detection

    detector = MTCNNDetector(MTCNNConfig(min_face_px=min_face_px))
    with progress_callback("images") as on_progress:
        reports = evaluate_detection(
            detector, annotations, images, min_face_px=ignore_below, limit=limit, progress=on_progress
        )
    if as_json:
        emit_json({"detector_min_face_px": min_face_px, "reports": [r.to_dict() for r in reports]})
        return
    click.echo(f"WIDER FACE, IoU {reports[0].iou_threshold:g}, detector min face {min_face_px:g} px")
    click.echo(f"  {'faces >=':>9} {'AP':>6} {'recall':>7} {'precision':>9} {'faces':>6} {'ignored':>7} {'images':>6}")
    for r in reports:
        click.echo(
            f"  {r.min_face_px:>7g}px {r.ap:6.3f} {r.recall:7.3f} {r.precision:9.3f} "
            f"{r.positives:6d} {r.ignored_faces:7d} {r.images:6d}"
        )
    if reports[0].images_failed:
        click.echo(f"  {reports[0].images_failed} image(s) could not be read")
