"""How many cameras one machine holds in real time.

    python benchmarks/bench_capacity.py [CLIP] [--fps 15] [--every 3] [--seconds 20]
                                        [--cameras 1,2,3,4,6] [--modes shared,processes,recipe]
                                        [--lockstep]

Every camera is the clip (640x360) played as a live camera would send it: at ``--fps``
frames per second, in a loop, the newest frame winning when processing falls behind
(``CaptureConfig(realtime=True)``). Detection runs every ``--every``-th frame and
recognition is on (a gallery of the person in the clip). Camera i of N starts i/N of the
way through the clip, as independent cameras see different moments; ``--lockstep``
starts them all at its first frame, the worst case, in which every camera sees the same
new faces in the same instant and asks for their embeddings together. Three ways to run
N cameras:

* ``shared``: one facesense process, :class:`facesense.multicam.MultiCamera`: one copy
  of each model, one inference thread, embeddings batched across cameras;
* ``processes``: one facesense process per camera, as running one ``facesense watch``
  per camera would (each loads its own models and sizes its own thread pools);
* ``recipe``: one process per camera running face_recognition's README recipe (HOG
  ``face_locations`` + ``face_encodings`` + distance to the known faces) every
  ``--every``-th frame, in dlib.

A run *holds in real time* when every camera processes at least 95% of the frames its
source sent (the rest were dropped). The table prints, per mode and camera count, the
worst camera's processed fps, the dropped share and the 90th-percentile lag (from a
frame's decoding to the end of its processing), then the largest count that held. Machines
differ and are shared: compare the modes of one run, not runs of different machines.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "face_recognition_examples" / "short_hamilton_clip.mp4"
ENROLL_FRAME = 150  # Lin-Manuel Miranda alone, facing the camera
HOLD_SHARE = 0.95
WARMUP_S = 4.0


@dataclass(frozen=True)
class Trial:
    mode: str
    cameras: int
    worst_fps: float
    dropped_share: float
    lag_ms: float
    holds: bool
    note: str = ""


# ------------------------------------------------------------------------ inputs


def retimed_frames(src: Path, fps: float) -> list[np.ndarray]:
    """The clip's frames re-timed to ``fps`` (frames dropped evenly)."""
    import cv2

    cap = cv2.VideoCapture(str(src))
    step, due, i = (cap.get(cv2.CAP_PROP_FPS) or 30.0) / fps, 0.0, 0
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if i >= due:
            frames.append(frame)
            due += step
        i += 1
    cap.release()
    if not frames:
        sys.exit(f"bench_capacity: no frames in {src}")
    return frames


def camera_clips(frames: list[np.ndarray], fps: float, n: int, out_dir: Path, *, lockstep: bool) -> list[Path]:
    """One MP4 per camera: camera i's starts i/n of the way through ``frames`` (then
    wraps), or at the first frame for every camera with ``lockstep``. Each start is
    written once and reused by later trials."""
    import cv2

    h, w = frames[0].shape[:2]
    paths = []
    for i in range(n):
        start = 0 if lockstep else round(i * len(frames) / n)
        path = out_dir / f"clip_{fps:g}fps_from{start}.mp4"
        if not path.exists():
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            for frame in frames[start:] + frames[:start]:
                writer.write(frame)
            writer.release()
        paths.append(path)
    return paths


def enroll_embedding(clip: Path) -> np.ndarray:
    """The fused embedding of the clip's person at :data:`ENROLL_FRAME`."""
    from facesense.capture import open_source
    from facesense.detect import make_detector
    from facesense.embed import make_embedder

    with open_source(clip) as source:
        frame = next(f for f in source if f.index == ENROLL_FRAME)
    faces = make_detector(use="video").detect(frame.image)
    biggest = faces[[int(np.argmax(faces.size_px))]]
    emb = make_embedder().embed(frame.image, biggest).embeddings
    assert emb is not None
    return np.asarray(emb, np.float32)


# ------------------------------------------------------------------------ runners (children)


def run_facesense(clips: list[Path], every: int, seconds: float, known: Path) -> dict[str, Any]:
    """One camera per clip in this process on shared models; per-camera counts over ``seconds``."""
    from facesense.capture import CaptureConfig
    from facesense.embed import make_embedder
    from facesense.match import KNNMatcher
    from facesense.multicam import CameraSpec, MultiCamera

    embedder = make_embedder()
    matcher = KNNMatcher(k=1).fit(np.load(known), ["lin"])
    specs = [CameraSpec(name=f"cam{i}", url=str(clip), every=every) for i, clip in enumerate(clips)]
    cams = MultiCamera(specs, embedder=embedder, matcher=matcher, capture=CaptureConfig(loop=True, realtime=True))
    lags: list[float] = []
    with cams:
        time.sleep(WARMUP_S)
        first = {s.name: s for s in cams.statuses()}
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            time.sleep(0.5)
            lags.extend(s.lag_ms for s in cams.statuses() if s.frames)
        elapsed = time.monotonic() - t0
        last = {s.name: s for s in cams.statuses()}
    per = [
        {
            "processed": last[n].frames - first[n].frames,
            "sent": last[n].received - first[n].received,
            "fps": (last[n].frames - first[n].frames) / elapsed,
            "failed": last[n].error,
        }
        for n in first
    ]
    return {"cameras": per, "lag_ms": float(np.percentile(lags, 90)) if lags else 0.0}


def run_recipe(clip: Path, every: int, seconds: float) -> dict[str, Any]:
    """face_recognition's recipe on one real-time camera; counts over ``seconds``."""
    import cv2
    import dlib
    import face_recognition_models as frm

    from facesense.capture import CaptureConfig, open_source

    hog = dlib.get_frontal_face_detector()
    shapes = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    encoder = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    known: list[np.ndarray] = []

    def step(image: np.ndarray, index: int) -> None:
        # The README recipe: face_locations (HOG, upsampled once), face_encodings, and
        # compare_faces against the known encodings, on every ``every``-th frame.
        if index % every:
            return
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        for rect in hog(rgb, 1):
            enc = np.asarray(encoder.compute_face_descriptor(rgb, shapes(rgb, rect), 1))
            if not known:
                known.append(enc)  # the first face seen is "the known person"
            _ = np.linalg.norm(np.asarray(known) - enc, axis=1) <= 0.6

    lags: list[float] = []
    source = open_source(clip, CaptureConfig(loop=True, realtime=True))
    try:
        frames = iter(source)
        warm_end = time.monotonic() + WARMUP_S
        for frame in frames:
            step(frame.image, frame.index)
            if time.monotonic() >= warm_end:
                break
        begin, processed, t0 = source.stats().frames, 0, time.monotonic()
        for frame in frames:
            started = time.perf_counter()
            step(frame.image, frame.index)
            processed += 1
            lags.append(source.stats().lag_ms + (time.perf_counter() - started) * 1e3)
            if time.monotonic() - t0 >= seconds:
                break
        elapsed = time.monotonic() - t0
        sent = source.stats().frames - begin
    finally:
        source.close()
    cams = [{"processed": processed, "sent": sent, "fps": processed / elapsed if elapsed else 0.0, "failed": None}]
    return {"cameras": cams, "lag_ms": float(np.percentile(lags, 90)) if lags else 0.0}


# ------------------------------------------------------------------------ the parent


def _child(mode: str, clips: list[Path], every: int, seconds: float, known: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, __file__, "--child", mode, str(clips[0]), "--every", str(every), "--seconds", str(seconds), "--known", str(known), "--child-clips", ",".join(map(str, clips))]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def trial(mode: str, clips: list[Path], every: int, seconds: float, known: Path) -> Trial:
    """One camera per clip."""
    n = len(clips)
    if mode == "shared":
        procs = [_child("shared", clips, every, seconds, known)]
    else:
        procs = [_child("single" if mode == "processes" else "recipe", [clip], every, seconds, known) for clip in clips]
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=seconds + 300)
        if p.returncode != 0:
            return Trial(mode, n, 0.0, 1.0, 0.0, False, note=f"child exited {p.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    cams = [c for r in results for c in r["cameras"]]
    worst = min(c["fps"] for c in cams)
    processed, sent = sum(c["processed"] for c in cams), sum(c["sent"] for c in cams)
    dropped = 1.0 - processed / sent if sent else 1.0
    holds = all(c["sent"] and c["processed"] >= HOLD_SHARE * c["sent"] for c in cams) and not any(c["failed"] for c in cams)
    lag = max(r["lag_ms"] for r in results)
    return Trial(mode, n, worst, max(0.0, dropped), lag, holds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip", nargs="?", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--fps", type=float, default=15.0, help="frame rate of each camera")
    parser.add_argument("--every", type=int, default=3, help="detect every N frames")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per trial (after a warm-up)")
    parser.add_argument("--cameras", default="1,2,3,4,6,8", help="camera counts to try (stops a mode after its first failure)")
    parser.add_argument("--modes", default="shared,processes,recipe")
    parser.add_argument("--json", type=Path, help="also write the trials here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--known", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-clips", help=argparse.SUPPRESS)
    parser.add_argument("--lockstep", action="store_true", help="start every camera at the clip's first frame (the worst case)")
    args = parser.parse_args()

    if args.child:
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        if args.child == "recipe":
            out = run_recipe(args.clip, args.every, args.seconds)
        else:
            clips = [Path(c) for c in args.child_clips.split(",")] if args.child_clips else [args.clip]
            out = run_facesense(clips, args.every, args.seconds, args.known)
        print(json.dumps(out))
        return

    from facesense.cpu import cpu_info

    if not args.clip.is_file():
        sys.exit(f"bench_capacity: no clip at {args.clip}")
    counts = sorted({int(c) for c in args.cameras.split(",") if c.strip()})
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in ("shared", "processes", "recipe")]
    if bad:
        sys.exit(f"bench_capacity: unknown mode(s) {', '.join(bad)} (shared, processes, recipe)")
    print(f"CPU: {cpu_info().describe()}")
    start = "every camera from the first frame (--lockstep)" if args.lockstep else "camera i of N from i/N of the way through"
    print(f"cameras: {args.clip.name} at {args.fps:g} fps, 640x360, {start}, detection every {args.every} frames, recognition on; {args.seconds:g} s per trial")
    trials: list[Trial] = []
    with tempfile.TemporaryDirectory(prefix="facesense-capacity-") as tmp:
        frames = retimed_frames(args.clip, args.fps)
        known = Path(tmp) / "known.npy"
        np.save(known, enroll_embedding(args.clip))
        print(f"{'mode':<10} {'cameras':>7} {'worst fps':>9} {'dropped':>8} {'lag p90':>9}  real time")
        for mode in modes:
            for n in counts:
                clips = camera_clips(frames, args.fps, n, Path(tmp), lockstep=args.lockstep)
                t = trial(mode, clips, args.every, args.seconds, known)
                trials.append(t)
                print(f"{t.mode:<10} {t.cameras:>7} {t.worst_fps:>9.1f} {100 * t.dropped_share:>7.1f}% {t.lag_ms:>7.0f} ms  {'yes' if t.holds else 'no'} {t.note}", flush=True)
                if not t.holds:
                    break
    best = {m: max((t.cameras for t in trials if t.mode == m and t.holds), default=0) for m in modes}
    print("held in real time: " + ", ".join(f"{m} {best[m]} camera(s)" for m in modes))
    if "shared" in best and best.get("recipe"):
        print(f"shared / recipe: {best['shared'] / best['recipe']:.1f}x the cameras")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_info().describe(), "trials": [t.__dict__ for t in trials], "best": best}, indent=2))


if __name__ == "__main__":
    main()
