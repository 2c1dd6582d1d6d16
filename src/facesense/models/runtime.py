"""The one place that builds ONNX Runtime sessions."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    # Spin while a run lasts, stop the moment it returns: idle workers of one session
    # spinning on through the next model's run cost that run up to half its speed on
    # 2 cores (measured: MTCNN 34 ms per frame right after an embedding, 22 ms with this).
    opts.add_session_config_entry("session.force_spinning_stop", "1")
    try:
        source = str(model) if isinstance(model, Path) else model
        session = ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own, unexported classes
        raise ModelError(f"could not load model {label}: {exc}") from exc
    logger.debug("loaded %s with %d threads", label, opts.intra_op_num_threads)
    return session


def merge_models(models: Sequence[tuple[str, Path]]) -> bytes:
    """Put independent ONNX models side by side in one graph, so one session runs them all.

    Two sessions called one after the other fight over the cores: each keeps its
    intra-op threads spinning for a while after a run (measured on 2 cores: FaceNet
    then dlib's ResNet 22 ms per face in two sessions, 7.4 ms in one). Every name in
    model ``i`` gets the prefix ``"<prefix>/"``; inputs and outputs keep their order.

    Args:
        models: ``(prefix, path)`` pairs; the prefixes must differ.

    Raises:
        ModelError: a model cannot be read, or the models' opsets or IR versions clash.
    """
    try:
        import onnx
        from onnx import compose, helper
    except ImportError as exc:  # pragma: no cover - a hard dependency
        raise ModelError("merging models needs the onnx package: pip install onnx") from exc
    if len({prefix for prefix, _ in models}) != len(models):
        raise ModelError(f"merge_models: prefixes must differ, got {[p for p, _ in models]}")
    graphs: list[Any] = []
    opsets: dict[str, int] = {}
    ir = 0
    for prefix, path in models:
        try:
            model = onnx.load(str(path))
        except Exception as exc:  # protobuf's DecodeError, OSError, ...
            raise ModelError(f"cannot read {path} to merge it: {exc}") from exc
        for op in model.opset_import:
            if opsets.setdefault(op.domain, op.version) != op.version:
                raise ModelError(f"cannot merge {path}: opset {op.domain or 'ai.onnx'} {op.version} vs {opsets[op.domain]}")
        ir = max(ir, model.ir_version)
        graphs.append(compose.add_prefix(model, f"{prefix}/").graph)
    graph = helper.make_graph(
        [n for g in graphs for n in g.node],
        "+".join(prefix for prefix, _ in models),
        [i for g in graphs for i in g.input],
        [o for g in graphs for o in g.output],
        [t for g in graphs for t in g.initializer],
        value_info=[v for g in graphs for v in g.value_info],
    )
    merged = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    merged.ir_version = ir
    return bytes(merged.SerializeToString())


MERGED_VERSION = 1


def merged_model_path(models: Sequence[tuple[str, Path]]) -> Path:
    """:func:`merge_models` of ``models``, cached as a file in the model cache.

    A session built from a file is smaller than one built from bytes: ONNX Runtime reads
    the initialisers straight from the file instead of a Python copy of the whole graph
    (measured on the fused embedder, 2 cores: peak RSS 413 -> 393 MB with INT8 FaceNet,
    739 -> 559 MB with FP32). The file is named by the parts' prefixes and sha256, so a
    rebuilt part makes a new file; older merges of the same prefixes are removed.

    Raises:
        ModelError: a part cannot be read or merged, or the file cannot be written.
    """
    import hashlib

    from facesense.models.registry import cache_dir, file_sha256, write_atomic

    key = hashlib.sha256()
    try:
        for prefix, path in models:
            key.update(f"{prefix}={file_sha256(path)};".encode())
        folder = cache_dir()
    except OSError as exc:
        raise ModelError(f"cannot prepare the merged model: {exc}") from exc
    stem = "merged-" + "+".join(prefix.replace("/", "_") for prefix, _ in models)
    target = folder / f"{stem}-{key.hexdigest()[:16]}-v{MERGED_VERSION}.onnx"
    if target.is_file():
        return target
    data = merge_models(models)
    try:
        write_atomic(target, data)
    except OSError as exc:
        raise ModelError(f"cannot write the merged model to {target}: {exc}") from exc
    del data
    for stale in folder.glob(f"{stem}-*.onnx"):
        if stale != target:
            try:
                stale.unlink()
            except OSError as exc:
                logger.warning("could not remove the outdated merged model %s: %s", stale, exc)
    return target

