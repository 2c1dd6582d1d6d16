"""Embedders: turn faces into L2-normalised vectors.

* :class:`FaceNetEmbedder`: FaceNet 20180408-102900, 512-d, on box crops.
* :class:`DlibResNetEmbedder`: dlib's face-recognition ResNet, 128-d, on landmark-warped chips.
* :class:`SFaceEmbedder`: opencv_zoo's SFace (MobileFaceNet), 128-d, on ArcFace-aligned chips.
* :class:`FusedEmbedder`: several, each scaled by its impostor distance and concatenated;
  dlib + SFace is the default (FaceNet + dlib was, until issue 15).

Build them with :func:`make_embedder` (``"dlib+sface"``, ``"facenet"``, ``"dlib"``, ``"sface"``, ``"facenet+dlib"`` ...); each
model's facts (weights, input, crop, impostor statistics, calibration) are in
:mod:`facesense.models.registry`, and each embedder's ``model_id`` is derived from them.
:class:`~facesense.embed.base.Embedder` is the interface every embedder follows.
"""

from facesense.embed.base import Embedder
from facesense.embed.dlib import DlibResNetEmbedder
from facesense.embed.facenet import (
    Backend,
    FaceNetEmbedder,
    Standardization,
    preprocess_crops,
)
from facesense.embed.factory import DEFAULT_EMBEDDER, EmbedderKind, make_embedder
from facesense.embed.fusion import FusedEmbedder
from facesense.embed.sface import SFaceEmbedder

__all__ = [
    "DEFAULT_EMBEDDER",
    "Backend",
    "DlibResNetEmbedder",
    "Embedder",
    "EmbedderKind",
    "FaceNetEmbedder",
    "FusedEmbedder",
    "SFaceEmbedder",
    "Standardization",
    "make_embedder",
    "preprocess_crops",
]
