"""Benchmark the second embedder and the fusion: dlib's ResNet natively vs on ONNX Runtime.

Prints the conversion time, agreement with dlib on chips dlib cuts itself, and median
ms per face (wall and process CPU) for: dlib's own ``compute_face_descriptor`` (one
chip at a time, as face_recognition calls it), the converted model on ONNX Runtime
(batch 1 and 16), FaceNet INT8 alone, and the default fused embedder (crop + warp + both
models) on real faces. Each row runs ``--repeats`` calls in a block (ONNX Runtime
sessions keep their threads spinning after a call, so strict round-robin would time the
sessions' fight over the cores, not the models), and the blocks go round ``--rounds``
times so a noisy neighbour hits every row alike; the median over all calls is printed.

    python benchmarks/bench_dlib.py [--repeats 15]

Needs ``dlib`` (``pip install dlib-bin``) for the native row and the agreement check.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from facesense.cpu import cpu_info
from facesense.detect import make_detector
from facesense.embed import DlibResNetEmbedder, FaceNetEmbedder, make_embedder
from facesense.imageio import load_image
from facesense.models import dlib_onnx, registry
from facesense.types import Faces


def data_root() -> Path:
    return Path(os.environ.get("FACESENSE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def faces_from_lfw(count: int) -> list[tuple[np.ndarray, Faces]]:
    """The central face of the first ``count`` LFW images."""
    from facesense.eval.lfw import select_central_face

    det = make_detector()
    out = []
    for f in sorted((data_root() / "lfw").glob("*/*.jpg"))[: count * 2]:
        image = load_image(f)
        faces = det.detect(image)
        j = select_central_face(faces, (image.shape[1], image.shape[0]))
        if j is not None:
            out.append((image, faces[np.arange(len(faces)) == j]))
        if len(out) == count:
            break
    if not out:
        raise SystemExit(f"no LFW faces under {data_root()}; set FACESENSE_DATA")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="calls per block")
    parser.add_argument("--rounds", type=int, default=3, help="times every row's block runs")
    args = parser.parse_args()

    print(f"CPU: {cpu_info().describe()}")
    start = time.perf_counter()
    dlib_onnx.convert_dlib_resnet(registry.packaged_file("dlib_resnet"))
    print(f"load average {os.getloadavg()[0]:.1f}; dlib .dat -> ONNX translation {time.perf_counter() - start:.2f} s")

    samples = faces_from_lfw(16)
    ours = DlibResNetEmbedder()
    facenet = FaceNetEmbedder()
    fused = make_embedder()
    for e in (ours, facenet, fused):
        e.load()
    chips = np.concatenate([ours.chips(img, f) for img, f in samples])
    one_image, one_face = samples[0]

    rows: dict[str, tuple[Callable[[], object], int]] = {
        "dlib ResNet, ONNX Runtime, batch 1": (lambda: ours.embed_chips(chips[:1]), 1),
        "dlib ResNet, ONNX Runtime, batch 16": (lambda: ours.embed_chips(chips), len(chips)),
        "FaceNet INT8 (crop + model), 1 face": (lambda: facenet.embed(one_image, one_face), 1),
        "fusion: FaceNet + dlib (crop, warp, both), 1 face": (lambda: fused.embed(one_image, one_face), 1),
    }
    try:
        import dlib
        import face_recognition_models

        net = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())
        rgb_chip = np.ascontiguousarray(chips[0][:, :, ::-1])
        rows["dlib ResNet, dlib itself (compute_face_descriptor)"] = (lambda: net.compute_face_descriptor(rgb_chip), 1)
        ref = np.array([np.array(net.compute_face_descriptor(np.ascontiguousarray(c[:, :, ::-1]))) for c in chips])
        ref /= np.linalg.norm(ref, axis=1, keepdims=True)
        diff = np.abs(ours.embed_chips(chips) - ref).max()
        print(f"ONNX vs dlib on {len(chips)} chips: max |diff| {diff:.1e}")
    except ImportError:
        print("(dlib not installed: no native row)")

    wall: dict[str, list[float]] = {k: [] for k in rows}
    cpu: dict[str, list[float]] = {k: [] for k in rows}
    for fn, _ in rows.values():
        fn()
        fn()
    for _ in range(args.rounds):
        for name, (fn, n) in rows.items():
            fn()  # the previous row's threads may still be spinning: not timed
            for _ in range(args.repeats):
                c0, w0 = time.process_time(), time.perf_counter()
                fn()
                wall[name].append((time.perf_counter() - w0) * 1e3 / n)
                cpu[name].append((time.process_time() - c0) * 1e3 / n)
    print(f"\n{'what':<55}{'ms/face':>9}{'cpu ms/face':>13}")
    for name in rows:
        print(f"{name:<55}{statistics.median(wall[name]):>9.2f}{statistics.median(cpu[name]):>13.2f}")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
