"""Models: the registry of every model's facts, the cache, conversions and the ONNX Runtime session factory."""

from facesense.models.registry import (
    CALIBRATIONS,
    DETECTORS,
    EMBEDDERS,
    MODELS,
    Calibration,
    DetectorSpec,
    EmbedderSpec,
    FusionSpec,
    ModelSpec,
    cache_dir,
    calibration,
    find_calibration,
    packaged_file,
)
from facesense.models.runtime import create_session

__all__ = [
    "CALIBRATIONS",
    "DETECTORS",
    "EMBEDDERS",
    "MODELS",
    "Calibration",
    "DetectorSpec",
    "EmbedderSpec",
    "FusionSpec",
    "ModelSpec",
    "cache_dir",
    "calibration",
    "create_session",
    "find_calibration",
    "packaged_file",
]
