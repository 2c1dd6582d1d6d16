"""The one place that builds ONNX Runtime sessions."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from facesense.errors import ModelError

if TYPE_CHECKING:
    import onnxruntime

logger = logging.getLogger(__name__)

THREADS_ENV = "FACESENSE_THREADS"


def default_threads() -> int:
    """Intra-op threads: ``$FACESENSE_THREADS`` or the number of usable cores."""
    env = os.environ.get(THREADS_ENV)
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            logger.warning("ignoring %s=%r: not an integer", THREADS_ENV, env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def create_session(
    model: Path | bytes, *, threads: int | None = None, name: str | None = None
) -> onnxruntime.InferenceSession:
    """Build a CPU ONNX Runtime session with facesense's settings.

    Args:
        model: path to an ``.onnx`` file, or the serialised model bytes.
        threads: intra-op thread count; defaults to :func:`default_threads`.
        name: what to call the model in error messages.

    Raises:
        ModelError: onnxruntime is missing or could not load the model.
    """
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - a hard dependency
        raise ModelError("onnxruntime is not installed: pip install onnxruntime") from exc
    label = name or (str(model) if isinstance(model, Path) else "<bytes>")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or default_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    try:
        source = str(model) if isinstance(model, Path) else model
        session = ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own, unexported classes
        raise ModelError(f"could not load model {label}: {exc}") from exc
    logger.debug("loaded %s with %d threads", label, opts.intra_op_num_threads)
    return session
