"""How sharp real faces are, and what blur does to them and to their embeddings.

    python benchmarks/enroll_sharpness.py [--images ../shared/data/lfw] [--faces 600]

For a random sample of images (the central face of each), prints the distribution of
:func:`facesense.enroll.sharpness` as is and after Gaussian blur of sigma 1, 2 and 3 px
(at the 112 px scale sharpness is measured at), and how far blur moves the FaceNet
embedding. This is the measurement behind ``facesense.enroll.DEFAULT_MIN_SHARPNESS``.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np


def main() -> None:
    import cv2

    from facesense.analyzer import FaceAnalyzer
    from facesense.eval.lfw import select_central_face
    from facesense.imageio import iter_image_paths, load_image
    from facesense.quality import SHARPNESS_SIZE_PX, sharpness

    default = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lfw"
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=default)
    parser.add_argument("--faces", type=int, default=600)
    parser.add_argument("--embed", type=int, default=150, help="faces to embed for the embedding shift")
    args = parser.parse_args()

    warnings.filterwarnings("ignore", message=".*imghdr.*", category=DeprecationWarning)
    paths = list(iter_image_paths([args.images]))
    rng = np.random.default_rng(0)
    pick = rng.choice(len(paths), min(args.faces, len(paths)), replace=False)
    analyzer = FaceAnalyzer()
    sigmas = (0, 1, 2, 3)
    sharp: dict[int, list[float]] = {s: [] for s in sigmas}
    shift: dict[int, list[float]] = {s: [] for s in sigmas[1:]}
    for n, i in enumerate(pick):
        image = load_image(paths[i])
        faces = analyzer.detect(image)
        j = select_central_face(faces, (image.shape[1], image.shape[0]))
        if j is None:
            continue
        face = faces[[j]]
        box = face.xyxy[0]
        scale = float(box[2] - box[0]) / SHARPNESS_SIZE_PX
        base = analyzer.embed(image, face).embeddings if n < args.embed else None
        for s in sigmas:
            blurred = image if s == 0 else cv2.GaussianBlur(image, (0, 0), s * scale)
            sharp[s].append(sharpness(blurred, box))
            if s and base is not None:
                moved = analyzer.embed(blurred, face).embeddings
                shift[s].append(float(np.linalg.norm(moved[0] - base[0])))  # type: ignore[index]
    print(f"{len(sharp[0])} faces from {args.images}")
    print(f"{'blur sigma':>10} {'p1':>7} {'p5':>7} {'median':>7} {'p95':>7} {'embedding shift (median)':>25}")
    for s in sigmas:
        q = np.quantile(sharp[s], [0.01, 0.05, 0.5, 0.95])
        moved = f"{np.median(shift[s]):.3f}" if s else "0"
        print(f"{s:>10} {q[0]:7.1f} {q[1]:7.1f} {q[2]:7.1f} {q[3]:7.1f} {moved:>25}")


if __name__ == "__main__":
    main()
