"""Recurring unknowns: compact records of unknown tracks, grouped into visitors.

* :mod:`facesense.unknowns.record`: :class:`UnknownRecord` (one unknown track: mean
  embedding, first / last seen, source, a few best JPEG crops, bounded by
  :class:`CropLimits`) and :class:`TrackRecorder`, which builds one as a track runs;
* :mod:`facesense.unknowns.cluster`: :class:`UnknownClusterer`, the incremental
  clustering of records across tracks, cameras and days, with a person's corrections
  (name, merge, remove a face, ignore) and pruning;
* :mod:`facesense.unknowns.enroll`: :func:`~facesense.unknowns.enroll.enroll_named`, the
  enrollment of a named cluster's crops into a gallery (``facesense unknowns name``, the
  web server's Unknowns page). It is the one module here that touches a gallery and a
  model, so it is not re-exported below.

Apart from :mod:`~facesense.unknowns.enroll`, nothing here touches a store, a model or
the network: a gallery store saves :meth:`UnknownClusterer.state` and rebuilds with
:meth:`UnknownClusterer.from_state`
(:mod:`facesense.gallery.unknowns`; recorded during ``watch`` by
:mod:`facesense.sinks.unknowns`; see ``docs/unknowns.md``).
"""

from __future__ import annotations

from facesense.unknowns.cluster import (
    Assignment,
    ClusterConfig,
    ClustererState,
    ClusterSummary,
    NamedCluster,
    UnknownClusterer,
    eps_for,
)
from facesense.unknowns.record import Crop, CropLimits, TrackRecorder, UnknownRecord, encode_face_crop

__all__ = [
    "Assignment",
    "ClusterConfig",
    "ClusterSummary",
    "ClustererState",
    "Crop",
    "CropLimits",
    "NamedCluster",
    "TrackRecorder",
    "UnknownClusterer",
    "UnknownRecord",
    "encode_face_crop",
    "eps_for",
]
