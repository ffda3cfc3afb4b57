"""The offline default catalog serves real pretrained MiniLM embeddings with no hub."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import serve_in_process, settings_for

pytestmark = pytest.mark.integration

OFFLINE_CATALOG = Path(__file__).resolve().parents[2] / "models" / "offline.yaml"


@pytest.fixture(scope="module")
async def offline_client() -> AsyncIterator[httpx.AsyncClient]:
    async with serve_in_process(settings_for(OFFLINE_CATALOG, hub_offline=True)) as client:
        yield client


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


async def test_minilm_embeddings_are_semantic(offline_client: httpx.AsyncClient) -> None:
    texts = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The stock market fell sharply today.",
    ]
    response = await offline_client.post("/v1/embed", json={"inputs": texts})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "minilm-embed"
    food, bread, stocks = body["results"]
    assert len(food) == 384
    assert math.isclose(math.sqrt(sum(v * v for v in food)), 1.0, abs_tol=1e-6)
    assert cosine(food, bread) > 0.6
    assert cosine(food, stocks) < 0.2


async def test_offline_models_are_listed_ready(offline_client: httpx.AsyncClient) -> None:
    models = (await offline_client.get("/v1/models")).json()["models"]
    assert [m["name"] for m in models if m["status"] == "ready"] == [m["name"] for m in models]
    assert (await offline_client.get("/readyz")).status_code == 200
