"""Benchmark the real-time loop: end-to-end FPS, and memory over a long looped run.

What runs is what ``facesense watch CLIP --output ... --events ...`` runs: capture
thread, MTCNN every N frames, tracking, FaceNet on new / due tracks, matching against a
one-person gallery (enrolled from one frame of the clip), the annotated video writer
and the events file.

1. FPS: the whole clip once per ``--every`` value (after a warm-up), with the mean
   milliseconds of each stage per frame.
2. Memory: RSS after the models are loaded, then while the clip plays in a loop for
   ``--loop-frames`` frames (with the video writer on), sampled every ``--sample``
   frames. A flat line means no leak; the first pass allocates the pools that later
   passes reuse, so growth is measured from the end of the first pass.

    python benchmarks/bench_watch.py [--every 1,5] [--loop-frames 20000] [--json]

The load average is printed so noisy runs can be recognised.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = REPO.parent / "shared" / "data" / "face_recognition_examples" / "short_hamilton_clip.mp4"
ENROLL_FRAME = 150


def rss_mib() -> float:
    """Resident set size of this process, MiB (Linux /proc; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):  # pragma: no cover - not Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(clip: Path, min_face_px: float, embedder_kind: str = "fusion"):
    from facesense.capture import open_source
    from facesense.detect.mtcnn import MTCNNConfig, MTCNNDetector
    from facesense.embed.fusion import make_embedder
    from facesense.match import KNNMatcher

    detector = MTCNNDetector(MTCNNConfig(min_face_px=min_face_px))
    embedder = make_embedder(embedder_kind)
    with open_source(clip) as source:
        frame = next(f for f in source if f.index == ENROLL_FRAME)
    faces = detector.detect(frame.image)
    person = faces[[int(np.argmax(faces.size_px))]]
    matcher = KNNMatcher(k=1).fit(embedder.embed(frame.image, person).embeddings, ["lin"])
    return detector, embedder, matcher


def run(clip: Path, models, *, every: int, out_dir: Path, loop_frames: int | None = None, sample: int = 0):
    from facesense.capture import CaptureConfig, open_source
    from facesense.pipeline import Pipeline, PipelineConfig, default_tracker
    from facesense.sinks import JsonlEventSink, VideoFileSink

    detector, embedder, matcher = models
    source = open_source(clip, CaptureConfig(loop=loop_frames is not None))
    sinks = [
        VideoFileSink(out_dir / f"every{every}.mp4", fps=source.fps or 25.0, size_wh=source.size_wh),
        JsonlEventSink(out_dir / f"every{every}.jsonl"),
    ]
    pipeline = Pipeline(
        source,
        detector=detector,
        embedder=embedder,
        matcher=matcher,
        tracker=default_tracker(every),
        sinks=sinks,
        config=PipelineConfig(every=every, max_frames=loop_frames),
    )
    totals: dict[str, float] = {}
    samples: list[tuple[int, float]] = []
    frames = 0
    start = time.perf_counter()
    for result in pipeline:
        frames += 1
        for key, value in result.timings.as_dict().items():
            totals[key] = totals.get(key, 0.0) + value
        if sample and frames % sample == 0:
            samples.append((frames, round(rss_mib(), 1)))
    elapsed = time.perf_counter() - start  # includes closing the video file
    return {
        "every": every,
        "frames": frames,
        "seconds": round(elapsed, 2),
        "fps": round(frames / elapsed, 2),
        "mean_ms": {k: round(v / frames, 2) for k, v in totals.items()},
        "rss_mib": samples,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--every", default="1,5", help="comma-separated detection periods [1,5]")
    parser.add_argument("--loop-frames", type=int, default=20000, help="frames of the looped memory run (0: skip)")
    parser.add_argument("--loop-every", type=int, default=5, help="detection period of the memory run [5]")
    parser.add_argument("--sample", type=int, default=1000, help="RSS sample period, frames [1000]")
    parser.add_argument("--min-face", type=float, default=40.0, help="MTCNN min_face_px [40, as facesense watch]")
    parser.add_argument("--embedder", default="fusion", choices=["fusion", "facenet", "dlib"], help="embedding model [fusion]")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args()
    if not args.clip.is_file():
        parser.error(f"{args.clip}: no such file")

    report: dict = {"clip": str(args.clip), "load_average": os.getloadavg(), "cpus": os.cpu_count()}
    report["rss_mib_at_start"] = round(rss_mib(), 1)
    models = build(args.clip, args.min_face, args.embedder)
    report["rss_mib_models_loaded"] = round(rss_mib(), 1)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        run(args.clip, models, every=5, out_dir=out, loop_frames=60)  # warm-up: ORT arenas, codecs
        report["fps"] = []
        for every in (int(x) for x in args.every.split(",")):
            res = run(args.clip, models, every=every, out_dir=out)
            report["fps"].append(res)
            print(f"every={every}: {res['frames']} frames in {res['seconds']} s = {res['fps']} fps; "
                  f"ms/frame {res['mean_ms']}", file=sys.stderr)  # fmt: skip
        if args.loop_frames:
            report["rss_mib_before_loop"] = round(rss_mib(), 1)
            res = run(
                args.clip, models, every=args.loop_every, out_dir=out, loop_frames=args.loop_frames, sample=args.sample
            )
            samples = res["rss_mib"]
            report["loop"] = {
                "every": args.loop_every,
                "frames": res["frames"],
                "seconds": res["seconds"],
                "fps": res["fps"],
                "rss_mib": samples,
            }
            if samples:
                first_pass = next((rss for n, rss in samples if n >= 275), samples[0][1])
                report["loop"]["rss_growth_after_first_pass_mib"] = round(samples[-1][1] - first_pass, 1)
                report["loop"]["rss_max_mib"] = max(r for _, r in samples)
            print(f"loop: {res['frames']} frames (every={args.loop_every}) in {res['seconds']} s; "
                  f"RSS MiB before {report['rss_mib_before_loop']}, samples {samples}", file=sys.stderr)  # fmt: skip
    report["rss_mib_at_end"] = round(rss_mib(), 1)
    print(
        f"RSS MiB: start {report['rss_mib_at_start']}, models loaded {report['rss_mib_models_loaded']}, "
        f"end {report['rss_mib_at_end']}; load average {report['load_average']}",
        file=sys.stderr,
    )
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
