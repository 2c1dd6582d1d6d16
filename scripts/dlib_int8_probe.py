"""Does INT8 pay for dlib's ResNet, the default fusion's larger part? (issue 15: "INT8 where it keeps accuracy")

Quantises the cached FP32 conversion of dlib's ResNet statically (QDQ) with ONNX Runtime,
the recipe FaceNet's INT8 uses (:data:`facesense.models.facenet_int8.QUANT_OPTIONS`-like:
uint8 activations, int8 per-channel 7-bit weights, so AVX2 kernels cannot saturate),
activation ranges from chips of WIDER FACE faces (not LFW), then prints, on this CPU,
ms per face in batches of 17 for FP32 and INT8, and the INT8 embeddings' cosine to FP32
on LFW chips. An experiment: nothing here is used by facesense.

    python scripts/dlib_int8_probe.py [--faces 200] [--calibration 120]

Measured 2026-12-03 (`AMD EPYC, 2 cores, x86_64, AVX2 yes, AVX-512 no, VNNI no`,
onnxruntime 1.32.0, quiet): 1 thread FP32 6.04 ms/face, INT8 3.81 (1.59x); 2 threads
3.13 / 2.07 (1.51x); cosine to FP32 on 200 LFW faces min 0.9978, mean 0.9990. On
`... AVX-512 yes, VNNI yes` (2026-12-07, quiet): 1 thread 4.95 / 1.96 (2.52x), 2 threads
2.70 / 1.62 (1.67x), the same cosines. Not
adopted yet: it changes dlib's (and the default fusion's) model id, so every gallery
would need `reembed`, and it needs FaceNet INT8's per-CPU verdict and an LFW run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from facesense.cpu import cpu_info
from facesense.detect import make_detector
from facesense.embed.dlib import DlibResNetEmbedder
from facesense.imageio import load_image
from facesense.models.dlib_onnx import INPUT_NAME, OUTPUT_NAME
from facesense.models.runtime import create_session


def chips_of(embedder: DlibResNetEmbedder, paths: list[Path], limit: int, largest_only: bool) -> np.ndarray:
    detector = make_detector(verify=False)
    out = []
    for path in paths:
        image = load_image(path)
        faces = detector.detect(image)
        faces = faces[faces.size_px >= 40]
        if len(faces) == 0:
            continue
        if largest_only:
            faces = faces[[int(np.argmax(faces.size_px))]]
        out.extend(embedder.chips(image, faces))
        if len(out) >= limit:
            break
    return np.stack(out[:limit])


def run(path: Path, blob: np.ndarray, threads: int, batch: int = 17) -> tuple[np.ndarray, float]:
    session = create_session(path, threads=threads, name=path.name)
    session.run([OUTPUT_NAME], {INPUT_NAME: blob[:batch]})
    best = float("inf")
    out = blob[:0]
    for _ in range(3):
        start = time.perf_counter()
        out = np.concatenate([session.run([OUTPUT_NAME], {INPUT_NAME: blob[i : i + batch]})[0] for i in range(0, len(blob), batch)])
        best = min(best, (time.perf_counter() - start) * 1e3 / len(blob))
    return out / np.linalg.norm(out, axis=1, keepdims=True), best


def main() -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=200)
    parser.add_argument("--calibration", type=int, default=120)
    args = parser.parse_args()
    data = Path(os.environ.get("FACESENSE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    print(cpu_info().describe())
    embedder = DlibResNetEmbedder()
    fp32 = embedder.onnx_path()
    wider = sorted((data / "wider_face_val_subset" / "images").rglob("*.jpg"))
    lfw = sorted((data / "lfw").glob("*/*.jpg"))[:: 7]
    calib = embedder.blob(chips_of(embedder, wider, args.calibration, largest_only=False))
    test = embedder.blob(chips_of(embedder, lfw, args.faces, largest_only=True))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{INPUT_NAME: calib[i : i + 1]} for i in range(len(calib))])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp:
        pre, int8 = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre), str(int8), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, per_channel=True, reduce_range=True, op_types_to_quantize=["Conv"],
        )  # fmt: skip
        for threads in (1, 2):
            ref, fp32_ms = run(fp32, test, threads)
            q, int8_ms = run(int8, test, threads)
            cos = np.sum(ref * q, axis=1)
            print(
                f"threads {threads}: FP32 {fp32_ms:.2f} ms/face, INT8 {int8_ms:.2f} ({fp32_ms / int8_ms:.2f}x); "
                f"cosine to FP32 on {len(cos)} LFW faces: min {cos.min():.4f}, 1st pct {np.percentile(cos, 1):.4f}, mean {cos.mean():.4f}"
            )


if __name__ == "__main__":
    main()
