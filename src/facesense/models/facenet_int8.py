"""FaceNet quantised to INT8 (static, QDQ) for ONNX Runtime.

The activation ranges were measured once on real faces (``scripts/calibrate_int8.py``,
WIDER FACE validation faces, not LFW) and ship with facesense as a small JSON file, so the
INT8 model is built at first use from the cached FP32 conversion with no images needed.
The result is cached beside the FP32 model, written atomically and verified against it.

Measured (docs/preprocessing.md): LFW accuracy unchanged (98.60% both), embeddings
within cosine 0.997 of FP32, about 2x faster on CPUs with VNNI.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facesense.errors import ModelError
from facesense.models.registry import cache_dir, write_atomic

if TYPE_CHECKING:
    import numpy.typing as npt

logger = logging.getLogger(__name__)

RANGES_FILE = Path(__file__).with_name("data") / "facenet_int8_ranges.json"
QUANT_VERSION = 1
MIN_COSINE_TO_FP32 = 0.98  # on the verification input; real faces measure >= 0.997


def quantize_facenet(
    fp32_path: Path,
    out_path: Path,
    *,
    ranges: Path = RANGES_FILE,
    calibration: npt.NDArray[np.float32] | None = None,
) -> None:
    """Quantise the FP32 FaceNet model to INT8 QDQ.

    Args:
        fp32_path: the converted FP32 ONNX model.
        out_path: where the INT8 model is written.
        ranges: JSON activation ranges; read when it exists, else written from ``calibration``.
        calibration: ``(N, 3, 160, 160)`` preprocessed faces, needed only to create ``ranges``.

    Raises:
        ModelError: onnxruntime's quantiser is missing, too old or fails.
    """
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError as exc:
        raise ModelError(f"onnxruntime quantisation tools are unavailable: {exc}") from exc

    reader = None
    if calibration is not None:
        batches = [calibration[i : i + 16] for i in range(0, len(calibration), 16)]

        class _Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self._it = iter(batches)

            def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
                batch = next(self._it, None)
                return None if batch is None else {"input": batch}

        reader = _Reader()
    elif not ranges.is_file():
        raise ModelError(f"INT8 activation ranges {ranges} are missing; reinstall facesense")
    # The quantiser logs advice on the root logger; it is not ours to show users.
    logging.disable(logging.WARNING)
    try:
        quantize_static(
            str(fp32_path),
            str(out_path),
            calibration_data_reader=reader,
            calibration_cache_path=ranges,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    except TypeError as exc:  # onnxruntime < 1.32 has no calibration cache
        raise ModelError(f"this onnxruntime cannot quantise from stored ranges ({exc}); upgrade it") from exc
    except Exception as exc:  # the quantiser raises many unexported kinds
        raise ModelError(f"INT8 quantisation of FaceNet failed: {exc}") from exc
    finally:
        logging.disable(logging.NOTSET)


def _check_input() -> npt.NDArray[np.float32]:
    """A deterministic, smooth, face-sized input for the FP32/INT8 agreement check."""
    y, x = np.mgrid[0:160, 0:160].astype(np.float32) / 160.0
    base = np.stack([np.sin(6 * x + 2 * y), np.cos(5 * y - x), np.sin(3 * x * y + 1)])
    return (0.6 * base)[None].astype(np.float32)


def facenet_int8_path(fp32_path: Path) -> Path:
    """The cached INT8 model, built from ``fp32_path`` on first use.

    Raises:
        ModelError: quantisation failed or the result disagrees with FP32.
    """
    from facesense.models.runtime import create_session

    if not RANGES_FILE.is_file():
        raise ModelError(f"INT8 activation ranges {RANGES_FILE} are missing; reinstall facesense")
    tag = hashlib.sha256(fp32_path.name.encode() + RANGES_FILE.read_bytes()).hexdigest()[:12]
    path = cache_dir() / f"{fp32_path.stem}-int8-q{QUANT_VERSION}-{tag}.onnx"
    if path.is_file():
        try:
            create_session(path, threads=1, name=path.name)
            return path
        except ModelError:
            logger.warning("cached INT8 model %s is unreadable; rebuilding it", path)
    logger.info("quantising FaceNet to INT8 (one-off, a few seconds)")
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        out = Path(tmp) / "int8.onnx"
        quantize_facenet(fp32_path, out)
        reference = create_session(fp32_path, threads=1, name="facenet fp32")

        def verify(candidate: Path) -> None:
            session = create_session(candidate, threads=1, name="facenet int8")
            x = _check_input()
            a = reference.run(None, {"input": x})[0]
            b = session.run(None, {"input": x})[0]
            cos = float(np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b)))
            if b.shape != (1, 512) or not cos >= MIN_COSINE_TO_FP32:
                raise ModelError(f"INT8 FaceNet disagrees with FP32 (cosine {cos:.4f}, shape {b.shape})")

        write_atomic(path, out.read_bytes(), verify=verify)
    return path
