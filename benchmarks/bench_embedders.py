"""Embedding cost per face of every embedder kind, batched, timed in one interleaved run.

Builds a mosaic of LFW images (``--faces`` of them, 4 per row), detects every face once
with the default image detector, then times ``make_embedder(kind).embed(image, faces)``
(the object production runs: one call embeds all faces, in batches of 16) for each kind,
round-robin so that every kind sees the same machine load. Prints the median wall and
process-CPU milliseconds per face, each kind's ratio to the first (the default fusion
unless ``--kinds`` says otherwise), the converted model sizes, the CPU line and the
onnxruntime version (both decide which kernels run: the ratios differ between an AVX2
and an AVX-512 VNNI CPU, where INT8 FaceNet is relatively faster).

    python benchmarks/bench_embedders.py [--faces 16] [--repeats 15] [--kinds fusion,facenet+dlib+sface,...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from facesense.cpu import cpu_info
from facesense.detect import make_detector
from facesense.embed import EmbedderKind, make_embedder
from facesense.imageio import load_image


def mosaic(count: int) -> np.ndarray:
    root = Path(os.environ.get("FACESENSE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    files = sorted((root / "lfw").glob("*/*.jpg"))[:count]
    if len(files) < count:
        raise SystemExit(f"need {count} LFW images under {root}")
    tiles = [load_image(f) for f in files]
    rows = [np.concatenate(tiles[i : i + 4], axis=1) for i in range(0, count, 4)]
    return np.ascontiguousarray(np.concatenate(rows, axis=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=16, help="LFW images in the mosaic (a multiple of 4)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--kinds", default=",".join(k.value for k in EmbedderKind))
    args = parser.parse_args()
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    image = mosaic(args.faces)
    faces = make_detector(use="image").detect(image)
    embedders = {k: make_embedder(k) for k in kinds}
    for e in embedders.values():
        e.embed(image, faces)  # load, convert, warm up
        e.embed(image, faces)
    wall: dict[str, list[float]] = {k: [] for k in kinds}
    cpu: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(args.repeats):
        for k, e in embedders.items():
            w0, c0 = time.perf_counter(), time.process_time()
            e.embed(image, faces)
            wall[k].append((time.perf_counter() - w0) * 1000 / len(faces))
            cpu[k].append((time.process_time() - c0) * 1000 / len(faces))
    import onnxruntime

    print(cpu_info().describe())
    print(f"onnxruntime {onnxruntime.__version__}")
    print(f"load average {os.getloadavg()[0]:.2f}; {len(faces)} faces per call; median of {args.repeats}")
    base_w, base_c = statistics.median(wall[kinds[0]]), statistics.median(cpu[kinds[0]])
    print(f"{'embedder':<22} {'dim':>4} {'wall ms/face':>12} {'x':>5} {'cpu ms/face':>11} {'x':>5} {'merged':>6}")
    for k, e in embedders.items():
        w, c = statistics.median(wall[k]), statistics.median(cpu[k])
        print(
            f"{k:<22} {e.dim:>4} {w:12.2f} {w / base_w:5.2f} {c:11.2f} {c / base_c:5.2f} {getattr(e, 'merged', '-')!s:>6}"
        )
    sizes = {}
    for e in embedders.values():
        for p in getattr(e, "parts", (e,)):
            path = p.onnx_path() if hasattr(p, "onnx_path") else None
            if path is not None:
                sizes[p.model_id] = path.stat().st_size / 1e6
    for mid, mb in sizes.items():
        print(f"  {mid}: {mb:.1f} MB on disk")


if __name__ == "__main__":
    main()
