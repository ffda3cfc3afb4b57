"""nlp-serve as a Ray Serve application on a real local Ray cluster (127.0.0.1 only).

One cluster for the module (~25 s to start on 2 cores): two replicas of the app, one CPU
each, serving the tiny sentiment model on the deterministic fake backend (20 ms per batch, so
batches form), with API keys and a short body read timeout, as a replica put on a network has.
ray.shutdown() at the end stops every process ray.init() started; nothing else.

What Ray's proxy does in place of `nlp-serve serve`'s connection limits is measured here and
tabled in docs/scaling.md ("Limits on Ray Serve").
"""

from __future__ import annotations

import asyncio
import json
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
API_KEY = "ray-test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
# NLP_SERVE_REQUEST_READ_TIMEOUT_SECONDS of the replicas: short, so that a trickled body is
# answered soon, yet far above what a whole body takes to reach a replica, even in a burst.
READ_TIMEOUT_S = 3


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
                    "env_vars": {
                        "NLP_SERVE_TORCH_THREADS": "1",
                        "OMP_NUM_THREADS": "1",
                        "NLP_SERVE_API_KEYS": json.dumps([API_KEY]),
                        "NLP_SERVE_REQUEST_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT_S),
                    }
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
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, headers=AUTH) as client:

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
    async with httpx.AsyncClient(
        base_url=ray_url, timeout=REQUEST_TIMEOUT_S, headers=AUTH
    ) as client:
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


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response: status, headers (lower-case names; repeats joined), body."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *lines = head.rstrip("\r\n").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:  # Ray's proxy sends its own answers chunked
        assert headers.get("transfer-encoding") == "chunked", headers
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")
    return int(status_line.split()[1]), headers, body


async def answer_to_a_slow_body(
    url: str, headers: dict[str, str], every_s: float | None, limit_s: float = 15.0
) -> tuple[float, int, dict[str, str], bytes, bool]:
    """POST /v1/sentiment whose headers announce a 200-byte body that then comes one byte per
    `every_s` (never, if None): the seconds until the answer, its status, headers and body,
    and whether the server closed the connection right after an answer that said it would.
    Raw asyncio streams: httpx sends a body only whole. Bounded by `limit_s`."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    body = b'{"inputs": "' + b"x" * 186 + b'"}'
    head = {"Host": host, "Content-Type": "application/json", "Content-Length": str(len(body))}
    lines = [f"{name}: {value}" for name, value in (head | headers).items()]
    loop = asyncio.get_running_loop()

    async def trickle() -> None:
        for i in range(len(body) if every_s is not None else 0):
            await asyncio.sleep(every_s or 0)
            writer.write(body[i : i + 1])
            await writer.drain()

    try:
        writer.write(("\r\n".join(["POST /v1/sentiment HTTP/1.1", *lines]) + "\r\n\r\n").encode())
        started = loop.time()
        sender = asyncio.ensure_future(trickle())
        try:
            status, answer_headers, answer = await asyncio.wait_for(read_answer(reader), limit_s)
            seconds = loop.time() - started
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)  # a write the server refused
        closed = False
        if answer_headers.get("connection") == "close":
            try:
                closed = await asyncio.wait_for(reader.read(1), 2.0) == b""
            except ConnectionResetError:
                # Closed with body bytes of ours still unread in the server's buffer: the
                # kernel sends a reset instead of an end of stream. Closed all the same.
                closed = True
        return seconds, status, answer_headers, answer, closed
    finally:
        writer.close()


async def test_keys_are_checked_before_the_body_through_the_proxy(ray_url: str) -> None:
    # headers that announce a body which never comes: 401 at once, nothing read
    seconds, status, headers, body, _ = await answer_to_a_slow_body(ray_url, {}, every_s=None)
    assert status == 401, body
    assert seconds < READ_TIMEOUT_S / 2, seconds  # answered without waiting for the body
    assert headers["content-type"] == "application/json"
    assert headers["www-authenticate"] == "Bearer"
    assert json.loads(body)["error"]["type"] == "unauthorized"
    json_type = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=ray_url, timeout=REQUEST_TIMEOUT_S) as client:
        keyless = await client.post("/v1/sentiment", content=b"{not json", headers=json_type)
        assert_error(keyless, 401, "unauthorized", "missing API key")
        wrong = await client.post(
            "/v1/sentiment", json={"inputs": "x"}, headers={"X-API-Key": "no"}
        )
        assert_error(wrong, 401, "unauthorized", "not recognised")
        # with a key the body is read: the app's own 400
        keyed = await client.post("/v1/sentiment", content=b"{not json", headers=json_type | AUTH)
        assert_error(keyed, 400, "invalid_json")
        # probes and /metrics need no key
        for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/metrics"):
            assert (await client.get(path)).status_code == 200, path


async def test_a_trickled_body_is_answered_408_by_the_replica_and_frees_its_slot(
    ray_url: str,
) -> None:
    # `x-request-timeout-seconds: 0` lifts Ray's proxy timeout for this request: the replica's
    # own read timeout (BodyReadDeadline) still answers, in the contract's format
    seconds, status, headers, body, closed = await answer_to_a_slow_body(
        ray_url, AUTH | {"x-request-timeout-seconds": "0"}, every_s=0.2
    )
    assert status == 408, body
    assert READ_TIMEOUT_S - 0.5 < seconds < READ_TIMEOUT_S + 2, seconds
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["type"] == "request_timeout"
    assert "NLP_SERVE_REQUEST_READ_TIMEOUT_SECONDS" in error["message"]
    assert closed  # `connection: close`: the rest of the body is not waited for
    # the app's read ended: no request is left in progress on either replica
    async with httpx.AsyncClient(base_url=ray_url, timeout=REQUEST_TIMEOUT_S) as client:
        for _ in range(20):
            inflight = (await scrape_replicas(client, "nlp_serve_inflight_requests"))[
                "nlp_serve_inflight_requests"
            ]
            if len(inflight) == REPLICAS and set(inflight.values()) == {0.0}:
                break
            await asyncio.sleep(0.2)
    assert len(inflight) == REPLICAS, inflight
    assert set(inflight.values()) == {0.0}, inflight
    assert await burst(ray_url, count=8, concurrency=8) == [200] * 8


async def test_the_proxy_timeout_answers_408_in_plain_text(ray_url: str) -> None:
    """Pins what docs/scaling.md says of Ray 2.60's proxy: its request_timeout_s (here lowered
    per request by the client's `x-request-timeout-seconds`) is answered 408 in plain text,
    outside the error contract. If this fails after a Ray upgrade, update the docs' table."""
    seconds, status, headers, body, _ = await answer_to_a_slow_body(
        ray_url, AUTH | {"x-request-timeout-seconds": "1"}, every_s=None
    )
    assert status == 408, body
    assert 0.8 < seconds < READ_TIMEOUT_S, seconds  # the proxy's, before the replica's
    assert headers["content-type"].startswith("text/plain"), headers
    assert body.startswith(b"Request "), body
    assert body.endswith(b" timed out after 1.0s."), body


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
