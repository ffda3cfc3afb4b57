"""Deadlines (504) and a full queue (429) through the HTTP layer, on a slow fake model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.test_errors import assert_error
from tests.conftest import serve_in_process, settings_for


@pytest.fixture(scope="module")
async def slow_client(
    tiny_models: dict[str, Path], write_catalog: Callable[[list[dict[str, Any]]], Path]
) -> AsyncIterator[httpx.AsyncClient]:
    slow = {
        "name": "slow",
        "task": "sentiment",
        "source": str(tiny_models["sentiment"]),
        "backend": "fake",
        "backend_options": {"delay_ms": 600},
        "batching": {"max_batch_size": 1, "max_queue": 2, "max_wait_ms": 0},
    }
    async with serve_in_process(settings_for(write_catalog([slow]), warmup=False)) as client:
        yield client


async def queue_depth(client: httpx.AsyncClient) -> int:
    models = (await client.get("/v1/models")).json()["models"]
    return int(models[0]["queue_depth"])


async def batches_started(client: httpx.AsyncClient) -> float:
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith('nlp_serve_batch_size_count{model="slow"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(1000):  # bounded: at most ~5 s
        if await check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


async def test_request_timeout_header_gives_504(slow_client: httpx.AsyncClient) -> None:
    busy = asyncio.create_task(slow_client.post("/v1/sentiment", json={"inputs": "first"}))
    await asyncio.sleep(0.05)  # let it reach the model
    late = await slow_client.post(
        "/v1/sentiment", json={"inputs": "second"}, headers={"X-Request-Timeout-Ms": "50"}
    )
    assert_error(late, 504, "deadline_exceeded", "'slow'", "X-Request-Timeout-Ms")
    assert (await busy).status_code == 200


async def test_bad_timeout_header_is_422(slow_client: httpx.AsyncClient) -> None:
    response = await slow_client.post(
        "/v1/sentiment", json={"inputs": "x"}, headers={"X-Request-Timeout-Ms": "soon"}
    )
    assert_error(response, 422, "invalid_input", "X-Request-Timeout-Ms")


async def test_full_queue_gives_429_with_retry_after(slow_client: httpx.AsyncClient) -> None:
    def post(text: str) -> asyncio.Task[httpx.Response]:
        return asyncio.create_task(slow_client.post("/v1/sentiment", json={"inputs": text}))

    started = await batches_started(slow_client)
    running = post("running")  # 600 ms in the model: long enough for the steps below

    async def is_running() -> bool:
        return await batches_started(slow_client) > started

    await eventually(is_running, "the first request reached the model")
    waiting = [post("waiting 1"), post("waiting 2")]

    async def queue_is_full() -> bool:
        return await queue_depth(slow_client) >= 2

    await eventually(queue_is_full, "two requests queued")
    rejected = await slow_client.post("/v1/sentiment", json={"inputs": "one too many"})
    assert_error(rejected, 429, "queue_full", "max_queue 2", "retry after")
    assert int(rejected.headers["retry-after"]) >= 1
    for response in await asyncio.gather(running, *waiting):
        assert response.status_code == 200
