"""Build and measure the data behind INT8 FaceNet (:mod:`facesense.models.facenet_int8`).

Two commands; the first writes the file that ships in ``src/facesense/models/data/``:

    # activation ranges, from MTCNN faces (>= 40 px) in the first N WIDER FACE val images
    python scripts/calibrate_int8.py ranges --wider ../shared/data/wider_face_val_subset/images [--images 80]

    # INT8 vs FP32 on LFW faces: cosine and ms/face; --save/--compare for other CPUs
    python scripts/calibrate_int8.py measure --lfw ../shared/data/lfw --faces 200 --save native.npz
    qemu-x86_64 -cpu Haswell .venv/bin/python scripts/calibrate_int8.py measure \\
        --lfw ../shared/data/lfw --faces 20 --compare native.npz

``measure`` builds the INT8 model in the cache if needed and then runs the file itself,
without the per-CPU verdict (so it also tells the truth under an emulated CPU, whose
``/proc/cpuinfo`` is the host's). With ``--compare`` it embeds the saved run's crops
(no detection), takes FP32 from the saved run instead of running it (FP32 is slow under
emulation) and prints how far this CPU's INT8 embeddings are from the saved ones.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from facesense.align import crop_faces
from facesense.cpu import cpu_info
from facesense.detect import make_detector
from facesense.embed.facenet import FaceNetEmbedder, preprocess_crops
from facesense.eval.lfw import select_central_face
from facesense.imageio import load_image
from facesense.models import facenet_int8
from facesense.models.facenet_onnx import INPUT_NAME, OUTPUT_NAME, facenet_onnx_path
from facesense.models.runtime import create_session

logger = logging.getLogger("calibrate_int8")

# Faces of at least this many pixels go into the check set (smaller ones are upscaled blur).
CHECK_MIN_FACE_PX = 60


def _ranges(args: argparse.Namespace) -> None:
    detector = make_detector()
    crop = FaceNetEmbedder().crop
    crops = []
    for path in sorted(args.wider.rglob("*.jpg"))[: args.images]:
        image = load_image(path)
        faces = detector.detect(image)
        faces = faces[faces.size_px >= 40]
        if len(faces):
            crops.append(crop_faces(image, faces, crop))
    batch = preprocess_crops(np.concatenate(crops))
    logger.info("calibrating on %d faces", len(batch))
    args.out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        facenet_int8.quantize_facenet(facenet_onnx_path(), Path(tmp) / "int8.onnx", ranges=args.out, calibration=batch)
    logger.info("wrote %s", args.out)


def _lfw_faces(root: Path, count: int) -> npt.NDArray[np.uint8]:
    """The central face of the first image of ``count`` people spread over LFW, cut as the embedder cuts."""
    detector = make_detector()
    crop = FaceNetEmbedder().crop
    people = sorted(p for p in root.iterdir() if p.is_dir())
    crops = []
    for person in people[:: max(1, len(people) // count)]:
        image = load_image(sorted(person.glob("*.jpg"))[0])
        faces = detector.detect(image)
        idx = select_central_face(faces, (image.shape[1], image.shape[0]))
        if idx is not None:
            crops.append(crop_faces(image, faces[[idx]], crop)[0])
        if len(crops) == count:
            break
    return np.stack(crops)


def _run(
    path: Path, blob: npt.NDArray[np.float32], batch: int, *, passes: int = 3
) -> tuple[npt.NDArray[np.float32], float]:
    """Unit embeddings of ``blob`` and the best ms/face over ``passes`` timed passes (after a warm-up batch)."""
    session = create_session(path, name=path.name)
    session.run([OUTPUT_NAME], {INPUT_NAME: blob[:batch]})
    best = float("inf")
    for _ in range(passes):
        start = time.perf_counter()
        out = np.concatenate(
            [session.run([OUTPUT_NAME], {INPUT_NAME: blob[i : i + batch]})[0] for i in range(0, len(blob), batch)]
        )
        best = min(best, (time.perf_counter() - start) * 1e3 / len(blob))
    return out / np.linalg.norm(out, axis=1, keepdims=True), best


def _measure(args: argparse.Namespace) -> None:
    logger.info("CPU: %s", cpu_info().describe())
    # numpy asks CPUID itself; under qemu-user /proc/cpuinfo (above) is the host's.
    features = np._core._multiarray_umath.__cpu_features__  # type: ignore[attr-defined]
    logger.info(
        "CPUID here: %s",
        ", ".join(f"{k} {'yes' if features.get(k) else 'no'}" for k in ("AVX2", "AVX512F", "AVX512VNNI")),
    )
    fp32_path = facenet_onnx_path()
    int8_path = facenet_int8.int8_model_path(fp32_path)
    if not int8_path.is_file():
        facenet_int8.facenet_int8(fp32_path)
    saved = np.load(args.compare) if args.compare is not None else None
    # The saved run's crops, so both CPUs embed the very same pixels (no detection here).
    crops = saved["crops"][: args.faces] if saved is not None else _lfw_faces(args.lfw, args.faces)
    blob = preprocess_crops(crops)
    int8, int8_ms = _run(int8_path, blob, args.batch, passes=1 if saved is not None else 3)
    if saved is not None:
        fp32 = saved["fp32"][: len(crops)]
        diff = np.abs(int8 - saved["int8"][: len(crops)]).max()
        logger.info("INT8 here vs INT8 in %s (%d faces): max abs diff %.3g", args.compare, len(crops), diff)
    else:
        fp32, fp32_ms = _run(fp32_path, blob, args.batch)
        logger.info(
            "ms/face, batches of %d: FP32 %.2f, INT8 %.2f (%.2fx)", args.batch, fp32_ms, int8_ms, fp32_ms / int8_ms
        )
    cos = np.sum(int8 * fp32, axis=1)
    logger.info(
        "INT8 vs FP32 cosine on %d LFW faces: min %.5f, 1st percentile %.5f, mean %.5f",
        len(cos),
        cos.min(),
        np.percentile(cos, 1),
        cos.mean(),
    )
    if args.save is not None:
        np.savez(args.save, crops=crops, int8=int8, fp32=fp32)
        logger.info("saved the crops and embeddings to %s", args.save)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    ranges = sub.add_parser("ranges", help="activation ranges from WIDER FACE faces")
    ranges.add_argument("--wider", type=Path, default=Path("../shared/data/wider_face_val_subset/images"))
    ranges.add_argument("--images", type=int, default=80)
    ranges.add_argument("--out", type=Path, default=facenet_int8.RANGES_FILE)
    ranges.set_defaults(run=_ranges)
    measure = sub.add_parser("measure", help="INT8 vs FP32 on LFW faces")
    measure.add_argument("--lfw", type=Path, default=Path("../shared/data/lfw"))
    measure.add_argument("--faces", type=int, default=200)
    measure.add_argument("--batch", type=int, default=16)
    measure.add_argument("--save", type=Path, default=None, help="write the crops and INT8/FP32 embeddings (.npz)")
    measure.add_argument(
        "--compare", type=Path, default=None, help="a --save file from another CPU: its crops are used"
    )
    measure.set_defaults(run=_measure)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.run(args)


if __name__ == "__main__":
    main()
