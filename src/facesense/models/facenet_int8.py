"""FaceNet quantised to INT8 (static, QDQ) for ONNX Runtime, right on every x86-64 CPU.

**How it is quantised** (:data:`QUANT_OPTIONS`): activations uint8 with the ranges in
``data/facenet_int8_ranges.json`` (measured once on WIDER FACE validation faces, not LFW,
by ``scripts/calibrate_int8.py ranges``); weights int8, symmetric, per output channel,
and **7-bit** (``reduce_range``: every weight in ``[-64, 64]``). Every Conv and the
bottleneck MatMul are quantised.

**Why 7-bit weights.** ONNX Runtime's x86 INT8 kernels multiply uint8 activations by
int8 weights. With VNNI (AVX-512 VNNI or AVX-VNNI) the products go straight into int32.
Without it (AVX2 only: Haswell to Coffee Lake, AMD before Zen 4; also AVX-512 without
VNNI, Skylake-SP) they use ``vpmaddubsw``, which adds *pairs* of products into int16 and
saturates: with 8-bit weights a pair can reach ``2 * 255 * 127 = 64770``, far above
32767, and FaceNet's embeddings go wrong (measured under ``qemu-x86_64 -cpu Haswell``:
cosine to FP32 down to 0.757 on LFW faces and 0.62 on the check faces, against 0.998 on
the VNNI CPU). With 7-bit weights a pair is at most ``2 * 255 * 64 = 32640``: nothing can
saturate, the integer sums are exact on both kinds of CPU, and both give the same
embeddings (max abs difference 0 between Haswell under qemu and an AMD EPYC Zen 4 with
AVX-512 VNNI, on 100 LFW faces). :func:`check_weight_range` proves the bound for every
model built.

Measured on the Zen 4, 2 cores (``scripts/calibrate_int8.py measure``, 200 LFW faces):
cosine to FP32 min 0.9974, mean 0.9987 (8-bit weights: 0.9980 / 0.9989 there); 4.8 ms
per face against FP32's 14.6 in batches of 16 (3.1x; 7- and 8-bit weights run the same
kernels, equally fast). LFW, 5 folds, FaceNet alone: INT8 98.33%, FP32 98.27%.

**Build, verdict, cache.** The INT8 file is built on first use from the cached FP32
conversion (no images needed) and cached beside it. Before use on a CPU it is judged
there (:func:`verify_int8`): the weight bound, then INT8 against FP32 on
deterministic inputs made at run time (:func:`check_inputs`; the tests do the same on
real LFW faces from ``../shared/data``, natively and under qemu's Haswell). The
:class:`Int8Verdict` is saved as JSON next to the model, one file per CPU kind
(:attr:`facesense.cpu.CpuInfo.key`), tied to the INT8 file's sha256 and the
onnxruntime version, written atomically: no command quantises or verifies twice, and a
CPU that rejects INT8 gets FP32 without a word more than one info line.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facesense.errors import ModelError
from facesense.models.registry import cache_dir, file_sha256, write_atomic

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = [
    "CHECK_INPUTS",
    "MIN_COSINE_TO_FP32",
    "QUANT_VERSION",
    "RANGES_FILE",
    "WEIGHT_LIMIT",
    "Int8LoadError",
    "Int8Verdict",
    "check_weight_range",
    "facenet_int8",
    "int8_model_path",
    "check_inputs",
    "quantize_facenet",
    "verdict_path",
    "verify_int8",
]

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).with_name("data")
RANGES_FILE = DATA_DIR / "facenet_int8_ranges.json"
CHECK_INPUTS = 8
CHECK_INPUT_PX = 160

QUANT_VERSION = 2  # 2: 7-bit weights (reduce_range), verdict per CPU
QUANT_OPTIONS: dict[str, Any] = {"per_channel": True, "reduce_range": True}
WEIGHT_LIMIT = 64  # |w| <= 64: a vpmaddubsw pair 2 * 255 * 64 = 32640 fits in int16
# Lowest cosine to FP32 over the check faces. Measured with 7-bit weights: >= 0.997 on 200
# LFW faces and the check faces, on AVX-512 VNNI and on AVX2 (qemu); saturating 8-bit
# weights on AVX2 measured 0.76, per-tensor weights 0.98-0.99.
MIN_COSINE_TO_FP32 = 0.995
VERDICT_FORMAT = 1


@dataclass(frozen=True, kw_only=True)
class Int8Verdict:
    """Whether the INT8 model may stand in for FP32 on one kind of CPU.

    Attributes:
        path: the INT8 model file (it exists unless quantisation itself failed).
        sha256: hex digest of that file when it was judged; ``""`` when quantisation failed.
        cpu: :attr:`facesense.cpu.CpuInfo.key` of the CPU that judged it.
        onnxruntime: the onnxruntime version that judged it (kernels change between versions).
        accepted: INT8 is used on this CPU.
        min_cosine: lowest INT8-to-FP32 cosine over the check faces (``None``: not measured).
        faces: how many check faces were compared.
        reason: why it was rejected (``""`` when accepted).
    """

    path: Path
    sha256: str
    cpu: str
    onnxruntime: str
    accepted: bool
    min_cosine: float | None
    faces: int
    reason: str = ""

    def to_json(self) -> bytes:
        """The verdict file's content (the model by file name: the cache may move)."""
        data = asdict(self)
        data["path"] = self.path.name
        data["format"] = VERDICT_FORMAT
        data["min_cosine_required"] = MIN_COSINE_TO_FP32
        return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, text: str, model: Path) -> Int8Verdict:
        """Parse a verdict file written for ``model``.

        Raises:
            ValueError: not a verdict of this format for this model.
        """
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != VERDICT_FORMAT or data.get("path") != model.name:
            raise ValueError("not a verdict for this model")
        try:
            cosine = data["min_cosine"]
            verdict = cls(
                path=model,
                sha256=str(data["sha256"]),
                cpu=str(data["cpu"]),
                onnxruntime=str(data["onnxruntime"]),
                accepted=data["accepted"] is True,
                min_cosine=None if cosine is None else float(cosine),
                faces=int(data["faces"]),
                reason=str(data.get("reason", "")),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"incomplete verdict: {exc}") from exc
        return verdict


def quantize_facenet(
    fp32_path: Path,
    out_path: Path,
    *,
    ranges: Path = RANGES_FILE,
    calibration: npt.NDArray[np.float32] | None = None,
) -> None:
    """Quantise the FP32 FaceNet model to INT8 QDQ with :data:`QUANT_OPTIONS`.

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

        class _Reader(CalibrationDataReader):  # type: ignore[misc]
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
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            **QUANT_OPTIONS,
        )
    except TypeError as exc:  # onnxruntime < 1.32 has no calibration cache
        raise ModelError(f"this onnxruntime cannot quantise from stored ranges ({exc}); upgrade it") from exc
    except Exception as exc:  # the quantiser raises many unexported kinds
        raise ModelError(f"INT8 quantisation of FaceNet failed: {exc}") from exc
    finally:
        logging.disable(logging.NOTSET)


class Int8LoadError(ModelError):
    """The INT8 model cannot be loaded or run here (a damaged file, or kernels this CPU lacks)."""


def check_weight_range(path: Path) -> int:
    """Check that no INT8 weight can make an AVX2 (non-VNNI) kernel saturate.

    Every int8 initializer (the quantised Conv and MatMul weights) must lie in
    ``[-WEIGHT_LIMIT, WEIGHT_LIMIT]``.

    Returns:
        The number of int8 weight tensors checked.

    Raises:
        Int8LoadError: the file does not parse.
        ModelError: it has no int8 weights, or one is out of range.
    """
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError, OSError, ...
        raise Int8LoadError(f"{path} cannot be parsed as ONNX: {exc}") from exc
    weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    if not weights:
        raise ModelError(f"{path} has no int8 weights: not a quantised model")
    for tensor in weights:
        values = numpy_helper.to_array(tensor)
        if values.size and int(np.abs(values.astype(np.int16)).max()) > WEIGHT_LIMIT:
            raise ModelError(
                f"INT8 weight {tensor.name} spans [{values.min()}, {values.max()}], beyond "
                f"+-{WEIGHT_LIMIT}: CPUs without VNNI could saturate"
            )
    return len(weights)


def check_inputs(count: int = CHECK_INPUTS, *, seed: int = 0) -> npt.NDArray[np.uint8]:
    """The inputs an INT8 build is compared with FP32 on: ``(count, 160, 160, 3)`` uint8.

    Smooth random colour fields (a 20x20 grid of noise, upsampled bicubically and
    stretched to 0-255), the same on every machine: images with a face's spread of
    activations, made here, so that facesense ships no image files. The guarantee that
    AVX2 cannot saturate is :func:`check_weight_range`; this comparison catches a broken
    build. The tests compare INT8 with FP32 on real LFW faces, natively and under
    ``qemu-x86_64 -cpu Haswell`` (measured: min cosine 0.9974 on 200 faces; 0.9979 on
    these inputs).
    """
    import cv2

    rng = np.random.default_rng(seed)
    out = np.empty((count, CHECK_INPUT_PX, CHECK_INPUT_PX, 3), np.uint8)
    for i in range(count):
        grid = rng.normal(size=(20, 20, 3)).astype(np.float32)
        field = cv2.resize(grid, (CHECK_INPUT_PX, CHECK_INPUT_PX), interpolation=cv2.INTER_CUBIC)
        field = (field - field.min()) / max(float(field.max() - field.min()), 1e-6) * 255.0
        out[i] = np.clip(np.rint(field), 0, 255).astype(np.uint8)
    return out


def int8_model_path(fp32_path: Path) -> Path:
    """Where the INT8 model built from ``fp32_path`` is cached.

    The name carries :data:`QUANT_VERSION` and a digest of the FP32 file's name and the
    shipped ranges, so a new quantisation recipe or new ranges never reuse an old file.

    Raises:
        ModelError: the ranges are missing.
    """
    import hashlib

    if not RANGES_FILE.is_file():
        raise ModelError(f"INT8 activation ranges {RANGES_FILE} are missing; reinstall facesense")
    tag = hashlib.sha256(fp32_path.name.encode() + RANGES_FILE.read_bytes()).hexdigest()[:12]
    return cache_dir() / f"{fp32_path.stem}-int8-q{QUANT_VERSION}-{tag}.onnx"


def verdict_path(model: Path, cpu_key: str) -> Path:
    """The verdict file of ``model`` for CPUs of kind ``cpu_key``."""
    return model.with_name(f"{model.stem}.{cpu_key}.verdict.json")


def _onnxruntime_version() -> str:
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - a hard dependency
        raise ModelError("onnxruntime is not installed: pip install onnxruntime") from exc
    return str(onnxruntime.__version__)


def _embed(path: Path, blob: npt.NDArray[np.float32], name: str) -> npt.NDArray[np.float64]:
    from facesense.models.facenet_onnx import INPUT_NAME, OUTPUT_NAME
    from facesense.models.runtime import create_session

    session = create_session(path, name=name)
    try:
        (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: blob})
    except Exception as exc:  # onnxruntime raises its own, unexported classes
        raise ModelError(f"{name} failed on the check faces: {exc}") from exc
    return np.asarray(out, np.float64)


def verify_int8(int8_path: Path, fp32_path: Path, *, sha256: str, cpu: str) -> Int8Verdict:
    """Judge ``int8_path`` on this CPU: weight bound, then INT8 vs FP32 on the check faces.

    Args:
        int8_path: the INT8 model.
        fp32_path: the FP32 model it was quantised from.
        sha256: the INT8 file's digest, recorded in the verdict.
        cpu: this CPU's :attr:`~facesense.cpu.CpuInfo.key`.

    Returns:
        The verdict; ``accepted`` is False when a weight is out of range, the output
        has another shape, or a check face's cosine to FP32 is below
        :data:`MIN_COSINE_TO_FP32`.

    Raises:
        Int8LoadError: the INT8 model cannot be loaded or run.
        ModelError: FP32 FaceNet cannot be loaded or run, or the check faces are missing.
    """
    from facesense.embed.facenet import preprocess_crops

    def verdict(*, min_cosine: float | None = None, faces: int = 0, reason: str = "") -> Int8Verdict:
        return Int8Verdict(
            path=int8_path,
            sha256=sha256,
            cpu=cpu,
            onnxruntime=_onnxruntime_version(),
            accepted=not reason,
            min_cosine=min_cosine,
            faces=faces,
            reason=reason,
        )

    try:
        check_weight_range(int8_path)
    except Int8LoadError:
        raise
    except ModelError as exc:
        return verdict(reason=str(exc))
    blob = preprocess_crops(check_inputs())
    reference = _embed(fp32_path, blob, "FaceNet FP32")
    try:
        out = _embed(int8_path, blob, "FaceNet INT8")
    except ModelError as exc:
        raise Int8LoadError(str(exc)) from exc
    if out.shape != reference.shape:
        return verdict(reason=f"INT8 output has shape {out.shape}, FP32 {reference.shape}")
    cos = np.sum(reference * out, axis=1) / (np.linalg.norm(reference, axis=1) * np.linalg.norm(out, axis=1))
    worst = float(np.nan_to_num(cos, nan=-1.0).min())
    if worst < MIN_COSINE_TO_FP32:
        reason = f"INT8 disagrees with FP32 (cosine {worst:.4f} < {MIN_COSINE_TO_FP32})"
        return verdict(min_cosine=worst, faces=len(blob), reason=reason)
    return verdict(min_cosine=worst, faces=len(blob))


def _read_verdict(path: Path, model: Path) -> Int8Verdict | None:
    """The stored verdict, or ``None`` when there is none (a damaged file counts as none)."""
    try:
        return Int8Verdict.from_json(path.read_text(encoding="utf-8"), model)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.debug("ignoring the INT8 verdict %s: %s", path, exc)
        return None


def _save_verdict(verdict: Int8Verdict) -> None:
    target = verdict_path(verdict.path, verdict.cpu)
    try:
        write_atomic(target, verdict.to_json())
    except OSError as exc:  # a read-only cache: the verdict is right, just not remembered
        logger.warning("could not save the INT8 verdict %s: %s", target, exc)


def _remove_stale(model: Path, prefix: str) -> None:
    """Delete INT8 models (and their verdicts) of other recipes, ranges or FP32 files."""
    for stale in model.parent.glob(f"{prefix}*"):
        if stale.name.startswith(model.stem) or stale.suffix == ".tmp":
            continue
        try:
            stale.unlink()
        except OSError as exc:
            logger.warning("could not remove the outdated INT8 file %s: %s", stale, exc)
        else:
            logger.info("removed the outdated INT8 file %s", stale)


def facenet_int8(fp32_path: Path) -> Int8Verdict:
    """The INT8 FaceNet model for ``fp32_path`` and this CPU's verdict on it.

    Builds the model on first use, judges it once per kind of CPU (:func:`verify_int8`)
    and remembers the verdict. A cached model whose digest no longer matches its verdict
    (overwritten, truncated) is judged again, and rebuilt if it cannot even be loaded.

    Returns:
        The verdict; use ``verdict.path`` only when ``verdict.accepted``.

    Raises:
        ModelError: the ranges or check faces are missing, the cache cannot be written,
            or FP32 FaceNet itself fails.
    """
    from facesense.cpu import cpu_info

    model = int8_model_path(fp32_path)
    cpu = cpu_info().key
    version = _onnxruntime_version()
    stored = _read_verdict(verdict_path(model, cpu), model)
    if model.is_file():
        try:
            digest = file_sha256(model)
        except OSError as exc:
            raise ModelError(f"cannot read the cached INT8 model {model}: {exc}") from exc
        if stored is not None and stored.sha256 == digest and stored.onnxruntime == version:
            return stored
        try:
            verdict = verify_int8(model, fp32_path, sha256=digest, cpu=cpu)
        except Int8LoadError as exc:
            logger.warning("rebuilding the cached INT8 model %s: %s", model, exc)
        else:
            _save_verdict(verdict)
            return verdict
    elif stored is not None and stored.sha256 == "" and stored.onnxruntime == version:
        return stored  # this onnxruntime failed to quantise: do not retry every command
    return _build(fp32_path, model, cpu=cpu, onnxruntime=version)


def _rejected(path: Path, *, sha256: str, cpu: str, onnxruntime: str, reason: str) -> Int8Verdict:
    return Int8Verdict(
        path=path,
        sha256=sha256,
        cpu=cpu,
        onnxruntime=onnxruntime,
        accepted=False,
        min_cosine=None,
        faces=0,
        reason=reason,
    )


def _build(fp32_path: Path, model: Path, *, cpu: str, onnxruntime: str) -> Int8Verdict:
    logger.info("quantising FaceNet to INT8 (one-off, a few seconds)")
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(dir=model.parent) as tmp:
            out = Path(tmp) / "int8.onnx"
            try:
                quantize_facenet(fp32_path, out)
            except ModelError as exc:
                retry = f"remembered for onnxruntime {onnxruntime}; delete {verdict_path(model, cpu)} to retry"
                failed = _rejected(model, sha256="", cpu=cpu, onnxruntime=onnxruntime, reason=f"{exc} ({retry})")
                _save_verdict(failed)
                return failed
            digest = file_sha256(out)
            try:
                verdict = verify_int8(out, fp32_path, sha256=digest, cpu=cpu)
            except Int8LoadError as exc:
                verdict = _rejected(out, sha256=digest, cpu=cpu, onnxruntime=onnxruntime, reason=str(exc))
            write_atomic(model, out.read_bytes())
    except OSError as exc:
        raise ModelError(f"cannot write the INT8 model to {model}: {exc}") from exc
    verdict = replace(verdict, path=model)
    _save_verdict(verdict)
    _remove_stale(model, f"{fp32_path.stem}-int8-")
    if verdict.accepted:
        logger.info(
            "built INT8 FaceNet in %.1f s; used on this CPU (%s): min cosine to FP32 %.4f on %d check inputs",
            time.perf_counter() - start,
            cpu,
            verdict.min_cosine,
            verdict.faces,
        )
    return verdict
