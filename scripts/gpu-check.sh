#!/usr/bin/env bash
# The CUDA paths in one table (bench/gpu_check.py): PyTorch fp32/fp16/bf16 on CUDA against
# CPU fp32 (max |logit diff|, label agreement), forward times at batch 1/8/32, ONNX Runtime's
# CUDA provider with IO binding where this onnxruntime has it, and the batcher under 32
# concurrent requests. On a machine without a usable GPU it says so and exits 0.
#   scripts/gpu-check.sh [--cpu] [--python PY | VENV] [-- ARGS for bench/gpu_check.py]
# VENV defaults to .venv (relative to the repository root); --python takes any interpreter
# that has nlp-serve's dependencies, e.g. the one scripts/offline-bundle.sh install made on
# a bare GPU host (.venv-offline/bin/python). --cpu runs the CPU rows only, GPU or not.
set -euo pipefail
usage="usage: scripts/gpu-check.sh [--cpu] [--python PY | VENV] [-- ARGS]"
python="" venv=.venv cpu=()
while [ $# -gt 0 ]; do
  case $1 in
    --cpu) cpu=(--cpu) ;;
    --python) python=${2:?$usage}; shift ;;
    --python=*) python=${1#--python=} ;;
    --) shift; break ;;
    -h|--help) echo "$usage"; exit 0 ;;
    -*) echo "gpu-check: unknown option $1; $usage" >&2; exit 2 ;;
    *) venv=$1 ;;
  esac
  shift
done
# --python is relative to where you are; VENV to the repository root, where the check runs.
if [[ $python == */* && -d $(dirname "$python") ]]; then
  python="$(cd "$(dirname "$python")" && pwd)/$(basename "$python")"
fi
cd "$(dirname "$0")/.."
python=${python:-$venv/bin/python}
if ! command -v "$python" >/dev/null 2>&1; then
  echo "gpu-check: no python at $python; run \`make install\`, or give --python (on a host" \
    "without the project's dependencies: scripts/offline-bundle.sh install, see" \
    "docs/operations.md)" >&2
  exit 1
fi

if [ ${#cpu[@]} -eq 0 ]; then
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu-check: no NVIDIA GPU on this machine (nvidia-smi absent or finds none); nothing" \
      "to check (--cpu runs the CPU rows)"
    exit 0
  fi
  if ! "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu-check: nvidia-smi sees a GPU but $python's torch has no CUDA (CPU wheel?);" \
      "nothing to check"
    exit 0
  fi
  nvidia-smi -L
fi
exec "$python" -m bench.gpu_check "${cpu[@]}" "$@"
