"""Face detectors: the :class:`Detector` interface and the MTCNN implementation.

Importing this package is cheap: OpenCV and ONNX Runtime are imported, and the
models loaded, on a detector's first :meth:`~Detector.detect` call.
"""

from facesense.detect.base import Detector
from facesense.detect.mtcnn import MTCNNConfig, MTCNNDetector

__all__ = ["Detector", "MTCNNConfig", "MTCNNDetector"]
