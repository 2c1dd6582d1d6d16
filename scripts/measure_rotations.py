"""Recall per angle and cost per video frame of RotatingDetector against its inner detector.

    python scripts/measure_rotations.py --detector mtcnn --limit 200 --threads 1
    python scripts/measure_rotations.py --detector yunet --clip-only

Prints JSON lines to stdout: one per (variant, angle) and one per timing variant.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from facesense.detect import make_detector
from facesense.detect.rotate import RotatingDetector
from facesense.eval.rotated import evaluate_rotated

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _frames(limit: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(DATA / "face_recognition_examples" / "short_hamilton_clip.mp4"))
    frames = []
    while len(frames) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(frame, (640, 360), interpolation=cv2.INTER_AREA))
    cap.release()
    return frames


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--detector", default="mtcnn")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--angle-sets", default="0,90,-90,180;0,45,-45,90,-90,180")
    parser.add_argument("--clip-only", action="store_true")
    parser.add_argument("--recall-only", action="store_true")
    parser.add_argument("--rotated-min-score", type=float, default=None)
    parser.add_argument("--no-inner", action="store_true", help="skip the inner detector's recall run")
    args = parser.parse_args()
    sets = [tuple(float(a) for a in s.split(",")) for s in args.angle_sets.split(";")]
    if not args.clip_only:
        inner = make_detector(args.detector, use="image", threads=args.threads)
        variants = [] if args.no_inner else [("inner", inner)]
        variants += [
            (f"rot{list(s)}", RotatingDetector(inner, angles=s, rotated_min_score=args.rotated_min_score)) for s in sets
        ]
        for name, det in variants:
            report = evaluate_rotated(det, DATA / "lfw", limit=args.limit)
            for a in report.angles:
                print(json.dumps({"detector": args.detector, "variant": name, **a.to_dict()}), flush=True)
    if not args.recall_only:
        inner = make_detector(args.detector, use="video", threads=args.threads)
        frames = _frames(args.frames)
        variants = [("inner", inner)]
        variants += [
            (f"rot{list(s)}", RotatingDetector(inner, angles=s, rotated_min_score=args.rotated_min_score)) for s in sets
        ]
        variants += [
            (
                f"rot{list(sets[0])} every_n=5",
                RotatingDetector(inner, angles=sets[0], every_n=5, rotated_min_score=args.rotated_min_score),
            )
        ]
        inner.detect(frames[0])
        for name, det in variants:
            times, counts = [], []
            for frame in frames:
                start = time.perf_counter()
                faces = det.detect(frame)
                times.append((time.perf_counter() - start) * 1000.0)
                counts.append(len(faces))
            print(
                json.dumps(
                    {
                        "detector": args.detector,
                        "variant": name,
                        "threads": args.threads,
                        "frames": len(frames),
                        "ms_mean": float(np.mean(times)),
                        "ms_median": float(np.median(times)),
                        "faces_mean": float(np.mean(counts)),
                    }
                ),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
