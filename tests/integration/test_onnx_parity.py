"""ONNX Runtime serves every task like PyTorch: scores within 1e-4, identical generations.

The ONNX models come from the catalog's `export: true` path (export on first load, cached),
so this also covers that path end to end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import serve_in_process, settings_for, tiny_catalog
from tests.integration.test_torch_tasks import (
    BATCH_CASES,
    QA_ITEMS,
    assert_close,
    assert_same_answers,
    post,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
async def onnx_client(
    tiny_models: dict[str, Path],
    write_catalog: Callable[[list[dict[str, Any]]], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[httpx.AsyncClient]:
    models = [{**entry, "export": True} for entry in tiny_catalog(tiny_models, "onnx")]
    cache = tmp_path_factory.mktemp("onnx-cache")
    settings = settings_for(write_catalog(models), onnx_cache_dir=cache)
    async with serve_in_process(settings) as client:
        yield client


@pytest.mark.parametrize(("route", "extra", "inputs"), BATCH_CASES)
async def test_onnx_matches_torch(
    torch_client: httpx.AsyncClient,
    onnx_client: httpx.AsyncClient,
    route: str,
    extra: dict[str, Any],
    inputs: list[Any],
) -> None:
    await assert_same_answers(torch_client, onnx_client, route, {"inputs": inputs, **extra})


async def test_onnx_qa_null_answer_and_windows_match(
    torch_client: httpx.AsyncClient, onnx_client: httpx.AsyncClient
) -> None:
    long_context = " ".join(f"Filler sentence {i} is here." for i in range(80)) + " Ada wrote it."
    items = [*QA_ITEMS, {"question": "Who wrote it?", "context": long_context}]
    body = {"inputs": items, "model": "tiny-qa-null", "top_k": 3}
    assert_close(
        (await post(onnx_client, "/v1/qa", body))["results"],
        (await post(torch_client, "/v1/qa", body))["results"],
        tol=1e-4,
    )


async def test_models_report_the_onnx_backend(onnx_client: httpx.AsyncClient) -> None:
    models = (await onnx_client.get("/v1/models")).json()["models"]
    assert {m["backend"] for m in models} == {"onnx"}
    assert {m["precision"] for m in models} == {"fp32"}
    assert {m["device"] for m in models} == {"cpu"}
