"""The embedder interface."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.types import Faces


@runtime_checkable
class Embedder(Protocol):
    """Turns faces into L2-normalised embeddings."""

    @property
    def model_id(self) -> str:
        """Names the model and preprocessing; embeddings with other ids never mix."""
        ...

    @property
    def dim(self) -> int:
        """Embedding length."""
        ...

    def embed(self, image: npt.NDArray[np.uint8], faces: Faces) -> Faces:
        """Return ``faces`` with ``embeddings`` ``(N, dim)`` float32 filled in."""
        ...


def l2_normalize(x: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Rows scaled to unit length (all-zero rows stay zero), as float32."""
    a = np.asarray(x, dtype=np.float32)
    return np.asarray(a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12), dtype=np.float32)
