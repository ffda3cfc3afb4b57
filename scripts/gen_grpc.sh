#!/usr/bin/env bash
# Regenerates the Python modules of the gRPC surface from app/protocols/grpc_v2/inference.proto:
# inference_pb2.py (messages), inference_pb2.pyi (their types) and inference_pb2_grpc.py (the
# service's stub, servicer base and registration), with grpcio-tools (a dev dependency).
#   scripts/gen_grpc.sh [OUT]
# OUT defaults to the repository root, i.e. the modules are rewritten in place; any other
# folder gets them under OUT/app/protocols/grpc_v2/ (the test that checks the committed ones
# are current writes to a temporary folder). PYTHON picks the interpreter (default: .venv's,
# else python3).
# The proto is compiled by its path from the repository root, so the generated service module
# imports `from app.protocols.grpc_v2 import inference_pb2`, not a top-level `inference_pb2`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root}
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$root/.venv/bin/python" ]; then PYTHON=$root/.venv/bin/python; else PYTHON=python3; fi
fi
proto=app/protocols/grpc_v2/inference.proto
mkdir -p "$out"
cd "$root"
"$PYTHON" -m grpc_tools.protoc -I . \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" "$proto"
