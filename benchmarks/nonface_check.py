"""Issue 14: which non-face check rejects animal faces at the least recall cost.

Step 1 (``extract``) runs a detector at a *lower* score threshold than its default over
the WIDER FACE subset, the animals folder, the negatives folder, 300 LFW images and every
5th frame of the Hamilton clip, and stores the cheap features
(:data:`facesense.detect.verify.FEATURE_NAMES`) of every detection.

Step 2 (``evaluate``) compares the checks on the detections at the detector's default
threshold. Every number is out-of-fold: the images of WIDER, animals and negatives are
split into 5 folds by image; a check's parameters (a threshold, or a logistic regression
and its threshold) are fitted on four folds and applied to the fifth. The threshold is
picked on the training folds only: the highest one whose training WIDER recall (faces
>= 20 px) is within ``--budget`` points of no check. LFW and the clip are never fitted
on. Run::

    python benchmarks/nonface_check.py extract --detector yunet
    python benchmarks/nonface_check.py evaluate --detector yunet
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from facesense.cpu import cpu_info
from facesense.detect import make_detector
from facesense.detect.verify import landmark_boxes
from facesense.eval.detect import (
    DetectionRun,
    ImageDetections,
    _label_image,
    read_wider_annotations,
    score_detection,
)
from facesense.eval.rotated import sample_images
from facesense.imageio import iter_image_paths, load_image
from facesense.types import Faces

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LOW_THRESHOLD = {"yunet": {"score_threshold": 0.5}, "mtcnn": {"thresholds": (0.6, 0.7, 0.5)}}
DEFAULT_SCORE = {"yunet": 0.7, "mtcnn": 0.8}  # the default last-stage thresholds
DATA_FILE = Path(__file__).resolve().parents[1] / "src" / "facesense" / "models" / "data" / "nonface_facenet.json"
log = logging.getLogger("nonface")


FEATURE_NAMES = (
    "score",
    "onet_landmark_box",
    "onet_own_box",
    "rnet_landmark_box",
    "onet_landmark_error",
    "template_error",
    "log_size_px",
)


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return np.asarray(np.log(q / (1 - q)), np.float64)


def _template_error(landmarks: np.ndarray) -> np.ndarray:
    from facesense.align import ARCFACE_TEMPLATE_112, similarity_transform

    out = np.zeros(len(landmarks), np.float64)
    for i, marks in enumerate(np.asarray(landmarks, np.float64)):
        m = similarity_transform(marks, ARCFACE_TEMPLATE_112)
        mapped = marks @ m[:, :2].T + m[:, 2]
        out[i] = float(np.linalg.norm(mapped - ARCFACE_TEMPLATE_112, axis=1).mean()) / 35.0  # eye distance 35 px
    return out


class Networks:
    """MTCNN's R-Net and O-Net, for the features."""

    def __init__(self) -> None:
        from facesense.models.mtcnn_onnx import mtcnn_model
        from facesense.models.registry import DETECTORS
        from facesense.models.runtime import create_session

        _, rnet, onet = DETECTORS["mtcnn"].weights
        self.rnet = create_session(mtcnn_model(rnet), threads=1, name="R-Net")
        self.onet = create_session(mtcnn_model(onet), threads=1, name="O-Net")


def face_features(nets: Networks, image: np.ndarray, faces: Faces) -> np.ndarray:
    """The cheap features of each face (see :data:`FEATURE_NAMES`)."""
    from facesense.detect.mtcnn import ONET_SIZE_PX, RNET_SIZE_PX, _crop
    from facesense.models.mtcnn_onnx import INPUT_NAME

    n = len(faces)
    if n == 0:
        return np.zeros((0, len(FEATURE_NAMES)), np.float64)
    bgr = image
    onet, rnet = nets.onet, nets.rnet
    lboxes = landmark_boxes(faces.landmarks)
    from facesense import geometry

    own = np.asarray(geometry.square_boxes(faces.xyxy), np.float32)
    _reg, marks, prob_l = onet.run(None, {INPUT_NAME: _crop(bgr, lboxes, ONET_SIZE_PX)})
    prob_o = onet.run(None, {INPUT_NAME: _crop(bgr, own, ONET_SIZE_PX)})[2]
    prob_r = rnet.run(None, {INPUT_NAME: _crop(bgr, lboxes, RNET_SIZE_PX)})[1]
    wh = lboxes[:, 2:4] - lboxes[:, 0:2]
    omarks = lboxes[:, None, 0:2] + np.stack([marks[:, 0:5], marks[:, 5:10]], axis=2) * wh[:, None, :]
    lm = np.asarray(faces.landmarks, np.float64)
    s = np.linalg.norm(lm[:, 3:5].mean(axis=1) - lm[:, 0:2].mean(axis=1), axis=1)
    lerr = np.linalg.norm(omarks - lm, axis=2).mean(axis=1) / np.maximum(s, 1e-6)
    return np.stack(
        [
            _logit(faces.scores),
            _logit(prob_l[:, 1]),
            _logit(prob_o[:, 1]),
            _logit(prob_r[:, 1]),
            lerr,
            _template_error(lm),
            np.log(np.maximum(faces.size_px, 1.0)),
        ],
        axis=1,
    )


def _cache(kind: str) -> Path:
    return Path("/tmp") / f"facesense_nonface_{kind}.npz"


def _load(kind: str) -> dict[str, np.ndarray]:
    """A detector's rows plus the background crops (``source == "background"``), if made."""
    raw = np.load(_cache(kind))
    data = {k: raw[k] for k in raw.files}
    if _cache("background").exists():
        bg = np.load(_cache("background"))
        data = {k: np.concatenate([v, bg[k] if v.dtype.kind == "U" else bg[k].astype(v.dtype)]) for k, v in data.items()}
    return data


# Background crops: squares of this many pixels, away from every annotated face, with
# the five landmarks where ArcFace's template puts them in a face box of that size.
BACKGROUND_PER_IMAGE = 4
BACKGROUND_SIZES_PX = (48, 64, 96, 128, 192)


def background() -> None:
    """Random squares of WIDER images that hold no face, as non-faces to train on.

    The detectors' own candidates teach the check animal faces; these teach it that
    textures, walls and clothes are not faces either (a check trained on animals alone
    calls a brick wall human). Not evaluation data: WIDER is scored on its faces only.
    """
    from facesense.align import ARCFACE_TEMPLATE_112
    from facesense.embed import make_embedder
    from facesense.geometry import iou_matrix

    embedder = make_embedder()
    nets = Networks()
    rng = np.random.default_rng(0)
    rows: dict[str, list[Any]] = {k: [] for k in ("source", "image", "xyxy", "score", "feat", "label", "marks", "emb")}
    for truth in read_wider_annotations(DATA / "wider_face_val_subset" / "wider_face_val_bbx_gt.txt"):
        img = load_image(DATA / "wider_face_val_subset" / "images" / truth.path)
        h, w = img.shape[:2]
        boxes = []
        for _ in range(50):
            side = float(rng.choice(BACKGROUND_SIZES_PX))
            if side >= min(h, w):
                continue
            x, y = rng.uniform(0, w - side), rng.uniform(0, h - side)
            box = np.array([[x, y, x + side, y + side]])
            grown = box + np.array([[-side, -side, side, side]]) / 2
            if len(truth) and (iou_matrix(grown, truth.xyxy.astype(np.float64)) > 0).any():
                continue
            boxes.append(box[0])
            if len(boxes) == BACKGROUND_PER_IMAGE:
                break
        if not boxes:
            continue
        xyxy = np.array(boxes, np.float32)
        side = (xyxy[:, 2] - xyxy[:, 0])[:, None, None]
        marks = (xyxy[:, None, 0:2] + ARCFACE_TEMPLATE_112[None] / 112.0 * side).astype(np.float32)
        faces = Faces(xyxy=xyxy, scores=np.ones(len(xyxy), np.float32), landmarks=marks)
        feats = face_features(nets, img, faces)
        emb = embedder.embed(img, faces).embeddings
        for i in range(len(faces)):
            rows["source"].append("background")
            rows["image"].append(truth.path)
            rows["xyxy"].append(xyxy[i])
            rows["score"].append(1.0)
            rows["feat"].append(feats[i])
            rows["label"].append(0)
            rows["marks"].append(marks[i])
            rows["emb"].append(emb[i])
    np.savez(
        _cache("background"),
        source=np.array(rows["source"]),
        image=np.array(rows["image"]),
        xyxy=np.array(rows["xyxy"], np.float32),
        score=np.array(rows["score"], np.float32),
        feat=np.array(rows["feat"], np.float64),
        label=np.array(rows["label"], np.int8),
        marks=np.array(rows["marks"], np.float32),
        emb=np.array(rows["emb"], np.float32),
    )
    print(f"background: {len(rows['score'])} crops -> {_cache('background')}")


def extract(kind: str) -> None:
    detector = make_detector(kind, use="image", verify=False, **LOW_THRESHOLD[kind])  # type: ignore[arg-type]
    video = make_detector(kind, use="video", verify=False, **LOW_THRESHOLD[kind])  # type: ignore[arg-type]
    verifier = Networks()
    rows: dict[str, list[Any]] = {k: [] for k in ("source", "image", "xyxy", "score", "feat", "label", "marks", "emb")}
    from facesense.embed import make_embedder

    embedder = make_embedder()

    def add(source: str, image_id: str, img: np.ndarray, faces: Faces, labels: np.ndarray) -> None:
        feats = face_features(verifier, img, faces)
        strong = faces[faces.scores >= DEFAULT_SCORE[kind]]
        emb = embedder.embed(img, strong).embeddings if len(strong) else None
        k = 0
        for i in range(len(faces)):
            rows["source"].append(source)
            rows["image"].append(image_id)
            rows["xyxy"].append(faces.xyxy[i])
            rows["score"].append(float(faces.scores[i]))
            rows["feat"].append(feats[i])
            rows["label"].append(int(labels[i]))
            rows["marks"].append(faces.landmarks[i])
            if faces.scores[i] >= DEFAULT_SCORE[kind] and emb is not None:
                rows["emb"].append(emb[k])
                k += 1
            else:
                rows["emb"].append(np.full(embedder.dim, np.nan, np.float32))

    wider = read_wider_annotations(DATA / "wider_face_val_subset" / "wider_face_val_bbx_gt.txt")
    for truth in wider:
        img = load_image(DATA / "wider_face_val_subset" / "images" / truth.path)
        faces = detector.detect(img)
        order = np.argsort(-faces.scores, kind="stable")
        faces = faces[order]
        _, labels = _label_image(truth.xyxy, ~truth.invalid, faces.xyxy, faces.scores, 0.5)
        add("wider", truth.path, img, faces, labels)
    for source in ("animals", "negatives"):
        for path in iter_image_paths([DATA / source]):
            img = load_image(path)
            faces = detector.detect(img)
            add(source, path.name, img, faces, np.zeros(len(faces), np.int8))
    for path in sample_images(DATA / "lfw", 300, seed=1):
        img = load_image(path)
        faces = detector.detect(img)
        h, w = img.shape[:2]
        centre = (faces.xyxy[:, 0:2] + faces.xyxy[:, 2:4]) / 2 - np.array([w / 2, h / 2])
        labels = (np.linalg.norm(centre, axis=1) < 0.15 * min(h, w)).astype(np.int8)
        add("lfw", path.name, img, faces, labels)
    import cv2

    cap = cv2.VideoCapture(str(DATA / "face_recognition_examples" / "short_hamilton_clip.mp4"))
    index = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if index % 5 == 0:
            faces = video.detect(frame)
            add("clip", str(index), frame, faces, np.ones(len(faces), np.int8))
        index += 1
    np.savez(
        _cache(kind),
        source=np.array(rows["source"]),
        image=np.array(rows["image"]),
        xyxy=np.array(rows["xyxy"], np.float32).reshape(-1, 4),
        score=np.array(rows["score"], np.float32),
        feat=np.array(rows["feat"], np.float64).reshape(-1, len(FEATURE_NAMES)),
        label=np.array(rows["label"], np.int8),
        marks=np.array(rows["marks"], np.float32).reshape(-1, 5, 2),
        emb=np.array(rows["emb"], np.float32).reshape(len(rows["score"]), -1),
    )
    print(f"{kind}: {len(rows['score'])} detections -> {_cache(kind)}")


def _wider_recall(data: dict[str, np.ndarray], keep: np.ndarray, images: set[str] | None, min_face: float) -> tuple[float, float]:
    """WIDER AP and recall (faces >= min_face) of the kept detections at default score."""
    wider = read_wider_annotations(DATA / "wider_face_val_subset" / "wider_face_val_bbx_gt.txt")
    items = []
    for truth in wider:
        if images is not None and truth.path not in images:
            continue
        sel = (data["source"] == "wider") & (data["image"] == truth.path) & keep
        faces = (
            Faces(xyxy=data["xyxy"][sel], scores=data["score"][sel], landmarks=np.zeros((int(sel.sum()), 5, 2), np.float32))
            if sel.any()
            else Faces.empty()
        )
        items.append(ImageDetections(truth=truth, faces=faces))
    report = score_detection(DetectionRun(images=tuple(items)), min_face_px=min_face)
    return report.ap, report.recall


def evaluate(kind: str, budget: float, folds: int, out: Path | None, embedding_only: bool = False) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.preprocessing import StandardScaler

    data = _load(kind)
    at_default = data["score"] >= DEFAULT_SCORE[kind]
    data = {k: v[at_default] for k, v in data.items()}
    x, src, label = data["feat"], data["source"], data["label"]
    big = np.exp(x[:, FEATURE_NAMES.index("log_size_px")]) >= 40.0  # shorter side, the checked faces
    fit_set = np.isin(src, ("wider", "animals", "negatives"))
    foldable = fit_set | (src == "background")
    groups = np.array([i if s in ("wider", "background") else f"{s}/{i}" for s, i in zip(src, data["image"], strict=True)])
    unique = np.unique(groups[foldable])
    fold_of = {g: k for k, g in enumerate(np.random.default_rng(0).permutation(unique))}
    fold = np.array([fold_of.get(g, -1) % folds if g in fold_of else -1 for g in groups])
    base_ap, base_recall = _wider_recall(data, np.ones(len(x), bool), None, 20.0)
    _base_ap40, base_recall40 = _wider_recall(data, np.ones(len(x), bool), None, 40.0)
    n_animals = len(list(iter_image_paths([DATA / "animals"])))
    n_neg = len(list(iter_image_paths([DATA / "negatives"])))
    print(cpu_info().describe())
    print(f"{kind}: no check: WIDER AP {base_ap:.3f} recall {base_recall:.3f} (>=20 px), {base_recall40:.3f} (>=40 px); "
          f"animals {int((src == 'animals').sum())} false faces / {n_animals} images, negatives {int((src == 'negatives').sum())} / {n_neg}; "
          f"LFW faces {int((src == 'lfw').sum())}, clip faces {int((src == 'clip').sum())}")
    _ = GroupKFold  # folds are drawn by image above (random, seeded)

    def pos_train(mask: np.ndarray) -> np.ndarray:
        return mask & (src == "wider") & (label == 1)

    def neg_train(mask: np.ndarray) -> np.ndarray:
        return mask & np.isin(src, ("animals", "negatives"))

    candidates: dict[str, Any] = {
        f"single:{name}": (lambda idx: (lambda tr: None, lambda model, xs: xs[:, idx]))(j)
        for j, name in enumerate(FEATURE_NAMES)
        if name not in ("log_size_px",)
    }
    for j, name in enumerate(FEATURE_NAMES):
        if name in ("onet_landmark_error", "template_error"):
            candidates[f"single:{name}"] = (lambda idx: (lambda tr: None, lambda model, xs: -xs[:, idx]))(j)

    def logreg(columns: list[int], c: float) -> tuple[Any, Any]:
        def fit(tr: np.ndarray) -> Any:
            sel = pos_train(tr) | neg_train(tr)
            scaler = StandardScaler().fit(x[sel][:, columns])
            model = LogisticRegression(C=c, class_weight="balanced", max_iter=1000)
            model.fit(scaler.transform(x[sel][:, columns]), (src[sel] == "wider").astype(int))
            return scaler, model

        def apply(fitted: Any, xs: np.ndarray) -> np.ndarray:
            scaler, model = fitted
            return np.asarray(model.decision_function(scaler.transform(xs[:, columns])))

        return fit, apply

    every = list(range(len(FEATURE_NAMES)))
    candidates["logreg:all"] = logreg(every, 1.0)
    candidates["logreg:all C=0.1"] = logreg(every, 0.1)
    candidates["logreg:score+onet_lmk+onet_own"] = logreg([0, 1, 2], 1.0)
    candidates["logreg:score+onet_lmk+rnet+lmk_err"] = logreg([0, 1, 3, 4], 1.0)
    candidates["logreg:onet_lmk+onet_own+lmk_err+template"] = logreg([1, 2, 4, 5], 1.0)
    candidates["logreg:no score"] = logreg([1, 2, 3, 4, 5, 6], 1.0)

    record: dict[str, Any] = {"detector": kind, "cpu": cpu_info().describe(), "baseline": {
        "wider_ap_20": base_ap, "wider_recall_20": base_recall, "wider_recall_40": base_recall40,
        "animals": int((src == "animals").sum()), "negatives": int((src == "negatives").sum())}, "checks": {}}
    print(f"  {'check':44} {'AP20':>6} {'rec20':>6} {'d rec':>6} {'rec40':>6} {'anim':>4} {'neg':>4} {'lfw kept':>8} {'clip kept':>9}")
    for name, (fit, apply) in candidates.items() if not embedding_only else ():
        oof = np.zeros(len(x))
        final_threshold = []
        for k in range(folds):
            train = fit_set & (fold != k) & (fold >= 0)
            test = fold == k
            fitted = fit(train)
            s = apply(fitted, x)
            # threshold from the training folds: keep training WIDER recall within budget
            train_images = {i for i, g, f in zip(data["image"], src, fold, strict=True) if g == "wider" and f != k}
            thresholds = np.unique(np.quantile(s[neg_train(train) & big], np.linspace(0, 1, 41))) if (neg_train(train) & big).any() else np.array([-np.inf])
            _, train_base = _wider_recall(data, np.ones(len(x), bool), train_images, 20.0)
            chosen = -np.inf
            for t in sorted(thresholds, reverse=True):
                keep = ~big | (s >= t)
                _, r = _wider_recall(data, keep, train_images, 20.0)
                if train_base - r <= budget / 100.0:
                    chosen = float(t)
                    break
            final_threshold.append(chosen)
            oof[test] = s[test] - chosen
        # LFW and clip: fitted on all folds, threshold = median of the fold thresholds
        fitted = fit(fit_set & (fold >= 0))
        s_all = apply(fitted, x) - float(np.median(final_threshold))
        oof[~fit_set] = s_all[~fit_set]
        keep = ~big | (oof >= 0)
        ap, rec = _wider_recall(data, keep, None, 20.0)
        _, rec40 = _wider_recall(data, keep, None, 40.0)
        animals = int(((src == "animals") & keep).sum())
        neg = int(((src == "negatives") & keep).sum())
        lfw = (src == "lfw") & (label == 1)
        clip = src == "clip"
        lfw_kept = float(keep[lfw].mean()) if lfw.any() else float("nan")
        clip_kept = float(keep[clip].mean()) if clip.any() else float("nan")
        print(f"  {name:44} {ap:6.3f} {rec:6.3f} {100 * (rec - base_recall):+6.2f} {rec40:6.3f} {animals:4d} {neg:4d} {lfw_kept:8.3f} {clip_kept:9.3f}")
        record["checks"][name] = {"wider_ap_20": ap, "wider_recall_20": rec, "wider_recall_40": rec40, "animals": animals,
                                  "negatives": neg, "lfw_kept": lfw_kept, "clip_kept": clip_kept,
                                  "fold_thresholds": final_threshold}
        if name.startswith("logreg"):
            scaler, model = fitted
            record["checks"][name]["model"] = {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(),
                                               "coef": model.coef_[0].tolist(), "intercept": float(model.intercept_[0]),
                                               "threshold": float(np.median(final_threshold))}
    record["embedding_checks"] = _embedding_checks(data, fold, folds, base_recall)
    if out is not None:
        out.write_text(json.dumps(record, indent=1))


def _facenet(data: dict[str, np.ndarray]) -> np.ndarray:
    e = data["emb"][:, :512].astype(np.float64)  # the fusion's FaceNet part, re-normalised
    return np.asarray(e / np.linalg.norm(e, axis=1, keepdims=True))


def _fit_embedding_check(e: np.ndarray, positive: np.ndarray, train: np.ndarray, c: float, quantile: float) -> tuple[np.ndarray, float, float]:
    """Logistic regression on FaceNet embeddings, folded into ``e @ w + b``, and its
    threshold: the ``quantile`` of the training faces' scores."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(e[train])
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(scaler.transform(e[train]), positive[train].astype(int))
    w = model.coef_[0] / scaler.scale_
    b = float(model.intercept_[0] - (scaler.mean_ * w).sum())
    s = e @ w + b
    return w, b, float(np.quantile(s[train & positive], quantile))


def _embedding_checks(data: dict[str, np.ndarray], fold: np.ndarray, folds: int, base_recall: float) -> dict[str, Any]:
    """O-Net first (accept at ``skip``), FaceNet-embedding logistic regression on the rest."""
    src, label, x = data["source"], data["label"], data["feat"]
    e = _facenet(data)
    big = np.exp(x[:, FEATURE_NAMES.index("log_size_px")]) >= 40.0
    onet = x[:, FEATURE_NAMES.index("onet_landmark_box")]
    pos = (src == "wider") & (label == 1)
    neg = np.isin(src, ("animals", "negatives", "background"))
    fit_set = (pos | neg) & big
    out: dict[str, Any] = {}
    print(f"  {'embedding check (out-of-fold)':44} {'AP20':>6} {'rec20':>6} {'d rec':>6} {'rec40':>6} {'anim':>4} {'neg':>4} {'lfw kept':>8} {'clip kept':>9} {'embedded':>8} {'bg kept':>6}")
    for c in (0.003, 0.01, 0.03):
        for skip in (None, 2.0, 3.0, 4.0):
            for quantile in (0.002, 0.004):
                margin = np.zeros(len(e))
                for k in range(folds):
                    w, b, t = _fit_embedding_check(e, pos, fit_set & (fold != k), c, quantile)
                    margin[fold == k] = (e @ w + b - t)[fold == k]
                w, b, t = _fit_embedding_check(e, pos, fit_set, c, quantile)
                margin[fold < 0] = (e @ w + b - t)[fold < 0]  # LFW and the clip: never fitted on
                checked = big if skip is None else big & (onet < skip)
                keep = ~checked | (margin >= 0)
                ap, rec = _wider_recall(data, keep, None, 20.0)
                _, rec40 = _wider_recall(data, keep, None, 40.0)
                name = f"C={c} O-Net accepts >= logit {skip} q={quantile}"
                row = {"wider_ap_20": ap, "wider_recall_20": rec, "wider_recall_40": rec40,
                       "animals": int((keep & (src == "animals")).sum()), "negatives": int((keep & (src == "negatives")).sum()),
                       "lfw_kept": float(keep[(src == "lfw") & (label == 1)].mean()), "clip_kept": float(keep[src == "clip"].mean()),
                       "embedded_share": float(checked[src != "background"].mean()),
                       "background_kept": float(keep[src == "background"].mean())}
                out[name] = row
                print(f"  {name:44} {ap:6.3f} {rec:6.3f} {100 * (rec - base_recall):+6.2f} {rec40:6.3f} {row['animals']:4d} {row['negatives']:4d} "
                      f"{row['lfw_kept']:8.3f} {row['clip_kept']:9.3f} {row['embedded_share']:8.2f} {row['background_kept']:6.3f}")
    return out


def fit(kinds: list[str], c: float, quantile: float, onet_accept_logit: float, onet_reject_logit: float, out: Path) -> None:
    """Fit the shipped check on every detector's detections (all folds) and write it."""
    es, positives, trains = [], [], []
    for kind in kinds:
        loaded = _load(kind)
        data = {k: v[loaded["score"] >= DEFAULT_SCORE[kind]] for k, v in loaded.items()}
        big = np.exp(data["feat"][:, FEATURE_NAMES.index("log_size_px")]) >= 40.0
        pos = (data["source"] == "wider") & (data["label"] == 1)
        neg = np.isin(data["source"], ("animals", "negatives"))  # not the background crops: see evaluate
        es.append(_facenet(data))
        positives.append(pos)
        trains.append((pos | neg) & big)
    e, pos, train = np.concatenate(es), np.concatenate(positives), np.concatenate(trains)
    w, b, t = _fit_embedding_check(e, pos, train, c, quantile)
    from facesense.embed import make_embedder

    record = {
        "about": "facesense non-face check (issue 14): FaceNet embedding e (unit length) of a face whose O-Net "
        "probability on its landmark box is in [onet_reject_score, onet_accept_score) is a human face when e @ weights + bias >= "
        "threshold. Logistic regression (scikit-learn, C={:g}, balanced classes) on WIDER FACE subset faces >= 40 px "
        "matched to ground truth (positives) vs detections on ../shared/data/animals and negatives (negatives), "
        "detectors {}; threshold: the {:g} quantile of the positives' scores. Made by benchmarks/nonface_check.py fit.".format(c, "+".join(kinds), quantile),
        "embedder": "facenet",
        "model_id": make_embedder("facenet").model_id,
        "onet_accept_score": float(1 / (1 + np.exp(-onet_accept_logit))),
        "onet_reject_score": float(1 / (1 + np.exp(-onet_reject_logit))),
        "threshold": t,
        "bias": b,
        "positives": int((pos & train).sum()),
        "negatives": int((~pos & train).sum()),
        "weights": [round(float(v), 7) for v in w],
    }
    out.write_text(json.dumps(record, indent=0) + "\n")
    print(f"wrote {out}: {record['positives']} faces, {record['negatives']} non-faces, threshold {t:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("extract", "background", "evaluate", "fit"))
    parser.add_argument("--detector", choices=("yunet", "mtcnn"), default="yunet")
    parser.add_argument("--budget", type=float, default=0.3, help="allowed WIDER recall loss on the training folds, points")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--embedding-only", action="store_true", help="evaluate: only the embedding checks")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--c", type=float, default=0.01, help="fit: inverse regularisation")
    parser.add_argument("--quantile", type=float, default=0.002, help="fit: threshold quantile of the faces' scores")
    parser.add_argument("--onet-accept-logit", type=float, default=3.0, help="fit: O-Net logit that skips the embedding")
    parser.add_argument("--onet-reject-logit", type=float, default=-5.5, help="fit: O-Net logit under which a face is no face")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.step == "extract":
        extract(args.detector)
    elif args.step == "background":
        background()
    elif args.step == "fit":
        fit(["yunet", "mtcnn"], args.c, args.quantile, args.onet_accept_logit, args.onet_reject_logit, args.out or DATA_FILE)
    else:
        evaluate(args.detector, args.budget, args.folds, args.out, args.embedding_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
