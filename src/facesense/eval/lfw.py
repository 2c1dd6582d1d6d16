"""LFW face verification: the standard k-fold protocol over a ``pairs.txt`` file.

The pairs file format is LFW's own: a header line ``<folds> <n>``, then for each fold
``n`` matched lines (``name i j``) followed by ``n`` mismatched lines
(``name1 i name2 j``). Images live at ``<images>/<name>/<name>_<NNNN>.jpg``.

Protocol (as in the LFW technical report and davidsandberg/facenet's validation):

* Every image is embedded once. The face used is the detection nearest the image
  centre (weighted by size); images where no face is found are embedded from a fixed
  central box (the median detected box over the run) and counted in ``no_face``.
* Distance is ``1 - cosine similarity`` of the two embeddings; with ``subtract_mean``
  the mean embedding of the *training* folds is removed first (never the test fold's).
* For each fold in turn, the threshold that maximises accuracy on the other folds is
  applied to that fold. Reported: mean and std of the per-fold accuracies, the mean
  threshold, and, over all pairs, AUC and TAR at FAR = 1e-3.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facesense.errors import ConfigError, ImageError

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.analyzer import FaceAnalyzer
    from facesense.types import Faces

logger = logging.getLogger(__name__)

# Whether ``facesense eval lfw`` removes the training folds' mean embedding by default
# (measured: docs/preprocessing.md).
DEFAULT_SUBTRACT_MEAN = False

__all__ = [
    "LFWPairs",
    "LFWReport",
    "embed_lfw_images",
    "evaluate_lfw",
    "lfw_image_path",
    "read_pairs",
    "select_central_face",
    "verification_report",
]


@dataclass(frozen=True)
class LFWPairs:
    """Parsed pairs: ``left``/``right`` are image keys ``(name, number)``; ``fold`` per pair."""

    left: tuple[tuple[str, int], ...]
    right: tuple[tuple[str, int], ...]
    same: npt.NDArray[np.bool_]
    fold: npt.NDArray[np.int64]
    folds: int

    def __len__(self) -> int:
        return len(self.left)

    @property
    def images(self) -> list[tuple[str, int]]:
        """Every distinct image key, sorted."""
        return sorted(set(self.left) | set(self.right))


def read_pairs(path: Path) -> LFWPairs:
    """Parse an LFW ``pairs.txt``.

    Raises:
        ConfigError: the file is missing or does not follow the format.
    """
    try:
        lines = [ln.split() for ln in Path(path).read_text().splitlines() if ln.strip()]
    except OSError as exc:
        raise ConfigError(f"cannot read pairs file {path}: {exc.strerror or exc}") from exc
    if not lines or len(lines[0]) != 2 or not all(t.isdigit() for t in lines[0]):
        raise ConfigError(f"{path}: first line must be '<folds> <pairs per class per fold>'")
    folds, n = int(lines[0][0]), int(lines[0][1])
    body = lines[1:]
    if folds < 2 or n < 1 or len(body) != folds * 2 * n:
        raise ConfigError(
            f"{path}: header says {folds} folds x {2 * n} pairs = {folds * 2 * n} lines, "
            f"found {len(body)}"
        )
    left, right, same, fold = [], [], [], []
    for i, parts in enumerate(body):
        try:
            if len(parts) == 3:
                a, b = (parts[0], int(parts[1])), (parts[0], int(parts[2]))
                is_same = True
            elif len(parts) == 4:
                a, b = (parts[0], int(parts[1])), (parts[2], int(parts[3]))
                is_same = False
            else:
                raise ValueError(f"expected 3 or 4 fields, got {len(parts)}")
        except ValueError as exc:
            raise ConfigError(f"{path}: line {i + 2}: {exc}") from exc
        left.append(a)
        right.append(b)
        same.append(is_same)
        fold.append(i // (2 * n))
    return LFWPairs(
        left=tuple(left),
        right=tuple(right),
        same=np.array(same, dtype=bool),
        fold=np.array(fold, dtype=np.int64),
        folds=folds,
    )


def lfw_image_path(images: Path, key: tuple[str, int]) -> Path:
    """``<images>/<name>/<name>_<NNNN>.jpg`` for an image key."""
    name, number = key
    return Path(images) / name / f"{name}_{number:04d}.jpg"


def select_central_face(faces: Faces, size_wh: tuple[int, int]) -> int | None:
    """Index of the face that best fits "the subject of a centred portrait".

    Larger faces nearer the centre win: score = box area - 2 * squared centre offset
    (davidsandberg/facenet's rule). ``None`` when there are no faces.
    """
    if len(faces) == 0:
        return None
    w, h = size_wh
    xyxy = faces.xyxy.astype(np.float64)
    area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
    cx = (xyxy[:, 0] + xyxy[:, 2]) / 2 - w / 2
    cy = (xyxy[:, 1] + xyxy[:, 3]) / 2 - h / 2
    return int(np.argmax(area - 2.0 * (cx**2 + cy**2)))


@dataclass(frozen=True)
class EmbeddedImages:
    """Embeddings of LFW images plus what happened to faceless ones."""

    keys: tuple[tuple[str, int], ...]
    embeddings: npt.NDArray[np.float32]
    no_face: tuple[tuple[str, int], ...]
    unreadable: tuple[tuple[str, int], ...]

    def index(self) -> dict[tuple[str, int], int]:
        return {k: i for i, k in enumerate(self.keys)}


def embed_lfw_images(
    analyzer: FaceAnalyzer,
    images: Path,
    keys: Iterable[tuple[str, int]],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> EmbeddedImages:
    """Detect the central face of each image and embed it.

    Images with no detected face are embedded from the median detected box (scaled
    to the image) and listed in ``no_face``. Unreadable images get a zero embedding
    (which can never verify as "same") and are listed in ``unreadable``.
    """
    from facesense.imageio import load_image
    from facesense.types import Faces

    keys = list(keys)
    dim = getattr(analyzer.embedder, "dim", 512)
    out = np.zeros((len(keys), dim), dtype=np.float32)
    boxes_rel: list[npt.NDArray[np.float64]] = []
    no_face_idx: list[int] = []
    unreadable: list[tuple[str, int]] = []
    # One pass embeds every image with a face; only faceless images are read again,
    # once the median box is known, so memory stays at one image at a time.
    for i, key in enumerate(keys):
        if progress is not None:
            progress(i + 1, len(keys))
        try:
            img = load_image(lfw_image_path(images, key))
        except ImageError as exc:
            logger.warning("%s", exc)
            unreadable.append(key)
            continue
        faces = analyzer.detect(img)
        idx = select_central_face(faces, (img.shape[1], img.shape[0]))
        if idx is None:
            no_face_idx.append(i)
            continue
        face = faces[[idx]]
        boxes_rel.append(face.xyxy[0] / np.array([img.shape[1], img.shape[0]] * 2))
        out[i] = analyzer.embed(img, face).embeddings[0]  # type: ignore[index]
    median_rel = (
        np.median(np.stack(boxes_rel), axis=0) if boxes_rel else np.array([0.25, 0.25, 0.75, 0.75])
    )
    for i in no_face_idx:
        img = load_image(lfw_image_path(images, keys[i]))
        wh = np.array([img.shape[1], img.shape[0]] * 2)
        face = Faces(
            xyxy=(median_rel * wh)[None].astype(np.float32),
            scores=np.zeros(1, np.float32),
            landmarks=np.zeros((1, 5, 2), np.float32),
        )
        out[i] = analyzer.embed(img, face).embeddings[0]  # type: ignore[index]
    no_face = [keys[i] for i in no_face_idx]
    return EmbeddedImages(tuple(keys), out, tuple(no_face), tuple(unreadable))


@dataclass(frozen=True)
class LFWReport:
    """Result of the verification protocol (see the module docstring)."""

    accuracy: float
    std: float
    auc: float
    tar_at_far_1e_3: float
    threshold: float
    pairs: int
    folds: int
    no_face: int
    unreadable: int
    fold_accuracies: tuple[float, ...]
    fold_thresholds: tuple[float, ...]
    no_face_policy: str = "embedded from the median detected box"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tar_at_far_1e-3"] = d.pop("tar_at_far_1e_3")
        d["fold_accuracies"] = list(self.fold_accuracies)
        d["fold_thresholds"] = list(self.fold_thresholds)
        return d


def _best_threshold(dist: npt.NDArray[np.float64], same: npt.NDArray[np.bool_]) -> float:
    """Threshold (``dist <= t`` means same) maximising accuracy; midpoint between distances."""
    order = np.argsort(dist, kind="stable")
    d, s = dist[order], same[order]
    # Accepting the first k pairs: correct = same among them + different among the rest.
    tp = np.concatenate([[0], np.cumsum(s)])
    fp = np.concatenate([[0], np.cumsum(~s)])
    correct = tp + (np.count_nonzero(~s) - fp)
    # Only cut between distinct distances.
    valid = np.ones(len(d) + 1, dtype=bool)
    valid[1:-1] = d[1:] > d[:-1]
    k = int(np.argmax(np.where(valid, correct, -1)))
    if k == 0:
        return float(d[0] - 1e-6)
    if k == len(d):
        return float(d[-1] + 1e-6)
    return float((d[k - 1] + d[k]) / 2)


def _tar_at_far(dist: npt.NDArray[np.float64], same: npt.NDArray[np.bool_], far: float) -> float:
    """True accept rate at the largest threshold whose false accept rate is <= ``far``."""
    neg = np.sort(dist[~same])
    allowed = int(np.floor(far * len(neg)))
    # Accept dist < neg[allowed]: at most `allowed` negatives fall below it.
    cut = neg[allowed] if allowed < len(neg) else np.inf
    return float(np.mean(dist[same] < cut))


def verification_report(
    emb_left: npt.NDArray[np.float32],
    emb_right: npt.NDArray[np.float32],
    pairs: LFWPairs,
    *,
    subtract_mean: bool = False,
    no_face: int = 0,
    unreadable: int = 0,
) -> LFWReport:
    """Run the k-fold protocol on the embeddings of each pair's two images."""
    from sklearn.metrics import roc_auc_score

    same = pairs.same
    accs, thrs = [], []
    all_dist = np.empty(len(pairs))
    for k in range(pairs.folds):
        test = pairs.fold == k
        train = ~test
        if subtract_mean:
            mean = np.concatenate([emb_left[train], emb_right[train]]).mean(axis=0)
        else:
            mean = np.zeros(emb_left.shape[1], dtype=np.float32)
        dist = _cosine_distance(emb_left - mean, emb_right - mean)
        t = _best_threshold(dist[train], same[train])
        accs.append(float(np.mean((dist[test] <= t) == same[test])))
        thrs.append(t)
        all_dist[test] = dist[test]
    return LFWReport(
        accuracy=float(np.mean(accs)),
        std=float(np.std(accs)),
        auc=float(roc_auc_score(same, -all_dist)),
        tar_at_far_1e_3=_tar_at_far(all_dist, same, 1e-3),
        threshold=float(np.mean(thrs)),
        pairs=len(pairs),
        folds=pairs.folds,
        no_face=no_face,
        unreadable=unreadable,
        fold_accuracies=tuple(accs),
        fold_thresholds=tuple(thrs),
    )


def _cosine_distance(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    na = np.linalg.norm(a64, axis=1)
    nb = np.linalg.norm(b64, axis=1)
    denom = np.where((na * nb) > 0, na * nb, 1.0)
    return np.asarray(1.0 - np.einsum("ij,ij->i", a64, b64) / denom, dtype=np.float64)


def evaluate_lfw(
    analyzer: FaceAnalyzer,
    pairs_path: Path,
    images: Path,
    *,
    subtract_mean: bool = False,
    limit_folds: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LFWReport:
    """Embed the images of a pairs file and run the verification protocol.

    Args:
        analyzer: detector + embedder to evaluate.
        pairs_path: LFW ``pairs.txt`` (any number of folds).
        images: folder with ``<name>/<name>_<NNNN>.jpg``.
        subtract_mean: remove the training folds' mean embedding before distances.
        limit_folds: use only the first N folds (quick checks); None for all.
    """
    pairs = read_pairs(pairs_path)
    if not Path(images).is_dir():
        raise ConfigError(f"LFW image folder {images} does not exist")
    if limit_folds is not None:
        if not 2 <= limit_folds <= pairs.folds:
            raise ConfigError(f"limit_folds must be in [2, {pairs.folds}], got {limit_folds}")
        keep = pairs.fold < limit_folds
        pairs = LFWPairs(
            left=tuple(k for k, m in zip(pairs.left, keep, strict=True) if m),
            right=tuple(k for k, m in zip(pairs.right, keep, strict=True) if m),
            same=pairs.same[keep],
            fold=pairs.fold[keep],
            folds=limit_folds,
        )
    embedded = embed_lfw_images(analyzer, images, pairs.images, progress=progress)
    if len(embedded.unreadable) == len(embedded.keys):
        raise ImageError(f"none of the {len(embedded.keys)} LFW images under {images} could be read")
    index = embedded.index()
    left = embedded.embeddings[[index[k] for k in pairs.left]]
    right = embedded.embeddings[[index[k] for k in pairs.right]]
    return verification_report(
        left,
        right,
        pairs,
        subtract_mean=subtract_mean,
        no_face=len(embedded.no_face),
        unreadable=len(embedded.unreadable),
    )
