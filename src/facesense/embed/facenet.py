"""FaceNet embeddings: davidsandberg/facenet ``20180408-102900`` on ONNX Runtime or OpenCV DNN.

The model takes ``160x160`` RGB face crops, standardised, and returns 512-d
L2-normalised embeddings. Two backends run the same weights:

* ``onnxruntime``: the frozen TensorFlow graph converted once to ONNX
  (:mod:`facesense.models.facenet_onnx`) and run in batches.
* ``opencv``: OpenCV DNN, one crop at a time (OpenCV rejects batches for this graph),
  reading the TensorFlow graph directly up to OpenCV 5.0 and the FP32 ONNX conversion
  from 5.1 on (5.1 removed the TensorFlow importer).

``auto`` (the default) uses ONNX Runtime and falls back to OpenCV DNN, with a warning,
when the conversion or session fails (on OpenCV 5.1, only when the session fails). Both give the same embeddings (cosine > 0.9999).
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from facesense.align import CropConfig
from facesense.choices import parse_choice
from facesense.errors import ConfigError, ModelError
from facesense.models.facenet_onnx import (
    EMBEDDING_DIM,
    INPUT_NAME,
    INPUT_SIZE_PX,
    MODEL_NAME,
    OUTPUT_NAME,
)
from facesense.models.registry import embedder_spec

if TYPE_CHECKING:
    from pathlib import Path

    import numpy.typing as npt

    from facesense.types import Faces

__all__ = ["Backend", "FaceNetEmbedder", "Precision", "Standardization", "preprocess_crops"]

logger = logging.getLogger(__name__)

FIXED_MEAN = 127.5
FIXED_SCALE = 1.0 / 128.0

_SPEC = embedder_spec("facenet")


class Backend(str, enum.Enum):
    """Which inference engine runs FaceNet."""

    AUTO = "auto"
    ONNXRUNTIME = "onnxruntime"
    OPENCV = "opencv"


class Precision(str, enum.Enum):
    """Numeric precision of the ONNX Runtime model.

    ``INT8`` (the default) is the FP32 conversion statically quantised with activation
    ranges measured on real faces and 7-bit weights, so the same embeddings come out on
    CPUs with and without VNNI (:mod:`facesense.models.facenet_int8`): embeddings within
    cosine 0.997 of FP32 on LFW faces, LFW accuracy 98.33% against FP32's 98.27%, about
    3x faster with VNNI (4.8 against 14.6 ms per face on 2 Zen 4 cores) and 2x without
    (12.6 against 25.5 on 2 AVX2-only Zen cores; ``python scripts/calibrate_int8.py
    measure``). Before INT8 is used on a kind of CPU it is checked there against FP32 on
    real faces, once; the verdict is cached beside the model, and a CPU that rejects it
    runs FP32 (logged at info level).
    OpenCV DNN always runs FP32.
    """

    INT8 = "int8"
    FP32 = "fp32"


class Standardization(str, enum.Enum):
    """How crop pixels are scaled before the network.

    ``FIXED`` is ``(x - 127.5) / 128`` (what ``20180408-102900`` was trained with);
    ``PER_IMAGE`` is davidsandberg's ``prewhiten``: subtract the crop's mean, divide by
    its standard deviation floored at ``1 / sqrt(pixel count)``.
    """

    FIXED = "fixed"
    PER_IMAGE = "per_image"


def preprocess_crops(
    crops: npt.NDArray[np.uint8], standardization: Standardization | str = Standardization.FIXED
) -> npt.NDArray[np.float32]:
    """Turn BGR crops into the network's input blob.

    Args:
        crops: ``(N, 160, 160, 3)`` uint8 BGR.
        standardization: ``"fixed"`` or ``"per_image"`` (see :class:`Standardization`).

    Returns:
        ``(N, 3, 160, 160)`` float32 RGB, standardised, C-contiguous.
    """
    mode = parse_choice(Standardization, standardization, "standardization")
    rgb = crops[..., ::-1]
    if mode is Standardization.FIXED:
        x = (rgb.astype(np.float32) - np.float32(FIXED_MEAN)) * np.float32(FIXED_SCALE)
    else:
        pixels = rgb.astype(np.float64)
        axes = (1, 2, 3)
        mean = pixels.mean(axis=axes, keepdims=True)
        std = pixels.std(axis=axes, keepdims=True)
        floor = 1.0 / np.sqrt(pixels[0].size) if len(pixels) else 1.0
        x = ((pixels - mean) / np.maximum(std, floor)).astype(np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


class _Runner(Protocol):
    backend: Backend

    def run(self, blob: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...


class _OrtRunner:
    backend = Backend.ONNXRUNTIME

    def __init__(self, session: Any, batch_size: int) -> None:
        self._session = session
        self._batch_size = batch_size

    def run(self, blob: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        parts = []
        for start in range(0, len(blob), self._batch_size):
            chunk = blob[start : start + self._batch_size]
            try:
                (out,) = self._session.run([OUTPUT_NAME], {INPUT_NAME: chunk})
            except Exception as exc:  # onnxruntime raises its own, unexported classes
                raise ModelError(f"FaceNet inference failed in ONNX Runtime: {exc}") from exc
            parts.append(out)
        return np.concatenate(parts, axis=0).astype(np.float32, copy=False)


class _OpenCvRunner:
    backend = Backend.OPENCV

    def __init__(self, net: Any) -> None:
        self._net = net
        self._lock = threading.Lock()  # a cv2.dnn.Net is not safe to share between threads

    def run(self, blob: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        import cv2

        out = np.empty((len(blob), EMBEDDING_DIM), np.float32)
        with self._lock:
            for i in range(len(blob)):
                try:
                    self._net.setInput(blob[i : i + 1])
                    out[i] = self._net.forward().reshape(-1)
                except cv2.error as exc:
                    raise ModelError(f"FaceNet inference failed in OpenCV DNN: {exc}") from exc
        return out


class FaceNetEmbedder:
    """512-d FaceNet embeddings of face crops. Loads its model on first use.

    Args:
        backend: ``"auto"`` (ONNX Runtime, falling back to OpenCV DNN), ``"onnxruntime"``
            or ``"opencv"``.
        standardization: ``"fixed"`` (default, what the model was trained with) or
            ``"per_image"``; see :class:`Standardization`. Part of :attr:`model_id`.
        threads: intra-op threads; ``None`` means the runtime default. For OpenCV this
            calls ``cv2.setNumThreads``, which applies to the whole process.
        batch_size: crops per ONNX Runtime call (OpenCV always runs one at a time).
        precision: ``"int8"`` (default) or ``"fp32"`` for ONNX Runtime; see :class:`Precision`.
        crop: how :meth:`embed` cuts faces out of the image (``size_px`` must be 160);
            ``None`` for the registry's default crop. Part of :attr:`model_id` when it
            is not the default.

    Raises:
        ConfigError: an argument is out of range or not one of the choices.

    Example:
        >>> embedder = FaceNetEmbedder()
        >>> embedder.embed_crops(crops).shape  # crops: (N, 160, 160, 3) uint8 BGR
        (N, 512)
    """

    dim: int = EMBEDDING_DIM

    def __init__(
        self,
        *,
        backend: Backend | str = Backend.AUTO,
        standardization: Standardization | str = Standardization.FIXED,
        threads: int | None = None,
        batch_size: int = 16,
        crop: CropConfig | None = None,
        precision: Precision | str = Precision.INT8,
    ) -> None:
        self.backend = parse_choice(Backend, backend, "backend")
        self.precision = parse_choice(Precision, precision, "precision")
        self.standardization = parse_choice(Standardization, standardization, "standardization")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"threads must be a positive integer or None, got {threads!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if crop is None and isinstance(_SPEC.crop, CropConfig):
            crop = _SPEC.crop
        if not isinstance(crop, CropConfig):
            raise ConfigError(f"crop must be a CropConfig or None, got {type(crop).__name__}")
        if crop.size_px != INPUT_SIZE_PX:
            raise ConfigError(
                f"crop.size_px must be {INPUT_SIZE_PX} for FaceNet, got {crop.size_px}"
            )
        self.threads = threads
        self.batch_size = batch_size
        self.crop = crop
        self._runner: _Runner | None = None
        self._load_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"FaceNetEmbedder(backend={self.backend.value!r}, "
            f"standardization={self.standardization.value!r}, precision={self.precision.value!r}, "
            f"threads={self.threads}, "
            f"batch_size={self.batch_size})"
        )

    @property
    def model_id(self) -> str:
        """Model and preprocessing, e.g. ``"facenet-20180408-102900/fixed"``.

        Derived from the registry entry (:meth:`facesense.models.registry.EmbedderSpec.model_id`):
        the standardisation, then the crop's tag when it is not the default crop
        (``".../fixed/box160m0.2+0"``). Embeddings with different ids must not be
        compared. The backend and precision are not part of the id: they give the same
        embeddings (to cosine 0.997 for INT8).
        """
        return _SPEC.model_id(preprocessing=self.standardization.value, crop=self.crop)

    @property
    def active_backend(self) -> Backend | None:
        """The backend actually in use, or ``None`` before the model is loaded."""
        return None if self._runner is None else self._runner.backend

    def load(self) -> None:
        """Load the model now instead of on the first call (idempotent).

        Raises:
            ModelError: no backend could load the model.
        """
        self._ensure_runner()

    def embed_crops(self, crops: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Embed face crops.

        Args:
            crops: ``(N, 160, 160, 3)`` uint8 **BGR** crops (facesense's colour order).

        Returns:
            ``(N, 512)`` float32, each row L2-normalised; ``(0, 512)`` for no crops.

        Raises:
            ConfigError: ``crops`` has the wrong shape or dtype.
            ModelError: the model cannot be loaded or inference failed.
        """
        arr = np.asarray(crops)
        if arr.size == 0:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        expected = (INPUT_SIZE_PX, INPUT_SIZE_PX, 3)
        if arr.ndim != 4 or arr.shape[1:] != expected:
            raise ConfigError(f"crops: expected shape (N, 160, 160, 3), got {arr.shape}")
        if arr.dtype != np.uint8:
            raise ConfigError(f"crops: expected dtype uint8, got {arr.dtype}")
        runner = self._ensure_runner()
        blob = preprocess_crops(arr, self.standardization)
        start = time.perf_counter()
        out = runner.run(blob)
        logger.debug(
            "embedded %d crops with %s in %.1f ms",
            len(arr),
            runner.backend.value,
            (time.perf_counter() - start) * 1e3,
        )
        return self.finish(out)

    def embed(self, image: npt.NDArray[np.uint8], faces: Faces) -> Faces:
        """``faces`` with ``embeddings`` ``(N, 512)`` filled in.

        Args:
            image: ``(H, W, 3)`` uint8 BGR, the image ``faces`` was detected in.
            faces: detections; crops are cut with :func:`facesense.align.crop_faces`.

        Raises:
            ModelError: the model cannot be loaded or inference failed.
        """
        from facesense.align import crop_faces

        if len(faces) == 0:
            return faces.replace(embeddings=np.zeros((0, EMBEDDING_DIM), np.float32))
        crops = crop_faces(image, faces, self.crop)
        return faces.replace(embeddings=self.embed_crops(crops))

    # -- loading ---------------------------------------------------------------------------

    def _ensure_runner(self) -> _Runner:
        runner = self._runner
        if runner is not None:
            return runner
        with self._load_lock:
            if self._runner is None:
                self._runner = self._load_runner()
            return self._runner

    def _load_runner(self) -> _Runner:
        start = time.perf_counter()
        if self.backend is Backend.OPENCV:
            runner: _Runner = self._load_opencv()
        elif self.backend is Backend.ONNXRUNTIME:
            runner = self._load_onnxruntime()
        else:
            try:
                runner = self._load_onnxruntime()
            except ModelError as ort_exc:
                logger.warning(
                    "FaceNet on ONNX Runtime is unavailable (%s); falling back to OpenCV DNN",
                    ort_exc,
                )
                try:
                    runner = self._load_opencv()
                except ModelError as cv_exc:
                    raise ModelError(
                        f"no FaceNet backend could be loaded: onnxruntime: {ort_exc}; "
                        f"opencv: {cv_exc}"
                    ) from cv_exc
        logger.debug(
            "loaded %s on %s in %.2f s",
            MODEL_NAME,
            runner.backend.value,
            time.perf_counter() - start,
        )
        return runner

    # -- as one part of a merged ONNX Runtime graph (see facesense.embed.fusion) -----------

    def onnx_path(self) -> Path | None:
        """The ONNX file this embedder runs (INT8 or FP32), or ``None`` for ``backend="opencv"``.

        For ``precision="int8"``: the INT8 model when this CPU's verdict accepts it
        (:func:`facesense.models.facenet_int8.facenet_int8`), else the FP32 one.

        Raises:
            ModelError: the model cannot be converted.
        """
        if self.backend is Backend.OPENCV:
            return None
        from facesense.models.facenet_onnx import facenet_onnx_path

        path = facenet_onnx_path()
        if self.precision is not Precision.INT8:
            return path
        from facesense.models.facenet_int8 import facenet_int8

        try:
            verdict = facenet_int8(path)
        except ModelError as exc:  # a fault (missing data files, unwritable cache), not a CPU verdict
            logger.warning("INT8 FaceNet is unavailable (%s); using FP32", exc)
            return path
        if verdict.accepted:
            return verdict.path
        # Judged once for this kind of CPU and remembered: FP32 is the right answer here, not a fault.
        logger.info("INT8 FaceNet is not used on this CPU (%s): %s; using FP32", verdict.cpu, verdict.reason)
        return path

    def prepare(self, image: npt.NDArray[np.uint8], faces: Faces) -> npt.NDArray[np.float32]:
        """The ``(N, 3, 160, 160)`` input blob for ``faces`` (crop + standardisation)."""
        from facesense.align import crop_faces

        return preprocess_crops(crop_faces(image, faces, self.crop), self.standardization)

    @staticmethod
    def finish(out: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The model's raw output, L2-normalised again (INT8 quantises the graph's own)."""
        from facesense.embed.base import l2_normalize

        return l2_normalize(out)

    def _load_onnxruntime(self) -> _OrtRunner:
        from facesense.models.runtime import create_session

        path = self.onnx_path()
        if path is None:  # pragma: no cover - only called for the ONNX Runtime backends
            raise ModelError("FaceNet on ONNX Runtime was not requested")
        session = create_session(path, threads=self.threads, name=MODEL_NAME)
        return _OrtRunner(session, self.batch_size)

    def _load_opencv(self) -> _OpenCvRunner:
        from facesense.models.registry import packaged_file

        path = packaged_file(_SPEC.weights)
        try:
            import cv2
        except ImportError as exc:  # pragma: no cover - a hard dependency
            raise ModelError("OpenCV is not installed: pip install opencv-python-headless") from exc
        if self.threads is not None:
            logger.debug("cv2.setNumThreads(%d): applies to the whole process", self.threads)
            cv2.setNumThreads(self.threads)
        return _OpenCvRunner(read_facenet_opencv(path))


_TF_IMPORTER = "readNetFromTensorflow"  # OpenCV DNN's TensorFlow reader, gone in OpenCV 5.1


def read_facenet_opencv(graph: Path) -> Any:
    """FaceNet as an OpenCV DNN ``Net``: the TensorFlow graph where OpenCV can read it.

    OpenCV 5.1 removed the TensorFlow importer (``cv2.dnn.readNetFromTensorflow``); there
    OpenCV DNN runs the same weights from the FP32 ONNX conversion
    (:func:`facesense.models.facenet_onnx.facenet_onnx_path`) instead.

    Raises:
        ModelError: OpenCV cannot read either form.
    """
    import cv2

    if opencv_facenet_format() == "tensorflow":
        try:
            return getattr(cv2.dnn, _TF_IMPORTER)(str(graph))
        except cv2.error as exc:
            raise ModelError(f"OpenCV DNN cannot read FaceNet graph {graph}: {exc}") from exc
    from facesense.models.facenet_onnx import facenet_onnx_path

    onnx_file = facenet_onnx_path()
    try:
        return cv2.dnn.readNetFromONNX(str(onnx_file))
    except cv2.error as exc:
        raise ModelError(f"OpenCV {cv2.__version__} DNN cannot read FaceNet ONNX {onnx_file}: {exc}") from exc


def opencv_facenet_format() -> str:
    """Which form of FaceNet OpenCV DNN reads on this OpenCV: ``"tensorflow"`` or ``"onnx"``."""
    import cv2

    return "tensorflow" if hasattr(cv2.dnn, _TF_IMPORTER) else "onnx"
