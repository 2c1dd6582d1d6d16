"""Model weights: where they come from, the cache, and the ONNX Runtime session factory."""

from facesense.models.registry import MODELS, ModelSpec, cache_dir, packaged_file
from facesense.models.runtime import create_session

__all__ = ["MODELS", "ModelSpec", "cache_dir", "create_session", "packaged_file"]
