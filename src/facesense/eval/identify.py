"""Open-set identification on LFW: name enrolled people, call strangers unknown.

Protocol (``facesense eval identify --images LFW_DIR``):

* Every person with two or more images is **enrolled from one image** (the first by
  file name); their other images are the **probes** (they should be named).
* Every person with exactly one image is a **stranger**: that image is a probe that
  should come out unknown.
* Each image is embedded once: the detection nearest the image centre (weighted by
  size, :func:`facesense.eval.lfw.select_central_face`); images without a detection
  are embedded from the median detected box and counted in ``no_face``.

Reported, for the matcher under test:

* ``rank1``: the share of enrolled probes whose candidate is right, with rejection off;
* the **curve**: for a grid of thresholds, the detection-and-identification rate
  (``dir``: named, and named right) and the stranger false-accept rate (``far``:
  strangers named as anybody);
* the thresholds that give FAR <= 0.1 %, <= 1 % and <= 2 % on all strangers (*in-sample*: picked
  and scored on the same people, so it flatters), and the same targets
  **cross-validated by person**: people are split into folds, the threshold (and the
  impostor-distance table of the score normalisation) are measured on the other
  folds' people and applied to the held-out fold;
* the default threshold's ``dir`` and ``far``, and how they change with gallery size
  (random subsets of the enrolled people, all strangers).

The run's ``impostor_quantiles`` (distances between different people's embeddings)
are what :data:`facesense.match.CALIBRATIONS` holds for the model.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facesense.errors import ConfigError, ImageError

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.enroll import FaceAnalyzerLike
    from facesense.match import KNNMatcher, MeanMatcher, ScoreNorm, SVMMatcher

logger = logging.getLogger(__name__)

__all__ = [
    "FAR_TARGETS",
    "IdentifyReport",
    "OpenSetProtocol",
    "OpenSetScores",
    "default_threshold",
    "embed_central_faces",
    "evaluate_identify",
    "evaluate_open_set",
    "impostor_quantiles",
    "lfw_open_set",
]

FAR_TARGETS = (0.001, 0.01, 0.02)
QUANTILE_PS = (
    1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2,
    0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99,
)
CURVE_FARS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0)
"""Stranger false-accept rates at which the curve is read (the thresholds follow from them,
so the curve suits any model's distance scale)."""
GALLERY_SIZES = (5, 20, 100, 300)


@dataclass(frozen=True)
class OpenSetProtocol:
    """Which image plays which part (paths relative to ``root``)."""

    root: Path
    gallery: tuple[str, ...]
    gallery_labels: tuple[str, ...]
    probes: tuple[str, ...]
    probe_labels: tuple[str, ...]
    strangers: tuple[str, ...]
    stranger_labels: tuple[str, ...]

    @property
    def all_paths(self) -> tuple[str, ...]:
        return self.gallery + self.probes + self.strangers


def lfw_open_set(root: str | os.PathLike[str]) -> OpenSetProtocol:
    """Build the protocol from ``root/<name>/<image>.jpg``.

    Raises:
        ConfigError: no such folder, or it holds no person with two images or no stranger.
    """
    from facesense.imageio import IMAGE_SUFFIXES

    base = Path(root)
    if not base.is_dir():
        raise ConfigError(f"{base}: not a directory")
    by_person: dict[str, list[str]] = defaultdict(list)
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        for f in sorted(folder.iterdir()):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                by_person[folder.name].append(f"{folder.name}/{f.name}")
    gallery, gl, probes, pl, strangers, sl = [], [], [], [], [], []
    for name, files in sorted(by_person.items()):
        if len(files) >= 2:
            gallery.append(files[0])
            gl.append(name)
            probes.extend(files[1:])
            pl.extend([name] * (len(files) - 1))
        else:
            strangers.append(files[0])
            sl.append(name)
    if not gallery or not strangers:
        raise ConfigError(f"{base}: need people with >= 2 images and people with 1 image (found {len(gallery)} and {len(strangers)})")
    return OpenSetProtocol(base, tuple(gallery), tuple(gl), tuple(probes), tuple(pl), tuple(strangers), tuple(sl))


def embed_central_faces(
    analyzer: FaceAnalyzerLike,
    root: Path,
    paths: Sequence[str],
    *,
    cache: Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[npt.NDArray[np.float32], int]:
    """Embed the central face of each image (see the module docstring).

    Args:
        cache: an ``.npz`` to reuse when it holds the same paths and model id, and to
            write otherwise.

    Returns:
        ``(len(paths), D)`` float32 embeddings and the number of images without a detection.
    """
    from facesense.eval.lfw import select_central_face
    from facesense.imageio import load_image
    from facesense.types import Faces

    if cache is not None and cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as npz:
                if str(npz["model_id"]) == analyzer.model_id and tuple(npz["paths"].tolist()) == tuple(paths):
                    logger.info("reusing embeddings from %s", cache)
                    return np.asarray(npz["embeddings"], np.float32), int(npz["no_face"])
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            logger.warning("ignoring embedding cache %s (%s)", cache, exc)
        logger.info("embedding cache %s is for other images or another model; recomputing", cache)
    boxes = np.zeros((len(paths), 4), np.float32)
    landmarks = np.zeros((len(paths), 5, 2), np.float32)
    rel_boxes: list[npt.NDArray[np.float64]] = []
    found = np.zeros(len(paths), bool)
    sizes = np.zeros((len(paths), 2), np.float64)
    for i, rel in enumerate(paths):
        image = load_image(root / rel)
        faces = analyzer.detect(image)
        sizes[i] = image.shape[1], image.shape[0]
        j = select_central_face(faces, (image.shape[1], image.shape[0]))
        if j is not None:
            boxes[i], landmarks[i], found[i] = faces.xyxy[j], faces.landmarks[j], True
            rel_boxes.append(faces.xyxy[j] / np.tile(sizes[i], 2))
        if on_progress is not None:
            on_progress(i + 1, 2 * len(paths))
    median = np.median(np.stack(rel_boxes), axis=0) if rel_boxes else np.array([0.25, 0.25, 0.75, 0.75])
    out: npt.NDArray[np.float32] | None = None
    for i, rel in enumerate(paths):
        image = load_image(root / rel)
        box = boxes[i] if found[i] else (median * np.tile(sizes[i], 2)).astype(np.float32)
        face = Faces(xyxy=box[None], scores=np.ones(1, np.float32), landmarks=landmarks[i][None])
        emb = analyzer.embed(image, face).embeddings
        if emb is None:
            raise ImageError(f"{rel}: the embedder returned no embedding")
        if out is None:
            out = np.zeros((len(paths), emb.shape[1]), np.float32)
        out[i] = emb[0]
        if on_progress is not None:
            on_progress(len(paths) + i + 1, 2 * len(paths))
    result = out if out is not None else np.zeros((0, 0), np.float32)
    no_face = int((~found).sum())
    if cache is not None:
        import io

        from facesense.models.registry import write_atomic

        buf = io.BytesIO()
        np.savez(buf, model_id=np.array(analyzer.model_id), paths=np.array(list(paths)), embeddings=result, no_face=np.array(no_face))
        write_atomic(cache, buf.getvalue())
    return result, no_face


def impostor_quantiles(
    embeddings: npt.ArrayLike, labels: Sequence[str], ps: Sequence[float] = QUANTILE_PS
) -> tuple[tuple[float, float], ...]:
    """Quantiles of the distances between embeddings of *different* people.

    Returns:
        ``(p, distance)`` pairs, ready for :class:`facesense.match.ScoreNorm`.
    """
    from facesense.match import pairwise_distances

    x = np.asarray(embeddings, np.float32)
    lab = np.asarray(labels)
    values = []
    for start in range(0, len(x), 1024):
        d = pairwise_distances(x[start : start + 1024], x)
        rows = np.arange(d.shape[0])[:, None] + start
        keep = (lab[start : start + 1024, None] != lab[None, :]) & (np.arange(len(x))[None, :] > rows)
        values.append(d[keep])
    v = np.concatenate(values) if values else np.zeros(0, np.float32)
    if v.size < 100:
        raise ConfigError(f"too few impostor pairs ({v.size}) to measure distance quantiles")
    q = np.quantile(v, ps)
    q = np.maximum.accumulate(q)  # monotone even with ties
    return tuple((float(p), round(float(d), 4)) for p, d in zip(ps, q, strict=True))


@dataclass(frozen=True)
class OpenSetScores:
    """One matcher's verdict on every probe, with rejection off.

    Attributes:
        correct: ``(P,)`` whether each enrolled probe's candidate is right.
        probe_scores: ``(P,)`` float64 the candidates' scores.
        stranger_scores: ``(S,)`` float64 strangers' best scores.
    """

    correct: npt.NDArray[np.bool_]
    probe_scores: npt.NDArray[np.float64]
    stranger_scores: npt.NDArray[np.float64]

    def at(self, threshold: float) -> tuple[float, float]:
        """``(dir, far)`` at a threshold."""
        dir_ = float(np.mean(self.correct & (self.probe_scores <= threshold)))
        far = float(np.mean(self.stranger_scores <= threshold))
        return dir_, far

    def threshold_for_far(self, far: float) -> float:
        """The largest threshold whose stranger FAR is at most ``far``."""
        s = np.sort(self.stranger_scores.astype(np.float64))
        n = int(np.floor(far * len(s)))
        if n >= len(s):
            return float(s[-1])
        return float(np.nextafter(s[n], -np.inf))


def _score(matcher: Any, g: npt.NDArray[np.float32], gl: Sequence[str], p: npt.NDArray[np.float32], pl: Sequence[str], s: npt.NDArray[np.float32]) -> OpenSetScores:
    m = replace_threshold(matcher, None).fit(g, gl)
    rp = m.match(p)
    rs = m.match(s)
    correct = np.array([c == t for c, t in zip(rp.candidates, pl, strict=True)], bool)
    # float64, so that thresholds picked between two float32 scores compare exactly.
    return OpenSetScores(correct, rp.scores.astype(np.float64), rs.scores.astype(np.float64))


def replace_threshold(matcher: KNNMatcher | SVMMatcher | MeanMatcher, threshold: float | None) -> Any:
    """A fresh, unfitted copy of ``matcher`` with another threshold."""
    from facesense.match import KNNMatcher, MeanMatcher, SVMMatcher

    if isinstance(matcher, KNNMatcher):
        return KNNMatcher(k=matcher.k, weighting=matcher.weighting, threshold=threshold, norm=matcher.norm)
    if isinstance(matcher, SVMMatcher):
        return SVMMatcher(c=matcher.c, threshold=threshold, norm=matcher.norm)
    if isinstance(matcher, MeanMatcher):
        return MeanMatcher(threshold=threshold, norm=matcher.norm)
    raise ConfigError(f"cannot evaluate matcher {matcher!r}")


def _with_norm(matcher: Any, norm: ScoreNorm | None) -> Any:
    copy = replace_threshold(matcher, matcher.threshold)
    copy.norm = norm
    return copy


@dataclass(frozen=True)
class IdentifyReport:
    """The result of :func:`evaluate_open_set` (see the module docstring)."""

    matcher: str
    model_id: str
    enrolled: int
    probes: int
    strangers: int
    no_face: int
    rank1: float
    default_threshold: float | None
    default_dir: float
    default_far: float
    curve: tuple[tuple[float, float, float], ...]
    in_sample: dict[str, dict[str, float]]
    cross_validated: dict[str, dict[str, float]]
    folds: int
    by_gallery_size: tuple[dict[str, float], ...]
    impostor_quantiles: tuple[tuple[float, float], ...] = field(default=())
    baseline: IdentifyReport | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        out = {
            "matcher": self.matcher,
            "model_id": self.model_id,
            "enrolled": self.enrolled,
            "probes": self.probes,
            "strangers": self.strangers,
            "no_face": self.no_face,
            "rank1": round(self.rank1, 4),
            "default": {
                "threshold": self.default_threshold,
                "dir": round(self.default_dir, 4),
                "far": round(self.default_far, 4),
            },
            "curve": [{"threshold": t, "dir": round(d, 4), "far": round(f, 4)} for t, d, f in self.curve],
            "in_sample": self.in_sample,
            "cross_validated": self.cross_validated,
            "folds": self.folds,
            "by_gallery_size": list(self.by_gallery_size),
            "impostor_quantiles": [list(q) for q in self.impostor_quantiles],
        }
        if self.baseline is not None:
            out["baseline"] = self.baseline.to_dict()
        return out

    def lines(self) -> list[str]:
        """A human-readable report."""
        out = [
            (f"open-set identification: {self.enrolled} people enrolled from one image each, "
            f"{self.probes} probes of them, {self.strangers} strangers ({self.no_face} images without a detected face)"),
            f"model {self.model_id}, matcher {self.matcher}",
            f"  rank-1 with rejection off     {100 * self.rank1:6.2f}%",
            (f"  default threshold {self.default_threshold}: named right {100 * self.default_dir:6.2f}%, "
            f"strangers accepted {100 * self.default_far:5.2f}%"),
        ]
        for key, row in self.in_sample.items():
            cv = self.cross_validated[key]
            out.append(
                f"  FAR <= {key:>4}: threshold {row['threshold']:.3f} -> named right {100 * row['dir']:6.2f}% "
                f"(in-sample); cross-validated by person: {100 * cv['dir']:6.2f}% at FAR {100 * cv['far']:.2f}%"
            )
        out.append("  threshold   named-right   strangers-accepted")
        for t, d, f in self.curve:
            out.append(f"  {t:9.3f}   {100 * d:10.2f}%   {100 * f:17.2f}%")
        if self.by_gallery_size:
            out.append("  gallery size at the default threshold (mean over random subsets):")
            for row in self.by_gallery_size:
                out.append(f"    {int(row['people']):5d} people: named right {100 * row['dir']:6.2f}%, strangers accepted {100 * row['far']:5.2f}%")
        if self.baseline is not None:
            b = self.baseline
            out.append(
                f"baseline {b.matcher}: rank-1 {100 * b.rank1:.2f}%; "
                + "; ".join(
                    f"FAR <= {k}: {100 * b.cross_validated[k]['dir']:.2f}% (cross-validated)" for k in b.cross_validated
                )
            )
        return out


def _folds_by_person(names: Sequence[str], folds: int, seed: int) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    unique = sorted(set(names))
    order = rng.permutation(len(unique))
    return {unique[i]: int(k % folds) for k, i in enumerate(order)}


def evaluate_open_set(
    matcher: KNNMatcher | SVMMatcher | MeanMatcher,
    protocol: OpenSetProtocol,
    embeddings: npt.NDArray[np.float32],
    *,
    model_id: str = "",
    no_face: int = 0,
    folds: int = 5,
    seed: int = 0,
    gallery_sizes: Sequence[int] = GALLERY_SIZES,
    repeats: int = 10,
) -> IdentifyReport:
    """Score ``matcher`` on embeddings laid out as ``protocol.all_paths``.

    Args:
        matcher: the matcher under test, with its default threshold (``None`` skips the
            default row). Its normalisation's impostor table is re-measured on the
            training people within each cross-validation fold.
        folds: cross-validation folds (by person; enrolled people and strangers alike).
        gallery_sizes: enrolled-people counts for the gallery-size table.
        repeats: random subsets per gallery size.
    """
    ng, npr = len(protocol.gallery), len(protocol.probes)
    g = embeddings[:ng]
    p = embeddings[ng : ng + npr]
    s = embeddings[ng + npr :]
    gl, pl, sl = list(protocol.gallery_labels), list(protocol.probe_labels), list(protocol.stranger_labels)
    scores = _score(matcher, g, gl, p, pl, s)
    rank1 = float(scores.correct.mean())
    curve = tuple((t, *scores.at(t)) for t in sorted({scores.threshold_for_far(f) for f in CURVE_FARS}))
    in_sample = {}
    for far in FAR_TARGETS:
        t = scores.threshold_for_far(far)
        d, f = scores.at(t)
        in_sample[f"{far:g}"] = {"threshold": round(t, 4), "dir": round(d, 4), "far": round(f, 4)}
    # Cross-validation by person.
    fold_of = _folds_by_person(gl + sl, folds, seed)
    pf = np.array([fold_of[n] for n in pl])
    sf = np.array([fold_of[n] for n in sl])
    labels_all = np.array(gl + pl + sl)
    fold_all = np.array([fold_of[n] for n in labels_all])
    hits = {far: 0 for far in FAR_TARGETS}
    accepts = {far: 0 for far in FAR_TARGETS}
    for k in range(folds):
        norm = matcher.norm
        if norm is not None:
            train = fold_all != k
            norm = replace(norm, impostor_quantiles=impostor_quantiles(embeddings[train], labels_all[train]))
        fold_scores = _score(_with_norm(matcher, norm), g, gl, p, pl, s) if norm is not None else scores
        train_scores = OpenSetScores(
            fold_scores.correct[pf != k], fold_scores.probe_scores[pf != k], fold_scores.stranger_scores[sf != k]
        )
        for far in FAR_TARGETS:
            t = train_scores.threshold_for_far(far)
            hits[far] += int(np.sum(fold_scores.correct[pf == k] & (fold_scores.probe_scores[pf == k] <= t)))
            accepts[far] += int(np.sum(fold_scores.stranger_scores[sf == k] <= t))
    cross = {
        f"{far:g}": {"dir": round(hits[far] / max(npr, 1), 4), "far": round(accepts[far] / max(len(sl), 1), 4)}
        for far in FAR_TARGETS
    }
    default_t = matcher.threshold
    default_dir, default_far = scores.at(default_t) if default_t is not None else (rank1, 1.0)
    by_size = []
    if default_t is not None:
        rng = np.random.default_rng(seed)
        for size in gallery_sizes:
            if size >= ng:
                continue
            dirs, fars = [], []
            for _ in range(repeats):
                pick = np.sort(rng.choice(ng, size, replace=False))
                names = {gl[i] for i in pick}
                mask = np.array([n in names for n in pl])
                sub = _score(matcher, g[pick], [gl[i] for i in pick], p[mask], [n for n, m in zip(pl, mask, strict=True) if m], s)
                d, f = sub.at(default_t)
                dirs.append(d)
                fars.append(f)
            by_size.append({"people": size, "dir": round(float(np.mean(dirs)), 4), "far": round(float(np.mean(fars)), 4)})
        by_size.append({"people": ng, "dir": round(default_dir, 4), "far": round(default_far, 4)})
    return IdentifyReport(
        matcher=repr(matcher),
        model_id=model_id,
        enrolled=ng,
        probes=npr,
        strangers=len(sl),
        no_face=no_face,
        rank1=rank1,
        default_threshold=default_t,
        default_dir=default_dir,
        default_far=default_far,
        curve=curve,
        in_sample=in_sample,
        cross_validated=cross,
        folds=folds,
        by_gallery_size=tuple(by_size),
        impostor_quantiles=impostor_quantiles(embeddings, [str(label) for label in labels_all]),
    )


def default_threshold(model_id: str) -> str | None:
    """``"auto"`` (the calibrated threshold) for a calibrated model, else ``None``.

    This protocol is what calibrates a model, so an uncalibrated one is evaluated
    without a default threshold (the curve and the FAR thresholds are still measured)
    instead of being refused.
    """
    from facesense.models.registry import find_calibration

    return "auto" if find_calibration(model_id) is not None else None


def evaluate_identify(
    analyzer: FaceAnalyzerLike,
    images: str | os.PathLike[str],
    *,
    matcher: KNNMatcher | SVMMatcher | MeanMatcher | None = None,
    baseline: bool = True,
    cache: Path | None = None,
    folds: int = 5,
    on_progress: Callable[[int, int], None] | None = None,
) -> IdentifyReport:
    """Run the whole protocol on an LFW folder (see the module docstring).

    Args:
        matcher: the matcher under test; facesense's default for the analyzer's model when
            ``None`` (see :func:`default_threshold`).
        baseline: also score the same matcher without normalisation, thresholding raw distances.
        cache: ``.npz`` file for the embeddings (reused when it matches).
    """
    from facesense.match import DEFAULT_THRESHOLD, calibration_for, make_matcher

    protocol = lfw_open_set(images)
    embeddings, no_face = embed_central_faces(analyzer, protocol.root, protocol.all_paths, cache=cache, on_progress=on_progress)
    if matcher is None:
        matcher = make_matcher("knn", model_id=analyzer.model_id, threshold=default_threshold(analyzer.model_id))
    report = evaluate_open_set(matcher, protocol, embeddings, model_id=analyzer.model_id, no_face=no_face, folds=folds)
    if baseline and matcher.norm is not None:
        cal = calibration_for(analyzer.model_id)
        raw = _with_norm(replace_threshold(matcher, cal.raw_threshold if cal else DEFAULT_THRESHOLD), None)
        base = evaluate_open_set(raw, protocol, embeddings, model_id=analyzer.model_id, no_face=no_face, folds=folds, gallery_sizes=())
        report = replace(report, baseline=base)
    return report
