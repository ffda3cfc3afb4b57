"""The benchmark suite: how fast nlp-serve is, compared with what one would otherwise use.

One command, one run, one model (the MiniLM-sized classifier), the same inputs for all:

- in-process limit: the model's own stages called directly in one thread (tokenize, forward
  of a batch, decode each item; no HTTP, no queue) at its best batch size, inputs sorted by
  length: the most this backend can do on this machine;
- nlp-serve over HTTP: PyTorch fp32 / bf16 (where the CPU has bf16) / ONNX Runtime fp32 /
  ONNX Runtime int8 / OpenVINO fp32 / OpenVINO int8 (NNCF), batching on, and PyTorch fp32
  and ONNX int8 with batching off; and `auto`, whatever `backend: auto` / `precision: auto`
  chose on this CPU (its decision is in the JSON under in_process.auto.auto);
- naive baseline: bench/baselines/naive_fastapi.py, a transformers pipeline per request;
- sparse embeddings (bench/sparse.py): /v1/embed-sparse on a MiniLM-sized masked LM, PyTorch
  vs ONNX Runtime vs OpenVINO (fp32), one query or four passages per request, at 1 and 32
  clients, requests/s and documents/s, with each engine's in-process limit;
- rerank (bench/rerank.py): POST /v2/rerank on a MiniLM-sized cross-encoder, PyTorch vs ONNX
  Runtime vs OpenVINO (fp32), 10 or 100 documents per request, at 1 and 32 clients,
  requests/s and documents/s, with each engine's in-process limit (the aim: documents/s at 32
  clients within 80% of it);
- protocols (bench/protocols.py): on ONNX int8, one short text per request, the same server
  process answering the Open Inference Protocol over gRPC (raw tensors), the same over HTTP
  with the binary tensor extension, and the native JSON route, at 1 and 32 clients, in
  interleaved rounds;
- causal-LM generation (bench/generate.py): a small random GPT-2 on POST /v1/generate,
  streamed, on every engine that loads: continuous vs static batching vs the transformers
  pipeline, tokens/s and time to first token at 1, 8 and 32 concurrent streams (the aims: at
  32 streams >= 3x static's tokens/s, and TTFT p50 within two decoder steps of idle).

Workloads: short (~10 tokens), medium (~50), long (~250) and mixed (half short, 30% medium,
20% long); concurrency sweep 1/8/32 on the mixed one. Generation: a Marian-sized seq2seq on
/v1/summarize with fixed output length, batching on vs off, and the naive pipeline. Each
figure is the median of --repeats runs. Writes bench/results/<date>-<host>.json and PNGs.

    make bench          # about 10 minutes with the defaults, ~8 more for generation
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from app.batching.work import split_rows
from app.pipeline import ServedModel
from app.runtimes.cpu import cpu_has_bf16
from app.tasks.base import Encoded
from app.tasks.classification import SentimentParams
from bench import generate, protocols, rerank, sparse
from bench.common import (
    BATCHED,
    CACHE_DIRS,
    ROOT,
    UNBATCHED,
    baseline,
    cache_env,
    free_port,
    load,
    machine,
    marian_sized_seq2seq_dir,
    minilm_classifier_dir,
    result_path,
    save,
    scrape,
    sentences,
    serve,
    stage_breakdown,
)

SENTIMENT = SentimentParams()  # the one label per input that /v1/sentiment answers


def http_configs() -> dict[str, dict[str, Any]]:
    configs: dict[str, dict[str, Any]] = {
        "torch-fp32": {"backend": "torch", "precision": "fp32", "batching": BATCHED},
        "torch-fp32-unbatched": {"backend": "torch", "precision": "fp32", "batching": UNBATCHED},
        "onnx-fp32": {"backend": "onnx", "precision": "fp32", "export": True, "batching": BATCHED},
        "onnx-int8": {"backend": "onnx", "precision": "int8", "export": True, "batching": BATCHED},
        "onnx-int8-unbatched": {"backend": "onnx", "precision": "int8", "export": True,
                                "batching": UNBATCHED},
        "openvino-fp32": {"backend": "openvino", "precision": "fp32", "export": True,
                          "batching": BATCHED},
        "openvino-int8": {"backend": "openvino", "precision": "int8", "export": True,
                          "batching": BATCHED},
    }  # fmt: skip
    if cpu_has_bf16():
        configs["torch-bf16"] = {"backend": "torch", "precision": "bf16", "batching": BATCHED}
    # what `backend: auto` / `precision: auto` chooses on this CPU, served like the others
    configs["auto"] = {"backend": "auto", "precision": "auto", "export": True, "batching": BATCHED}
    return configs


def workloads(count: int = 256) -> dict[str, list[str]]:
    short = sentences(count, words=7, seed=1)
    medium = sentences(count, words=40, seed=2)
    long = sentences(count, words=200, seed=3)
    rng = random.Random(4)
    mixed = [rng.choice(short) if (r := rng.random()) < 0.5 else rng.choice(medium)
             if r < 0.8 else rng.choice(long) for _ in range(count)]  # fmt: skip
    return {"short": short, "medium": medium, "long": long, "mixed": mixed}


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(runs[0])
    for key in ("rps", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "client_cpu_s"):
        out[key] = statistics.median(r[key] for r in runs)
    out["runs"] = [round(r["rps"], 2) for r in runs]
    return out


def measure(base: str, route: str, bodies: list[dict[str, Any]], concurrency: int,
            duration: float, repeats: int, model: str | None) -> dict[str, Any]:  # fmt: skip
    named = [{**b, "model": model} if model else b for b in bodies]
    before = scrape(base) if model else ""
    runs = [load(f"{base}{route}", named, concurrency, duration) for _ in range(repeats)]
    result = median_of(runs)
    if model:
        result.update(stage_breakdown(before, scrape(base), model))
    return result


def run_batch(model: ServedModel, encoded: list[Encoded]) -> list[Any]:
    """What the batcher does for one batch, minus the queue: one forward, each item decoded."""
    rows = [row for item in encoded for row in item.rows]
    outputs = model.forward_rows(rows, SENTIMENT).value
    parts = split_rows(outputs, [len(item.rows) for item in encoded])
    return [
        model.decode(item, part, SENTIMENT).value for item, part in zip(encoded, parts, strict=True)
    ]


def in_process_limit(model: ServedModel, texts: list[str], repeats: int) -> dict[str, Any]:
    """Best items/s of run_batch at batch sizes 1..32, length-sorted inputs."""
    encoded_all = sorted((model.encode(t, SENTIMENT) for t in texts), key=lambda e: e.n_tokens)
    best: dict[str, Any] = {"items_per_s": 0.0}
    for size in (1, 8, 16, 32):  # 64 never won here
        rates = []
        for _ in range(repeats):
            started = time.perf_counter()
            for i in range(0, len(encoded_all), size):
                chunk = encoded_all[i : i + size]
                run_batch(model, chunk)
            rates.append(len(encoded_all) / (time.perf_counter() - started))
        rate = statistics.median(rates)
        if rate > best["items_per_s"]:
            best = {"items_per_s": rate, "batch_size": size}
    # tokenization is part of serving, so count it: time encode alone and fold it in
    started = time.perf_counter()
    for text in texts:
        model.encode(text, SENTIMENT)
    tokenize_s = (time.perf_counter() - started) / len(texts)
    best["items_per_s"] = 1.0 / (1.0 / best["items_per_s"] + tokenize_s)
    return best


def in_process_limits(classifier: str, configs: dict[str, dict[str, Any]],
                      texts: list[str], repeats: int) -> dict[str, dict[str, Any]]:  # fmt: skip
    from app.registry.model import load_model
    from app.settings import Settings
    from app.spec import ModelSpec

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        onnx_cache_dir=CACHE_DIRS["onnx_cache_dir"],
        openvino_cache_dir=CACHE_DIRS["openvino_cache_dir"],
        auto_cache_dir=CACHE_DIRS["auto_cache_dir"],
    )
    limits = {}
    for name, config in configs.items():
        if "unbatched" in name:
            continue
        spec = ModelSpec.model_validate(
            {"name": name, "task": "sentiment", "source": classifier, "device": "cpu",
             **{k: v for k, v in config.items() if k != "batching"}}
        )  # fmt: skip
        model = load_model(spec, settings)
        model.warm_up()
        limits[name] = in_process_limit(model, texts, repeats)
        if model.decision is not None:
            limits[name]["auto"] = model.decision
            print(f"auto chose {model.decision['chosen']}: {model.decision['reason']}")
        model.close()
        print(f"in-process {name:>10}: {limits[name]['items_per_s']:7.1f} items/s "
              f"(batch {limits[name]['batch_size']})", flush=True)  # fmt: skip
    return limits


def naive_baseline(classifier: str, seq2seq: str) -> AbstractContextManager[str]:
    return baseline(
        "bench.baselines.naive_fastapi:app",
        NAIVE_MODEL_DIR=classifier,
        NAIVE_SEQ2SEQ_DIR=seq2seq,
    )


def plot(results: dict[str, Any], stem: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = [r for r in results["http"] if r["workload"] == "mixed"]
    configs = sorted({r["config"] for r in sweep})
    paths = []
    for metric, label, file in (("rps", "requests/s", "throughput"),
                                ("p50_ms", "p50 latency (ms)", "p50"),
                                ("p99_ms", "p99 latency (ms)", "p99")):  # fmt: skip
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for config in configs:
            points = sorted((r["concurrency"], r[metric]) for r in sweep if r["config"] == config)
            ax.plot(*zip(*points, strict=True), marker="o", label=config)
        if metric == "rps":
            for name, limit in results["in_process"].items():
                ax.axhline(limit["items_per_s"], linestyle=":", linewidth=1, color="grey")
                ax.annotate(f"in-process {name}", (1, limit["items_per_s"]), fontsize=7,
                            color="grey", va="bottom")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 8, 32], labels=["1", "8", "32"])
        if metric != "rps":
            ax.set_yscale("log")
        ax.set_xlabel("concurrency (closed-loop clients)")
        ax.set_ylabel(label)
        ax.set_title(f"MiniLM classifier, mixed-length inputs: {label}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = stem.with_name(f"{stem.name}-{file}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--gen-tokens", type=int, default=16)
    args = parser.parse_args()
    started = time.monotonic()
    classifier = str(minilm_classifier_dir())
    seq2seq = str(marian_sized_seq2seq_dir())
    configs = http_configs()
    inputs = workloads()
    bodies = {name: [{"inputs": t} for t in texts] for name, texts in inputs.items()}
    results: dict[str, Any] = {"machine": machine(), "args": vars(args), "http": []}
    # half the mixed set, two repeats: the limit is steadier than HTTP runs and costs minutes
    sample = inputs["mixed"][:128]
    results["in_process"] = in_process_limits(classifier, configs, sample, min(args.repeats, 2))

    def record(config: str, workload: str, concurrency: int, result: dict[str, Any]) -> None:
        results["http"].append({"config": config, "workload": workload,
                                "concurrency": concurrency, **result})  # fmt: skip
        print(f"{config:>20} {workload:>7} c={concurrency:<3} {result['rps']:8.1f} req/s  "
              f"p50 {result['p50_ms']:8.1f} ms  p99 {result['p99_ms']:8.1f} ms  "
              f"client cpu {result['client_cpu_s']:.1f} s", flush=True)  # fmt: skip

    models = [{"name": name, "task": "sentiment", "source": classifier, "device": "cpu", **config}
              for name, config in configs.items()]  # fmt: skip
    generation = {"min_length": args.gen_tokens, "max_length": args.gen_tokens}
    documents = [{"inputs": t, **generation} for t in sentences(64, words=60, seed=5)]
    models += [
        {"name": "gen-batched", "task": "summarize", "source": seq2seq, "device": "cpu",
         "backend": "onnx", "export": True, "batching": {"max_batch_size": 8, "max_wait_ms": 2}},
        {"name": "gen-unbatched", "task": "summarize", "source": seq2seq, "device": "cpu",
         "backend": "onnx", "export": True, "batching": UNBATCHED},
    ]  # fmt: skip

    def bench(base: str, route: str, data: list[dict[str, Any]], concurrency: int,
              model: str | None) -> dict[str, Any]:  # fmt: skip
        return measure(base, route, data, concurrency, args.duration, args.repeats, model)

    grpc_port = free_port()  # the protocol rows' gRPC surface, beside HTTP
    with serve(models, cache_env(), NLP_SERVE_GRPC_PORT=str(grpc_port)) as server:
        for name in configs:
            for concurrency in (1, 8, 32):
                result = bench(server.base, "/v1/sentiment", bodies["mixed"], concurrency, name)
                record(name, "mixed", concurrency, result)
        for workload in ("short", "medium", "long"):
            for name in ("torch-fp32", "onnx-int8", "openvino-int8"):
                record(
                    name,
                    workload,
                    32,
                    bench(server.base, "/v1/sentiment", bodies[workload], 32, name),
                )
        for name in ("gen-batched", "gen-unbatched"):
            record(name, "generate", 8, bench(server.base, "/v1/summarize", documents, 8, name))
        results["protocols"] = protocols.compare(
            server, grpc_port, protocols.MODEL, inputs["short"], protocols.CONCURRENCY,
            args.duration, args.repeats,
        )  # fmt: skip
    with naive_baseline(classifier, seq2seq) as base:
        for workload, concurrencies in (("mixed", (1, 8, 32)), ("short", (32,)),
                                        ("medium", (32,)), ("long", (32,))):  # fmt: skip
            for concurrency in concurrencies:
                result = bench(base, "/v1/sentiment", bodies[workload], concurrency, None)
                record("naive-pipeline", workload, concurrency, result)
        record("naive-pipeline", "generate", 8, bench(base, "/v1/summarize", documents, 8, None))
    # sparse embeddings (bench/sparse.py): its own server, the MiniLM-sized masked LM
    results["sparse"] = sparse.run(args.duration, args.repeats)
    # rerank (bench/rerank.py): its own server, the MiniLM-sized cross-encoder
    results["rerank"] = rerank.run(args.duration, args.repeats)
    # generation (bench/generate.py): its own server, the small GPT-2, its own row length
    results["generate"] = generate.run()

    report(results)
    path = result_path(platform.node())
    pictures = plot(results, path.with_suffix(""))
    pictures.append(protocols.plot(
        results["protocols"], path.with_name(f"{path.stem}-protocols.png"),
        f"MiniLM classifier, {protocols.MODEL}, one short text per request",
    ))  # fmt: skip
    pictures.append(
        generate.plot(results["generate"]["rows"], path.with_name(f"{path.stem}-generate.png"))
    )
    results["plots"] = [str(p.relative_to(ROOT)) for p in pictures]
    results["elapsed_s"] = time.monotonic() - started
    save(platform.node(), results, path)
    print(f"saved {path} and {', '.join(results['plots'])} in {results['elapsed_s']:.0f} s")


def report(results: dict[str, Any]) -> None:
    rows = {(r["config"], r["workload"], r["concurrency"]): r for r in results["http"]}
    naive = rows[("naive-pipeline", "mixed", 32)]["rps"]
    print("\nmixed workload, concurrency 32:")
    summary = {}
    for (config, workload, concurrency), row in sorted(rows.items()):
        if workload != "mixed" or concurrency != 32:
            continue
        backend = config.removesuffix("-unbatched")
        limit = results["in_process"].get(backend, {}).get("items_per_s")
        share = row["rps"] / limit if limit else None
        summary[config] = {"rps": row["rps"], "vs_naive": row["rps"] / naive,
                           "vs_in_process": share}  # fmt: skip
        shown = f"{share:6.0%} of its in-process limit" if share else ""
        print(f"{config:>20}: {row['rps']:8.1f} req/s  {row['rps'] / naive:5.2f}x naive  {shown}")
    gen = {c: rows[(c, "generate", 8)]["rps"] for c in ("gen-batched", "gen-unbatched",
                                                         "naive-pipeline")}  # fmt: skip
    print(
        f"generation (c=8, fixed length): batched {gen['gen-batched']:.2f} req/s, unbatched "
        f"{gen['gen-unbatched']:.2f}, naive {gen['naive-pipeline']:.2f}"
    )
    heading = f" ({protocols.MODEL}, one short text per request)"
    results["summary"] = {"mixed_c32": summary, "generation_c8": gen,
                          "protocols": protocols.report(results["protocols"], heading)}  # fmt: skip
    if "sparse" in results:
        results["summary"]["sparse"] = sparse.report(results["sparse"])
    if "rerank" in results:
        results["summary"]["rerank"] = rerank.report(
            results["rerank"]["rows"], results["rerank"]["in_process"]
        )
    if "generate" in results:
        results["summary"]["generate"] = generate.report(results["generate"]["rows"])


if __name__ == "__main__":
    main()
