"""Issue 14: which non-face check rejects animal faces at the least recall cost.

Step 1 (``extract``) runs a detector at a *lower* score threshold than its default over
the WIDER FACE subset, the animals folder, the negatives folder, 300 LFW images and every
5th frame of the Hamilton clip, and stores the cheap features (:data:`FEATURE_NAMES`) of
every detection; then it embeds the detections at the detector's default threshold with
each ``--embedder`` (any kind of :func:`facesense.embed.make_embedder`; default the one
the shipped check was fitted on). Detections and embeddings are cached apart
(``/tmp/facesense_nonface_<detector>.npz``, ``..._<detector>_<embedder>.npz``), so another
embedder costs one embedding pass, not another detection run.

Step 2 (``evaluate``) compares the checks on the detections at the detector's default
threshold. Every number is out-of-fold: the images of WIDER, animals and negatives are
split into 5 folds by image; a check's parameters (a threshold, or a logistic regression
and its threshold) are fitted on four folds and applied to the fifth. For the cheap
features the threshold is picked on the training folds only: the highest one whose
training WIDER recall (faces >= 20 px) is within ``--budget`` points of no check. The
embedding checks (O-Net first: a face whose O-Net logit is at least the accept logit is
kept, under the reject logit dropped; the others by a logistic regression on the unit
embedding) take as threshold a quantile of the training faces' scores. LFW and the clip
are never fitted on. With several ``--embedder`` the embedding checks of each are
printed, then one summary table at the ``fit`` settings.

Step 3 (``fit``) fits the shipped check on both detectors' detections (all folds) and
writes ``src/facesense/models/data/nonface_<embedder>.json``. Run::

    python benchmarks/nonface_check.py extract --detector yunet --embedder facenet --embedder sface
    python benchmarks/nonface_check.py extract --detector mtcnn --embedder facenet --embedder sface
    python benchmarks/nonface_check.py evaluate --detector yunet --embedding-only --embedder facenet --embedder sface
    python benchmarks/nonface_check.py fit --embedder sface
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

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
DATA_DIR = Path(__file__).resolve().parents[1] / "src" / "facesense" / "models" / "data"
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


ROW_FIELDS = ("source", "image", "xyxy", "score", "feat", "label", "marks")
WIDER_IMAGES = DATA / "wider_face_val_subset" / "images"
WIDER_TRUTH = DATA / "wider_face_val_subset" / "wider_face_val_bbx_gt.txt"
CLIP = DATA / "face_recognition_examples" / "short_hamilton_clip.mp4"
CLIP_EVERY = 5  # every 5th frame of the clip
LFW_IMAGES = 300


def _cache(kind: str) -> Path:
    """The detections (no embeddings) of a detector, or of the background crops."""
    return Path("/tmp") / f"facesense_nonface_{kind}.npz"


def _emb_cache(kind: str, embedder: str) -> Path:
    """The embeddings by ``embedder`` of the rows of :func:`_cache` (NaN rows: not embedded)."""
    return Path("/tmp") / f"facesense_nonface_{kind}_{embedder.replace('+', '-')}.npz"


def _unit(e: np.ndarray) -> np.ndarray:
    e = np.asarray(e, np.float64)
    return np.asarray(e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12))


def _load_rows(kind: str, embedder: str | None) -> dict[str, np.ndarray]:
    """A detector's rows, with ``emb`` (unit length) from ``embedder`` if given."""
    raw = np.load(_cache(kind))
    data = {k: raw[k] for k in raw.files}
    if embedder is not None:
        path = _emb_cache(kind, embedder)
        if not path.exists():
            raise SystemExit(f"no {embedder} embeddings of the {kind} rows: run extract --detector {kind} --embedder {embedder}")
        emb = np.load(path)
        if len(emb["emb"]) != len(data["score"]):
            raise SystemExit(f"{path} does not match {_cache(kind)}: delete it and run extract again")
        data["emb"] = _unit(emb["emb"])
    return data


def _load(kind: str, embedder: str | None = None) -> dict[str, np.ndarray]:
    """A detector's rows plus the background crops (``source == "background"``), if made."""
    data = _load_rows(kind, embedder)
    if _cache("background").exists() and (embedder is None or _emb_cache("background", embedder).exists()):
        bg = _load_rows("background", embedder)
        data = {k: np.concatenate([v, bg[k] if v.dtype.kind == "U" else bg[k].astype(v.dtype)]) for k, v in data.items()}
    return data


def _save_rows(kind: str, rows: dict[str, list[Any]]) -> None:
    np.savez(
        _cache(kind),
        source=np.array(rows["source"]),
        image=np.array(rows["image"]),
        xyxy=np.array(rows["xyxy"], np.float32).reshape(-1, 4),
        score=np.array(rows["score"], np.float32),
        feat=np.array(rows["feat"], np.float64).reshape(-1, len(FEATURE_NAMES)),
        label=np.array(rows["label"], np.int8),
        marks=np.array(rows["marks"], np.float32).reshape(-1, 5, 2),
    )


def _image_of(source: str, image_id: str) -> Path:
    if source in ("wider", "background"):
        return WIDER_IMAGES / image_id
    if source == "lfw":
        return DATA / "lfw" / image_id
    return DATA / source / image_id


def _clip_frames() -> Iterator[tuple[int, np.ndarray]]:
    import cv2

    cap = cv2.VideoCapture(str(CLIP))
    index = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if index % CLIP_EVERY == 0:
                yield index, frame
            index += 1
    finally:
        cap.release()


def _embed_rows(kind: str, embedders: list[str]) -> None:
    """Embed the cached rows of ``kind`` at the detector's default score with each embedder."""
    from facesense.embed import make_embedder

    todo = [e for e in embedders if not _emb_cache(kind, e).exists()]
    if not todo:
        return
    data = _load_rows(kind, None)
    models = {e: make_embedder(e, threads=1) for e in todo}
    out = {e: np.full((len(data["score"]), int(m.dim)), np.nan, np.float32) for e, m in models.items()}
    embedded = data["score"] >= DEFAULT_SCORE.get(kind, 0.0)
    groups: dict[tuple[str, str], list[int]] = {}
    for i in np.flatnonzero(embedded):
        groups.setdefault((str(data["source"][i]), str(data["image"][i])), []).append(int(i))

    def embed(img: np.ndarray, idx: list[int]) -> None:
        faces = Faces(xyxy=data["xyxy"][idx], scores=data["score"][idx], landmarks=data["marks"][idx])
        for e, model in models.items():
            emb = model.embed(img, faces).embeddings
            if emb is None:
                raise SystemExit(f"{e} returned no embeddings")
            out[e][idx] = emb

    for (source, image_id), idx in groups.items():
        if source != "clip":
            embed(load_image(_image_of(source, image_id)), idx)
    for index, frame in _clip_frames():
        if ("clip", str(index)) in groups:
            embed(frame, groups[("clip", str(index))])
    for e, model in models.items():
        np.savez(_emb_cache(kind, e), emb=out[e], model_id=np.array(model.model_id))
        print(f"{kind}: {int(embedded.sum())} detections embedded by {e} ({model.model_id}) -> {_emb_cache(kind, e)}")


# Background crops: squares of this many pixels, away from every annotated face, with
# the five landmarks where ArcFace's template puts them in a face box of that size.
BACKGROUND_PER_IMAGE = 4
BACKGROUND_SIZES_PX = (48, 64, 96, 128, 192)


def background(embedders: list[str]) -> None:
    """Random squares of WIDER images that hold no face, as non-faces to measure on.

    The detectors' own candidates teach the check animal faces; these show whether it
    also knows that textures, walls and clothes are not faces (a check trained on animals
    alone calls a brick wall human). Not evaluation data for recall: WIDER is scored on
    its faces only.
    """
    from facesense.align import ARCFACE_TEMPLATE_112
    from facesense.geometry import iou_matrix

    if not _cache("background").exists():
        nets = Networks()
        rng = np.random.default_rng(0)
        rows: dict[str, list[Any]] = {k: [] for k in ROW_FIELDS}
        for truth in read_wider_annotations(WIDER_TRUTH):
            img = load_image(WIDER_IMAGES / truth.path)
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
            for i in range(len(faces)):
                for key, value in zip(ROW_FIELDS, ("background", truth.path, xyxy[i], 1.0, feats[i], 0, marks[i]), strict=True):
                    rows[key].append(value)
        _save_rows("background", rows)
        print(f"background: {len(rows['score'])} crops -> {_cache('background')}")
    _embed_rows("background", embedders)


def extract(kind: str, embedders: list[str]) -> None:
    """The detections of ``kind`` (cached once), then their embeddings by each embedder."""
    if not _cache(kind).exists():
        detector = make_detector(kind, use="image", verify=False, **LOW_THRESHOLD[kind])  # type: ignore[arg-type]
        video = make_detector(kind, use="video", verify=False, **LOW_THRESHOLD[kind])  # type: ignore[arg-type]
        verifier = Networks()
        rows: dict[str, list[Any]] = {k: [] for k in ROW_FIELDS}

        def add(source: str, image_id: str, img: np.ndarray, faces: Faces, labels: np.ndarray) -> None:
            feats = face_features(verifier, img, faces)
            for i in range(len(faces)):
                values = (source, image_id, faces.xyxy[i], float(faces.scores[i]), feats[i], int(labels[i]), faces.landmarks[i])
                for key, value in zip(ROW_FIELDS, values, strict=True):
                    rows[key].append(value)

        for truth in read_wider_annotations(WIDER_TRUTH):
            img = load_image(WIDER_IMAGES / truth.path)
            faces = detector.detect(img)
            faces = faces[np.argsort(-faces.scores, kind="stable")]
            _, labels = _label_image(truth.xyxy, ~truth.invalid, faces.xyxy, faces.scores, 0.5)
            add("wider", truth.path, img, faces, labels)
        for source in ("animals", "negatives"):
            for path in iter_image_paths([DATA / source]):
                img = load_image(path)
                faces = detector.detect(img)
                add(source, path.name, img, faces, np.zeros(len(faces), np.int8))
        for path in sample_images(DATA / "lfw", LFW_IMAGES, seed=1):
            img = load_image(path)
            faces = detector.detect(img)
            h, w = img.shape[:2]
            centre = (faces.xyxy[:, 0:2] + faces.xyxy[:, 2:4]) / 2 - np.array([w / 2, h / 2])
            labels = (np.linalg.norm(centre, axis=1) < 0.15 * min(h, w)).astype(np.int8)
            add("lfw", path.relative_to(DATA / "lfw").as_posix(), img, faces, labels)
        for index, frame in _clip_frames():
            faces = video.detect(frame)
            add("clip", str(index), frame, faces, np.ones(len(faces), np.int8))
        _save_rows(kind, rows)
        print(f"{kind}: {len(rows['score'])} detections -> {_cache(kind)}")
    _embed_rows(kind, embedders)


@functools.cache
def _wider_truth() -> tuple[Any, ...]:
    return tuple(read_wider_annotations(WIDER_TRUTH))


def _load_all(kind: str, embedders: list[str]) -> dict[str, np.ndarray]:
    """A detector's rows at its default score with ``emb:<embedder>`` columns, plus the
    background crops when every embedder has embedded them."""
    def rows(name: str) -> dict[str, np.ndarray]:
        data = _load_rows(name, None)
        for e in embedders:
            data[f"emb:{e}"] = _load_rows(name, e)["emb"]
        return data

    data = rows(kind)
    if _cache("background").exists() and all(_emb_cache("background", e).exists() for e in embedders):
        bg = rows("background")
        data = {k: np.concatenate([v, bg[k] if v.dtype.kind == "U" else bg[k].astype(v.dtype)]) for k, v in data.items()}
    at_default = data["score"] >= DEFAULT_SCORE[kind]
    return {k: v[at_default] for k, v in data.items()}


def _folds(data: dict[str, np.ndarray], folds: int, seed: int) -> np.ndarray:
    """Each row's fold: by image for WIDER (and its background crops), animals, negatives; -1 for LFW and the clip."""
    src = data["source"]
    foldable = np.isin(src, ("wider", "animals", "negatives", "background"))
    groups = np.array([i if s in ("wider", "background") else f"{s}/{i}" for s, i in zip(src, data["image"], strict=True)])
    unique = np.unique(groups[foldable])
    fold_of = {g: k % folds for k, g in enumerate(np.random.default_rng(seed).permutation(unique))}
    return np.array([fold_of[g] if f else -1 for g, f in zip(groups, foldable, strict=True)])


class FitSettings(NamedTuple):
    """The embedding check's settings (``fit``'s options)."""

    c: float
    quantile: float
    onet_accept_logit: float
    onet_reject_logit: float


def _wider_recall(data: dict[str, np.ndarray], keep: np.ndarray, images: set[str] | None, min_face: float) -> tuple[float, float]:
    """WIDER AP and recall (faces >= min_face) of the kept detections at default score."""
    wider = _wider_truth()
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


def evaluate(kind: str, embedders: list[str], budget: float, folds: int, out: Path | None, embedding_only: bool,
             shipped: FitSettings, splits: int = 1) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    data = _load_all(kind, embedders)
    x, src, label = data["feat"], data["source"], data["label"]
    big = np.exp(x[:, FEATURE_NAMES.index("log_size_px")]) >= 40.0  # shorter side, the checked faces
    fit_set = np.isin(src, ("wider", "animals", "negatives"))
    fold = _folds(data, folds, 0)
    base_ap, base_recall = _wider_recall(data, np.ones(len(x), bool), None, 20.0)
    _base_ap40, base_recall40 = _wider_recall(data, np.ones(len(x), bool), None, 40.0)
    n_animals = len(list(iter_image_paths([DATA / "animals"])))
    n_neg = len(list(iter_image_paths([DATA / "negatives"])))
    print(f"{kind}: no check: WIDER AP {base_ap:.3f} recall {base_recall:.3f} (>=20 px), {base_recall40:.3f} (>=40 px); "
          f"animals {int((src == 'animals').sum())} false faces / {n_animals} images, negatives {int((src == 'negatives').sum())} / {n_neg}; "
          f"LFW faces {int((src == 'lfw').sum())}, clip faces {int((src == 'clip').sum())}")

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

    record: dict[str, Any] = {"detector": kind, "embedders": embedders, "cpu": cpu_info().describe(), "baseline": {
        "wider_ap_20": base_ap, "wider_recall_20": base_recall, "wider_recall_40": base_recall40,
        "animals": int((src == "animals").sum()), "negatives": int((src == "negatives").sum())}, "checks": {}}
    if not embedding_only:
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
    record["embedding_checks"] = {e: _embedding_checks(data, e, fold, folds, base_recall, shipped) for e in embedders}
    record["shipped_settings"] = shipped._asdict()
    record["summary"] = _summary(data, embedders, folds, splits, base_recall, shipped)
    if out is not None:
        out.write_text(json.dumps(record, indent=1))


def _fit_embedding_check(e: np.ndarray, positive: np.ndarray, train: np.ndarray, c: float, quantile: float) -> tuple[np.ndarray, float, float]:
    """Logistic regression on unit embeddings, folded into ``e @ w + b``, and its
    threshold: the ``quantile`` of the training faces' scores."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(e[train])
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(scaler.transform(e[train]), positive[train].astype(int))
    w = model.coef_[0] / scaler.scale_
    b = float(model.intercept_[0] - (scaler.mean_ * w).sum())
    s = e @ w + b
    return w, b, float(np.quantile(s[train & positive], quantile))


def _embedding_keep(data: dict[str, np.ndarray], embedder: str, fold: np.ndarray, folds: int, c: float, quantile: float,
                    accept_logit: float | None, reject_logit: float) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold verdicts of the two-step check, and which rows were embedded.

    A face >= 40 px whose O-Net logit is under ``reject_logit`` is dropped, at or above
    ``accept_logit`` kept (``None``: every face is embedded); the others are kept when
    their embedding's score, by a model fitted on the other folds (all folds for LFW and
    the clip), reaches the threshold. Fitted like ``fit``: WIDER faces matched to ground
    truth against the detections on animals and negatives (not the background crops).
    """
    src, label, x = data["source"], data["label"], data["feat"]
    e = data[f"emb:{embedder}"]
    big = np.exp(x[:, FEATURE_NAMES.index("log_size_px")]) >= 40.0
    onet = x[:, FEATURE_NAMES.index("onet_landmark_box")]
    pos = (src == "wider") & (label == 1)
    neg = np.isin(src, ("animals", "negatives"))
    fit_set = (pos | neg) & big
    margin = np.zeros(len(e))
    for k in range(folds):
        w, b, t = _fit_embedding_check(e, pos, fit_set & (fold != k) & (fold >= 0), c, quantile)
        margin[fold == k] = (e @ w + b - t)[fold == k]
    w, b, t = _fit_embedding_check(e, pos, fit_set & (fold >= 0), c, quantile)
    margin[fold < 0] = (e @ w + b - t)[fold < 0]  # LFW and the clip: never fitted on
    rejected = big & (onet < reject_logit)
    embedded = big & ~rejected & (np.ones(len(e), bool) if accept_logit is None else onet < accept_logit)
    keep = ~rejected & (~embedded | (margin >= 0))
    return keep, embedded


def _outcome(data: dict[str, np.ndarray], keep: np.ndarray, embedded: np.ndarray) -> dict[str, Any]:
    src, label = data["source"], data["label"]
    ap, rec = _wider_recall(data, keep, None, 20.0)
    _, rec40 = _wider_recall(data, keep, None, 40.0)
    lfw, clip, bg = (src == "lfw") & (label == 1), src == "clip", src == "background"
    return {"wider_ap_20": ap, "wider_recall_20": rec, "wider_recall_40": rec40,
            "animals": int((keep & (src == "animals")).sum()), "negatives": int((keep & (src == "negatives")).sum()),
            "lfw_dropped": int((~keep & lfw).sum()), "lfw_faces": int(lfw.sum()),
            "clip_dropped": int((~keep & clip).sum()), "clip_faces": int(clip.sum()),
            "embedded_share": float(embedded[~bg].mean()),
            "background_kept": float(keep[bg].mean()) if bg.any() else float("nan")}


HEADER = (f"{'AP20':>6} {'rec20':>6} {'d rec':>6} {'rec40':>6} {'anim':>4} {'neg':>4} {'lfw lost':>8} {'clip lost':>9} "
          f"{'embedded':>8} {'bg kept':>7}")


def _line(row: dict[str, Any], base_recall: float) -> str:
    return (f"{row['wider_ap_20']:6.3f} {row['wider_recall_20']:6.3f} {100 * (row['wider_recall_20'] - base_recall):+6.2f} "
            f"{row['wider_recall_40']:6.3f} {row['animals']:4d} {row['negatives']:4d} "
            f"{row['lfw_dropped']:>3d}/{row['lfw_faces']:<4d} {row['clip_dropped']:>4d}/{row['clip_faces']:<4d} "
            f"{row['embedded_share']:8.2f} {row['background_kept']:7.3f}")


def _embedding_checks(data: dict[str, np.ndarray], embedder: str, fold: np.ndarray, folds: int, base_recall: float,
                      shipped: FitSettings) -> dict[str, Any]:
    """O-Net first (reject under the floor, accept at ``skip``), the embedding's logistic regression on the rest."""
    out: dict[str, Any] = {}
    print(f"  {embedder + ' embedding check (out-of-fold)':44} {HEADER}")
    for c in (0.003, 0.01, 0.03):
        for skip in (None, 2.0, 3.0, 4.0):
            for quantile in (0.002, 0.004):
                keep, embedded = _embedding_keep(data, embedder, fold, folds, c, quantile, skip, shipped.onet_reject_logit)
                row = _outcome(data, keep, embedded)
                name = f"C={c} O-Net accepts >= logit {skip} q={quantile}"
                out[name] = row
                print(f"  {name:44} {_line(row, base_recall)}")
    return out


def _summary(data: dict[str, np.ndarray], embedders: list[str], folds: int, splits: int, base_recall: float,
             shipped: FitSettings) -> dict[str, Any]:
    """Each embedder's check at the ``fit`` settings, over ``splits`` fold splits."""
    out: dict[str, Any] = {}
    print(f"  summary at the fit settings (C={shipped.c:g}, q={shipped.quantile:g}, O-Net accept logit "
          f"{shipped.onet_accept_logit:g}, reject logit {shipped.onet_reject_logit:g}), {folds} folds by image")
    print(f"  {'embedder':22} {'split':>5} {HEADER}")
    for e in embedders:
        for seed in range(splits):
            fold = _folds(data, folds, seed)
            keep, embedded = _embedding_keep(data, e, fold, folds, shipped.c, shipped.quantile,
                                             shipped.onet_accept_logit, shipped.onet_reject_logit)
            row = _outcome(data, keep, embedded)
            out[f"{e} split {seed}"] = row
            print(f"  {e:22} {seed:5d} {_line(row, base_recall)}")
    return out


def fit(kinds: list[str], embedder: str, c: float, quantile: float, onet_accept_logit: float, onet_reject_logit: float,
        out: Path) -> None:
    """Fit the shipped check on every detector's detections (all folds) and write it."""
    from facesense.embed import make_embedder

    model_id = make_embedder(embedder).model_id
    es, positives, trains = [], [], []
    for kind in kinds:
        stored = str(np.load(_emb_cache(kind, embedder))["model_id"])
        if stored != model_id:
            raise SystemExit(f"{_emb_cache(kind, embedder)} holds {stored} embeddings, not {model_id}: extract again")
        data = _load_all(kind, [embedder])
        big = np.exp(data["feat"][:, FEATURE_NAMES.index("log_size_px")]) >= 40.0
        pos = (data["source"] == "wider") & (data["label"] == 1)
        neg = np.isin(data["source"], ("animals", "negatives"))  # not the background crops: see evaluate
        es.append(data[f"emb:{embedder}"])
        positives.append(pos)
        trains.append((pos | neg) & big)
    e, pos, train = np.concatenate(es), np.concatenate(positives), np.concatenate(trains)
    w, b, t = _fit_embedding_check(e, pos, train, c, quantile)
    record = {
        "about": f"facesense non-face check (issue 14): the unit-length {embedder} embedding e ({model_id}) of a face whose "
        "O-Net probability on its landmark box is in [onet_reject_score, onet_accept_score) is a human face when "
        f"e @ weights + bias >= threshold. Logistic regression (scikit-learn, C={c:g}, balanced classes) on WIDER FACE "
        "subset faces >= 40 px matched to ground truth (positives) vs detections on ../shared/data/animals and negatives "
        f"(negatives), detectors {'+'.join(kinds)}; threshold: the {quantile:g} quantile of the positives' scores. "
        f"Made by benchmarks/nonface_check.py fit --embedder {embedder}.",
        "embedder": embedder,
        "model_id": model_id,
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


def _shipped_embedder() -> str:
    from facesense.detect.verify import nonface_model

    return nonface_model().embedder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("extract", "background", "evaluate", "fit"))
    parser.add_argument("--detector", choices=("yunet", "mtcnn"), default="yunet")
    parser.add_argument("--embedder", action="append", default=None,
                        help="embedder kind of the embedding step (repeat to compare; default: the shipped check's)")
    parser.add_argument("--budget", type=float, default=0.3, help="allowed WIDER recall loss on the training folds, points")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--splits", type=int, default=1, help="evaluate: fold splits (seeds) of the summary table")
    parser.add_argument("--embedding-only", action="store_true", help="evaluate: only the embedding checks")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--c", type=float, default=0.01, help="fit: inverse regularisation")
    parser.add_argument("--quantile", type=float, default=0.002, help="fit: threshold quantile of the faces' scores")
    parser.add_argument("--onet-accept-logit", type=float, default=3.0, help="fit: O-Net logit that skips the embedding")
    parser.add_argument("--onet-reject-logit", type=float, default=-5.5, help="fit: O-Net logit under which a face is no face")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    embedders: list[str] = args.embedder or [_shipped_embedder()]
    print(cpu_info().describe())
    if args.step == "extract":
        extract(args.detector, embedders)
    elif args.step == "background":
        background(embedders)
    elif args.step == "fit":
        if len(embedders) != 1:
            parser.error("fit takes one --embedder")
        fit(["yunet", "mtcnn"], embedders[0], args.c, args.quantile, args.onet_accept_logit, args.onet_reject_logit,
            args.out or DATA_DIR / f"nonface_{embedders[0].replace('+', '-')}.json")
    else:
        evaluate(args.detector, embedders, args.budget, args.folds, args.out, args.embedding_only,
                 FitSettings(args.c, args.quantile, args.onet_accept_logit, args.onet_reject_logit), args.splits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
