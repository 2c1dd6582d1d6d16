"""Measure the two constants the FaceNet + dlib fusion depends on, on the WIDER FACE subset.

1. ``DLIB_CHIP_TEMPLATE_150`` (facesense.align): where MTCNN's five landmarks land in
   dlib's 150x150 face chip. For each face >= ``--min-face`` px, dlib's 5-point shape
   predictor (run on our MTCNN box) gives dlib's chip transform; our landmarks are mapped
   through it; the template is the median, made left-right symmetric.
2. ``IMPOSTOR_MEDIANS`` (facesense.embed.fusion): the median distance between the
   embeddings of faces from *different* images (almost always different people) for
   FaceNet and for dlib's ResNet.

Needs dlib (``pip install dlib-bin``); facesense itself does not.

    python scripts/fit_dlib_template.py --images ../shared/data/wider_face_val_subset/images
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import numpy as np

from facesense.align import DLIB_CHIP_TEMPLATE_150
from facesense.imageio import iter_image_paths, load_image


def chip_matrix(dlib, shape) -> np.ndarray:
    """The 2x3 image -> chip transform of ``dlib.get_face_chip(img, shape, 150, 0.25)``."""
    import cv2

    d = dlib.get_face_chip_details(shape, 150, 0.25)
    r, a = d.rect, d.angle
    cx, cy = (r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2

    def rot(x: float, y: float) -> tuple[float, float]:
        dx, dy = x - cx, y - cy
        return cx + dx * math.cos(a) - dy * math.sin(a), cy + dx * math.sin(a) + dy * math.cos(a)

    src = np.array([rot(r.left(), r.top()), rot(r.right(), r.top()), rot(r.right(), r.bottom())], np.float32)
    dst = np.array([[0, 0], [d.cols - 1, 0], [d.cols - 1, d.rows - 1]], np.float32)
    m, _ = cv2.estimateAffinePartial2D(src, dst)
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--min-face", type=float, default=80.0, help="faces used for the template")
    ap.add_argument("--min-face-medians", type=float, default=40.0, help="faces used for the impostor medians")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import dlib
    import face_recognition_models

    from facesense.detect import make_detector
    from facesense.embed.dlib import DlibResNetEmbedder
    from facesense.embed.facenet import FaceNetEmbedder

    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    detector = make_detector()
    facenet, dlib_net = FaceNetEmbedder(), DlibResNetEmbedder()
    points, emb_f, emb_d, image_of = [], [], [], []
    for n, path in enumerate(iter_image_paths([args.images])):
        image = load_image(path)
        faces = detector.detect(image)
        side = np.minimum(faces.xyxy[:, 2] - faces.xyxy[:, 0], faces.xyxy[:, 3] - faces.xyxy[:, 1])
        rgb = np.ascontiguousarray(image[:, :, ::-1])
        for box, lm, s in zip(faces.xyxy, faces.landmarks, side, strict=True):
            if s >= args.min_face:
                shape = predictor(rgb, dlib.rectangle(*(int(v) for v in box)))
                m = chip_matrix(dlib, shape)
                points.append(lm @ m[:, :2].T + m[:, 2])
        keep = faces[side >= args.min_face_medians]
        if len(keep):
            emb_f.append(facenet.embed(image, keep).embeddings)
            emb_d.append(dlib_net.embed(image, keep).embeddings)
            image_of.extend([n] * len(keep))
    pts = np.array(points)
    med = np.median(pts, axis=0)
    mirrored = med[[1, 0, 2, 4, 3]].copy()
    mirrored[:, 0] = 149.0 - mirrored[:, 0]
    template = (med + mirrored) / 2
    print(f"template from {len(pts)} faces >= {args.min_face:g} px (shipped value in brackets):")
    for p, q in zip(template, DLIB_CHIP_TEMPLATE_150, strict=True):
        print(f"  [{p[0]:7.2f}, {p[1]:7.2f}]   [{q[0]:7.2f}, {q[1]:7.2f}]")
    owner = np.array(image_of)
    different = owner[:, None] != owner[None, :]
    iu = np.triu_indices(len(owner), 1)
    mask = different[iu]
    for name, chunks in (("facenet", emb_f), ("dlib", emb_d)):
        e = np.concatenate(chunks)
        d = np.linalg.norm(e[:, None, :] - e[None, :, :], axis=2)[iu][mask]
        print(f"{name}: median impostor distance {np.median(d):.3f} over {mask.sum()} pairs of {len(e)} faces")


if __name__ == "__main__":
    main()
