"""Calibration of every shipped embedder and fusion, in the form the model registry stores.

``facesense eval calibrate --images LFW_DIR --wider WIDER_DIR [--pairs PAIRS]`` measures,
with the default detector's boxes and landmarks:

1. **Impostor medians** (the fusion scales, :attr:`EmbedderSpec.impostor_median`) of each
   network (FaceNet, dlib's ResNet, SFace), on the faces (shorter side >= 40 px) of the
   WIDER FACE images: the median distance between unit embeddings of faces from
   *different* images. WIDER is outside every evaluation set, so a fusion's weights are
   never fitted on LFW.
2. On LFW, for every kind in :data:`facesense.models.registry.EMBEDDERS` (networks and
   fusions, the fusions built from the medians of step 1): the open-set protocol of
   :mod:`facesense.eval.identify` gives the **impostor quantiles** (every pair of images
   of different people), then the largest thresholds with at most ``far`` of the strangers
   accepted, on normalised scores and on raw distances, floored to 3 decimals: the
   registry's ``threshold`` and ``raw_threshold``. The same embeddings give the
   cross-validated identification numbers and, with ``--pairs``, LFW verification
   (:func:`facesense.eval.lfw.verification_report`, the ``eval lfw`` protocol).

Every image is read and detected once; the three networks run in one merged ONNX Runtime
session (:class:`~facesense.embed.fusion.FusedEmbedder` with unit scales, split back into
its parts afterwards, which is exact since each part is a unit vector). With ``cache_dir``
each kind's LFW embeddings are written in ``eval identify``'s cache format
(``<cache_dir>/<kind>.npz``), so ``facesense eval identify --embedder KIND --cache
<cache_dir>/<kind>.npz`` reports from the very same embeddings.
"""

from __future__ import annotations

import io
import itertools
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facesense.errors import ConfigError, ImageError

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.detect.base import Detector
    from facesense.embed.fusion import FusedEmbedder

logger = logging.getLogger(__name__)

__all__ = [
    "CALIBRATION_FAR",
    "MEDIAN_MIN_FACE_PX",
    "NETWORKS",
    "KindCalibration",
    "calibrate",
    "fuse_parts",
    "impostor_median",
    "network_embedder",
    "split_parts",
    "wider_embeddings",
]

NETWORKS = ("facenet", "dlib", "sface")
"""The registry's embedding networks, in the order the merged session runs them."""
MEDIAN_MIN_FACE_PX = 40.0
"""WIDER faces with a shorter side below this are left out of the impostor medians."""
CALIBRATION_FAR = 0.02
"""Stranger false-accept rate the stored thresholds are read at (as for the first calibrations)."""


@dataclass(frozen=True)
class KindCalibration:
    """One embedder's calibration and the accuracy measured with it.

    Attributes:
        kind: the registry key (``--embedder`` value).
        model_id: the model id of these embeddings.
        impostor_median: the network's WIDER impostor median (``None`` for a fusion).
        impostor_quantiles: ``(p, distance)`` on LFW impostor pairs.
        threshold, raw_threshold: the stored thresholds (normalised scores, raw distances).
        identify: rank-1 and the cross-validated named-right / FAR per FAR target.
        lfw: the LFW verification report (``None`` without pairs).
    """

    kind: str
    model_id: str
    impostor_median: float | None
    impostor_quantiles: tuple[tuple[float, float], ...]
    threshold: float
    raw_threshold: float
    identify: dict[str, Any]
    lfw: dict[str, Any] | None = None
    parts: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        return {
            "kind": self.kind,
            "model_id": self.model_id,
            "parts": list(self.parts),
            "impostor_median": self.impostor_median,
            "impostor_quantiles": [list(q) for q in self.impostor_quantiles],
            "threshold": self.threshold,
            "raw_threshold": self.raw_threshold,
            "identify": self.identify,
            "lfw": self.lfw,
        }

    def registry_lines(self, measured: str) -> list[str]:
        """The statistics as the keyword arguments of the kind's registry entry."""
        q = ", ".join(f"({p:g}, {d:g})" for p, d in self.impostor_quantiles)
        out = [f"# {self.kind}: {self.model_id}"]
        if self.impostor_median is not None:
            out.append(f"impostor_median={self.impostor_median:.3f},")
        out += [
            f"impostor_quantiles=({q}),",
            f"threshold={self.threshold:g},",
            f"raw_threshold={self.raw_threshold:g},",
            f"measured={measured!r},",
        ]
        return out


def network_embedder(*, threads: int | None = None) -> FusedEmbedder:
    """FaceNet, dlib's ResNet and SFace in one merged session, unit scales (split with :func:`split_parts`)."""
    from facesense.embed.factory import make_embedder
    from facesense.embed.fusion import FusedEmbedder

    parts = [make_embedder(key, threads=threads) for key in NETWORKS]
    return FusedEmbedder(parts, scales=[1.0] * len(parts), threads=threads)


def split_parts(fused: npt.ArrayLike, dims: Sequence[int]) -> list[npt.NDArray[np.float32]]:
    """Undo a unit-scale fusion: each part's columns, L2-normalised again.

    Args:
        fused: ``(N, sum(dims))`` rows of a :class:`FusedEmbedder` with equal scales.
        dims: the parts' lengths, in order.

    Raises:
        ConfigError: the columns do not add up to ``sum(dims)``.
    """
    from facesense.embed.base import l2_normalize

    x = np.asarray(fused, np.float32)
    if x.ndim != 2 or x.shape[1] != sum(dims):
        raise ConfigError(f"expected (N, {sum(dims)}) fused rows, got {x.shape}")
    bounds = np.cumsum([0, *dims])
    return [l2_normalize(x[:, int(a) : int(b)]) for a, b in itertools.pairwise(bounds)]


def fuse_parts(parts: Sequence[npt.ArrayLike], scales: Sequence[float]) -> npt.NDArray[np.float32]:
    """What :meth:`FusedEmbedder.fuse` gives for unit part embeddings and these scales."""
    from facesense.embed.base import l2_normalize

    cols = [np.asarray(p, np.float32) / np.float32(s) for p, s in zip(parts, scales, strict=True)]
    return l2_normalize(np.concatenate(cols, axis=1))


def impostor_median(embeddings: npt.ArrayLike, groups: Sequence[int]) -> float:
    """Median Euclidean distance between rows of different ``groups`` (images).

    Raises:
        ConfigError: fewer than 100 such pairs.
    """
    x = np.asarray(embeddings, np.float64)
    g = np.asarray(groups)
    iu = np.triu_indices(len(x), 1)
    keep = g[iu[0]] != g[iu[1]]
    if int(keep.sum()) < 100:
        raise ConfigError(f"too few faces from different images ({int(keep.sum())} pairs) for an impostor median")
    sq = np.sum(x**2, axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    return float(np.median(np.sqrt(np.maximum(d2[iu][keep], 0.0))))


def wider_embeddings(
    detector: Detector,
    embedder: FusedEmbedder,
    images: str | os.PathLike[str],
    *,
    min_face_px: float = MEDIAN_MIN_FACE_PX,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Embeddings of every face of at least ``min_face_px`` in a folder, with the index of its image.

    Raises:
        ImageError: the folder holds no readable image.
    """
    from facesense.imageio import iter_image_paths, load_image

    paths = list(iter_image_paths([Path(images)]))
    rows: list[npt.NDArray[np.float32]] = []
    owner: list[int] = []
    read = 0
    for n, path in enumerate(paths):
        if on_progress is not None:
            on_progress(n + 1, len(paths))
        try:
            image = load_image(path)
        except ImageError as exc:
            logger.warning("%s", exc)
            continue
        read += 1
        faces = detector.detect(image)
        side = np.minimum(faces.xyxy[:, 2] - faces.xyxy[:, 0], faces.xyxy[:, 3] - faces.xyxy[:, 1])
        keep = faces[side >= min_face_px]
        if len(keep):
            emb = embedder.embed(image, keep).embeddings
            if emb is None:  # pragma: no cover - every embedder fills them in
                raise ConfigError(f"{embedder!r} returned no embeddings")
            rows.append(emb)
            owner.extend([n] * len(keep))
    if read == 0:
        raise ImageError(f"no readable image under {images}")
    if not rows:
        raise ConfigError(f"no face of at least {min_face_px:g} px under {images}")
    return np.concatenate(rows), np.asarray(owner, np.int64)


def _floor3(value: float) -> float:
    return math.floor(value * 1000.0 + 1e-9) / 1000.0


def _write_identify_cache(path: Path, model_id: str, paths: Sequence[str], embeddings: npt.NDArray[np.float32], no_face: int) -> None:
    """``eval identify``'s ``--cache`` format (:func:`facesense.eval.identify.embed_central_faces`)."""
    from facesense.models.registry import write_atomic

    buf = io.BytesIO()
    np.savez(buf, model_id=np.array(model_id), paths=np.array(list(paths)), embeddings=embeddings, no_face=np.array(no_face))
    write_atomic(path, buf.getvalue())


def calibrate(
    lfw_images: str | os.PathLike[str],
    wider_images: str | os.PathLike[str],
    *,
    pairs_path: Path | None = None,
    kinds: Sequence[str] | None = None,
    far: float = CALIBRATION_FAR,
    cache_dir: Path | None = None,
    detector: Detector | None = None,
    threads: int | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> list[KindCalibration]:
    """Measure the registry statistics of ``kinds`` (every registry entry by default).

    Args:
        lfw_images: LFW folder (``<name>/<name>_NNNN.jpg``).
        wider_images: folder of WIDER FACE images (for the impostor medians).
        pairs_path: an LFW ``pairs.txt`` for the verification numbers (optional).
        kinds: registry keys to calibrate.
        far: stranger false-accept rate the thresholds are read at.
        cache_dir: folder for the network embeddings and each kind's identify cache.
        detector: the detector (default: ``make_detector(use="image")``, what the
            ``eval`` commands use).
        on_progress: ``(stage, done, total)``.

    Raises:
        ConfigError: unknown kind, bad ``far``, unusable folders or pairs.
        ImageError: an LFW image cannot be read (the protocol needs all of them).
    """
    from facesense.analyzer import FaceAnalyzer
    from facesense.detect import make_detector
    from facesense.eval.identify import (
        FAR_TARGETS,
        embed_central_faces,
        evaluate_open_set,
        impostor_quantiles,
        lfw_open_set,
    )
    from facesense.match import DEFAULT_K, KNNMatcher
    from facesense.models.registry import EMBEDDERS, EmbedderSpec, ScoreNorm, fusion_model_id

    if f"{far:g}" not in {f"{t:g}" for t in FAR_TARGETS}:
        raise ConfigError(f"far must be one of the protocol's FAR targets {', '.join(f'{t:g}' for t in FAR_TARGETS)}, got {far:g}")
    chosen = list(EMBEDDERS) if kinds is None else list(dict.fromkeys(kinds))
    unknown = [k for k in chosen if k not in EMBEDDERS]
    if unknown:
        raise ConfigError(f"unknown embedder(s) {', '.join(unknown)}; known: {', '.join(EMBEDDERS)}")
    protocol = lfw_open_set(lfw_images)  # refuse a wrong folder before the slow passes
    detector = detector if detector is not None else make_detector(use="image")
    networks = network_embedder(threads=threads)
    dims = [int(p.dim) for p in networks.parts]
    part_ids = [p.model_id for p in networks.parts]

    def progress(stage: str) -> Callable[[int, int], None] | None:
        if on_progress is None:
            return None
        return lambda done, total: on_progress(stage, done, total)

    # 1. impostor medians on WIDER
    wider, owner = wider_embeddings(detector, networks, wider_images, on_progress=progress("WIDER faces"))
    medians = {
        key: round(impostor_median(part, owner.tolist()), 3)
        for key, part in zip(NETWORKS, split_parts(wider, dims), strict=True)
    }
    logger.info("impostor medians on %d WIDER faces: %s", len(wider), medians)

    # 2. LFW, every image read and detected once
    analyzer = FaceAnalyzer(detector=detector, embedder=networks)
    cache = None if cache_dir is None else Path(cache_dir) / "networks.npz"
    fused, no_face = embed_central_faces(analyzer, protocol.root, protocol.all_paths, cache=cache, on_progress=progress("LFW images"))
    parts = dict(zip(NETWORKS, split_parts(fused, dims), strict=True))
    index = {p: i for i, p in enumerate(protocol.all_paths)}
    pairs = None
    if pairs_path is not None:
        from facesense.eval.lfw import lfw_image_path, read_pairs

        pairs = read_pairs(pairs_path)
        missing = [k for k in pairs.images if str(lfw_image_path(Path(), k)) not in index]
        if missing:
            raise ConfigError(f"{len(missing)} pair image(s) are not in {lfw_images} (first: {missing[0]})")

    labels = [str(x) for x in protocol.gallery_labels + protocol.probe_labels + protocol.stranger_labels]
    results = []
    for kind in chosen:
        spec = EMBEDDERS[kind]
        members: tuple[str, ...]
        if isinstance(spec, EmbedderSpec):
            if kind not in parts:
                raise ConfigError(f"calibrate does not run the network {kind!r}")  # pragma: no cover - registry/NETWORKS mismatch
            emb, model_id, members = parts[kind], part_ids[NETWORKS.index(kind)], (kind,)
            median: float | None = medians[kind]
        else:
            members = tuple(spec.parts)
            emb = fuse_parts([parts[p] for p in members], [medians[p] for p in members])
            model_id = fusion_model_id([(part_ids[NETWORKS.index(p)], medians[p]) for p in members])
            median = None
        if cache_dir is not None:
            _write_identify_cache(Path(cache_dir) / f"{kind}.npz", model_id, protocol.all_paths, emb, no_face)
        quantiles = impostor_quantiles(emb, labels)
        normed = evaluate_open_set(
            KNNMatcher(k=DEFAULT_K, threshold=None, norm=ScoreNorm(impostor_quantiles=quantiles)), protocol, emb, model_id=model_id, no_face=no_face
        )
        raw = evaluate_open_set(KNNMatcher(k=DEFAULT_K, threshold=None, norm=None), protocol, emb, model_id=model_id, no_face=no_face, gallery_sizes=())
        key = f"{far:g}"
        for report in (normed, raw):
            if key not in report.in_sample:
                raise ConfigError(f"far={far:g} is not one of the protocol's FAR targets {list(report.in_sample)}")
        identify = {
            "rank1": round(normed.rank1, 4),
            "cross_validated": normed.cross_validated,
            "in_sample": normed.in_sample,
            "raw_cross_validated": raw.cross_validated,
            "no_face": no_face,
        }
        lfw = None
        if pairs is not None:
            from facesense.eval.lfw import lfw_image_path, verification_report

            left = emb[[index[str(lfw_image_path(Path(), k))] for k in pairs.left]]
            right = emb[[index[str(lfw_image_path(Path(), k))] for k in pairs.right]]
            rep = verification_report(left, right, pairs, no_face=no_face)
            lfw = {"accuracy": round(rep.accuracy, 4), "std": round(rep.std, 4), "auc": round(rep.auc, 4), "tar_at_far_1e-3": round(rep.tar_at_far_1e_3, 4), "folds": rep.folds, "pairs": rep.pairs}
        results.append(
            KindCalibration(
                kind=kind,
                model_id=model_id,
                impostor_median=median,
                impostor_quantiles=quantiles,
                threshold=_floor3(normed.in_sample[key]["threshold"]),
                raw_threshold=_floor3(raw.in_sample[key]["threshold"]),
                identify=identify,
                lfw=lfw,
                parts=members,
            )
        )
    return results
