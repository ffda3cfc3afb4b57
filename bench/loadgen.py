"""Closed-loop load generator, run in its own process; bounded in requests and time.

`concurrency` workers each send the next request as soon as their previous answer arrives, to
127.0.0.1 only. A warm-up phase is sent first and left out of the figures. Prints one JSON
object: requests, errors, requests/s, latency percentiles (ms) and the client's own CPU (it
shares the machine's cores with the server). When answers carry a Server-Timing header with a
`forward` entry, it also gives the percentiles of each request's latency beyond its own
forward pass (`beyond_forward_*`): the serving overhead, request by request, free of the
forward pass's own jitter.

The bodies are native request bodies ({"inputs": <text or texts>, "model": <name>}); the
protocol says how each one travels, every request built before the clock starts:

- `json` (the default): POSTed as they are, as JSON, to --url (a native route such as
  /v1/sentiment), over keep-alive HTTP/1.1 connections, one per worker;
- `v2-binary`: the Open Inference Protocol's binary tensor extension, POSTed to
  --url/v2/models/<model>/infer (--url is the server's base): a JSON header naming one BYTES
  input TEXT whose elements follow it length-prefixed, its length in the
  Inference-Header-Content-Length header, and `binary_data_output` so that the answer comes
  back binary too (an answer without that header counts as an error); same connections;
- `grpc`: inference.GRPCInferenceService/ModelInfer (our generated stubs on grpc.aio) at
  --url grpc://127.0.0.1:<port>, the texts in raw_input_contents as tritonclient.grpc sends
  them, the answer in raw_output_contents (one without counts as an error). The workers share
  --grpc-channels channels (default 1: one HTTP/2 connection multiplexing every call, as a
  gRPC client such as tritonclient.grpc's is meant to be used).

No answer is decoded beyond what its transport does anyway (gRPC parses the protobuf).

    python -m bench.loadgen --url http://127.0.0.1:8000/v1/sentiment --bodies bodies.json \
        --concurrency 8 --duration 10
    python -m bench.loadgen --protocol grpc --url grpc://127.0.0.1:8001 --bodies bodies.json
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import resource
import struct
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiohttp

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
PROTOCOLS = ("json", "v2-binary", "grpc")
HEADER_LENGTH = "Inference-Header-Content-Length"
TIMEOUT_S = 60.0

# One request, sent and answered: (ok, the answer's forward ms if it says, an error if not ok).
Outcome = tuple[bool, float | None, str | None]
Send = Callable[[Any], Awaitable[Outcome]]


def forward_ms(server_timing: str | None) -> float | None:
    """The `forward;dur=<ms>` entry of a Server-Timing header, if there is one."""
    for entry in (server_timing or "").split(","):
        name, _, params = entry.strip().partition(";")
        if name == "forward":
            for param in params.split(";"):
                key, _, value = param.strip().partition("=")
                if key == "dur":
                    return float(value)
    return None


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def texts_of(body: dict[str, Any]) -> list[str]:
    inputs = body["inputs"]
    return [inputs] if isinstance(inputs, str) else list(inputs)


def bytes_elements(texts: Sequence[str]) -> bytes:
    """BYTES elements as the binary extension and raw gRPC contents carry them:
    <u32 little-endian length><UTF-8 bytes> each."""
    return b"".join(struct.pack("<I", len(data)) + data for data in (t.encode() for t in texts))


def v2_binary_request(base: str, body: dict[str, Any]) -> tuple[str, bytes, dict[str, str]]:
    """(url, body, headers) of the v2 binary-extension request carrying `body`'s texts."""
    texts = texts_of(body)
    blob = bytes_elements(texts)
    tensor = {"name": "TEXT", "shape": [len(texts)], "datatype": "BYTES",
              "parameters": {"binary_data_size": len(blob)}}  # fmt: skip
    request = {"inputs": [tensor], "parameters": {"binary_data_output": True}}
    header = json.dumps(request, separators=(",", ":")).encode()
    headers = {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
    return f"{base.rstrip('/')}/v2/models/{body['model']}/infer", header + blob, headers


def grpc_request(body: dict[str, Any]) -> Any:
    """The ModelInferRequest carrying `body`'s texts in raw_input_contents."""
    from app.protocols.grpc_v2 import inference_pb2 as pb

    texts = texts_of(body)
    return pb.ModelInferRequest(
        model_name=body["model"],
        inputs=[pb.ModelInferRequest.InferInputTensor(name="TEXT", datatype="BYTES",
                                                      shape=[len(texts)])],
        raw_input_contents=[bytes_elements(texts)],
    )  # fmt: skip


def prepare(protocol: str, url: str, bodies: list[Any]) -> list[Any]:
    """Each body as what `protocol`'s sender sends, built once, before any is sent."""
    if protocol == "json":
        return [json.dumps(b).encode() for b in bodies]
    if protocol == "v2-binary":
        return [v2_binary_request(url, b) for b in bodies]
    if protocol == "grpc":
        return [grpc_request(b) for b in bodies]
    raise ValueError(f"unknown protocol {protocol!r}; one of {PROTOCOLS}")


@asynccontextmanager
async def _http_session(concurrency: int) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        yield session


@asynccontextmanager
async def json_sender(url: str, concurrency: int) -> AsyncIterator[Send]:
    """POST each body (JSON bytes) to `url`; 200 is a success."""
    headers = {"content-type": "application/json"}
    async with _http_session(concurrency) as session:

        async def send(body: bytes) -> Outcome:
            async with session.post(url, data=body, headers=headers) as response:
                data = await response.read()
                forward = forward_ms(response.headers.get("server-timing"))
                if response.status == 200:
                    return True, forward, None
                return False, forward, f"HTTP {response.status}: {data[:300]!r}"

        yield send


@asynccontextmanager
async def v2_binary_sender(concurrency: int) -> AsyncIterator[Send]:
    """POST each prepared (url, body, headers); a success is a 200 whose answer is binary."""
    async with _http_session(concurrency) as session:

        async def send(request: tuple[str, bytes, dict[str, str]]) -> Outcome:
            url, body, headers = request
            async with session.post(url, data=body, headers=headers) as response:
                data = await response.read()
                forward = forward_ms(response.headers.get("server-timing"))
                if response.status != 200:
                    return False, forward, f"HTTP {response.status}: {data[:300]!r}"
                if HEADER_LENGTH not in response.headers:
                    return False, forward, f"answer not binary: {data[:300]!r}"
                return True, forward, None

        yield send


@asynccontextmanager
async def grpc_sender(target: str, channels: int = 1) -> AsyncIterator[Send]:
    """ModelInfer on `channels` channels to `target` (host:port), calls spread over them in
    turn; a success is an answer with every output in raw_output_contents."""
    import grpc

    from app.protocols.grpc_v2.inference_pb2_grpc import GRPCInferenceServiceStub

    # Channels to one target with the same arguments would share one connection (gRPC's
    # global subchannel pool): each gets its own pool, so N channels are N connections.
    options = [("grpc.use_local_subchannel_pool", 1)] if channels > 1 else []
    opened = [grpc.aio.insecure_channel(target, options=options) for _ in range(channels)]
    try:
        for channel in opened:
            await asyncio.wait_for(channel.channel_ready(), TIMEOUT_S)
        stubs = itertools.cycle([GRPCInferenceServiceStub(channel) for channel in opened])

        async def send(request: Any) -> Outcome:
            try:
                answer = await next(stubs).ModelInfer(request, timeout=TIMEOUT_S)
            except grpc.aio.AioRpcError as error:
                return False, None, f"{error.code().name}: {error.details()}"
            if not answer.outputs or len(answer.raw_output_contents) != len(answer.outputs):
                return False, None, "answer without raw_output_contents"
            return True, None, None

        yield send
    finally:
        for channel in opened:
            await channel.close()


async def closed_loop(
    send: Send,
    requests: list[Any],
    concurrency: int,
    duration_s: float,
    max_requests: int,
    warmup_requests: int,
) -> dict[str, Any]:
    """`concurrency` workers, each sending its next request when its previous answer is in,
    for `duration_s` (or `max_requests`), after a warm-up left out of the figures."""
    latencies: list[float] = []
    beyond_forward: list[float] = []  # seconds of latency beyond the server's own forward
    errors = 0
    first_error: str | None = None
    sent = 0
    cycle = itertools.cycle(requests)

    async def one(request: Any) -> tuple[float, bool, float | None]:
        nonlocal first_error
        started = time.perf_counter()
        try:
            ok, forward, error = await send(request)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            # A request past the client's timeout (or a dropped connection) is an error of
            # the row, counted and named, not the end of the whole run.
            ok, forward, error = False, None, f"{type(exc).__name__}: {exc}"[:300]
        if error is not None and first_error is None:
            first_error = error
        return time.perf_counter() - started, ok, forward

    # Warm-up: open the connections and let the server settle; not counted.
    for _ in range(max(1, warmup_requests // concurrency)):
        await asyncio.gather(*(one(next(cycle)) for _ in range(concurrency)))

    stop_at = time.perf_counter() + duration_s

    async def worker() -> None:
        nonlocal errors, sent
        while time.perf_counter() < stop_at and sent < max_requests:
            sent += 1
            elapsed, ok, forward = await one(next(cycle))
            latencies.append(elapsed)
            errors += not ok
            if forward is not None:
                beyond_forward.append(elapsed - forward / 1000)

    cpu_before = cpu_s()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    client_cpu = cpu_s() - cpu_before
    latencies.sort()
    beyond_forward.sort()
    result: dict[str, Any] = {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "seconds": wall,
        "rps": len(latencies) / wall if wall else 0.0,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p90_ms": percentile(latencies, 90) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "mean_ms": (sum(latencies) / len(latencies) * 1000) if latencies else float("nan"),
        "beyond_forward_p50_ms": percentile(beyond_forward, 50) * 1000,
        "beyond_forward_p99_ms": percentile(beyond_forward, 99) * 1000,
        # the client's CPU per request while measuring (not start-up, not warm-up)
        "client_cpu_ms_per_request": client_cpu * 1000 / len(latencies)
        if latencies
        else float("nan"),
    }
    if first_error is not None:
        result["first_error"] = first_error
    return result


async def drive(
    protocol: str,
    url: str,
    bodies: list[Any],
    concurrency: int,
    duration_s: float,
    max_requests: int = 200_000,
    warmup_requests: int = 32,
    grpc_channels: int = 1,
) -> dict[str, Any]:
    """Closed-loop load of `bodies` on `protocol` (see the module's docstring for `url`)."""
    requests = prepare(protocol, url, bodies)
    if protocol == "json":
        sender = json_sender(url, concurrency)
    elif protocol == "v2-binary":
        sender = v2_binary_sender(concurrency)
    else:
        sender = grpc_sender(grpc_target(url), grpc_channels)
    async with sender as send:
        result = await closed_loop(
            send, requests, concurrency, duration_s, max_requests, warmup_requests
        )
    result["protocol"] = protocol
    if protocol == "grpc":
        result["grpc_channels"] = grpc_channels
    return result


def grpc_target(url: str) -> str:
    """grpc://host:port -> host:port."""
    parsed = urlparse(url)
    return f"{parsed.hostname}:{parsed.port}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--url",
        required=True,
        help="json: the route; v2-binary: the server's base; grpc: grpc://h:p",
    )
    parser.add_argument("--bodies", required=True, type=Path, help="JSON list of request bodies")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="json")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds, at most")
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--warmup", type=int, default=32, help="requests before measuring")
    parser.add_argument("--grpc-channels", type=int, default=1,
                        help="grpc: channels (connections) the workers share")  # fmt: skip
    args = parser.parse_args(argv)
    host = urlparse(args.url).hostname
    if host not in LOOPBACK:
        parser.error(f"load is only ever sent to this machine (127.0.0.1), not {host!r}")
    bodies = json.loads(args.bodies.read_text())
    result = asyncio.run(
        drive(args.protocol, args.url, bodies, args.concurrency, args.duration,
              args.max_requests, args.warmup, args.grpc_channels)
    )  # fmt: skip
    result["client_cpu_s"] = cpu_s()  # the whole process: start-up and warm-up too
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
