"""Benchmark ``facesense watch --output``: resident memory over a long run, and FPS.

**memory** (the default) plays the example clip in a loop and samples the process's
resident set size (RSS) every ``--sample`` frames, each run in a fresh process:

* ``sink``: what ``watch --output`` does to every frame after the models: the capture
  thread decodes the looped clip, each frame becomes a
  :class:`~facesense.types.FrameResult` with two named, tracked faces (moving boxes),
  and :class:`~facesense.sinks.video.VideoFileSink` draws and encodes it on its writer
  thread. No models, so 200,000 frames take minutes, not hours. This isolates the
  writer, where long runs used to grow.
* ``cv2``: the same, with the old writer (OpenCV's ``cv2.VideoWriter``, mp4v, the same
  drawing on its own thread), for comparison.
* ``pipeline``: the real :class:`~facesense.pipeline.Pipeline` as ``watch`` builds it:
  MTCNN every ``--every`` frames, tracking, the fused embedder and a one-person
  matcher (enrolled from one frame of the clip), the video file and the events file.

Each run prints a table of RSS samples and the slope in MiB per 100,000 frames fitted
after ``--warmup`` frames (the first frames allocate pools that later ones reuse), and
the mean decode / draw / encode milliseconds from the public ``stats()`` hooks.

**fps** runs the whole clip once per ``--every`` value through the pipeline and prints
the mean milliseconds of each stage.

    python benchmarks/bench_watch.py memory [--frames 200000] [--compare-frames 60000]
                                            [--pipeline-frames 0] [--json]
    python benchmarks/bench_watch.py fps [--every 1,5]

The CPU line and the load average are printed so every figure says where it was made.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = REPO.parent / "shared" / "data" / "face_recognition_examples" / "short_hamilton_clip.mp4"
ENROLL_FRAME = 150
TRIM_EVERY = 1000  # as PipelineConfig.trim_every: watch hands free pages back every 1,000 frames


def rss_mib() -> float:
    """Resident set size of this process, MiB (Linux /proc)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def slope_mib_per_100k(samples: list[tuple[int, float]], warmup: int) -> float | None:
    """Least-squares slope of RSS against frames after ``warmup``, MiB per 100,000 frames."""
    pts = [(n, r) for n, r in samples if n >= warmup]
    if len(pts) < 3:
        return None
    x = np.array([n for n, _ in pts], np.float64)
    y = np.array([r for _, r in pts], np.float64)
    return float(np.polyfit(x, y, 1)[0] * 1e5)


# ----------------------------------------------------------------------------- sink-only runs


def _faces(index: int) -> Any:
    """Two tracked, named faces whose boxes drift the way faces in the clip do."""
    from facesense.types import Faces, IdentityState

    dx = 20.0 * math.sin(index / 40.0)
    xyxy = np.array([[180 + dx, 60, 300 + dx, 210], [420 - dx, 90, 510 - dx, 200]], np.float32)
    return Faces(
        xyxy=xyxy,
        scores=np.array([0.99, 0.97], np.float32),
        landmarks=np.zeros((2, 5, 2), np.float32),
        track_ids=np.array([1 + index // 5000, 2], np.int64),
        names=("lin", None),
        confidences=np.array([0.91, 0.8], np.float32),
        states=(IdentityState.KNOWN, IdentityState.UNKNOWN),
    )


class Cv2VideoSink:
    """The old writer for comparison: the same drawing, on a thread, into ``cv2.VideoWriter`` (mp4v)."""

    def __init__(self, path: Path, fps: float, size_wh: tuple[int, int]) -> None:
        import cv2

        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, size_wh)
        if not self._writer.isOpened():
            raise SystemExit(f"{path}: cv2.VideoWriter did not open")
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=16)
        self.frames = 0
        self.draw_ms_total = 0.0
        self.encode_ms_total = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from facesense.sinks.draw import annotate

        while (item := self._queue.get()) is not None:
            t0 = time.perf_counter()
            image = annotate(item)
            t1 = time.perf_counter()
            self._writer.write(image)
            self.draw_ms_total += (t1 - t0) * 1e3
            self.encode_ms_total += (time.perf_counter() - t1) * 1e3
            self.frames += 1

    def write(self, result: Any) -> None:
        self._queue.put(result)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._writer.release()


def run_sink(clip: Path, out_dir: Path, *, writer: str, frames: int, sample: int) -> dict[str, Any]:
    from facesense.capture import CaptureConfig, open_source
    from facesense.memory import release_free_memory
    from facesense.sinks.video import VideoFileSink
    from facesense.types import FrameResult

    source = open_source(clip, CaptureConfig(loop=True))
    fps = source.fps or 25.0
    size_wh = source.size_wh or (640, 360)
    sink: Any
    if writer == "cv2":
        sink = Cv2VideoSink(out_dir / "cv2.mp4", fps, size_wh)
    else:
        sink = VideoFileSink(out_dir / "pyav.mp4", fps=fps, size_wh=size_wh)
    samples = [(0, round(rss_mib(), 2))]
    start = time.perf_counter()
    n = 0
    try:
        for frame in source:
            sink.write(FrameResult(frame=frame, faces=_faces(frame.index), detected=frame.index % 5 == 0, fps=fps))
            n += 1
            if n % TRIM_EVERY == 0:
                release_free_memory()
            if n % sample == 0:
                samples.append((n, round(rss_mib(), 2)))
                print(f"  {writer}: {n:>7} frames  RSS {samples[-1][1]:7.1f} MiB", file=sys.stderr, flush=True)
            if n >= frames:
                break
    finally:
        source.close()
        sink.close()
    elapsed = time.perf_counter() - start
    decode = source.stats()
    if writer == "cv2":
        encoded = sink.frames
        encode_ms, draw_ms = sink.encode_ms_total / max(1, encoded), sink.draw_ms_total / max(1, encoded)
    else:
        st = sink.stats()
        encoded, encode_ms, draw_ms = st.frames, st.mean_encode_ms, st.mean_draw_ms
    return {
        "mode": "sink",
        "writer": "cv2.VideoWriter mp4v" if writer == "cv2" else f"VideoFileSink {sink.codec} fragmented mp4",
        "frames": n,
        "encoded": encoded,
        "seconds": round(elapsed, 1),
        "frames_per_s": round(n / elapsed, 1),
        "decode_ms": round(decode.mean_decode_ms, 2),
        "draw_ms": round(draw_ms, 2),
        "encode_ms": round(encode_ms, 2),
        "rss_mib": samples,
    }


# ----------------------------------------------------------------------------- pipeline runs


def build_models(clip: Path, min_face_px: float) -> tuple[Any, Any, Any]:
    """The detector and embedder ``watch`` uses, and a matcher knowing the clip's main face."""
    from facesense.capture import open_source
    from facesense.detect import make_detector
    from facesense.embed import make_embedder
    from facesense.match import KNNMatcher

    detector = make_detector("mtcnn", use="video", min_face_px=min_face_px)
    embedder = make_embedder("fusion")
    with open_source(clip) as source:
        frame = next(f for f in source if f.index == ENROLL_FRAME)
    faces = detector.detect(frame.image)
    person = faces[[int(np.argmax(faces.size_px))]]
    embeddings = embedder.embed(frame.image, person).embeddings
    if embeddings is None:
        raise SystemExit("the embedder returned no embedding")
    matcher = KNNMatcher(k=1).fit(embeddings, ["lin"])
    return detector, embedder, matcher


def run_pipeline(
    clip: Path, out_dir: Path, models: tuple[Any, Any, Any], *, every: int, frames: int | None, sample: int
) -> dict[str, Any]:
    from facesense.capture import CaptureConfig, open_source
    from facesense.pipeline import Pipeline, PipelineConfig, default_tracker
    from facesense.sinks.base import Sink
    from facesense.sinks.events import JsonlEventSink
    from facesense.sinks.video import VideoFileSink

    detector, embedder, matcher = models
    source = open_source(clip, CaptureConfig(loop=frames is not None))
    video = VideoFileSink(out_dir / f"every{every}.mp4", fps=source.fps or 25.0, size_wh=source.size_wh)
    sinks: list[Sink] = [video, JsonlEventSink(out_dir / f"every{every}.jsonl")]
    pipeline = Pipeline(
        source,
        detector=detector,
        embedder=embedder,
        matcher=matcher,
        tracker=default_tracker(every),
        sinks=sinks,
        config=PipelineConfig(every=every, max_frames=frames),
    )
    totals: dict[str, float] = {}
    samples = [(0, round(rss_mib(), 2))]
    n = 0
    start = time.perf_counter()
    for result in pipeline:
        n += 1
        for key, value in result.timings.as_dict().items():
            totals[key] = totals.get(key, 0.0) + value
        if sample and n % sample == 0:
            samples.append((n, round(rss_mib(), 2)))
            print(f"  pipeline: {n:>7} frames  RSS {samples[-1][1]:7.1f} MiB", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - start  # includes finishing the video file
    st = video.stats()
    decode = source.stats()
    return {
        "mode": "pipeline",
        "writer": f"VideoFileSink {video.codec} fragmented mp4",
        "every": every,
        "frames": n,
        "encoded": st.frames,
        "seconds": round(elapsed, 1),
        "frames_per_s": round(n / elapsed, 2),
        "mean_ms": {k: round(v / max(1, n), 2) for k, v in totals.items()},
        "decode_ms": round(decode.mean_decode_ms, 2),
        "draw_ms": round(st.mean_draw_ms, 2),
        "encode_ms": round(st.mean_encode_ms, 2),
        "rss_mib": samples,
    }


# ----------------------------------------------------------------------------- driver


def child(args: argparse.Namespace) -> int:
    """One measured run in this (fresh) process; prints one JSON object."""
    with tempfile.TemporaryDirectory(prefix="bench_watch_") as tmp:
        out = Path(tmp)
        if args.mode == "pipeline":
            before = rss_mib()
            models = build_models(args.clip, args.min_face)
            run_pipeline(args.clip, out, models, every=5, frames=60, sample=0)  # warm-up: ORT arenas, encoder
            res = run_pipeline(args.clip, out, models, every=args.every, frames=args.frames, sample=args.sample)
            res["rss_mib_before_models"] = round(before, 1)
        else:
            res = run_sink(args.clip, out, writer=args.mode, frames=args.frames, sample=args.sample)
    print(json.dumps(res))
    return 0


def _spawn(args: argparse.Namespace, mode: str, frames: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "_child", "--mode", mode, "--frames", str(frames), "--sample", str(args.sample)]
    cmd += ["--clip", str(args.clip), "--every", str(args.every), "--min-face", str(args.min_face)]
    print(f"== {mode}: {frames} frames", file=sys.stderr, flush=True)
    run = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if run.returncode != 0:
        raise SystemExit(f"{mode} run failed (exit {run.returncode})")
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def _table(runs: list[dict[str, Any]], warmup: int) -> str:
    frames = sorted({n for r in runs for n, _ in r["rss_mib"]})
    names = [_label(r) for r in runs]
    by_run = [dict(r["rss_mib"]) for r in runs]
    timing = [f"{r.get('decode_ms', '-')} / {r.get('draw_ms', '-')} / {r['encode_ms']}" for r in runs]
    speed = [f"{r['frames_per_s']}/s, {r['seconds']:.0f} s" for r in runs]
    width = max(12, *(len(n) for n in names + timing + speed))
    lines = [f"{n}: {r['writer']}" for n, r in zip(names, runs, strict=True)]
    lines += ["", "RSS (MiB) by frame", f"{'frames':>9}  " + "  ".join(f"{n:>{width}}" for n in names)]
    for n in frames:
        cells = [f"{d[n]:>{width}.1f}" if n in d else " " * width for d in by_run]
        lines.append(f"{n:>9,}  " + "  ".join(cells))
    slopes = []
    for r in runs:
        s = slope_mib_per_100k(r["rss_mib"], warmup)
        slopes.append(f"{s:>{width}.2f}" if s is not None else f"{'n/a':>{width}}")
    lines.append(f"{'slope*':>9}  " + "  ".join(slopes))
    lines.append(f"* MiB per 100,000 frames, least squares over samples from frame {warmup:,} on")
    lines.append(f"{'ms/frame':>9}  " + "  ".join(f"{t:>{width}}" for t in timing))
    lines.append(f"{'':>9}  (mean decode / draw / encode ms per frame, from VideoSource.stats() and the sinks' stats)")
    lines.append(f"{'speed':>9}  " + "  ".join(f"{t:>{width}}" for t in speed))
    return "\n".join(lines)


def _label(run: dict[str, Any]) -> str:
    if run["mode"] == "pipeline":
        return f"pipeline every={run['every']}"
    return "cv2 writer" if run["writer"].startswith("cv2") else "PyAV writer"


def _header() -> str:
    from facesense.cpu import cpu_info

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"CPU: {cpu_info().describe()}; load average {load}; python {sys.version.split()[0]}"


def memory(args: argparse.Namespace) -> int:
    header = _header()
    print(header, file=sys.stderr)
    runs = [_spawn(args, "sink", args.frames)] if args.frames else []
    if args.compare_frames:
        runs.append(_spawn(args, "cv2", args.compare_frames))
    if args.pipeline_frames:
        runs.append(_spawn(args, "pipeline", args.pipeline_frames))
    if not runs:
        raise SystemExit("nothing to run: every frame count is 0")
    for r in runs:
        r["slope_mib_per_100k"] = slope_mib_per_100k(r["rss_mib"], args.warmup)
    print(header)
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(_table(runs, args.warmup))
    if args.json:
        print(json.dumps({"header": header, "warmup": args.warmup, "runs": runs}))
    return 0


def fps(args: argparse.Namespace) -> int:
    print(_header())
    with tempfile.TemporaryDirectory(prefix="bench_watch_") as tmp:
        out = Path(tmp)
        models = build_models(args.clip, args.min_face)
        run_pipeline(args.clip, out, models, every=5, frames=60, sample=0)  # warm-up
        for every in (int(x) for x in args.every_list.split(",")):
            res = run_pipeline(args.clip, out, models, every=every, frames=None, sample=0)
            print(
                f"every={every}: {res['frames']} frames in {res['seconds']} s = {res['frames_per_s']} fps; "
                f"writer draw {res['draw_ms']} + encode {res['encode_ms']} ms/frame (own thread); "
                f"stage ms/frame {res['mean_ms']}"
            )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    common.add_argument("--min-face", type=float, default=40.0, help="MTCNN min_face_px [40, as facesense watch]")
    mem = sub.add_parser("memory", parents=[common], help="RSS over a long looped run (default)")
    mem.add_argument("--frames", type=int, default=200_000, help="frames of the sink-only run (0: skip) [200000]")
    mem.add_argument("--compare-frames", type=int, default=60_000, help="frames of the cv2.VideoWriter run (0: skip)")
    mem.add_argument("--pipeline-frames", type=int, default=0, help="frames of the full-pipeline run (0: skip)")
    mem.add_argument("--every", type=int, default=5, help="detection period of the pipeline run [5]")
    mem.add_argument("--sample", type=int, default=10_000, help="RSS sample period, frames [10000]")
    mem.add_argument("--warmup", type=int, default=20_000, help="frames before the slope is fitted [20000]")
    mem.add_argument("--json", action="store_true", help="also print one JSON object")
    f = sub.add_parser("fps", parents=[common], help="end-to-end FPS on the clip")
    f.add_argument("--every", dest="every_list", default="1,5", help="comma-separated detection periods [1,5]")
    ch = sub.add_parser("_child", parents=[common])
    ch.add_argument("--mode", choices=["sink", "cv2", "pipeline"], required=True)
    ch.add_argument("--frames", type=int, required=True)
    ch.add_argument("--sample", type=int, required=True)
    ch.add_argument("--every", type=int, default=5)
    argv = sys.argv[1:] or ["memory"]
    if argv[0] not in ("memory", "fps", "_child", "-h", "--help"):
        argv = ["memory", *argv]
    args = parser.parse_args(argv)
    if not args.clip.is_file():
        parser.error(f"{args.clip}: no such file")
    if args.command == "_child":
        return child(args)
    return fps(args) if args.command == "fps" else memory(args)


if __name__ == "__main__":
    sys.exit(main())
