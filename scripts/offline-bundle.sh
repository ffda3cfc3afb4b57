#!/usr/bin/env bash
# nlp-serve for a host whose Python already has the model stack (CUDA torch, transformers,
# tokenizers, huggingface-hub, safetensors, numpy) and no network: a lent GPU machine, an
# air-gapped deployment. docs/operations.md ("Offline install").
#
# On a machine with network (any python3 with pip; nothing else is installed):
#   scripts/offline-bundle.sh build OUT_DIR [--python-version 3.12] [--have FILE] [--no-eval]
#       [--glibc 2.28] [--arch x86_64]
# On the host, offline (from a checkout, or the copy of this script inside the bundle):
#   scripts/offline-bundle.sh install BUNDLE_DIR [--python PY] [--venv DIR]
#   scripts/gpu-check.sh --python DIR/bin/python       # DIR defaults to .venv-offline
# What a python holds, for the next build's --have (run it on the host):
#   scripts/offline-bundle.sh have [--python PY] > have.txt
#
# build runs with $PYTHON (default python3); install and have run with --python's
# interpreter, which then needs nothing beyond its standard library.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
module="$here/../bench/offline_bundle.py" # in a checkout
[ -f "$module" ] || module="$here/offline_bundle.py" # in a bundle
[ -f "$module" ] || { echo "offline-bundle: no offline_bundle.py beside $0" >&2; exit 1; }

python=${PYTHON:-python3}
if [ "${1:-}" != build ]; then
  previous=""
  for arg in "$@"; do
    if [ "$previous" = --python ]; then python=$arg; fi
    case $arg in --python=*) python=${arg#--python=} ;; esac
    previous=$arg
  done
fi
command -v "$python" >/dev/null 2>&1 || { echo "offline-bundle: no python at $python" >&2; exit 1; }
exec "$python" "$module" "$@"
