"""What the landmark-aligned embedders share: chips warped onto a template, one ONNX session.

dlib's ResNet (:class:`facesense.embed.dlib.DlibResNetEmbedder`) and SFace
(:class:`facesense.embed.sface.SFaceEmbedder`) both warp each face's five landmarks onto a
fixed template, feed the chips to one converted ONNX model (loaded on first use) in
batches, and L2-normalise the output. :class:`ChipEmbedder` does all of that; a
subclass names its registry entry, template, model file and tensor names, and how chips
become the model's input (:meth:`ChipEmbedder.blob`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from facesense.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from pathlib import Path

    import numpy.typing as npt

    from facesense.models.registry import EmbedderSpec
    from facesense.types import Faces

logger = logging.getLogger(__name__)

__all__ = ["ChipEmbedder"]


class ChipEmbedder:
    """Embeddings of landmark-aligned chips from one ONNX model. Loads it on first use.

    Args:
        threads: intra-op threads; ``None`` means the runtime default.
        batch_size: chips per ONNX Runtime call.

    Raises:
        ConfigError: an argument is out of range.
    """

    spec: ClassVar[EmbedderSpec]
    label: ClassVar[str]  # for error messages, e.g. "dlib ResNet"

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
        return f"{type(self).__name__}(threads={self.threads}, batch_size={self.batch_size})"

    # -- what a subclass says --------------------------------------------------------
    @property
    def dim(self) -> int:
        """Embedding length (from the registry entry)."""
        return int(self.spec.dim)

    @property
    def chip_px(self) -> int:
        """Side of the square chip (from the registry entry)."""
        return int(self.spec.input_size_px)

    @property
    def model_id(self) -> str:
        """The registry entry's model id (weights and crop)."""
        return self.spec.model_id()

    def template(self) -> npt.NDArray[Any]:
        """The five landmark positions of a chip of :attr:`chip_px`."""
        raise NotImplementedError

    def onnx_path(self) -> Path:
        """The converted ONNX file (converted on first use).

        Raises:
            ModelError: the weights are missing or the conversion failed.
        """
        raise NotImplementedError

    def tensor_names(self) -> tuple[str, str, str]:
        """``(model name, input name, output name)`` of the converted model."""
        raise NotImplementedError

    def blob(self, chips: npt.NDArray[np.uint8]) -> npt.NDArray[Any]:
        """The model's input for ``(N, S, S, 3)`` uint8 BGR chips (as they are, by default)."""
        return np.ascontiguousarray(chips)

    # -- the shared work -------------------------------------------------------------
    def load(self) -> None:
        """Load (and on first use convert) the model now (idempotent).

        Raises:
            ModelError: the weights are missing or the conversion failed.
        """
        self._ensure_session()

    def chips(self, image: npt.NDArray[np.uint8], faces: Faces) -> npt.NDArray[np.uint8]:
        """The ``(N, S, S, 3)`` uint8 BGR chips this model sees for ``faces``."""
        from facesense.align import warp_to_template

        return warp_to_template(image, faces.landmarks, self.template(), self.chip_px)

    def prepare(self, image: npt.NDArray[np.uint8], faces: Faces) -> npt.NDArray[Any]:
        """The model's input for ``faces`` (as one part of a merged graph, :mod:`facesense.embed.fusion`)."""
        return self.blob(self.chips(image, faces))

    @staticmethod
    def finish(out: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The model's raw output, L2-normalised (the embeddings compare by cosine)."""
        from facesense.embed.base import l2_normalize

        return l2_normalize(out)

    def embed_chips(self, chips: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Embed ``(N, S, S, 3)`` uint8 BGR aligned chips into ``(N, dim)`` unit vectors.

        Raises:
            ConfigError: wrong shape or dtype.
            ModelError: the model cannot be loaded or inference failed.
        """
        arr = np.asarray(chips)
        if arr.size == 0:
            return np.zeros((0, self.dim), np.float32)
        px = self.chip_px
        if arr.ndim != 4 or arr.shape[1:] != (px, px, 3):
            raise ConfigError(f"chips: expected shape (N, {px}, {px}, 3), got {arr.shape}")
        if arr.dtype != np.uint8:
            raise ConfigError(f"chips: expected dtype uint8, got {arr.dtype}")
        _, input_name, output_name = self.tensor_names()
        session = self._ensure_session()
        blob = self.blob(arr)
        parts = []
        for start in range(0, len(blob), self.batch_size):
            try:
                (out,) = session.run([output_name], {input_name: blob[start : start + self.batch_size]})
            except Exception as exc:  # onnxruntime raises its own, unexported classes
                raise ModelError(f"{self.label} inference failed in ONNX Runtime: {exc}") from exc
            parts.append(out)
        return self.finish(np.concatenate(parts))

    def embed(self, image: npt.NDArray[np.uint8], faces: Faces) -> Faces:
        """``faces`` with ``embeddings`` ``(N, dim)`` filled in (chips warped from the landmarks)."""
        if len(faces) == 0:
            return faces.replace(embeddings=np.zeros((0, self.dim), np.float32))
        return faces.replace(embeddings=self.embed_chips(self.chips(image, faces)))

    def _ensure_session(self) -> Any:
        if self._session is not None:
            return self._session
        with self._load_lock:
            if self._session is None:
                from facesense.models.runtime import create_session

                name = self.tensor_names()[0]
                start = time.perf_counter()
                self._session = create_session(self.onnx_path(), threads=self.threads, name=name)
                logger.debug("loaded %s in %.2f s", name, time.perf_counter() - start)
            return self._session
