"""Write FaceNet embeddings from OpenCV DNN's own TensorFlow importer, for the converter's test.

``tests/models/test_facenet_onnx.py`` checks that the ONNX conversion gives the embeddings
OpenCV DNN computes from the original frozen TensorFlow graph. OpenCV 5.1 removed that
importer (``cv2.dnn.readNetFromTensorflow``), so the reference is computed once with an
OpenCV that has it and kept as a small file of numbers (no images):

    pip download --no-deps -d /tmp/cv50 opencv-python-headless==5.0.0.93
    python -m zipfile -e /tmp/cv50/opencv_python_headless-5.0.0.93-*.whl /tmp/cv50/site
    PYTHONPATH=/tmp/cv50/site python scripts/facenet_opencv_reference.py ../shared/data/lfw

Each face is the 160 px centre of the first image of a person, fixed standardisation.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2
import numpy as np

from facesense.embed.facenet import preprocess_crops
from facesense.models import registry

PEOPLE = ["Andre_Agassi", "Bill_Gates", "Ben_Affleck", "Adrien_Brody", "Amelia_Vega", "Angela_Bassett"]
OUT = Path(__file__).resolve().parent.parent / "tests" / "models" / "data" / "facenet_opencv_tf_lfw.npz"
CENTRE = slice(45, 205)  # a 160 px square from the middle of a 250x250 LFW image

logger = logging.getLogger("facenet_opencv_reference")


def blob(lfw: Path, names: list[str]) -> np.ndarray:
    """FaceNet's input for LFW files named like ``Person/x.jpg``: 160 px centres, fixed standardisation."""
    crops = []
    for name in names:
        image = cv2.imread(str(lfw / name))
        if image is None:
            raise SystemExit(f"cannot read {lfw / name}")
        crops.append(image[CENTRE, CENTRE])
    return preprocess_crops(np.stack(crops), "fixed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lfw", type=Path, help="the LFW folder (one folder per person)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not hasattr(cv2.dnn, "readNetFromTensorflow"):
        raise SystemExit(f"OpenCV {cv2.__version__} has no TensorFlow importer: use 5.0 or older (see --help)")
    names = [sorted((args.lfw / person).glob("*.jpg"))[0].relative_to(args.lfw).as_posix() for person in PEOPLE]
    x = blob(args.lfw, names)
    net = cv2.dnn.readNetFromTensorflow(str(registry.packaged_file("facenet_pb")))
    rows = []
    for i in range(len(x)):
        net.setInput(x[i : i + 1])
        rows.append(net.forward().reshape(-1).copy())
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, names=np.array(names), embeddings=np.stack(rows).astype(np.float32), opencv=cv2.__version__)
    logger.info("wrote %s: %d faces, OpenCV %s", OUT, len(rows), cv2.__version__)


if __name__ == "__main__":
    main()
