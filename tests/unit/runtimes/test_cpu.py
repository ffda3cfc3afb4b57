"""The CPU fingerprint: what `auto` decisions and int8 exports are keyed on."""

from __future__ import annotations

from app.runtimes.cpu import _isa, cpu_fingerprint, describe_cpu

AMX_HOST = {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
            "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8", "sse4_2"}  # fmt: skip


def cpuid(**flags: bool) -> dict[str, bool]:
    names = ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "avx512_fp16"]  # fmt: skip
    return {name: flags.get(name, False) for name in names}


def test_cpuid_decides_and_proc_adds_what_it_cannot_see() -> None:
    native = cpuid(avx2=True, fma=True, f16c=True, avx512f=True, avx512bw=True, avx512vl=True,
                   avx512_vnni=True, avx512_bf16=True)  # fmt: skip
    isa = _isa(AMX_HOST, native)
    assert {"avx512_vnni", "amx_bf16", "amx_int8"} <= set(isa)
    assert "sse4_2" not in isa  # not one engines choose kernels by


def test_an_emulated_avx2_cpu_is_not_taken_for_its_host() -> None:
    """qemu -cpu EPYC-Rome answers CPUID with AVX2 only, but /proc/cpuinfo is the host's."""
    isa = _isa(AMX_HOST, cpuid(avx2=True, fma=True, f16c=True))
    assert isa == ["avx2", "fma", "f16c"]


def test_without_numpy_probe_proc_cpuinfo_is_read() -> None:
    assert _isa({"avx2", "amx_int8"}, None) == ["avx2", "amx_int8"]


def test_this_machine_is_described() -> None:
    fingerprint = cpu_fingerprint()
    assert fingerprint["cores"] >= 1
    assert describe_cpu(fingerprint).startswith(str(fingerprint["model"]))
