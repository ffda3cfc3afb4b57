"""nlp-serve as a Ray Serve application on a real local Ray cluster (127.0.0.1 only).

One cluster for the module (~25 s to start on 2 cores): two replicas of the app, one CPU
each, serving the tiny sentiment model on the deterministic fake backend (20 ms per batch, so
batches form). ray.shutdown() at the end stops every process ray.init() started; nothing else.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home

import ray
from ray import serve

from app.ray_serve import NLPServe
from tests.api.test_errors import assert_error

pytestmark = pytest.mark.integration

REPLICAS = 2
START_TIMEOUT_S = 150
REQUEST_TIMEOUT_S = 30.0  # a request without an answer by then counts as lost
# The proxy's own timeout, as deploy/ray/serve.yaml sets one (35 s there): a request stuck on a
# replica that was killed is answered 408 by the proxy instead of hanging (seen: 2 of 400).
PROXY_TIMEOUT_S = 10


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def ray_url(
    tiny_models: dict[str, Path], write_catalog: Callable[[list[dict[str, Any]]], Path]
) -> Iterator[str]:
    catalog = write_catalog(
        [
            {"name": "tiny-sentiment", "task": "sentiment", "source": str(tiny_models["sentiment"]),
             "backend": "fake", "device": "cpu", "backend_options": {"delay_ms": 20}},
        ]
    )  # fmt: skip
    port = free_port()
    ray.init(
        num_cpus=REPLICAS,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        serve.start(
            http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": PROXY_TIMEOUT_S}
        )
        app = NLPServe.options(  # type: ignore[attr-defined]
            num_replicas=REPLICAS,
            ray_actor_options={
                "num_cpus": 1,
                "runtime_env": {
                    "env_vars": {"NLP_SERVE_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1"}
                },
            },
        ).bind({"models": str(catalog)})
        started: list[BaseException | None] = []

        def run() -> None:
            try:
                serve.run(app, name="nlp-serve", route_prefix="/")
                started.append(None)
            except BaseException as exc:
                started.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(START_TIMEOUT_S)
        assert started, f"Ray Serve did not deploy within {START_TIMEOUT_S} s"
        assert started[0] is None, repr(started[0])
        yield f"http://127.0.0.1:{port}"
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def replica_actors() -> list[str]:
    return sorted(
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("SERVE_REPLICA::nlp-serve#")
    )


async def burst(url: str, count: int, concurrency: int) -> list[int | str]:
    """Each request's status, or the exception name where no answer came (lost)."""
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S) as client:

        async def one(i: int) -> int | str:
            async with limit:
                try:
                    response = await client.post("/v1/sentiment", json={"inputs": f"text {i}"})
                except httpx.HTTPError as exc:
                    return type(exc).__name__
                if response.status_code == 200:
                    assert response.json()["model"] == "tiny-sentiment"
                return response.status_code

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def series(metrics_text: str, name: str) -> dict[str, float]:
    """replica id -> value of one metric's samples (summed over its other labels)."""
    values: dict[str, float] = {}
    for line in metrics_text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line.rsplit(" ", 1)
            replica = labels.split('replica="', 1)[1].split('"', 1)[0]
            values[replica] = values.get(replica, 0.0) + float(value)
    return values


async def scrape_replicas(client: httpx.AsyncClient, *names: str) -> dict[str, dict[str, float]]:
    """Each metric's value per replica, read through the proxy. The proxy sends a scrape to
    one replica; one at a time, it may keep choosing the same one, so scrapes go 16 at once
    (its router then spreads them), for a bounded number of rounds, until both replicas
    answered."""
    found: dict[str, dict[str, float]] = {name: {} for name in names}
    for _ in range(10):
        texts = await asyncio.gather(*(client.get("/metrics") for _ in range(16)))
        for response in texts:
            for name in names:
                found[name] |= series(response.text, name)
        if all(len(values) == REPLICAS for values in found.values()):
            break
    return found


async def test_replicas_are_ready_and_answer_like_one_process(ray_url: str) -> None:
    assert len(replica_actors()) == REPLICAS
    async with httpx.AsyncClient(base_url=ray_url, timeout=REQUEST_TIMEOUT_S) as client:
        assert (await client.get("/readyz")).json() == {"status": "ready"}
        answer = await client.post("/v1/sentiment", json={"inputs": "fine"})
        assert answer.status_code == 200
        assert answer.json()["results"][0]["label"] in {"POSITIVE", "NEGATIVE"}
        assert "forward;dur=" in answer.headers["server-timing"]
        # errors keep the contract's format through Ray's proxy
        assert_error(await client.post("/v1/sentiment", json={"inputs": ""}), 422,
                     "invalid_input", "inputs")  # fmt: skip
        assert_error(await client.post("/v1/sentiment", json={"inputs": "x", "model": "nope"}),
                     404, "model_not_found", "nope")  # fmt: skip
        assert_error(await client.get("/no/such/route"), 404, "not_found")
        # each replica answers /metrics with its own series, told apart by `replica`
        loaded = (await scrape_replicas(client, "nlp_serve_model_loaded"))["nlp_serve_model_loaded"]
    assert len(loaded) == REPLICAS, loaded
    assert set(loaded.values()) == {1.0}
    assert {name.rsplit("#", 1)[1] for name in replica_actors()} == set(loaded)


async def test_a_burst_is_answered_by_both_replicas_in_batches(ray_url: str) -> None:
    statuses = await burst(ray_url, count=300, concurrency=48)
    assert statuses == [200] * 300, sorted({str(s) for s in statuses})
    async with httpx.AsyncClient(base_url=ray_url, timeout=REQUEST_TIMEOUT_S) as client:
        scraped = await scrape_replicas(
            client,
            "nlp_serve_requests_total",
            "nlp_serve_batch_size_count",
            "nlp_serve_batch_size_sum",
        )
    served = scraped["nlp_serve_requests_total"]
    batches = scraped["nlp_serve_batch_size_count"]
    items = scraped["nlp_serve_batch_size_sum"]
    assert len(served) == REPLICAS, served  # the proxy spread the burst over both
    assert all(count > 0 for count in served.values())
    # max_ongoing_requests lets each batcher see enough requests to batch (Ray's default, 5,
    # would cap every batch at 5): more than one item per forward pass on average
    assert sum(items.values()) / sum(batches.values()) > 1.5, (items, batches)


async def test_killing_a_replica_loses_no_request_silently(ray_url: str) -> None:
    victim = replica_actors()[0]
    load = asyncio.ensure_future(burst(ray_url, count=400, concurrency=32))
    await asyncio.sleep(0.5)  # the burst is under way
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    statuses = await load
    lost = [s for s in statuses if isinstance(s, str)]
    told = [s for s in statuses if isinstance(s, int) and s >= 500]
    assert not lost, f"{len(lost)} requests got no answer: {sorted(set(lost))}"
    assert len(statuses) == 400
    assert set(statuses) <= {200, 408, 500, 502, 503, 504}, sorted({str(s) for s in statuses})
    assert statuses.count(200) >= 400 - 32, f"{len(told)} answered 5xx"  # only those in flight
    # the other replica keeps serving, and Ray replaces the one killed
    assert await burst(ray_url, count=50, concurrency=8) == [200] * 50
    for _ in range(120):
        if len(replica_actors()) == REPLICAS and victim not in replica_actors():
            break
        await asyncio.sleep(0.5)
    assert victim not in replica_actors()
