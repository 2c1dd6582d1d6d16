"""Matching speed against a large synthetic gallery.

    python benchmarks/bench_match.py [--people 10000] [--samples 3] [--dim 640]

Builds a gallery of random identities (``--samples`` noisy copies of a random unit
vector each), fits each matcher, and reports fit time and milliseconds per face for
one face at a time (a camera frame) and for a batch of 16 faces. Numbers depend on
the machine and on what else runs on it; BLAS threads follow OMP_NUM_THREADS.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from facesense.cpu import cpu_info
from facesense.match import CALIBRATIONS, FUSION_MODEL_ID, make_matcher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--dim", type=int, default=640, help="640: the default fused embedder; 512: FaceNet alone")
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--svm-people", type=int, default=500, help="SVM gallery size (fitting is slow); 0 skips")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(args.people, args.dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    model = FUSION_MODEL_ID if args.dim == 640 else "facenet-20180408-102900/fixed"
    # genuine faces land at ~0.7x the model's raw threshold from their centre (0.6 for FaceNet)
    noise = 0.7 * CALIBRATIONS[model].raw_threshold / np.sqrt(args.dim)
    gallery = np.repeat(centres, args.samples, axis=0) + noise * rng.normal(size=(args.people * args.samples, args.dim)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    labels = [f"person{i:05d}" for i in range(args.people) for _ in range(args.samples)]
    pick = rng.choice(args.people, args.probes // 2, replace=False)
    probes = np.concatenate([centres[pick] + noise * rng.normal(size=(len(pick), args.dim)), rng.normal(size=(args.probes - len(pick), args.dim))]).astype(np.float32)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)

    candidates = [
        ("knn (default: normalised)", make_matcher("knn", model_id=model), args.people),
        ("knn (raw distance)", make_matcher("knn", model_id=model, normalize=False), args.people),
        ("mean (normalised)", make_matcher("mean", model_id=model), args.people),
    ]
    if args.svm_people:
        candidates.append(("svm (normalised)", make_matcher("svm", model_id=model), args.svm_people))
    print(f"CPU: {cpu_info().describe()}")
    print(f"gallery: {args.people} people x {args.samples} samples, {args.dim}-d; {args.probes} probes (half strangers)")
    print(f"{'matcher':28s} {'people':>7s} {'fit s':>7s} {'1 face ms':>10s} {'16 faces ms/face':>17s} {'right':>6s}")
    for name, matcher, people in candidates:
        n = people * args.samples
        t0 = time.perf_counter()
        matcher.fit(gallery[:n], labels[:n])
        fit_s = time.perf_counter() - t0
        known = pick < people
        q = probes[: len(pick)][known]
        singles = []
        for row in probes[:50]:
            t = time.perf_counter()
            matcher.match(row[None])
            singles.append(time.perf_counter() - t)
        t = time.perf_counter()
        for start in range(0, len(probes), 16):
            matcher.match(probes[start : start + 16])
        batch_ms = (time.perf_counter() - t) * 1000 / len(probes)
        result = matcher.match(q)
        right = np.mean([r == f"person{i:05d}" for r, i in zip(result.names, pick[known], strict=True)]) if len(q) else float("nan")
        print(f"{name:28s} {people:7d} {fit_s:7.2f} {1000 * float(np.median(singles)):10.2f} {batch_ms:17.2f} {right:6.2f}")


if __name__ == "__main__":
    main()
