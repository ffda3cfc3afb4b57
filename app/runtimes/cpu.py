"""What CPU this is, in the terms that decide which engine and precision run fastest.

Engines pick their kernels from the CPU's instruction sets (AVX2, AVX-512, VNNI, bf16, AMX):
a choice measured on one CPU says nothing of another. `cpu_fingerprint()` names the CPU and
the instruction sets that matter, so a decision made on it can say where it was made and be
made again when it runs elsewhere.
"""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path
from typing import Any

# The instruction sets engines dispatch on for transformer inference (oneDNN, MLAS, ATen),
# named as /proc/cpuinfo names them, with numpy's name for those its CPUID probe reports.
ISA_FLAGS = (
    "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
    "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8",
)  # fmt: skip
NUMPY_NAMES = {
    "avx2": "AVX2", "fma": "FMA3", "f16c": "F16C", "avx512f": "AVX512F", "avx512bw": "AVX512BW",
    "avx512vl": "AVX512VL", "avx512_vnni": "AVX512VNNI", "avx512_bf16": "AVX512BF16",
    "avx512_fp16": "AVX512FP16",
}  # fmt: skip
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def _cpuid_flags() -> dict[str, bool] | None:
    """What CPUID tells this process (numpy's probe, as the engines' own probes see it), or
    None where numpy does not say. /proc/cpuinfo is the host's even under emulation."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__  # type: ignore[import-not-found]
    except ImportError:
        return None
    return {flag: bool(__cpu_features__.get(name)) for flag, name in NUMPY_NAMES.items()}


def _isa(proc_flags: set[str], cpuid: dict[str, bool] | None) -> list[str]:
    """The ISA flags this process can use: CPUID's where numpy reports them; the others
    (AMX, AVX-VNNI) from /proc/cpuinfo, unless CPUID and /proc disagree on AVX-512 (an
    emulated or restricted CPU, where /proc describes another one)."""
    if cpuid is None:
        return [flag for flag in ISA_FLAGS if flag in proc_flags]
    same_cpu = cpuid["avx512f"] == ("avx512f" in proc_flags)
    return [flag for flag in ISA_FLAGS if cpuid.get(flag, same_cpu and flag in proc_flags)]


def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> tuple[str, set[str]]:
    """The first processor's model name and flags (Linux); empty elsewhere."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine(), set()
    name, flags = "", set[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not name:
            name = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
        if name and flags:
            break
    return name or platform.machine(), flags


@cache
def cpu_fingerprint() -> dict[str, Any]:
    """{"model": ..., "isa": [...], "cores": N}: equal on two machines that should choose the
    same engine (the same kernels on as many cores)."""
    name, flags = _cpuinfo()
    return {
        "model": name,
        "isa": _isa(flags, _cpuid_flags()),
        "cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
    }


def cpu_has_bf16() -> bool:
    """Whether the CPU has bf16 dot products (avx512_bf16 or AMX)."""
    return bool(BF16_FLAGS & set(cpu_fingerprint()["isa"]))


def describe_cpu(fingerprint: dict[str, Any]) -> str:
    """One line for logs: 'AMD EPYC (2 cores; avx2 avx512f ...)'."""
    isa = " ".join(fingerprint.get("isa", [])) or "no AVX2"
    return f"{fingerprint.get('model')} ({fingerprint.get('cores')} cores; {isa})"
