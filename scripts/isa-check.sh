#!/usr/bin/env bash
# The tests that a CPU's instruction set can move (accuracy bars, batch-shape and engine
# parity), run on an emulated CPU of another kind: by default an AMD EPYC Rome, AVX2 and FMA
# with no AVX-512, VNNI, bf16 or AMX, the kind many cloud VMs have.
#
#   scripts/isa-check.sh [QEMU_CPU_MODEL]    # EPYC-Rome (default), Haswell, ...: QEMU 7's
#                                            # emulator runs up to AVX2, not AVX-512
#
# Why emulation: ONNX Runtime's kernels (MLAS) read CPUID and have no switch to stop at AVX2;
# OpenVINO honours oneDNN's ONEDNN_MAX_CPU_ISA only in part (it still offers bf16, then cannot
# compile a bf16 Softmax); PyTorch has ATEN_CPU_CAPABILITY. qemu-user's CPU model changes what
# CPUID answers for all three engines (and numpy, whose probe nlp-serve's CPU fingerprint
# reads) at once. It runs ~100x slower than the host: ONNX Runtime int8 is exported under
# emulation (its quantisation follows the CPU), and the fp32 exports, which are the same on
# every CPU, are made natively first into a cache both runs share.
# Needs Debian's qemu-user (installed here when missing). docs/performance.md has the results.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-EPYC-Rome}
export NLP_SERVE_TEST_EXPORT_CACHE=${NLP_SERVE_TEST_EXPORT_CACHE:-$PWD/.cache/isa-check}
tests=(
  tests/integration/test_offline_catalog.py
  tests/integration/test_openvino_accuracy.py
  tests/integration/test_fill_mask.py
  tests/integration/test_torch_tasks.py
  tests/integration/test_cross_request_batching.py
  tests/integration/test_onnx_parity.py
  tests/integration/test_auto_engine.py
)
command -v qemu-x86_64 >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user; }
[ -x .venv/bin/pytest ] || make install

echo "== native ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), fp32 exports"
.venv/bin/pytest -q -p no:cacheprovider "${tests[@]}"

# Under emulation: requests may take minutes (no 504s), and the two tests that compare with
# sentence-transformers stay native: on qemu 7.2 sentence-transformers crashes or returns
# vectors of cosine ~0.2 to its native ones, while PyTorch itself (MiniLM's hidden states)
# matches native within 1.5e-6, and ONNX Runtime and OpenVINO agree with each other.
export NLP_SERVE_REQUEST_TIMEOUT_MS=3600000
native_only=(
  --deselect tests/integration/test_offline_catalog.py::test_embed_matches_sentence_transformers
  --deselect tests/integration/test_openvino_accuracy.py::test_embed_against_sentence_transformers
)
echo "== emulated: qemu-x86_64 -cpu $model"
qemu-x86_64 -cpu "$model" .venv/bin/python -c \
  'from app.runtimes.cpu import cpu_fingerprint; print("fingerprint:", cpu_fingerprint())' \
  2> >(grep -v "TCG doesn't support" >&2)
qemu-x86_64 -cpu "$model" .venv/bin/python -m pytest -q -s \
  -p no:cacheprovider "${native_only[@]}" "${tests[@]}" 2> >(grep -v "TCG doesn't support" >&2)
