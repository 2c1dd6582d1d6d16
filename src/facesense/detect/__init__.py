"""Face detectors: the :class:`Detector` interface, the MTCNN and YuNet implementations, and the factory.

Build detectors with :func:`make_detector`, which takes its defaults from the one table
:data:`DEFAULTS` (per use: photos or video streams). Importing this package is cheap:
OpenCV and ONNX Runtime are imported, and the models loaded, on a detector's first
:meth:`~Detector.detect` call.
"""

from facesense.detect.base import Detector
from facesense.detect.factory import (
    DEFAULT_DETECTOR,
    DEFAULTS,
    LANDMARK_PASSES,
    ROTATED_CONFIRM,
    ROTATED_MIN_SCORE,
    DetectorDefaults,
    DetectorKind,
    DetectorUse,
    make_detector,
)
from facesense.detect.landmarks import OnetLandmarkDetector
from facesense.detect.mtcnn import MTCNNConfig, MTCNNDetector
from facesense.detect.rotate import RotatingDetector, roll_degrees
from facesense.detect.verify import VerifiedDetector
from facesense.detect.yunet import YuNetConfig, YuNetDetector

__all__ = [
    "DEFAULTS",
    "DEFAULT_DETECTOR",
    "LANDMARK_PASSES",
    "ROTATED_CONFIRM",
    "ROTATED_MIN_SCORE",
    "Detector",
    "DetectorDefaults",
    "DetectorKind",
    "DetectorUse",
    "MTCNNConfig",
    "MTCNNDetector",
    "OnetLandmarkDetector",
    "RotatingDetector",
    "VerifiedDetector",
    "YuNetConfig",
    "YuNetDetector",
    "make_detector",
    "roll_degrees",
]
