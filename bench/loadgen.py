"""Closed-loop HTTP load generator, run in its own process; bounded in requests and time.

`concurrency` workers each send the next body as soon as their previous answer arrives, over
keep-alive connections to 127.0.0.1 only. A warm-up phase is sent first and left out of the
figures. Prints one JSON object: requests, errors, requests/s, latency percentiles (ms) and
the client's own CPU seconds (it shares the machine's cores with the server). When answers
carry a Server-Timing header with a `forward` entry, it also gives the percentiles of each
request's latency beyond its own forward pass (`beyond_forward_*`): the serving overhead,
request by request, free of the forward pass's own jitter.

    python -m bench.loadgen --url http://127.0.0.1:8000/v1/sentiment --bodies bodies.json \
        --concurrency 8 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import resource
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import aiohttp

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


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


async def _drive(
    url: str,
    bodies: list[bytes],
    concurrency: int,
    duration_s: float,
    max_requests: int,
    warmup_requests: int,
) -> dict[str, float]:
    latencies: list[float] = []
    beyond_forward: list[float] = []  # seconds of latency beyond the server's own forward
    errors = 0
    sent = 0
    cycle = itertools.cycle(bodies)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    headers = {"content-type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(body: bytes) -> tuple[float, bool, float | None]:
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                ok = response.status == 200
                forward = forward_ms(response.headers.get("server-timing"))
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

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    latencies.sort()
    beyond_forward.sort()
    return {
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
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--bodies", required=True, type=Path, help="JSON list of request bodies")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds, at most")
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--warmup", type=int, default=32, help="requests before measuring")
    args = parser.parse_args(argv)
    host = urlparse(args.url).hostname
    if host not in LOOPBACK:
        parser.error(f"load is only ever sent to this machine (127.0.0.1), not {host!r}")
    bodies = [json.dumps(b).encode() for b in json.loads(args.bodies.read_text())]
    result = asyncio.run(
        _drive(args.url, bodies, args.concurrency, args.duration, args.max_requests, args.warmup)
    )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["client_cpu_s"] = usage.ru_utime + usage.ru_stime
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
