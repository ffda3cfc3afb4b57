"""Backends side by side in one server: PyTorch fp32 / bf16, ONNX fp32 / int8 (issue 4).

Classifier: the MiniLM-sized classifier on /v1/sentiment, ~20-word inputs, concurrency 32,
batching on. Generation: a Marian-sized seq2seq on /v1/summarize with a fixed output length
(min_length = max_length), PyTorch vs ONNX. Ratios are to PyTorch fp32 in the same run.

    make bench-backends        # or: .venv/bin/python -m bench.backends --duration 10
"""

from __future__ import annotations

import argparse
from typing import Any

from bench.common import (
    BATCHED,
    CACHE,
    load,
    machine,
    marian_sized_seq2seq_dir,
    minilm_classifier_dir,
    save,
    scrape,
    sentences,
    serve,
    stage_breakdown,
)

CLASSIFIERS: dict[str, dict[str, Any]] = {
    "torch-fp32": {"backend": "torch", "precision": "fp32"},
    "torch-bf16": {"backend": "torch", "precision": "bf16"},
    "onnx-fp32": {"backend": "onnx", "precision": "fp32", "export": True},
    "onnx-int8": {"backend": "onnx", "precision": "int8", "export": True},
}
GENERATORS: dict[str, dict[str, Any]] = {
    "gen-torch": {"backend": "torch"},
    "gen-onnx": {"backend": "onnx", "export": True},
}


def run_one(base: str, route: str, name: str, bodies: list[Any], concurrency: int,
            duration: float) -> dict[str, Any]:  # fmt: skip
    before = scrape(base)
    named = [{**b, "model": name} for b in bodies]
    result = load(f"{base}{route}", named, concurrency, duration)
    result.update(stage_breakdown(before, scrape(base), name))
    print(
        f"{name:>11} c={concurrency:<3} {result['rps']:8.1f} req/s  p50 {result['p50_ms']:8.2f} ms"
        f"  p99 {result['p99_ms']:8.2f} ms  forward {result['forward_ms']:7.2f} ms/batch  "
        f"errors {int(result['errors'])}",
        flush=True,
    )
    return {"config": name, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--gen-concurrency", type=int, default=8)
    parser.add_argument("--gen-tokens", type=int, default=32, help="fixed output length")
    args = parser.parse_args()
    classifier = str(minilm_classifier_dir())
    seq2seq = str(marian_sized_seq2seq_dir())
    models = [
        {"name": name, "task": "sentiment", "source": classifier, "device": "cpu",
         "batching": BATCHED, **config}
        for name, config in CLASSIFIERS.items()
    ] + [
        {"name": name, "task": "summarize", "source": seq2seq, "device": "cpu",
         "batching": {"max_batch_size": 8, "max_wait_ms": 2}, **config}
        for name, config in GENERATORS.items()
    ]  # fmt: skip
    texts = [{"inputs": t} for t in sentences(256, words=20)]
    fixed = {"min_length": args.gen_tokens, "max_length": args.gen_tokens}
    documents = [{"inputs": t, **fixed} for t in sentences(64, words=60, seed=1)]
    rows = []
    with serve(models, NLP_SERVE_ONNX_CACHE_DIR=str(CACHE / "onnx")) as server:
        base = server.base
        for name in CLASSIFIERS:
            rows.append(
                run_one(base, "/v1/sentiment", name, texts, args.concurrency, args.duration)
            )
        for name in GENERATORS:
            rows.append(run_one(base, "/v1/summarize", name, documents, args.gen_concurrency,
                                args.duration))  # fmt: skip
    by_name = {row["config"]: row for row in rows}
    ratios = {name: by_name[name]["rps"] / by_name["torch-fp32"]["rps"] for name in CLASSIFIERS} | {
        "gen-onnx": by_name["gen-onnx"]["rps"] / by_name["gen-torch"]["rps"]
    }
    print()
    for name, ratio in ratios.items():
        against = "gen-torch" if name.startswith("gen") else "torch-fp32"
        print(f"{name:>11}: {ratio:5.2f}x the requests/s of {against}")
    payload = {"machine": machine(), "rows": rows, "ratios": ratios}
    path = save("backends", {**payload, "duration_s": args.duration, "gen_tokens": args.gen_tokens})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
