"""scripts/gpu-check.sh and bench/gpu_check.py without a GPU: --cpu runs the same table on
the CPU rows (the tiny model, a few repeats: ~10 s), and without --cpu a machine with no GPU
is told so and passes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu-check.sh"


def gpu_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=150, cwd=ROOT
    )


def test_cpu_mode_prints_the_table_with_its_rows() -> None:
    done = gpu_check("--cpu", "--python", sys.executable, "--",
                     "--model-size", "tiny", "--repeats", "2", "--warmup", "1",
                     "--requests", "64")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("check "))
    assert "max |logit diff|" in lines[header]
    assert "b1 ms" in lines[header]
    assert "b32 ms" in lines[header]
    reference, batcher = lines[header + 2], lines[header + 3]
    label = "torch cpu fp32 (reference)"
    assert reference.startswith(label)
    assert reference.endswith("ok")
    cells = reference.removeprefix(label).split()  # -, -, b1, b8, b32 ms, throughput, ok
    assert all(float(ms) > 0 for ms in cells[2:5]), reference
    assert batcher.startswith("batcher, torch cpu fp32, 32 concurrent")
    mean_batch = float(batcher.split("mean batch")[1].split()[0])
    assert mean_batch > 1  # 32 clients at once: the batcher formed real batches
    assert lines[-1] == "gpu-check: all checked paths ok"


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a machine with nvidia-smi")
def test_without_a_gpu_the_check_says_so_and_passes() -> None:
    done = gpu_check("--python", sys.executable)
    assert done.returncode == 0, done.stderr
    assert "no NVIDIA GPU on this machine" in done.stdout


def test_an_interpreter_that_is_not_there_stops_it() -> None:
    done = gpu_check("--python", str(ROOT / "no-such-python"))
    assert done.returncode == 1
    assert "no python at" in done.stderr
