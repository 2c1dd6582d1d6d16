"""Compute the INT8 activation ranges of the FaceNet ONNX model from real faces.

The ranges ship in ``src/facesense/models/data/facenet_int8_ranges.json``; at first use
facesense quantises the FP32 model with them (no images needed at run time).

    python scripts/calibrate_int8.py --wider ../shared/data/wider_face_val_subset/images [--images 80]

Faces: MTCNN detections of at least 40 px in the first N WIDER FACE validation images,
cropped exactly as the embedder crops them.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np

from facesense.align import crop_faces
from facesense.detect.mtcnn import MTCNNDetector
from facesense.embed.facenet import preprocess_crops
from facesense.imageio import load_image
from facesense.models.facenet_int8 import RANGES_FILE, quantize_facenet
from facesense.models.facenet_onnx import facenet_onnx_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wider", type=Path, default=Path("../shared/data/wider_face_val_subset/images"))
    ap.add_argument("--images", type=int, default=80)
    ap.add_argument("--out", type=Path, default=RANGES_FILE)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    detector = MTCNNDetector()
    crops = []
    for path in sorted(args.wider.rglob("*.jpg"))[: args.images]:
        image = load_image(path)
        faces = detector.detect(image)
        faces = faces[faces.size_px >= 40]
        if len(faces):
            crops.append(crop_faces(image, faces))
    batch = preprocess_crops(np.concatenate(crops))
    logging.info("calibrating on %d faces", len(batch))
    args.out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        quantize_facenet(facenet_onnx_path(), Path(tmp) / "int8.onnx", ranges=args.out, calibration=batch)
    logging.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
