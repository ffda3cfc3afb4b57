"""One model, one server process, three protocols side by side: the Open Inference Protocol over
gRPC, the same over HTTP with the binary tensor extension, and the native JSON route.

The server (`nlp-serve serve` on 127.0.0.1, NLP_SERVE_GRPC_PORT set) serves the MiniLM-sized
classifier on ONNX Runtime int8 with the catalog's batching (the suite's `onnx-int8`, its
fastest path: the faster the model, the larger the share of each request that is protocol).
Every request carries one short text, the suite's `short` workload (~10 tokens), and asks for
its sentiment:

- `grpc`: inference.GRPCInferenceService/ModelInfer, the text in raw_input_contents, the
  answer in raw_output_contents; the client's workers share one channel (one HTTP/2
  connection), as a gRPC client is meant to be used (--grpc-channels to spread them);
- `v2-http-binary`: POST /v2/models/onnx-int8/infer, a JSON header + the length-prefixed text
  (Inference-Header-Content-Length), binary_data_output: the answer binary too;
- `native-json`: POST /v1/sentiment {"inputs": <text>, "model": "onnx-int8"}.

Each measurement is bench/loadgen.py in its own process (closed loop, its warm-up left out) at
1 and 32 concurrent clients. Rounds interleave the three, in an order that turns each round, so
a shared machine's drift hits all three alike; each figure is the median over rounds. Besides
requests/s and latency: the server's CPU per request (all its threads) and its own request
time (from its metrics), and the client's CPU per request, since client and server share the
machine's cores.

    .venv/bin/python -m bench.protocols                   # about 2.5 minutes with the defaults
    .venv/bin/python -m bench.protocols --duration 10 --rounds 5 --concurrency 1 8 32

`make bench` (bench/suite.py) runs the same rows on its own server.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    BATCHED,
    CACHE_DIRS,
    ROOT,
    RunningServer,
    cache_env,
    free_port,
    load,
    machine,
    minilm_classifier_dir,
    process_cpu_s,
    result_path,
    save,
    scrape,
    sentences,
    serve,
    server_cpu_ms_per_request,
    stage_breakdown,
)

MODEL = "onnx-int8"  # the suite's name for this configuration
MODEL_CONFIG: dict[str, Any] = {"backend": "onnx", "precision": "int8", "export": True,
                                "batching": BATCHED}  # fmt: skip
# row name -> bench.loadgen's protocol
PROTOCOLS = {"grpc": "grpc", "v2-http-binary": "v2-binary", "native-json": "json"}
CONCURRENCY = (1, 32)
MEDIAN_KEYS = ("rps", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "client_cpu_ms_per_request",
               "server_cpu_ms", "request_ms", "queue_wait_ms", "forward_ms")  # fmt: skip


def export_here(model: dict[str, Any]) -> None:
    """Load the model once in this process, which makes its export in the shared cache if
    the cache has none that this release reads. The server could not: for a catalog whose
    models are all exported already it starts without torch, and it counts an export in an
    older format as made."""
    from app.registry.model import load_model
    from app.settings import Settings
    from app.spec import ModelSpec

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        onnx_cache_dir=CACHE_DIRS["onnx_cache_dir"],
        openvino_cache_dir=CACHE_DIRS["openvino_cache_dir"],
        auto_cache_dir=CACHE_DIRS["auto_cache_dir"],
    )
    load_model(ModelSpec.model_validate(model), settings).close()


def short_texts(count: int = 256) -> list[str]:
    """The suite's `short` workload: ~7 words, ~10 tokens each."""
    return sentences(count, words=7, seed=1)


def targets(server: RunningServer, grpc_port: int) -> dict[str, str]:
    """What bench.loadgen's --url is for each protocol."""
    return {
        "grpc": f"grpc://127.0.0.1:{grpc_port}",
        "v2-http-binary": server.base,
        "native-json": f"{server.base}/v1/sentiment",
    }


def order(round_: int) -> list[str]:
    """The protocols in round `round_`'s order: turned by one each round."""
    names = list(PROTOCOLS)
    shift = round_ % len(names)
    return names[shift:] + names[:shift]


def measure_one(server: RunningServer, url: str, protocol: str, bodies: list[dict[str, Any]],
                concurrency: int, duration: float, model: str,
                grpc_channels: int = 1) -> dict[str, Any]:  # fmt: skip
    """One closed-loop measurement, with the server's CPU and stage times over it."""
    pid = server.process.pid
    before, cpu_before = scrape(server.base), process_cpu_s(pid)
    result = load(url, bodies, concurrency, duration, PROTOCOLS[protocol], grpc_channels)
    cpu_after, after = process_cpu_s(pid), scrape(server.base)
    result.update(stage_breakdown(before, after, model))
    result["server_cpu_ms"] = server_cpu_ms_per_request(cpu_before, cpu_after, before, after, model)
    return result


def median_row(protocol: str, concurrency: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row: the median of each figure over the rounds; requests and errors summed."""
    row: dict[str, Any] = {"protocol": protocol, "concurrency": concurrency}
    for key in MEDIAN_KEYS:
        row[key] = statistics.median(r[key] for r in runs)
    row["requests"] = sum(int(r["requests"]) for r in runs)
    row["errors"] = sum(int(r["errors"]) for r in runs)
    errors = [r["first_error"] for r in runs if "first_error" in r]
    if errors:
        row["first_error"] = errors[0]
    if "grpc_channels" in runs[0]:
        row["grpc_channels"] = runs[0]["grpc_channels"]
    row["runs"] = [round(r["rps"], 2) for r in runs]
    return row


def compare(server: RunningServer, grpc_port: int, model: str, texts: list[str],
            concurrencies: Sequence[int], duration: float, rounds: int,
            grpc_channels: int = 1) -> list[dict[str, Any]]:  # fmt: skip
    """The three protocols on `model` of one server, one text per request, interleaved rounds;
    one row (medians) per protocol and concurrency."""
    bodies = [{"inputs": text, "model": model} for text in texts]
    urls = targets(server, grpc_port)
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for round_ in range(rounds):
        for concurrency in concurrencies:
            for protocol in order(round_):
                result = measure_one(server, urls[protocol], protocol, bodies, concurrency,
                                     duration, model, grpc_channels)  # fmt: skip
                runs.setdefault((protocol, concurrency), []).append(result)
                print(f"round {round_ + 1} {protocol:>14} c={concurrency:<3} "
                      f"{result['rps']:8.1f} req/s  p50 {result['p50_ms']:7.2f} ms  "
                      f"p99 {result['p99_ms']:7.2f} ms  server cpu "
                      f"{result['server_cpu_ms']:5.2f} ms/req  errors {int(result['errors'])}",
                      flush=True)  # fmt: skip
                if "first_error" in result:
                    print(f"    first error: {result['first_error']}", flush=True)
    return [
        median_row(protocol, concurrency, runs[protocol, concurrency])
        for concurrency in concurrencies
        for protocol in PROTOCOLS
    ]


def report(rows: list[dict[str, Any]], heading: str = "") -> dict[str, Any]:
    """Print the rows and each protocol's ratio to the native JSON route; the summary, with
    whether gRPC at the most clients measured is at least the native route's requests/s."""
    print(f"\nprotocols{heading}: medians over rounds")
    print(
        f"{'protocol':>15} {'c':>3} {'req/s':>8} {'x native':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'server ms':>9} {'client ms':>9} {'errors':>6}   (server, client: CPU per request)"
    )
    native = {r["concurrency"]: r["rps"] for r in rows if r["protocol"] == "native-json"}
    summary: dict[str, Any] = {"rps_vs_native": {}}
    for row in rows:
        base = native.get(row["concurrency"])
        ratio = row["rps"] / base if base else float("nan")
        summary["rps_vs_native"][f"{row['protocol']} c={row['concurrency']}"] = ratio
        print(f"{row['protocol']:>15} {row['concurrency']:>3} {row['rps']:8.1f} {ratio:8.2f} "
              f"{row['p50_ms']:8.2f} {row['p99_ms']:8.2f} {row['server_cpu_ms']:9.2f} "
              f"{row['client_cpu_ms_per_request']:9.2f} {row['errors']:6d}")  # fmt: skip
    most = max(native) if native else None
    grpc = next((r for r in rows if r["protocol"] == "grpc" and r["concurrency"] == most), None)
    if most is not None and grpc is not None:
        met = grpc["rps"] >= native[most] and grpc["errors"] == 0
        summary["aim"] = f"grpc >= native-json in requests/s at c={most}"
        summary["aim_met"] = met
        verdict = "met" if met else "NOT met"
        print(
            f"aim: gRPC at c={most} >= the native JSON route: {verdict} "
            f"({grpc['rps']:.1f} vs {native[most]:.1f} req/s)"
        )
    return summary


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Requests/s and p50 latency, one bar per protocol, grouped by concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    concurrencies = sorted({r["concurrency"] for r in rows})
    by_key = {(r["protocol"], r["concurrency"]): r for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    width = 0.8 / len(PROTOCOLS)
    for ax, (metric, label) in zip(
        axes, (("rps", "requests/s"), ("p50_ms", "p50 latency (ms)")), strict=True
    ):
        for index, protocol in enumerate(PROTOCOLS):
            xs = [i + (index - (len(PROTOCOLS) - 1) / 2) * width for i in range(len(concurrencies))]
            ys = [by_key[protocol, c][metric] for c in concurrencies]
            ax.bar(xs, ys, width, label=protocol)
        ax.set_xticks(range(len(concurrencies)), labels=[f"c={c}" for c in concurrencies])
        ax.set_ylabel(label)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY),
                        help="closed-loop clients, each in turn (default: 1 32)")  # fmt: skip
    parser.add_argument("--grpc-channels", type=int, default=1,
                        help="gRPC channels (connections) the client's workers share")  # fmt: skip
    args = parser.parse_args()
    started = time.monotonic()
    model = {"name": MODEL, "task": "sentiment", "source": str(minilm_classifier_dir()),
             "device": "cpu", **MODEL_CONFIG}  # fmt: skip
    export_here(model)
    grpc_port = free_port()
    with serve([model], cache_env(), NLP_SERVE_GRPC_PORT=str(grpc_port)) as server:
        rows = compare(server, grpc_port, MODEL, short_texts(), args.concurrency, args.duration,
                       args.rounds, args.grpc_channels)  # fmt: skip
    heading = f" ({MODEL}, one short text per request, {args.rounds} x {args.duration:g} s)"
    summary = report(rows, heading)
    path = result_path("protocols")
    picture = plot(rows, path.with_name(f"{path.stem}.png"), f"MiniLM classifier{heading}")
    results = {"machine": machine(), "args": vars(args), "model": model, "texts": "short",
               "rows": rows, "summary": summary, "plots": [str(picture.relative_to(ROOT))],
               "elapsed_s": time.monotonic() - started}  # fmt: skip
    save("protocols", results, path)
    print(f"saved {path} and {picture} in {results['elapsed_s']:.0f} s")


if __name__ == "__main__":
    main()
