"""Embedders: turn face crops into L2-normalised vectors.

``facenet`` is the only model so far; :class:`~facesense.embed.base.Embedder` is the
interface every embedder follows.
"""

from facesense.embed.base import Embedder
from facesense.embed.facenet import Backend, FaceNetEmbedder, Standardization, preprocess_crops

__all__ = ["Backend", "Embedder", "FaceNetEmbedder", "Standardization", "preprocess_crops"]
