"""What CPU this is: model name and the SIMD features that change which kernels run.

ONNX Runtime and OpenCV pick their kernels by CPU features at run time; INT8 kernels in
particular behave differently with and without AVX-512 VNNI (u8s8 products can saturate
on AVX2 without VNNI). Everything that is cached per CPU (the INT8 verdict) and every
benchmark header uses :func:`cpu_info`, so a figure always says where it was measured.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuInfo", "cpu_info"]

CPUINFO_PATH = Path("/proc/cpuinfo")


@dataclass(frozen=True, kw_only=True)
class CpuInfo:
    """The CPU facesense runs on.

    Attributes:
        model: the model name (``/proc/cpuinfo``'s ``model name``, or ``platform.processor()``).
        machine: ``platform.machine()`` (``x86_64``, ``aarch64`` ...).
        cores: logical CPUs available to this process.
        avx2, avx512, vnni: whether AVX2, AVX-512 (foundation) and VNNI (AVX-512 VNNI or
            AVX-VNNI) are present.
    """

    model: str
    machine: str
    cores: int
    avx2: bool
    avx512: bool
    vnni: bool

    @property
    def simd(self) -> str:
        """The SIMD level that decides kernels: ``avx512-vnni``, ``avx512``, ``avx2``, ``avx2-vnni`` or ``baseline``."""
        if self.avx512:
            return "avx512-vnni" if self.vnni else "avx512"
        if self.avx2:
            return "avx2-vnni" if self.vnni else "avx2"
        return "baseline"

    @property
    def key(self) -> str:
        """A short key for caches that depend on the kernels: machine and SIMD level."""
        return f"{self.machine}-{self.simd}"

    def describe(self) -> str:
        """One line for benchmark headers: ``AMD EPYC, 2 cores, x86_64, AVX2 yes, AVX-512 no, VNNI no``."""
        yn = {True: "yes", False: "no"}
        return (
            f"{self.model}, {self.cores} cores, {self.machine}, AVX2 {yn[self.avx2]}, "
            f"AVX-512 {yn[self.avx512]}, VNNI {yn[self.vnni]}"
        )

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready dict (for ``--json`` reports)."""
        return {
            "model": self.model,
            "machine": self.machine,
            "cores": self.cores,
            "avx2": self.avx2,
            "avx512": self.avx512,
            "vnni": self.vnni,
            "simd": self.simd,
        }


def parse_cpuinfo(text: str) -> tuple[str, set[str]]:
    """The first ``model name`` and the ``flags`` of ``/proc/cpuinfo`` text."""
    model = ""
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model, flags


def _cpuid_features() -> dict[str, bool]:
    """NumPy's own CPUID check (what the process really runs on, also under an emulator
    or in a VM that hides features; ``/proc/cpuinfo`` there may describe the host), or
    ``{}`` when NumPy does not expose it."""
    import importlib

    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):  # NumPy 2, 1
        try:
            features = getattr(importlib.import_module(module), "__cpu_features__", None)
        except ImportError:
            continue
        if isinstance(features, dict):
            return {str(k): bool(v) for k, v in features.items()}
    return {}


@functools.cache
def cpu_info() -> CpuInfo:
    """The CPU this process runs on (read once).

    AVX2, AVX-512 and AVX-512 VNNI come from CPUID as NumPy sees it (this is what the
    kernels of ONNX Runtime and OpenCV see too), ``/proc/cpuinfo`` where NumPy does not
    say; AVX-VNNI (no NumPy flag) and the model name come from ``/proc/cpuinfo``.
    """
    import os

    try:
        text = CPUINFO_PATH.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    model, flags = parse_cpuinfo(text)
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    cpuid = _cpuid_features()

    def has(numpy_name: str, flag: str) -> bool:
        return cpuid.get(numpy_name, flag in flags)

    avx512 = has("AVX512F", "avx512f")
    return CpuInfo(
        model=model or platform.processor() or "unknown CPU",
        machine=platform.machine() or "unknown",
        cores=cores,
        avx2=has("AVX2", "avx2"),
        avx512=avx512,
        vnni=(avx512 and has("AVX512VNNI", "avx512_vnni")) or ("avx_vnni" in flags and has("AVX2", "avx2")),
    )
