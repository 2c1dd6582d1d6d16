"""INT8 FaceNet: right on CPUs with and without VNNI, judged once per CPU, remembered.

The model is built once for the module (one real quantisation, a few seconds); tests
that change the cache work on a copy of it. The last test runs the INT8 model on an
emulated AVX2-only CPU (``qemu-x86_64 -cpu Haswell``) when qemu-user is installed.
"""

from __future__ import annotations

import logging
import platform
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import pytest
from onnx import TensorProto, helper

from facesense import cpu
from facesense.embed.facenet import FaceNetEmbedder, preprocess_crops
from facesense.errors import ModelError
from facesense.models import facenet_int8, registry
from facesense.models.facenet_int8 import (
    MIN_COSINE_TO_FP32,
    WEIGHT_LIMIT,
    Int8Verdict,
    check_inputs,
    check_weight_range,
    int8_model_path,
    verdict_path,
)
from facesense.models.facenet_onnx import INPUT_NAME, OUTPUT_NAME, facenet_onnx_path
from facesense.models.runtime import create_session

QEMU_CPU = "Haswell"  # AVX2 + FMA, no AVX-512, no VNNI
# The two check faces that saturated worst with 8-bit weights (cosine 0.62 and 0.64 on
# Haswell); about 4 s each under emulation on an idle core, 15 s on a busy one.
QEMU_FACES = slice(2, 4)
QEMU_TIMEOUT_S = 50


@dataclass
class Built:
    cache: Path
    fp32: Path
    verdict: Int8Verdict
    calls: Counter[str]


@pytest.fixture(scope="module")
def fp32_path(shared_cache: Path) -> Path:
    return facenet_onnx_path()


def _count_calls(mp: pytest.MonkeyPatch, calls: Counter[str]) -> None:
    """Count every quantisation and verification facenet_int8() does."""
    for name in ("quantize_facenet", "verify_int8"):
        real = getattr(facenet_int8, name)

        def counted(*args: object, _real: object = real, _name: str = name, **kwargs: object) -> object:
            calls[_name] += 1
            return _real(*args, **kwargs)  # type: ignore[operator]

        mp.setattr(facenet_int8, name, counted)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, fp32_path: Path) -> Iterator[Built]:
    """INT8 built in an empty cache, with quantisations and verifications counted from then on."""
    cache = tmp_path_factory.mktemp("int8-cache")
    calls: Counter[str] = Counter()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(registry.CACHE_ENV, str(cache))
        _count_calls(mp, calls)
        verdict = facenet_int8.facenet_int8(fp32_path)
        yield Built(cache, fp32_path, verdict, calls)


@pytest.fixture
def copied(built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Built:
    """A private cache: copies of the built model and its verdict, the FP32 model linked; calls counted."""
    cache = tmp_path / "cache"
    cache.mkdir()
    for path in built.cache.iterdir():
        shutil.copy2(path, cache / path.name)
    (cache / built.fp32.name).symlink_to(built.fp32)
    monkeypatch.setenv(registry.CACHE_ENV, str(cache))
    calls: Counter[str] = Counter()
    _count_calls(monkeypatch, calls)
    return Built(cache, cache / built.fp32.name, replace(built.verdict, path=cache / built.verdict.path.name), calls)


def _here(verdict: Int8Verdict) -> Path:
    """The verdict file of ``verdict``'s model for this CPU."""
    return verdict_path(verdict.path, cpu.cpu_info().key)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.asarray(np.sum(a * b, axis=1))


def _embed(path: Path, blob: np.ndarray) -> np.ndarray:
    return np.asarray(create_session(path).run([OUTPUT_NAME], {INPUT_NAME: blob})[0])


# -- the weight bound that rules out saturation --------------------------------------------


def _tiny_model(path: Path, weights: np.ndarray | None) -> Path:
    """A one-node model, with an int8 initializer ``weights`` when given."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    inits = []
    nodes = [helper.make_node("Identity", ["x"], ["y"])]
    if weights is not None:
        inits = [helper.make_tensor("w", TensorProto.INT8, weights.shape, weights.ravel().tolist())]
    onnx.save(helper.make_model(helper.make_graph(nodes, "tiny", [x], [y], inits)), str(path))
    return path


@pytest.mark.parametrize(
    ("weights", "error"),
    [
        (np.array([-64, 0, 64], np.int8), None),
        (np.array([[3, -7], [63, 1]], np.int8), None),
        (np.array([0, 65], np.int8), r"spans \[0, 65\].*saturate"),
        (np.array([-127, 5], np.int8), r"spans \[-127, 5\]"),
        (np.array([-128], np.int8), r"spans \[-128, -128\]"),
        (None, "no int8 weights"),
    ],
)
def test_weight_range(tmp_path: Path, weights: np.ndarray | None, error: str | None) -> None:
    path = _tiny_model(tmp_path / "m.onnx", weights)
    if error is None:
        assert check_weight_range(path) == 1
    else:
        with pytest.raises(ModelError, match=error):
            check_weight_range(path)


def test_built_model_has_7_bit_weights(built: Built) -> None:
    """Every Conv/MatMul weight of the real model is within +-64: AVX2 cannot saturate."""
    assert check_weight_range(built.verdict.path) >= 133  # 132 convolutions and the bottleneck MatMul
    assert np.iinfo(np.int16).max >= WEIGHT_LIMIT * 255 * 2


# -- agreement with FP32 on real faces, on this CPU ----------------------------------------


def test_check_inputs_are_deterministic_and_varied() -> None:
    """No image ships with facesense: the run-time check inputs are made, the same on every machine."""
    inputs = check_inputs()
    assert inputs.shape == (8, 160, 160, 3) and inputs.dtype == np.uint8
    assert np.array_equal(inputs, check_inputs())
    flat = inputs.reshape(len(inputs), -1).astype(np.int16)
    assert min(np.abs(flat[i] - flat[j]).mean() for i in range(8) for j in range(i)) > 20
    assert all(face.min() == 0 and face.max() == 255 for face in inputs)


def _lfw_crops(lfw_dir: Path, step: int) -> npt.NDArray[np.uint8]:
    """Central 160 px crops of the first image of every ``step``-th LFW person (real faces, ../shared/data)."""
    import cv2

    people = sorted(p for p in lfw_dir.iterdir() if p.is_dir())[::step]
    images = [cv2.imread(str(sorted(p.glob("*.jpg"))[0])) for p in people]
    return np.stack([image[45:205, 45:205] for image in images if image is not None]).astype(np.uint8)


def test_int8_agrees_with_fp32_on_real_faces(built: Built, lfw_dir: Path) -> None:
    """Measured on 200 LFW faces: min cosine 0.9974 (AVX-512 VNNI and AVX2 alike)."""
    assert built.verdict.accepted, built.verdict.reason
    assert built.verdict.min_cosine is not None and built.verdict.min_cosine >= MIN_COSINE_TO_FP32
    assert built.verdict.faces == 8
    blob = preprocess_crops(_lfw_crops(lfw_dir, 150))
    cos = _cosines(_embed(built.verdict.path, blob), _embed(built.fp32, blob))
    assert len(cos) >= 10 and cos.min() >= MIN_COSINE_TO_FP32, cos


# -- the verdict cache ---------------------------------------------------------------------


def test_first_use_quantises_and_verifies_once(built: Built) -> None:
    assert built.calls == {"quantize_facenet": 1, "verify_int8": 1}
    model = built.verdict.path
    stored = verdict_path(model, cpu.cpu_info().key)
    assert model.name.startswith(f"{built.fp32.stem}-int8-q{facenet_int8.QUANT_VERSION}-")
    assert built.verdict.sha256 == registry.sha256_file(model)
    mtimes = model.stat().st_mtime_ns, stored.stat().st_mtime_ns
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(registry.CACHE_ENV, str(built.cache))
        again = facenet_int8.facenet_int8(built.fp32)
    assert again == built.verdict
    assert built.calls == {"quantize_facenet": 1, "verify_int8": 1}, "the second use neither quantises nor verifies"
    assert (model.stat().st_mtime_ns, stored.stat().st_mtime_ns) == mtimes
    assert sorted(p.name for p in built.cache.iterdir()) == sorted([model.name, stored.name])


def test_another_cpu_verifies_without_quantising(copied: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    here = cpu.cpu_info()
    assert facenet_int8.facenet_int8(copied.fp32) == copied.verdict
    other = cpu.CpuInfo(model="other", machine=here.machine, cores=2, avx2=True, avx512=not here.avx512, vnni=False)
    monkeypatch.setattr(cpu, "cpu_info", lambda: other)
    verdict = facenet_int8.facenet_int8(copied.fp32)
    assert verdict.cpu == other.key != here.key and verdict.accepted
    assert copied.calls == {"verify_int8": 1}
    assert verdict_path(copied.verdict.path, other.key).is_file() and _here(copied.verdict).is_file()
    facenet_int8.facenet_int8(copied.fp32)
    assert copied.calls == {"verify_int8": 1}


def test_damaged_verdict_is_judged_again(copied: Built) -> None:
    _here(copied.verdict).write_text('{"format": 1, "accepted": tr')
    verdict = facenet_int8.facenet_int8(copied.fp32)
    assert verdict.accepted and copied.calls == {"verify_int8": 1}
    assert Int8Verdict.from_json(_here(copied.verdict).read_text(), copied.verdict.path) == verdict


def test_changed_model_is_judged_again_and_rebuilt_when_unloadable(
    copied: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = copied.verdict.path.read_bytes()
    copied.verdict.path.write_bytes(good[: len(good) // 2])  # truncated: its digest no longer matches

    def quantize(fp32_path: Path, out_path: Path) -> None:  # a stand-in for the real quantiser
        out_path.write_bytes(good)

    monkeypatch.setattr(facenet_int8, "quantize_facenet", quantize)
    verdict = facenet_int8.facenet_int8(copied.fp32)
    assert verdict == copied.verdict and copied.verdict.path.read_bytes() == good
    assert copied.calls == {"verify_int8": 2}  # judged (unloadable), rebuilt and judged


def test_rejected_verdict_runs_fp32_with_one_info_line(
    copied: Built, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A CPU whose check fails gets FP32: remembered, one info line per load, no warning."""
    _here(copied.verdict).unlink()
    monkeypatch.setattr(facenet_int8, "MIN_COSINE_TO_FP32", 1.01)  # no INT8 model can pass this
    fp32 = FaceNetEmbedder(backend="onnxruntime", precision="fp32").onnx_path()
    for _ in range(2):
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="facesense"):
            path = FaceNetEmbedder(backend="onnxruntime").onnx_path()
        assert path == fp32
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
        lines = [r.getMessage() for r in caplog.records if r.name == "facesense.embed.facenet"]
        assert len(lines) == 1 and "using FP32" in lines[0] and "disagrees with FP32" in lines[0], lines
        assert caplog.records[-1].levelno == logging.INFO
    assert copied.calls == {"verify_int8": 1}
    stored = Int8Verdict.from_json(_here(copied.verdict).read_text(), copied.verdict.path)
    assert not stored.accepted and stored.min_cosine is not None and stored.min_cosine >= MIN_COSINE_TO_FP32


def test_quantiser_failure_is_remembered(built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path))
    calls: Counter[str] = Counter()

    def broken(fp32_path: Path, out_path: Path) -> None:
        calls["quantize"] += 1
        raise ModelError("quantiser exploded (simulated)")

    monkeypatch.setattr(facenet_int8, "quantize_facenet", broken)
    first = facenet_int8.facenet_int8(built.fp32)
    second = facenet_int8.facenet_int8(built.fp32)
    assert not first.accepted and "quantiser exploded" in first.reason and first.sha256 == ""
    assert second == first and calls == {"quantize": 1}
    assert not int8_model_path(built.fp32).exists()


def test_outdated_int8_files_are_removed(built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path))
    old = tmp_path / f"{built.fp32.stem}-int8-q1-8eb6a277281c.onnx"
    old_verdict = verdict_path(old, "x86_64-avx2")
    unrelated = tmp_path / "dlib-resnet-v1-0123-conv1.onnx"
    for path in (old, old_verdict, unrelated):
        path.write_bytes(b"x")
    good = built.verdict.path.read_bytes()
    monkeypatch.setattr(facenet_int8, "quantize_facenet", lambda fp32_path, out_path: out_path.write_bytes(good))
    verdict = facenet_int8.facenet_int8(built.fp32)
    assert verdict.accepted
    assert not old.exists() and not old_verdict.exists() and unrelated.exists()


# -- an AVX2-only CPU, emulated --------------------------------------------------------------

_QEMU_CHILD = """
import sys
import numpy as np
features = np._core._multiarray_umath.__cpu_features__  # numpy's own CPUID, not /proc/cpuinfo
if features.get("AVX512F") or not features.get("AVX2"):
    print(f"qemu gave AVX2 {features.get('AVX2')}, AVX-512 {features.get('AVX512F')}", file=sys.stderr)
    sys.exit(77)
from pathlib import Path
from facesense.models.runtime import create_session
out = create_session(Path(sys.argv[1]), threads=2).run(None, {"input": np.load(sys.argv[2])})[0]
np.save(sys.argv[3], out)
"""


@pytest.mark.skipif(
    shutil.which("qemu-x86_64") is None, reason="qemu-x86_64 (Debian: apt install qemu-user) is not on PATH"
)
@pytest.mark.skipif(platform.machine() != "x86_64", reason="emulating Haswell needs an x86-64 host and Python")
def test_int8_on_emulated_avx2_cpu_matches_native(built: Built, tmp_path: Path, lfw_dir: Path) -> None:
    """Under qemu -cpu Haswell (AVX2, no VNNI) INT8 gives this CPU's embeddings, close to FP32.

    With 8-bit weights the same faces measured cosine 0.62 there (int16 saturation).
    """
    blob = preprocess_crops(_lfw_crops(lfw_dir, 150)[QEMU_FACES])
    np.save(tmp_path / "blob.npy", blob)
    command = ["qemu-x86_64", "-cpu", QEMU_CPU, sys.executable, "-c", _QEMU_CHILD]
    command += [str(built.verdict.path), str(tmp_path / "blob.npy"), str(tmp_path / "out.npy")]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=QEMU_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.skip(f"emulated Haswell did not finish {len(blob)} faces in {QEMU_TIMEOUT_S} s (machine too busy)")
    if result.returncode == 77:  # e.g. QEMU before 7.2 cannot emulate AVX2
        pytest.skip(f"qemu-x86_64 -cpu {QEMU_CPU} is not an AVX2-only CPU here: {result.stderr.strip()[-200:]}")
    assert result.returncode == 0, result.stderr[-2000:]
    emulated = np.load(tmp_path / "out.npy")
    native = _embed(built.verdict.path, blob)
    np.testing.assert_allclose(emulated, native, rtol=0, atol=1e-4)  # measured: identical
    cos = _cosines(emulated, _embed(built.fp32, blob))
    assert cos.min() >= MIN_COSINE_TO_FP32, cos
