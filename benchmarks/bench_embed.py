"""Benchmark FaceNet embeddings: ONNX Runtime vs OpenCV DNN.

Prints conversion time, backend agreement on real LFW crops, and the median ms per face
for ONNX Runtime at several batch sizes and for OpenCV DNN (one face at a time), each
single-threaded and with the default thread count. ``--explore`` adds ONNX Runtime
graph-optimisation levels, and the model without its residual scales folded into the
convolutions.

    python benchmarks/bench_embed.py [--repeats 15] [--batches 1,8,16,32] [--explore]

Timings use ``time.perf_counter`` and report medians; close other CPU-heavy programs
first (the load average is printed so noisy runs can be recognised).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from facesense.cpu import cpu_info
from facesense.embed import FaceNetEmbedder, preprocess_crops
from facesense.models import facenet_onnx, registry
from facesense.models.runtime import default_threads

CENTRE = slice(45, 205)  # a 160 px square from the middle of a 250x250 LFW image


def load_crops(count: int) -> np.ndarray:
    """``count`` real LFW centre crops (BGR), or noise when the data is absent."""
    import cv2

    root = Path(
        os.environ.get("FACESENSE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
    )
    files = sorted((root / "lfw").glob("*/*.jpg"))[:count]
    crops = [img[CENTRE, CENTRE] for img in (cv2.imread(str(f)) for f in files) if img is not None]
    if len(crops) < count:
        print(f"(only {len(crops)} LFW images under {root}; padding with noise)")
        rng = np.random.default_rng(0)
        crops += list(rng.integers(0, 256, (count - len(crops), 160, 160, 3), dtype=np.uint8))
    return np.stack(crops)


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall-clock milliseconds of ``fn()``."""
    return timed(fn, repeats, warmup)[0]


def timed(fn: Callable[[], object], repeats: int, warmup: int = 2) -> tuple[float, float]:
    """Median wall-clock and median process CPU milliseconds of ``fn()``.

    CPU time (summed over threads) is less disturbed by other programs than wall time,
    so it shows the compute cost even on a busy machine.
    """
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall) * 1e3, statistics.median(cpu) * 1e3


def measure_conversion(pb: Path) -> tuple[float, float]:
    """Seconds to translate the graph, and for the whole first-use path (verify + write)."""
    start = time.perf_counter()
    facenet_onnx.convert_facenet(pb)
    translate = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        old = os.environ.get(registry.CACHE_ENV)
        os.environ[registry.CACHE_ENV] = tmp
        try:
            start = time.perf_counter()
            facenet_onnx.facenet_onnx_path(pb)
            total = time.perf_counter() - start
        finally:
            if old is None:
                del os.environ[registry.CACHE_ENV]
            else:
                os.environ[registry.CACHE_ENV] = old
    return translate, total


def convert_without_scale_folding(pb: Path) -> bytes:
    """The conversion with the residual-scale folding switched off (for comparison)."""
    from unittest import mock

    with mock.patch.object(facenet_onnx._Converter, "_fold_conv_scales", lambda self: None):
        return facenet_onnx.convert_facenet(pb)


def explore(onnx_path: Path, pb: Path, blob: np.ndarray, repeats: int) -> None:
    import onnxruntime as ort

    levels = {
        "disable_all": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    variants = {
        "converted": onnx_path.read_bytes(),
        "scales unfolded": convert_without_scale_folding(pb),
    }
    print("\nONNX Runtime graph optimisation, 1 thread: ms/face wall (cpu)")
    print(f"{'model':<17}{'level':<13}{'batch 1':>15}{'batch 16':>15}{'max |diff|':>12}")
    reference = None
    for variant, data in variants.items():
        for level_name, level in levels.items():
            opts = ort.SessionOptions()
            opts.graph_optimization_level = level
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            session = ort.InferenceSession(
                data, sess_options=opts, providers=["CPUExecutionProvider"]
            )
            cells = []
            for batch in (1, 16):
                x = blob[:batch]
                wall, cpu = timed(lambda x=x, s=session: s.run(None, {"input": x}), repeats)
                cells.append(f"{wall / batch:.1f} ({cpu / batch:.1f})")
            out = session.run(None, {"input": blob[:16]})[0]
            reference = out if reference is None else reference
            diff = float(np.abs(out - reference).max())
            print(f"{variant:<17}{level_name:<13}{cells[0]:>15}{cells[1]:>15}{diff:>12.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per cell (median)")
    parser.add_argument("--batches", default="1,8,16,32", help="ONNX Runtime batch sizes")
    parser.add_argument("--explore", action="store_true", help="also try optimisation levels")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    import cv2
    import onnxruntime

    n_default = default_threads()
    print(f"CPU: {cpu_info().describe()}")
    print(
        f"onnxruntime {onnxruntime.__version__}, OpenCV {cv2.__version__}, "
        f"{n_default} default threads, load average {os.getloadavg()[0]:.1f}"
    )
    pb = registry.packaged_file("facenet_pb")
    translate_s, total_s = measure_conversion(pb)
    print(
        f"conversion: translate {translate_s:.2f} s; "
        f"first use incl. sha256 + verify + write {total_s:.2f} s"
    )

    crops = load_crops(max(batches))
    ort_embedders = {
        t: FaceNetEmbedder(backend="onnxruntime", threads=t, batch_size=max(batches))
        for t in (1, n_default)
    }
    cv_embedder = FaceNetEmbedder(backend="opencv")
    for e in (*ort_embedders.values(), cv_embedder):
        e.load()

    a = ort_embedders[n_default].embed_crops(crops)
    b = cv_embedder.embed_crops(crops)
    cosine = np.sum(a * b, axis=1)
    print(
        f"ORT vs OpenCV on {len(crops)} LFW crops: max |diff| {np.abs(a - b).max():.2e}, "
        f"min cosine {cosine.min():.7f}, "
        f"max | |e|-1 | {np.abs(np.linalg.norm(a, axis=1) - 1).max():.1e}"
    )

    print(f"\n{'backend':<13}{'threads':>8}{'batch':>7}{'ms/face':>10}{'cpu ms/face':>13}")
    for threads, embedder in ort_embedders.items():
        for batch in batches:
            x = crops[:batch]
            wall, cpu = timed(lambda x=x, e=embedder: e.embed_crops(x), args.repeats)
            print(
                f"{'onnxruntime':<13}{threads:>8}{batch:>7}{wall / batch:>10.1f}{cpu / batch:>13.1f}"
            )
    for threads in (1, n_default):
        cv2.setNumThreads(threads)
        x = crops[:1]
        wall, cpu = timed(lambda x=x: cv_embedder.embed_crops(x), args.repeats)
        print(f"{'opencv':<13}{threads:>8}{1:>7}{wall:>10.1f}{cpu:>13.1f}")
    x = crops[:16]
    pre_ms = median_ms(lambda: preprocess_crops(x), args.repeats) / len(x)
    print(f"(preprocessing alone: {pre_ms:.2f} ms/face, included above)")

    if args.explore:
        path = facenet_onnx.facenet_onnx_path(pb)
        explore(path, pb, preprocess_crops(crops), args.repeats)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
