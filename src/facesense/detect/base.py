"""The detector interface."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from facesense.types import Faces


@runtime_checkable
class Detector(Protocol):
    """Finds faces in one image."""

    def detect(self, image: npt.NDArray[np.uint8]) -> Faces:
        """Return every face in ``image``.

        Args:
            image: ``(H, W, 3)`` uint8 BGR.

        Returns:
            Boxes clipped to the image, scores and landmarks, best score first;
            ``Faces.empty()`` when there is no face.
        """
        ...
