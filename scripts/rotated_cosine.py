"""How close a turned face's embedding stays to the upright one, with and without refinement.

    python scripts/rotated_cosine.py --limit 40
    python scripts/rotated_cosine.py --limit 100 --angles 30,-45,45,60,-60,90

For each of ``--limit`` LFW images (a seeded sample) the face nearest the centre is
embedded upright with the default embedder, then every image is turned by each angle and
searched with ``make_detector(rotations=True)`` (refinement on) and the same detector
with ``refine=False`` and the spread rule off (``SPREAD_FRACTION`` 0: the behaviour before
both). Prints, per variant and angle: the median and 10th percentile of the cosine of the
turned face's fused embedding to the upright one, and how many faces fell under 0.8 (a
face not found counts as 0).
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np

from facesense.detect import make_detector
from facesense.detect import rotate as rotate_module
from facesense.embed import make_embedder
from facesense.geometry import rotate_image
from facesense.imageio import load_image
from facesense.types import Faces

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _central(faces: Faces, shape: tuple[int, ...]) -> int:
    centres = (faces.xyxy[:, :2] + faces.xyxy[:, 2:]) / 2
    return int(np.argmin(np.linalg.norm(centres - np.array(shape[1::-1]) / 2, axis=1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw", type=Path, default=DATA / "lfw")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--angles", default="30,-45,45,60,-60,90")
    args = parser.parse_args()
    angles = [float(a) for a in args.angles.split(",")]
    files = sorted(args.lfw.glob("*/*.jpg"))
    random.Random(args.seed).shuffle(files)
    embedder = make_embedder()
    upright = make_detector("mtcnn", use="image")
    refined = make_detector("mtcnn", use="image", rotations=True)
    plain = make_detector("mtcnn", use="image", rotations=True)
    plain.refine = False  # type: ignore[attr-defined]
    cosines: dict[str, dict[float, list[float]]] = {"refined": {a: [] for a in angles}, "before": {a: [] for a in angles}}
    for path in files[: args.limit]:
        image = load_image(path)
        faces = upright.detect(image)
        if len(faces) == 0:
            continue
        reference = embedder.embed(image, faces[[_central(faces, image.shape)]]).embeddings[0]
        for angle in angles:
            turned, _ = rotate_image(image, angle)
            for name, detector in (("refined", refined), ("before", plain)):
                spread = rotate_module.SPREAD_FRACTION
                rotate_module.SPREAD_FRACTION = spread if name == "refined" else 0.0
                try:
                    found = detector.detect(turned)
                finally:
                    rotate_module.SPREAD_FRACTION = spread
                if len(found) == 0:
                    cosines[name][angle].append(0.0)
                    continue
                face = found[[_central(found, turned.shape)]]
                cosines[name][angle].append(float(embedder.embed(turned, face).embeddings[0] @ reference))
    for name, per_angle in cosines.items():
        for angle, values in per_angle.items():
            v = np.asarray(values)
            print(
                f"{name:8s} {angle:6.0f}  median {np.median(v):.3f}  p10 {np.percentile(v, 10):.3f}"
                f"  under 0.8: {int((v < 0.8).sum())} of {v.size}"
            )


if __name__ == "__main__":
    main()
