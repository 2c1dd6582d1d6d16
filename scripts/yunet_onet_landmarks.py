"""Does YuNet need MTCNN's landmarks to recognise as well as MTCNN does? (issue 14, a YuNet default)

The default embedder (dlib + SFace) warps each face by its five landmarks. With YuNet's
own landmarks it recognises worse than with MTCNN's (LFW 99.33% against 99.57%,
`facesense eval calibrate --detector yunet`). YuNet's landmarks are therefore re-placed by
MTCNN's O-Net (`YuNetConfig.landmark_passes`, `facesense.detect.landmarks`). This script
reports, for MTCNN and for YuNet with 0, 1 and 2 O-Net passes, the protocols of `eval
calibrate` (LFW 5-fold on the shared pairs, open-set identification cross-validated by
person), the median landmark distance to MTCNN's (in eye distances), and the same
protocols *across* detectors: a gallery (and each pair's left image) embedded from MTCNN's
faces, probes, strangers (and right images) from the variant's, which is what a gallery
enrolled before the default detector changed meets.

    python scripts/yunet_onet_landmarks.py [--embedder dlib+sface] [--cache-dir /tmp/yol]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from facesense.analyzer import FaceAnalyzer
from facesense.cpu import cpu_info
from facesense.detect import make_detector
from facesense.embed import make_embedder
from facesense.eval.identify import embed_central_faces, evaluate_open_set, impostor_quantiles, lfw_open_set
from facesense.eval.lfw import lfw_image_path, read_pairs, verification_report
from facesense.match import DEFAULT_K, KNNMatcher
from facesense.models.registry import ScoreNorm


def central_landmarks(detector: Any, root: Path, paths: tuple[str, ...]) -> np.ndarray:
    from facesense.eval.lfw import select_central_face
    from facesense.imageio import load_image

    out = np.full((len(paths), 5, 2), np.nan, np.float32)
    for i, rel in enumerate(paths):
        image = load_image(root / rel)
        faces = detector.detect(image)
        j = select_central_face(faces, (image.shape[1], image.shape[0]))
        if j is not None:
            out[i] = faces.landmarks[j]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedder", default="dlib+sface")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/yol"))
    parser.add_argument("--landmark-sample", type=int, default=300, help="images for the landmark distance")
    args = parser.parse_args()
    data = Path(os.environ.get("FACESENSE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    lfw = data / "lfw"
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    protocol = lfw_open_set(lfw)
    paths = protocol.all_paths
    index = {p: i for i, p in enumerate(paths)}
    pairs = read_pairs(lfw / "pairs_folds1-5.txt")
    labels = [str(x) for x in protocol.gallery_labels + protocol.probe_labels + protocol.stranger_labels]
    embedder = make_embedder(args.embedder)
    variants: dict[str, Any] = {
        "mtcnn": make_detector("mtcnn", use="image"),
        "yunet": make_detector("yunet", use="image", landmark_passes=0),
        "yunet+onet": make_detector("yunet", use="image", landmark_passes=1),
        "yunet+onet x2": make_detector("yunet", use="image", landmark_passes=2),
    }
    print(cpu_info().describe())
    print(f"embedder {embedder.model_id}; {len(paths)} LFW images, {len(pairs)} pairs")
    sample = paths[:: max(1, len(paths) // args.landmark_sample)]
    reference = central_landmarks(variants["mtcnn"], lfw, sample)
    eye = np.linalg.norm(reference[:, 0] - reference[:, 1], axis=1)
    print(f"{'landmarks':<14} {'LFW':>15} {'AUC':>7} {'@1% FAR':>8} {'@0.1%':>7} {'rank-1':>7} {'lmk vs mtcnn':>12} {'ms/image':>8}")
    embedded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    n_gallery = len(protocol.gallery_labels)

    def report(name: str, emb: np.ndarray, emb_left: np.ndarray, no_face: np.ndarray, extra: str) -> None:
        left = emb_left[[index[str(lfw_image_path(Path(), k))] for k in pairs.left]]
        right = emb[[index[str(lfw_image_path(Path(), k))] for k in pairs.right]]
        rep = verification_report(left, right, pairs, no_face=no_face)
        norm = ScoreNorm(impostor_quantiles=impostor_quantiles(emb, labels))
        ident = evaluate_open_set(KNNMatcher(k=DEFAULT_K, threshold=None, norm=norm), protocol, emb, no_face=no_face, gallery_sizes=())
        cv = ident.cross_validated
        print(
            f"{name:<14} {rep.accuracy:8.2%} ± {rep.std:.2%} {rep.auc:7.4f} {cv['0.01']['dir']:8.1%} "
            f"{cv['0.001']['dir']:7.1%} {ident.rank1:7.2%} {extra}"
        )

    for name, detector in variants.items():
        analyzer = FaceAnalyzer(detector=detector, embedder=embedder)
        cache = args.cache_dir / f"{name.replace(' ', '_')}.npz"
        emb, no_face = embed_central_faces(analyzer, lfw, paths, cache=cache)
        embedded[name] = (emb, no_face)
        started = time.perf_counter()
        marks = central_landmarks(detector, lfw, sample)
        ms = 1000 * (time.perf_counter() - started) / len(sample)
        err = np.nanmedian(np.linalg.norm(marks - reference, axis=2).mean(axis=1) / eye)
        report(name, emb, emb, no_face, f"{err:12.3f} {ms:8.1f}")
    mtcnn_emb, mtcnn_no_face = embedded["mtcnn"]
    print("across detectors: gallery and left images from mtcnn's faces")
    for name, (emb, no_face) in embedded.items():
        if name == "mtcnn":
            continue
        mixed = emb.copy()
        mixed[:n_gallery] = mtcnn_emb[:n_gallery]
        report(f"mtcnn->{name}", mixed, mtcnn_emb, no_face + mtcnn_no_face, "")

if __name__ == "__main__":
    main()
