"""Operating the real server (`nlp-serve serve` on 127.0.0.1): graceful drain on SIGTERM,
JSON logs with request ids in every worker, metrics across workers, slow-header clients."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.common import RunningServer, serve
from tests.integration.test_real_server import metric

pytestmark = pytest.mark.integration

DRAIN_SECONDS = 3.0


def fake(
    models: dict[str, Path], name: str, task: str, source: str, **extra: Any
) -> dict[str, Any]:
    return {"name": name, "task": task, "source": str(models[source]), "backend": "fake", **extra}


def wait_for(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_sigterm_drains_then_closes_then_finishes_in_flight_work(
    tiny_models: dict[str, Path],
) -> None:
    models = [
        fake(tiny_models, "fast", "embed", "encoder"),
        fake(tiny_models, "slow", "sentiment", "sentiment", backend_options={"delay_ms": 400},
             batching={"max_batch_size": 1, "max_wait_ms": 0}),
    ]  # fmt: skip
    settings = {"NLP_SERVE_DRAIN_SECONDS": str(DRAIN_SECONDS), "NLP_SERVE_LOG_LEVEL": "info"}
    outcomes: list[tuple[float, str]] = []  # (when sent, what came back)
    keep_sending = threading.Event()
    keep_sending.set()

    def steady_load(base: str) -> None:
        # A new connection per request: each one is either refused or answered.
        with httpx.Client(
            base_url=base, timeout=30, limits=httpx.Limits(max_keepalive_connections=0)
        ) as client:
            while keep_sending.is_set():
                sent = time.monotonic()
                try:
                    response = client.post("/v1/embed", json={"inputs": "steady"})
                    outcomes.append((sent, str(response.status_code)))
                except httpx.TransportError as exc:
                    outcomes.append((sent, type(exc).__name__))

    with serve(models, settings) as server:
        senders = [threading.Thread(target=steady_load, args=(server.base,)) for _ in range(3)]
        for sender in senders:
            sender.start()
        time.sleep(1.0)
        sigterm_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert wait_for(lambda: httpx.get(f"{server.base}/readyz").status_code == 503, 1.0)
        readyz = httpx.get(f"{server.base}/readyz").json()["error"]
        assert "draining" in readyz["message"]
        # Like a balancer that has taken the instance out, the steady load stops a second
        # before the drain ends; slow requests sent now are still running when it does.
        time.sleep(DRAIN_SECONDS - 1.0 - (time.monotonic() - sigterm_at))
        keep_sending.clear()
        for sender in senders:
            sender.join()
        slow_answers: list[int] = []

        def slow_request() -> None:
            body = {"inputs": "in flight", "model": "slow"}
            response = httpx.post(f"{server.base}/v1/sentiment", json=body, timeout=30)
            slow_answers.append(response.status_code)

        slow = [threading.Thread(target=slow_request) for _ in range(3)]
        for request in slow:
            request.start()
        time.sleep(0.3)
        # The listener closes when the drain ends; the slow requests (~1.2 s queued) finish.
        assert wait_for(lambda: _refused(server.base), DRAIN_SECONDS + 2)
        for request in slow:
            request.join()
        assert server.process.wait(timeout=60) == 0, server.output
    during_drain = [status for sent, status in outcomes if sent > sigterm_at]
    assert set(status for _, status in outcomes) == {"200"}, outcomes  # nothing lost
    assert during_drain, "no request was sent while draining"
    assert slow_answers == [200, 200, 200]


def _refused(base: str) -> bool:
    try:
        httpx.get(f"{base}/healthz", timeout=1)
    except httpx.ConnectError:
        return True
    return False


@pytest.fixture(scope="module")
def two_workers(tiny_models: dict[str, Path]) -> Iterator[RunningServer]:
    models = [
        fake(tiny_models, "words", "sentiment", "sentiment", batching={"max_queue": 300}),
        fake(tiny_models, "faulty", "sentiment", "sentiment",
             backend_options={"fail_token": "poison"}),
    ]  # fmt: skip
    settings = {
        "NLP_SERVE_WORKERS": "2",
        "NLP_SERVE_LOG_FORMAT": "json",
        "NLP_SERVE_ACCESS_LOG": "true",
        "NLP_SERVE_LOG_LEVEL": "info",
        "NLP_SERVE_DRAIN_SECONDS": "0.2",
        "NLP_SERVE_HEADER_TIMEOUT_SECONDS": "1",
    }
    with serve(models, settings) as server:
        yield server
    assert server.exit_code == 0, server.output


def test_queue_gauges_add_up_across_workers(two_workers: RunningServer) -> None:
    assert wait_for(lambda: _capacity(two_workers.base) == 600, 10.0)  # 2 x max_queue 300


def _capacity(base: str) -> float:
    return metric(httpx.get(f"{base}/metrics").text, 'nlp_serve_queue_capacity{model="words"}')


def test_a_slow_client_cannot_hold_a_connection(two_workers: RunningServer) -> None:
    host, port = two_workers.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"POST /v1/sentiment HTTP/1.1\r\nHost: x\r\nContent-Ty")  # and no more
        started = time.monotonic()
        assert conn.recv(1024) == b""  # closed by the server
        assert time.monotonic() - started < 5.0  # header timeout 1 s; generous bound
    assert httpx.post(f"{two_workers.base}/v1/sentiment", json={"inputs": "ok"}).status_code == 200


def test_logs_are_json_lines_with_request_ids_in_every_worker(
    tiny_models: dict[str, Path],
) -> None:
    """On a server of its own, read once it has stopped, so every line is in the output."""
    models = [fake(tiny_models, "faulty", "sentiment", "sentiment",
                   backend_options={"fail_token": "poison"})]  # fmt: skip
    settings = {"NLP_SERVE_WORKERS": "2", "NLP_SERVE_LOG_FORMAT": "json",
                "NLP_SERVE_ACCESS_LOG": "true", "NLP_SERVE_LOG_LEVEL": "info",
                "NLP_SERVE_DRAIN_SECONDS": "0.2"}  # fmt: skip
    with serve(models, settings) as server, httpx.Client(base_url=server.base) as client:
        for i in range(6):
            client.post("/v1/sentiment", json={"inputs": "fine"},
                        headers={"X-Request-ID": f"ok-{i}"})  # fmt: skip
        failed = client.post("/v1/sentiment", json={"inputs": "a poison pill"},
                             headers={"X-Request-ID": "broken-1"})  # fmt: skip
    assert failed.status_code == 500
    assert server.exit_code == 0
    lines = [line for line in server.output.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    started = {r["message"] for r in records if r["message"].startswith("Started server process")}
    assert len(started) == 2  # both workers log in JSON
    access = [r for r in records if r["logger"] == "app.access"]
    assert {r.get("request_id") for r in access} >= {f"ok-{i}" for i in range(6)} | {"broken-1"}
    assert all({"route", "status", "duration_ms", "model"} <= set(r) for r in access)
    failures = [r for r in records if r.get("request_id") == "broken-1" and "traceback" in r]
    assert len(failures) == 1  # logged once, with its traceback
    assert "fail_token" in failures[0]["traceback"]
    assert failures[0]["model"] == "faulty"


def test_sigterm_drains_the_grpc_surface_too(tiny_models: dict[str, Path]) -> None:
    """While draining, gRPC health says NOT_SERVING and calls are still served; a call in
    flight when the drain ends is answered before the process exits 0."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from app.protocols.grpc_v2 import inference_pb2 as pb
    from app.protocols.grpc_v2.inference_pb2_grpc import GRPCInferenceServiceStub
    from bench.common import free_port

    models = [
        fake(tiny_models, "slow", "sentiment", "sentiment", backend_options={"delay_ms": 800},
             batching={"max_batch_size": 1, "max_wait_ms": 0}),
    ]  # fmt: skip
    port = free_port()
    settings = {"NLP_SERVE_DRAIN_SECONDS": str(DRAIN_SECONDS), "NLP_SERVE_GRPC_PORT": str(port)}
    text = pb.ModelInferRequest.InferInputTensor(
        name="TEXT", datatype="BYTES", shape=[1],
        contents=pb.InferTensorContents(bytes_contents=[b"in flight"]),
    )  # fmt: skip
    request = pb.ModelInferRequest(model_name="slow", inputs=[text])
    with serve(models, settings) as server, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health: Any = health_pb2_grpc.HealthStub(channel)  # the stubs' types lack methods
        stub = GRPCInferenceServiceStub(channel)
        serving = health_pb2.HealthCheckResponse.SERVING
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == serving
        sigterm_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert wait_for(
            lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=5).status != serving, 1.0
        )
        assert stub.ModelInfer(request, timeout=10).outputs  # still served while draining
        time.sleep(max(0.0, DRAIN_SECONDS - 0.5 - (time.monotonic() - sigterm_at)))
        # Sent just before the drain ends, answered ~0.8 s later: after the HTTP listener
        # has closed, within the shutdown grace.
        in_flight = stub.ModelInfer.future(request, timeout=10)
        assert wait_for(lambda: _refused(server.base), DRAIN_SECONDS + 2)
        assert in_flight.result().outputs
        assert server.process.wait(timeout=60) == 0, server.output
