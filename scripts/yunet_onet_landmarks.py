"""Does YuNet need MTCNN's landmarks to recognise as well as MTCNN does? (issue 14, a YuNet default)

The default embedder (dlib + SFace) warps each face by its five landmarks. With YuNet's
own landmarks it recognises worse than with MTCNN's (LFW 99.33% against 99.57%,
`facesense eval calibrate --detector yunet`). This script keeps YuNet's detections and
replaces their landmarks by MTCNN O-Net's, run on the square box built from YuNet's
landmarks (`facesense.detect.verify.landmark_boxes`, the box the non-face check already
gives O-Net), optionally twice, then reports for each variant the protocols of
`eval calibrate`: LFW 5-fold on the shared pairs, open-set identification cross-validated
by person, and the median landmark distance to MTCNN's (in eye distances).

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
from facesense.detect.verify import landmark_boxes
from facesense.embed import make_embedder
from facesense.eval.identify import embed_central_faces, evaluate_open_set, impostor_quantiles, lfw_open_set
from facesense.eval.lfw import lfw_image_path, read_pairs, verification_report
from facesense.match import DEFAULT_K, KNNMatcher
from facesense.models.registry import ScoreNorm
from facesense.types import Faces


class OnetLandmarks:
    """A detector whose faces' landmarks come from MTCNN's O-Net (``rounds`` passes)."""

    def __init__(self, inner: Any, rounds: int) -> None:
        from facesense.detect.mtcnn import _Runtime

        self.inner, self.rounds = inner, rounds
        self.rt = _Runtime(1)
        self.onet_s = 0.0
        self.onet_faces = 0

    def detect(self, image: np.ndarray) -> Faces:
        from facesense.detect.mtcnn import ONET_BATCH, ONET_SIZE_PX, _run_crops

        faces = self.inner.detect(image)
        if len(faces) == 0:
            return faces
        marks5 = faces.landmarks.astype(np.float32)
        started = time.perf_counter()
        for _ in range(self.rounds):
            boxes = landmark_boxes(marks5)
            _, marks, _ = _run_crops(self.rt, self.rt.onet, image, boxes, ONET_SIZE_PX, ONET_BATCH, "O-Net")
            wh = boxes[:, 2:4] - boxes[:, 0:2]
            marks5 = (boxes[:, None, 0:2] + np.stack([marks[:, 0:5], marks[:, 5:10]], axis=2) * wh[:, None, :]).astype(np.float32)
        self.onet_s += time.perf_counter() - started
        self.onet_faces += len(faces)
        return Faces(xyxy=faces.xyxy, scores=faces.scores, landmarks=marks5)


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
    yunet = make_detector("yunet", use="image")
    variants: dict[str, Any] = {
        "mtcnn": make_detector("mtcnn", use="image"),
        "yunet": yunet,
        "yunet+onet": OnetLandmarks(yunet, 1),
        "yunet+onet x2": OnetLandmarks(yunet, 2),
    }
    print(cpu_info().describe())
    print(f"embedder {embedder.model_id}; {len(paths)} LFW images, {len(pairs)} pairs")
    sample = paths[:: max(1, len(paths) // args.landmark_sample)]
    reference = central_landmarks(variants["mtcnn"], lfw, sample)
    eye = np.linalg.norm(reference[:, 0] - reference[:, 1], axis=1)
    print(f"{'landmarks':<14} {'LFW':>15} {'AUC':>7} {'@1% FAR':>8} {'@0.1%':>7} {'rank-1':>7} {'lmk vs mtcnn':>12} {'O-Net ms/face':>13}")
    for name, detector in variants.items():
        analyzer = FaceAnalyzer(detector=detector, embedder=embedder)
        cache = args.cache_dir / f"{name.replace(' ', '_')}.npz"
        emb, no_face = embed_central_faces(analyzer, lfw, paths, cache=cache)
        left = emb[[index[str(lfw_image_path(Path(), k))] for k in pairs.left]]
        right = emb[[index[str(lfw_image_path(Path(), k))] for k in pairs.right]]
        rep = verification_report(left, right, pairs, no_face=no_face)
        norm = ScoreNorm(impostor_quantiles=impostor_quantiles(emb, labels))
        ident = evaluate_open_set(KNNMatcher(k=DEFAULT_K, threshold=None, norm=norm), protocol, emb, no_face=no_face, gallery_sizes=())
        cv = ident.cross_validated
        marks = central_landmarks(detector, lfw, sample)
        err = np.nanmedian(np.linalg.norm(marks - reference, axis=2).mean(axis=1) / eye)
        onet = getattr(detector, "onet_faces", 0)
        cost = f"{1000 * detector.onet_s / onet:.2f}" if onet else "-"
        print(
            f"{name:<14} {rep.accuracy:8.2%} ± {rep.std:.2%} {rep.auc:7.4f} {cv['0.01']['dir']:8.1%} "
            f"{cv['0.001']['dir']:7.1%} {ident.rank1:7.2%} {err:12.3f} {cost:>13}"
        )


if __name__ == "__main__":
    main()
