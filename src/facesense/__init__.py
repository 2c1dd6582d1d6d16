"""facesense: real-time face detection and recognition on a plain CPU.

Importing this package is cheap: it loads no model and imports neither OpenCV nor
ONNX Runtime. Names are resolved on first access.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "CaptureConfig": "facesense.capture",
    "ConfigError": "facesense.errors",
    "CropConfig": "facesense.align",
    "CropMethod": "facesense.align",
    "DlibResNetEmbedder": "facesense.embed.dlib",
    "Enroller": "facesense.enroll",
    "EnrollmentError": "facesense.errors",
    "Face": "facesense.types",
    "FaceAnalyzer": "facesense.analyzer",
    "FaceNetEmbedder": "facesense.embed.facenet",
    "Faces": "facesense.types",
    "FacesenseError": "facesense.errors",
    "Frame": "facesense.types",
    "FrameResult": "facesense.pipeline",
    "FusedEmbedder": "facesense.embed.fusion",
    "GalleryError": "facesense.errors",
    "ImageError": "facesense.errors",
    "MTCNNConfig": "facesense.detect.mtcnn",
    "MTCNNDetector": "facesense.detect.mtcnn",
    "ModelError": "facesense.errors",
    "ModelMismatchError": "facesense.errors",
    "Pipeline": "facesense.pipeline",
    "PipelineConfig": "facesense.pipeline",
    "Recognizer": "facesense.recognize",
    "SQLiteGallery": "facesense.gallery.sqlite",
    "SourceError": "facesense.errors",
    "Tracker": "facesense.track",
    "TrackerConfig": "facesense.track",
    "VideoSource": "facesense.capture",
    "WatchEvent": "facesense.pipeline",
    "crop_faces": "facesense.align",
    "decode_image": "facesense.imageio",
    "load_image": "facesense.imageio",
    "make_embedder": "facesense.embed.fusion",
    "make_matcher": "facesense.match",
    "open_source": "facesense.capture",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from facesense.align import CropConfig, CropMethod, crop_faces
    from facesense.analyzer import FaceAnalyzer
    from facesense.capture import CaptureConfig, VideoSource, open_source
    from facesense.detect.mtcnn import MTCNNConfig, MTCNNDetector
    from facesense.embed.dlib import DlibResNetEmbedder
    from facesense.embed.facenet import FaceNetEmbedder
    from facesense.embed.fusion import FusedEmbedder, make_embedder
    from facesense.enroll import Enroller
    from facesense.errors import ConfigError, EnrollmentError, FacesenseError, GalleryError, ImageError, ModelError, ModelMismatchError, SourceError
    from facesense.gallery.sqlite import SQLiteGallery
    from facesense.imageio import decode_image, load_image
    from facesense.match import make_matcher
    from facesense.pipeline import FrameResult, Pipeline, PipelineConfig, WatchEvent
    from facesense.recognize import Recognizer
    from facesense.track import Tracker, TrackerConfig
    from facesense.types import Face, Faces, Frame

def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'facesense' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
