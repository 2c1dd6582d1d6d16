"""facesense.cpu: reading /proc/cpuinfo, the SIMD level and the cache key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from facesense import cpu
from facesense.cpu import CpuInfo, parse_cpuinfo

ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni
"""
ROME = "processor\t: 0\nmodel name\t: AMD EPYC 7B12\nflags\t\t: fpu sse2 avx avx2 fma\n"
ALDER_LAKE = "model name\t: 12th Gen Intel(R) Core(TM) i7-1260P\nflags\t\t: sse2 avx avx2 avx_vnni\n"
GRAVITON = "processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes crc32 asimddp\nCPU part\t: 0xd0c\n"
ODD_SPACING = "model name :   Some  CPU  \nflags:avx2   sse2\n"


@pytest.mark.parametrize(
    ("text", "model", "flags"),
    [
        (ZEN4, "AMD EPYC 9R14", {"fpu", "sse2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"}),
        (ROME, "AMD EPYC 7B12", {"fpu", "sse2", "avx", "avx2", "fma"}),
        (GRAVITON, "", {"fp", "asimd", "evtstrm", "aes", "crc32", "asimddp"}),
        (ODD_SPACING, "Some  CPU", {"avx2", "sse2"}),
        ("", "", set()),
        ("garbage without colons\n\n", "", set()),
    ],
)
def test_parse_cpuinfo(text: str, model: str, flags: set[str]) -> None:
    assert parse_cpuinfo(text) == (model, flags)


def test_parse_cpuinfo_keeps_the_first_processor() -> None:
    text = "model name\t: First\nflags\t: avx2\n\nmodel name\t: Second\nflags\t: avx512f\n"
    assert parse_cpuinfo(text) == ("First", {"avx2"})


def _info(**kw: object) -> CpuInfo:
    base: dict[str, object] = {
        "model": "m",
        "machine": "x86_64",
        "cores": 2,
        "avx2": False,
        "avx512": False,
        "vnni": False,
    }
    return CpuInfo(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("flags", "simd", "key"),
    [
        ({"avx2": True, "avx512": True, "vnni": True}, "avx512-vnni", "x86_64-avx512-vnni"),
        ({"avx2": True, "avx512": True}, "avx512", "x86_64-avx512"),
        ({"avx2": True, "vnni": True}, "avx2-vnni", "x86_64-avx2-vnni"),
        ({"avx2": True}, "avx2", "x86_64-avx2"),
        ({}, "baseline", "x86_64-baseline"),
        ({"machine": "aarch64"}, "baseline", "aarch64-baseline"),
    ],
)
def test_simd_level_and_key(flags: dict[str, object], simd: str, key: str) -> None:
    info = _info(**flags)
    assert (info.simd, info.key) == (simd, key)


def test_describe_and_as_dict() -> None:
    info = _info(model="AMD EPYC", avx2=True)
    assert info.describe() == "AMD EPYC, 2 cores, x86_64, AVX2 yes, AVX-512 no, VNNI no"
    data = info.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data == {
        "model": "AMD EPYC",
        "machine": "x86_64",
        "cores": 2,
        "avx2": True,
        "avx512": False,
        "vnni": False,
        "simd": "avx2",
    }


@pytest.fixture
def fake_cpuinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point cpu_info() at a file of ours, with its per-process cache cleared around the test."""
    path = tmp_path / "cpuinfo"
    monkeypatch.setattr(cpu, "CPUINFO_PATH", path)
    monkeypatch.setattr(cpu, "_cpuid_features", dict)  # as where NumPy does not say
    cpu.cpu_info.cache_clear()
    yield path
    cpu.cpu_info.cache_clear()


@pytest.mark.parametrize(
    ("text", "avx2", "avx512", "vnni", "simd"),
    [
        (ZEN4, True, True, True, "avx512-vnni"),
        (ROME, True, False, False, "avx2"),
        (ALDER_LAKE, True, False, True, "avx2-vnni"),
    ],
)
def test_cpu_info_reads_the_flags(
    fake_cpuinfo: Path, text: str, avx2: bool, avx512: bool, vnni: bool, simd: str
) -> None:
    fake_cpuinfo.write_text(text)
    info = cpu.cpu_info()
    assert (info.avx2, info.avx512, info.vnni, info.simd) == (avx2, avx512, vnni, simd)
    assert info.model == parse_cpuinfo(text)[0] and info.cores >= 1
    assert cpu.cpu_info() is info, "read once per process"


def test_cpu_info_without_proc_cpuinfo(fake_cpuinfo: Path) -> None:
    info = cpu.cpu_info()  # the file does not exist
    assert info.model and (info.avx2, info.avx512, info.vnni) == (False, False, False)
    assert info.simd == "baseline" and info.key.endswith("-baseline")


def test_cpuid_wins_over_proc_cpuinfo(fake_cpuinfo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under qemu-user (or a VM hiding features) /proc/cpuinfo describes the host; the
    CPUID that NumPy reads is what the process's kernels see."""
    fake_cpuinfo.write_text(ZEN4)  # the host says AVX-512 + VNNI
    monkeypatch.setattr(cpu, "_cpuid_features", lambda: {"AVX2": True, "AVX512F": False, "AVX512VNNI": False})
    info = cpu.cpu_info()
    assert (info.avx2, info.avx512, info.vnni, info.key) == (True, False, False, f"{info.machine}-avx2")
    assert info.model == parse_cpuinfo(ZEN4)[0]


def test_cpuid_features_come_from_numpy() -> None:
    features = cpu._cpuid_features()
    assert "AVX2" in features and all(isinstance(v, bool) for v in features.values())


def test_cpu_info_of_this_machine() -> None:
    info = cpu.cpu_info()
    assert info.cores >= 1 and info.machine and info.key == f"{info.machine}-{info.simd}"
    if info.avx512:
        assert info.simd.startswith("avx512")
