"""facesense: real-time face detection and recognition on a plain CPU.

Importing this package is cheap: it loads no model and imports neither OpenCV nor
ONNX Runtime. Names are resolved on first access.

The data that flows between the stages is in :mod:`facesense.types`; the stages are
capture (:mod:`facesense.capture`), detection (:mod:`facesense.detect`), quality
(:mod:`facesense.quality`), tracking (:mod:`facesense.track`), identity
(:mod:`facesense.identity`: embedding, matching, the per-track vote) and sinks
(:mod:`facesense.sinks`), run in order by :class:`Pipeline`.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.1.0"

# public name -> module that defines (or re-exports) it; sorted, and the same names
# as __all__ and the TYPE_CHECKING imports below (tests/test_imports.py checks).
_EXPORTS = {
    "CaptureConfig": "facesense.capture",
    "ConfigError": "facesense.errors",
    "CropConfig": "facesense.align",
    "CropMethod": "facesense.align",
    "DlibResNetEmbedder": "facesense.embed.dlib",
    "Enroller": "facesense.enroll",
    "EnrollmentError": "facesense.errors",
    "Event": "facesense.types",
    "EventType": "facesense.types",
    "Face": "facesense.types",
    "FaceAnalyzer": "facesense.analyzer",
    "FaceNetEmbedder": "facesense.embed.facenet",
    "Faces": "facesense.types",
    "FacesenseError": "facesense.errors",
    "Frame": "facesense.types",
    "FrameResult": "facesense.types",
    "FusedEmbedder": "facesense.embed.fusion",
    "GalleryError": "facesense.errors",
    "IdentityConfig": "facesense.identity",
    "IdentityStage": "facesense.identity",
    "IdentityState": "facesense.types",
    "ImageError": "facesense.errors",
    "LiveMatcher": "facesense.recognize",
    "MTCNNConfig": "facesense.detect.mtcnn",
    "MTCNNDetector": "facesense.detect.mtcnn",
    "ModelError": "facesense.errors",
    "ModelMismatchError": "facesense.errors",
    "Pipeline": "facesense.pipeline",
    "PipelineConfig": "facesense.pipeline",
    "ReadOnlyGalleryError": "facesense.errors",
    "Recognizer": "facesense.recognize",
    "SQLiteGallery": "facesense.gallery.sqlite",
    "SceneCutDetector": "facesense.track",
    "SourceError": "facesense.errors",
    "StageTimings": "facesense.types",
    "Tracker": "facesense.track",
    "TrackerConfig": "facesense.track",
    "VideoSource": "facesense.capture",
    "crop_faces": "facesense.align",
    "decode_image": "facesense.imageio",
    "face_quality": "facesense.quality",
    "fit_matcher": "facesense.recognize",
    "load_image": "facesense.imageio",
    "make_detector": "facesense.detect",
    "make_embedder": "facesense.embed",
    "make_matcher": "facesense.match",
    "open_gallery": "facesense.gallery",
    "open_source": "facesense.capture",
}

__all__ = [
    "CaptureConfig",
    "ConfigError",
    "CropConfig",
    "CropMethod",
    "DlibResNetEmbedder",
    "Enroller",
    "EnrollmentError",
    "Event",
    "EventType",
    "Face",
    "FaceAnalyzer",
    "FaceNetEmbedder",
    "Faces",
    "FacesenseError",
    "Frame",
    "FrameResult",
    "FusedEmbedder",
    "GalleryError",
    "IdentityConfig",
    "IdentityStage",
    "IdentityState",
    "ImageError",
    "LiveMatcher",
    "MTCNNConfig",
    "MTCNNDetector",
    "ModelError",
    "ModelMismatchError",
    "Pipeline",
    "PipelineConfig",
    "ReadOnlyGalleryError",
    "Recognizer",
    "SQLiteGallery",
    "SceneCutDetector",
    "SourceError",
    "StageTimings",
    "Tracker",
    "TrackerConfig",
    "VideoSource",
    "crop_faces",
    "decode_image",
    "face_quality",
    "fit_matcher",
    "load_image",
    "make_detector",
    "make_embedder",
    "make_matcher",
    "open_gallery",
    "open_source",
]

if TYPE_CHECKING:
    from facesense.align import CropConfig, CropMethod, crop_faces
    from facesense.analyzer import FaceAnalyzer
    from facesense.capture import CaptureConfig, VideoSource, open_source
    from facesense.detect import make_detector
    from facesense.detect.mtcnn import MTCNNConfig, MTCNNDetector
    from facesense.embed import make_embedder
    from facesense.embed.dlib import DlibResNetEmbedder
    from facesense.embed.facenet import FaceNetEmbedder
    from facesense.embed.fusion import FusedEmbedder
    from facesense.enroll import Enroller
    from facesense.errors import (
        ConfigError,
        EnrollmentError,
        FacesenseError,
        GalleryError,
        ImageError,
        ModelError,
        ModelMismatchError,
        ReadOnlyGalleryError,
        SourceError,
    )
    from facesense.gallery import open_gallery
    from facesense.gallery.sqlite import SQLiteGallery
    from facesense.identity import IdentityConfig, IdentityStage
    from facesense.imageio import decode_image, load_image
    from facesense.match import make_matcher
    from facesense.pipeline import Pipeline, PipelineConfig
    from facesense.quality import face_quality
    from facesense.recognize import LiveMatcher, Recognizer, fit_matcher
    from facesense.track import SceneCutDetector, Tracker, TrackerConfig
    from facesense.types import Event, EventType, Face, Faces, Frame, FrameResult, IdentityState, StageTimings


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'facesense' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
