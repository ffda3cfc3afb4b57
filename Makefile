# nlp-serve: every target sets up what it needs (a virtual environment in .venv) first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make run` listens on loopback only. To expose it: `make run HOST=0.0.0.0` with
# NLP_SERVE_API_KEYS='["<key>"]' set (without keys, a non-loopback HOST stops start-up), or
# with NLP_SERVE_ALLOW_ANONYMOUS=true on purpose, for a network you trust.
HOST ?= 127.0.0.1
PORT ?= 8000
MODELS ?= models/offline.yaml

.PHONY: install install-system run test test-fast lint fmt type clean bench bench-batching bench-backends bench-protocols bench-sparse bench-rerank bench-generate eval

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependency pins change; scripts/install.sh is shared with the
# Dockerfile so both install exactly the same way.
$(STAMP): $(BIN)/python pyproject.toml scripts/install.sh
	scripts/install.sh $(VENV) --dev
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/nlp-serve serve --models $(MODELS) --host $(HOST) --port $(PORT)

# Debian's prometheus: the real Prometheus and promtool for the observability tests. Best
# effort: where it cannot be installed (no root, no apt), those tests skip and say why.
install-system:
	@command -v prometheus >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } \
		|| echo "could not install prometheus: its tests will be skipped"

test: lint install-system
	$(BIN)/pytest -q

test-fast: install
	$(BIN)/pytest -q tests/unit tests/api

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The whole suite: backends, batching, workloads, naive baseline, in-process limit, plots.
bench: install
	$(BIN)/python -m bench.suite

# Batching on vs off on the MiniLM-sized classifier, side by side (about 2 minutes).
bench-batching: install
	$(BIN)/python -m bench.batching

# PyTorch fp32/bf16 vs ONNX fp32/int8, and seq2seq generation, side by side (about 3 minutes).
bench-backends: install
	$(BIN)/python -m bench.backends

# Sparse (SPLADE) embeddings: PyTorch vs ONNX Runtime vs OpenVINO on /v1/embed-sparse (about 4 minutes).
bench-sparse: install
	$(BIN)/python -m bench.sparse

# Rerank: PyTorch vs ONNX Runtime vs OpenVINO on POST /v2/rerank, 10 and 100 documents per request,
# documents/s against each engine's in-process limit (about 3 minutes, more on few cores).
bench-rerank: install
	$(BIN)/python -m bench.rerank

# Text generation on a small random GPT-2 (POST /v1/generate, streamed): continuous vs static
# batching vs the transformers pipeline, tokens/s and time to first token at 1, 8 and 32
# streams, each engine that loads (about 2.5 minutes per engine). Smoke run:
# `$(BIN)/python -m bench.generate --quick --no-save` (under a minute).
bench-generate: install
	$(BIN)/python -m bench.generate

# v2 gRPC vs v2 HTTP binary vs native JSON on one server, side by side (about 3 minutes).
bench-protocols: install
	$(BIN)/python -m bench.protocols

# The offline catalog on every labelled set in app/calibration/labelled/ that it serves (docs/evaluation.md).
EVAL_SETS ?= sentiment classify qa summarize
eval: install
	@for set in $(EVAL_SETS); do \
		$(BIN)/nlp-serve eval --models $(MODELS) --data app/calibration/labelled/$$set.jsonl --out .cache/eval-$$set.json || exit 1; \
		echo; done

type: install
	$(BIN)/mypy

# The gRPC surface's Python modules (app/protocols/grpc_v2/inference_pb2*) from its
# inference.proto; commit them with the .proto (a unit test fails when they differ).
.PHONY: grpc-gen
grpc-gen: install
	PYTHON=$(BIN)/python scripts/gen_grpc.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

# A GPU host whose python has CUDA torch and transformers but nothing else, and no network
# (docs/operations.md, "Offline install"): build the wheels it lacks here, then on the host
# `make gpu-check-host` installs them offline into .venv-offline and runs the check.
BUNDLE ?= dist/offline-bundle
HOST_PYTHON ?= /opt/torch/.venv/bin/python3
HOST_PYTHON_VERSION ?= 3.12
.PHONY: offline-bundle gpu-check gpu-check-cpu gpu-check-host

offline-bundle:
	rm -rf $(BUNDLE)
	scripts/offline-bundle.sh build $(BUNDLE) --python-version $(HOST_PYTHON_VERSION)

gpu-check: install
	scripts/gpu-check.sh $(VENV)

gpu-check-cpu: install
	scripts/gpu-check.sh --cpu $(VENV)

gpu-check-host:
	scripts/offline-bundle.sh install $(BUNDLE) --python $(HOST_PYTHON) --venv .venv-offline
	scripts/gpu-check.sh --python .venv-offline/bin/python
