"""One real server (uvicorn via `nlp-serve serve`, 127.0.0.1) on the fake backend, for the
hostile-input suite and the schema fuzzer: every task, a similarity classifier and QA, and
models that fail on purpose."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.common import serve
from tests.conftest import tiny_catalog

# Small limits, so that each one is reachable with small bodies.
LIMITS = {
    "NLP_SERVE_MAX_ITEMS_PER_REQUEST": "8",
    "NLP_SERVE_MAX_INPUT_CHARS": "60000",
    "NLP_SERVE_MAX_ROWS_PER_ITEM": "128",
    "NLP_SERVE_MAX_TOKENS_PER_REQUEST": "20000",
    "NLP_SERVE_MAX_BODY_BYTES": "1048576",
}


def hostile_catalog(models: dict[str, Path]) -> list[dict[str, Any]]:
    def fake(name: str, task: str, source: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "task": task, "source": str(models[source]), "backend": "fake",
                "device": "cpu", **extra}  # fmt: skip

    return [
        *tiny_catalog(models, "fake"),
        fake("similarity-topics", "classify", "encoder", method="semantic",
             options={"labels": ["sports", "money"], "hypothesis_template": "About {}."}),
        fake("similarity-qa", "qa", "encoder", method="semantic"),
        fake("similarity-rerank", "rerank", "encoder", method="semantic"),
        fake("faulty", "sentiment", "sentiment",
             backend_options={"fail_token": "poison", "nan_token": "nan"}),
    ]  # fmt: skip


@pytest.fixture(scope="package")
def hostile_server(tiny_models: dict[str, Path]) -> Iterator[str]:
    with serve(hostile_catalog(tiny_models), LIMITS) as running:
        yield running.base
