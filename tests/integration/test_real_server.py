"""The real server (uvicorn via `nlp-serve serve`) on 127.0.0.1: disconnects and shutdown."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.common import serve

pytestmark = pytest.mark.integration


def metric(text: str, prefix: str) -> float:
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def server(tiny_models: dict[str, Path]) -> Iterator[str]:
    slow = {
        "name": "slow",
        "task": "sentiment",
        "source": str(tiny_models["sentiment"]),
        "backend": "fake",
        "backend_options": {"delay_ms": 400},
        "batching": {"max_batch_size": 1, "max_wait_ms": 0},
    }
    with serve([slow], NLP_SERVE_WARMUP="false", NLP_SERVE_LOG_LEVEL="info") as running:
        yield running.base
    # uvicorn shuts the app down, then re-raises SIGTERM so the exit status tells why
    assert running.exit_code in (0, -signal.SIGTERM), running.output
    assert "Application shutdown complete" in running.output, running.output


async def test_a_client_that_leaves_has_its_work_dropped(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=10) as client:
        text = (await client.get("/metrics")).text
        dropped = metric(text, 'nlp_serve_items_dropped_total{model="slow",reason="cancelled"}')
        batches = metric(text, 'nlp_serve_batch_size_count{model="slow"}')
        busy = client.post("/v1/sentiment", json={"inputs": "occupies the model"})
        busy_task = asyncio.create_task(busy)
        await asyncio.sleep(0.1)
        async with httpx.AsyncClient(base_url=server, timeout=0.15) as impatient:
            with pytest.raises(httpx.TimeoutException):
                await impatient.post("/v1/sentiment", json={"inputs": "gives up"})
        assert (await busy_task).status_code == 200
        for _ in range(50):  # the server notices the disconnect and purges
            text = (await client.get("/metrics")).text
            if (
                metric(text, 'nlp_serve_items_dropped_total{model="slow",reason="cancelled"}')
                > dropped
            ):
                break
            await asyncio.sleep(0.1)
        assert (
            metric(text, 'nlp_serve_items_dropped_total{model="slow",reason="cancelled"}')
            == dropped + 1
        )
        assert metric(text, 'nlp_serve_batch_size_count{model="slow"}') == batches + 1  # never ran


def test_health_and_contract_over_real_http(server: str) -> None:
    assert httpx.get(f"{server}/healthz").json() == {"status": "ok"}
    response = httpx.post(f"{server}/v1/sentiment", json={"inputs": ["a", "b"]})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert len(response.json()["results"]) == 2
