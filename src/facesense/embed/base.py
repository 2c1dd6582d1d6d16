"""The embedder interface."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
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
