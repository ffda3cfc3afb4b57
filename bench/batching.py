"""Batching on vs off, side by side in one run, on the MiniLM-sized classifier.

One server serves the same weights twice: `batched` (the catalog's batching) and `unbatched`
(max_batch_size 1). Each is driven in turn at concurrency 1, 8 and 32 on /v1/sentiment with
~20-word inputs. Also measures the model's own single-item forward time in-process, the floor
for latency at concurrency 1.

    make bench-batching        # or: .venv/bin/python -m bench.batching --duration 10
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from bench.common import (
    BATCHED,
    UNBATCHED,
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
    model_dir = str(minilm_classifier_dir())
    texts = sentences(256, words=20)
    bodies = [{"inputs": t} for t in texts]
    forward_before = single_item_forward_ms(model_dir, texts[0])
    common: dict[str, Any] = {"task": "sentiment", "source": model_dir, "device": "cpu"}
    models = [
        {"name": "batched", **common, "batching": BATCHED},
        {"name": "unbatched", **common, "batching": UNBATCHED},
    ]  # fmt: skip
    rows: list[dict[str, Any]] = []
    with serve(models) as server:
        base = server.base
        for concurrency in CONCURRENCY:
            for name in ("batched", "unbatched"):
                bodies_for = [{**b, "model": name} for b in bodies]
                before = scrape(base)
                result = load(f"{base}/v1/sentiment", bodies_for, concurrency, args.duration)
                result.update(stage_breakdown(before, scrape(base), name))
                rows.append({"mode": name, **result})
                print(
                    f"{name:>9} c={concurrency:<3} {result['rps']:8.1f} req/s  "
                    f"p50 {result['p50_ms']:7.2f} ms  p99 {result['p99_ms']:7.2f} ms  "
                    f"errors {int(result['errors'])}  client cpu {result['client_cpu_s']:.1f} s  "
                    f"[server: request {result['request_ms']:.2f} = queue "
                    f"{result['queue_wait_ms']:.2f} + forward {result['forward_ms']:.2f} + ...]",
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
    c1 = next(r for r in rows if r["mode"] == "batched" and r["concurrency"] == 1)
    summary["c1_p99_minus_bare_forward_p99_ms"] = c1["p99_ms"] - forward["p99_ms"]
    summary["c1_p50_minus_bare_forward_p50_ms"] = c1["p50_ms"] - forward["p50_ms"]
    summary["c1_server_overhead_ms"] = c1["request_ms"] - c1["forward_ms"]
    print(
        "c=1, batched model: p99 - bare forward p99 = "
        f"{summary['c1_p99_minus_bare_forward_p99_ms']:.2f} ms; p50 - bare p50 = "
        f"{summary['c1_p50_minus_bare_forward_p50_ms']:.2f} ms; server time beyond its own "
        f"forward (same requests) = {summary['c1_server_overhead_ms']:.2f} ms"
    )
    path = save(
        "batching",
        {"machine": machine(), "bare_forward": forward, "rows": rows, "summary": summary,
         "duration_s": args.duration},
    )  # fmt: skip
    print(f"saved {path}")


if __name__ == "__main__":
    main()
