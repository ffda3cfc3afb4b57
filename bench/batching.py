"""Batching on vs off, side by side in one run, on the MiniLM-sized classifier.

The same weights are served as `batched` (the catalog's batching) and as `unbatched`
(max_batch_size 1), one server each, in turn, and each is driven at concurrency 1, 8 and 32 on
/v1/sentiment with ~20-word inputs.

Latency at concurrency 1 is judged request by request: each answer's Server-Timing header
gives its own forward pass, so `beyond_forward` is the latency the service adds to the model,
free of the forward pass's jitter. The same is measured, alternating rounds, for the minimal
ASGI server (bench/baselines/minimal_asgi.py): the least any Python server pays here. The bare
forward pass in-process (no server) is reported too.

    make bench-batching        # or: .venv/bin/python -m bench.batching --duration 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

from app.cli import SERVING_ENVIRONMENT
from bench.common import (
    BATCHED,
    UNBATCHED,
    baseline,
    load,
    machine,
    minilm_classifier_dir,
    save,
    scrape,
    sentences,
    serve,
    stage_breakdown,
)

CONCURRENCY = (1, 8, 32)
LATENCY_ROUNDS = 3  # alternating nlp-serve / minimal server rounds at concurrency 1


def single_item_forward_ms(model_dir: str, text: str, runs: int = 200) -> dict[str, float]:
    """p50/p99 of the bare PyTorch forward for one item (no tokenization, no HTTP)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    inputs = tokenizer(text, return_tensors="pt")
    times = []
    with torch.inference_mode():
        for _ in range(20):
            model(**inputs)
        for _ in range(runs):
            started = time.perf_counter()
            model(**inputs)
            times.append(time.perf_counter() - started)
    times.sort()
    return {"p50_ms": statistics.median(times) * 1000, "p99_ms": times[int(0.99 * runs)] * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    args = parser.parse_args()
    for name, value in SERVING_ENVIRONMENT.items():  # the bare forward runs as served
        os.environ.setdefault(name, value)
    model_dir = str(minilm_classifier_dir())
    texts = sentences(256, words=20)
    bodies = [{"inputs": t} for t in texts]
    forward_before = single_item_forward_ms(model_dir, texts[0])
    common: dict[str, Any] = {"task": "sentiment", "source": model_dir, "device": "cpu"}
    modes = {"batched": BATCHED, "unbatched": UNBATCHED}
    rows: list[dict[str, Any]] = []
    # One server per mode, in turn: two PyTorch models in one process would each bring an
    # OpenMP team, and libgomp stops spinning when teams outnumber cores (docs/performance.md).
    for name, batching in modes.items():
        with serve([{"name": name, **common, "batching": batching}]) as server:
            for concurrency in CONCURRENCY:
                bodies_for = [{**b, "model": name} for b in bodies]
                before = scrape(server.base)
                result = load(f"{server.base}/v1/sentiment", bodies_for, concurrency, args.duration)
                result.update(stage_breakdown(before, scrape(server.base), name))
                rows.append({"mode": name, **result})
                print(
                    f"{name:>9} c={concurrency:<3} {result['rps']:8.1f} req/s  "
                    f"p50 {result['p50_ms']:7.2f} ms  p99 {result['p99_ms']:7.2f} ms  "
                    f"errors {int(result['errors'])}  client cpu {result['client_cpu_s']:.1f} s  "
                    f"[server: request {result['request_ms']:.2f} = queue "
                    f"{result['queue_wait_ms']:.2f} + forward {result['forward_ms']:.2f} + ...]",
                    flush=True,
                )
    latency: dict[str, list[dict[str, float]]] = {"nlp-serve": [], "minimal": []}
    batched = [{"name": "batched", **common, "batching": BATCHED}]
    with (
        serve(batched) as server,
        baseline(
            "bench.baselines.minimal_asgi:app", MINIMAL_MODEL_DIR=model_dir, **SERVING_ENVIRONMENT
        ) as minimal,
    ):
        for _ in range(LATENCY_ROUNDS):
            for name, url in (("nlp-serve", server.base), ("minimal", minimal)):
                result = load(f"{url}/v1/sentiment", bodies, 1, args.duration)
                latency[name].append(result)
                print(
                    f"c=1 {name:>9}: p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} "
                    f"ms  beyond its forward: p50 {result['beyond_forward_p50_ms']:5.2f} ms  "
                    f"p99 {result['beyond_forward_p99_ms']:5.2f} ms",
                    flush=True,
                )
    forward_after = single_item_forward_ms(model_dir, texts[0])
    forward = {k: (forward_before[k] + forward_after[k]) / 2 for k in forward_before}
    print(
        f"\nbare single-item forward (PyTorch, in-process, before/after the server): "
        f"p50 {forward['p50_ms']:.2f} ms, p99 {forward['p99_ms']:.2f} ms"
    )
    summary: dict[str, Any] = {"rps_ratio_on_off": {}}
    for concurrency in CONCURRENCY:
        on = next(r for r in rows if r["mode"] == "batched" and r["concurrency"] == concurrency)
        off = next(r for r in rows if r["mode"] == "unbatched" and r["concurrency"] == concurrency)
        ratio = on["rps"] / off["rps"] if off["rps"] else float("nan")
        summary["rps_ratio_on_off"][concurrency] = ratio
        print(f"c={concurrency:<3} batching on/off throughput: {ratio:5.2f}x")
    for name, results in latency.items():
        summary[f"c1_{name}"] = {
            key: statistics.median(r[key] for r in results)
            for key in ("p50_ms", "p99_ms", "beyond_forward_p50_ms", "beyond_forward_p99_ms")
        }
    ours, floor = summary["c1_nlp-serve"], summary["c1_minimal"]
    summary["c1_target_met"] = ours["beyond_forward_p99_ms"] <= 2.0
    print(
        f"c=1 latency beyond the request's own forward pass (median of {LATENCY_ROUNDS} rounds): "
        f"nlp-serve p50 {ours['beyond_forward_p50_ms']:.2f} / p99 "
        f"{ours['beyond_forward_p99_ms']:.2f} ms; minimal ASGI server p50 "
        f"{floor['beyond_forward_p50_ms']:.2f} / p99 {floor['beyond_forward_p99_ms']:.2f} ms. "
        f"Target p99 <= 2 ms: {'met' if summary['c1_target_met'] else 'NOT met'}"
    )
    path = save(
        "batching",
        {"machine": machine(), "bare_forward": forward, "rows": rows, "c1_latency": latency,
         "summary": summary, "duration_s": args.duration},
    )  # fmt: skip
    print(f"saved {path}")


if __name__ == "__main__":
    main()
