#!/usr/bin/env bash
# The CUDA paths in one go: PyTorch fp16, ONNX Runtime's CUDA execution provider with IO
# binding, and a short benchmark of both against fp32, then a summary. On a machine without a
# usable GPU it says so and exits 0 (nothing to check there).
#   scripts/gpu-check.sh [VENV]      # default .venv (relative to the repository root)
# The ONNX Runtime path needs onnxruntime-gpu (the CUDA image has it); with the CPU wheel it
# is reported as FAILED (fell back to cpu), never silently skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv}
python="$venv/bin/python"
[ -x "$python" ] || { echo "gpu-check: no $python; run \`make install\` first" >&2; exit 1; }

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no NVIDIA GPU on this machine (nvidia-smi absent or finds none); nothing to check"
  exit 0
fi
if ! "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu-check: nvidia-smi sees a GPU but this torch has no CUDA (CPU wheel?); nothing to check"
  exit 0
fi
nvidia-smi -L

exec "$python" - <<'PY'
"""Load the MiniLM-sized classifier on each CUDA path through nlp-serve's own backends, check
it agrees with CPU fp32, and time forward passes of 32 short inputs."""

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from app.runtimes.base import Head
from app.runtimes.onnx import OnnxBackend
from app.runtimes.torch import TorchBackend
from app.settings import Settings
from app.spec import ModelSpec
from bench.common import minilm_classifier_dir, sentences

source = minilm_classifier_dir()
cache = Path(tempfile.mkdtemp(prefix="gpu-check-"))
settings = Settings(_env_file=None, onnx_cache_dir=cache)  # type: ignore[call-arg]
from transformers import AutoTokenizer  # noqa: E402

tokenizer = AutoTokenizer.from_pretrained(str(source))
encoded = tokenizer(sentences(32, words=20), padding=True, return_tensors="np")
inputs = {k: np.asarray(v, dtype=np.int64) for k, v in encoded.items()}
CONFIGS = {
    "torch-cpu-fp32": ("torch", "cpu", "fp32"),
    "torch-cuda-fp32": ("torch", "cuda", "fp32"),
    "torch-cuda-fp16": ("torch", "cuda", "fp16"),
    "onnx-cuda-fp32 (IO binding)": ("onnx", "cuda", "fp32"),
}
results, failures, reference = {}, [], None
for label, (backend, device, precision) in CONFIGS.items():
    spec = ModelSpec(name=label.split()[0], task="sentiment", source=str(source), backend=backend,
                     device=device, precision=precision, export=backend == "onnx")
    try:
        cls = TorchBackend if backend == "torch" else OnnxBackend
        model = cls(source, Head.SEQUENCE_CLASSIFICATION, spec, settings)
        if model.device != ("cpu" if device == "cpu" else "cuda:0"):
            raise RuntimeError(f"fell back to {model.device}")
        if backend == "onnx" and model.session.get_providers()[0] != "CUDAExecutionProvider":
            raise RuntimeError(f"providers {model.session.get_providers()}")
        logits = model.forward(inputs)["logits"]
        for _ in range(3):
            model.forward(inputs)
        times = []
        for _ in range(20):
            started = time.perf_counter()
            model.forward(inputs)
            times.append((time.perf_counter() - started) * 1000)
        reference = logits if reference is None else reference
        diff = float(np.abs(logits - reference).max())
        results[label] = (statistics.median(times), diff, model.precision)
        model.close()
    except Exception as exc:  # report every path, then fail at the end
        failures.append(f"{label}: {type(exc).__name__}: {exc}")

print("\ngpu-check summary (batch of 32 x ~24 tokens, median of 20 forwards):")
for label, (ms, diff, precision) in results.items():
    print(f"  {label:<30} {ms:8.2f} ms  {32000 / ms:9.0f} items/s  "
          f"max |logit - cpu fp32| {diff:.2e}  ({precision})")
for failure in failures:
    print(f"  FAILED {failure}")
sys.exit(1 if failures else 0)
PY
