"""Would seq2seq generation be faster on OpenVINO? The project's own ONNX export of the
Marian-sized model (app/runtimes/onnx_seq2seq.py: encoder, decoder_init and decoder_step
graphs, no merged decoder, no If node), run by ONNX Runtime and by OpenVINO from the same
.onnx files (`Core.read_model`, compiled for the CPU), in-process, NLP_SERVE_TORCH_THREADS
threads (default: all cores). OpenVINO runs twice: fp32 (INFERENCE_PRECISION_HINT f32, as the
openvino backend sets it) and at the plugin's default precision (bf16 on a CPU with
avx512_bf16 or AMX, f32 elsewhere; recorded).

It answers, and saves to bench/results/<date>-openvino-seq2seq.json:
- whether OpenVINO compiles each of the three graphs;
- calls/s of the encoder and of the decoder step at a realistic batch and past length.
  Generation is one encoder pass and then one decoder step per output token, so the step is
  what decides;
- transformers' greedy generate() driving `ExportedSeq2Seq` with each engine's runners (a
  callable per graph: feeds in, numpy outputs in graph order out), on a padded batch of
  --batch sentences from a quarter of --source-tokens to all of it: whether every row's tokens
  equal PyTorch's, the largest score difference, and generate() calls/s (--new-tokens new
  tokens, EOS suppressed, so every engine does the same work). The model's weights are
  random and greedy decoding repeats one token per row, which a small error cannot flip; so
  the tokens are compared a second time with no token allowed twice (no_repeat_ngram_size 1),
  which walks down to scores much closer together. PyTorch's smallest top-2 score gap is
  recorded beside each.

Rounds rotate the engines' order and each figure is the median. Issue 16 asked for this
answer either way.

    .venv/bin/python -m bench.openvino_seq2seq --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import CACHE, machine, marian_sized_seq2seq_dir, save, sentences

Feeds = dict[str, np.ndarray]
Run = Callable[[Feeds], list[np.ndarray]]

# Engine -> OpenVINO's INFERENCE_PRECISION_HINT (None: ONNX Runtime; "": the plugin's default).
ENGINES: dict[str, str | None] = {
    "onnxruntime": None,
    "openvino_f32": "f32",
    "openvino_default": "",
}
TIMED_GRAPHS = ("encoder", "decoder_step")


def project_export() -> tuple[Path, dict[str, str]]:
    """The ONNX export nlp-serve itself makes (`export: true`), and its graph files by role."""
    from app.runtimes.base import Head
    from app.runtimes.onnx import exported_dir
    from app.runtimes.onnx_export import read_manifest
    from app.settings import Settings
    from app.spec import ModelSpec

    source = marian_sized_seq2seq_dir()
    spec = ModelSpec.model_validate(
        {"name": "gen", "task": "summarize", "source": str(source), "backend": "onnx",
         "export": True, "device": "cpu"}
    )  # fmt: skip
    settings = Settings(_env_file=None, onnx_cache_dir=CACHE / "onnx")  # type: ignore[call-arg]
    onnx_dir = exported_dir(spec, source, Head.SEQ2SEQ_LM, settings)
    files: dict[str, str] = (read_manifest(onnx_dir) or {})["files"]
    return onnx_dir, files


def ort_runner(path: Path, threads: int) -> tuple[Run, list[str]]:
    """An ONNX Runtime session's runner, as the onnx backend makes it on the CPU, and the
    graph's output names in order."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(feeds: Feeds) -> list[np.ndarray]:
        return list(session.run(None, feeds))

    return run, [o.name for o in session.get_outputs()]


def openvino_compile(path: Path, threads: int, precision: str) -> Any:
    """The graph read by OpenVINO's ONNX frontend and compiled for the CPU; precision "" keeps
    the plugin's default inference precision."""
    import openvino as ov

    properties: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads,
                                  "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}  # fmt: skip
    if precision:
        properties["INFERENCE_PRECISION_HINT"] = precision
    core = ov.Core()
    return core.compile_model(core.read_model(str(path)), "CPU", properties)


def openvino_runner(compiled: Any) -> tuple[Run, list[set[str]]]:
    """Feeds in, numpy outputs in graph order out (copies: the caller keeps them); and each
    output's names (a port has several: the graph's, and the node's that made it)."""
    request = compiled.create_infer_request()
    ports = list(compiled.outputs)

    def run(feeds: Feeds) -> list[np.ndarray]:
        result = request.infer(feeds, share_inputs=True, share_outputs=False)
        return [np.asarray(result[port]) for port in ports]

    return run, [set(port.get_names()) for port in ports]


def compile_all(
    onnx_dir: Path, files: dict[str, str], threads: int
) -> tuple[dict[str, dict[str, Run]], dict[str, str], dict[str, str]]:
    """Runners by engine and graph role; whether OpenVINO compiled each graph (the refusal if
    not: then that engine is left out); OpenVINO's precision as each compiled model reports."""
    runs: dict[str, dict[str, Run]] = {engine: {} for engine in ENGINES}
    compiles: dict[str, str] = {}
    precisions: dict[str, str] = {}
    for role, name in files.items():
        path = onnx_dir / name
        runs["onnxruntime"][role], ort_outputs = ort_runner(path, threads)
        compiles[role] = "compiles"
        for engine, precision in ENGINES.items():
            if precision is None:
                continue
            try:
                compiled = openvino_compile(path, threads, precision)
            except Exception as exc:  # the refusal is the finding: record it
                compiles[role] = f"refused: {str(exc).strip().splitlines()[-1]}"
                break
            precisions[engine] = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
            runs[engine][role], ov_outputs = openvino_runner(compiled)
            in_order = len(ov_outputs) == len(ort_outputs) and all(
                o in names for o, names in zip(ort_outputs, ov_outputs, strict=False)
            )
            if not in_order:
                raise SystemExit(f"{name}: outputs {ov_outputs} on OpenVINO, {ort_outputs} on ORT")
    refused = [role for role, status in compiles.items() if status != "compiles"]
    if refused:  # an engine that cannot run every graph cannot generate
        runs = {"onnxruntime": runs["onnxruntime"]}
    return runs, compiles, precisions


def graph_feeds(role: str, config: Any, batch: int, source: int, past: int) -> Feeds:
    """One call's inputs: ids in the vocabulary, full masks, random hidden states and cache."""
    rng = np.random.default_rng(0)
    mask = np.ones((batch, source), dtype=np.int64)
    if role == "encoder":
        ids = rng.integers(5, config.vocab_size, (batch, source), dtype=np.int64)
        return {"input_ids": ids, "attention_mask": mask}
    heads = config.decoder_attention_heads
    feeds: Feeds = {
        "decoder_input_ids": rng.integers(5, config.vocab_size, (batch, 1), dtype=np.int64),
        "encoder_attention_mask": mask,
        "encoder_hidden_states": rng.standard_normal((batch, source, config.d_model), np.float32),
    }
    for i in range(config.decoder_layers):
        for kind, length in (("self", past), ("cross", source)):
            for kv in ("key", "value"):
                shape = (batch, heads, length, config.d_model // heads)
                feeds[f"past.{i}.{kind}.{kv}"] = rng.standard_normal(shape, np.float32)
    return feeds


def calls_per_s(call: Callable[[], object], seconds: float) -> float:
    call()
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds or count == 0:
        call()
        count += 1
    return count / elapsed


def rotated_medians(calls: Mapping[str, Callable[[], object]], rounds: int,
                    seconds: float) -> dict[str, float]:  # fmt: skip
    """calls/s of each, round by round with the order rotated, medians; then each over the
    first (ONNX Runtime)."""
    names = list(calls)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            rates[name].append(calls_per_s(calls[name], seconds))
    medians = {name: statistics.median(r) for name, r in rates.items()}
    first = medians[names[0]]
    return medians | {f"{name}_over_{names[0]}": medians[name] / first for name in names[1:]}


def padded_batch(model_dir: Path, rows: int, source_tokens: int) -> dict[str, Any]:
    """`rows` sentences from a quarter of source_tokens up to about source_tokens, padded."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    words = np.linspace(max(2, source_tokens // 4), max(2, source_tokens - 4), rows)
    texts = [sentences(1, int(w), seed=i)[0] for i, w in enumerate(words)]
    batch: dict[str, Any] = tokenizer(texts, padding=True, truncation=True,
                                      max_length=source_tokens, return_tensors="pt")  # fmt: skip
    return {key: batch[key] for key in ("input_ids", "attention_mask")}


def score_diff(reference: Any, other: Any, steps: int) -> float:
    """The largest |score difference| over the first `steps` steps (a token both sides banned,
    -inf on both, counts as equal)."""
    import torch

    pairs = zip(reference.scores[:steps], other.scores[:steps], strict=True)
    return max((torch.where(r == o, 0.0, (r - o).abs()).max().item() for r, o in pairs),
               default=0.0)  # fmt: skip


def compare(reference: Any, other: Any) -> dict[str, Any]:
    """Rows whose tokens equal the reference's; per row the first new token that differs
    (None: none); the largest score difference while every row still agreed."""
    ref, got = reference.sequences.numpy(), other.sequences.numpy()
    first: list[int | None] = []
    for a, b in zip(ref, got, strict=True):
        diff = np.flatnonzero(a[1:] != b[1:]) if a.shape == b.shape else np.array([0])
        first.append(int(diff[0]) if diff.size else None)
    agreed = min((f for f in first if f is not None), default=len(reference.scores))
    return {"rows_identical": sum(f is None for f in first), "rows": len(first),
            "first_difference": first,
            "max_score_diff": score_diff(reference, other, agreed + 1)}  # fmt: skip


def how_decided(reference: Any) -> dict[str, Any]:
    """How much room PyTorch's own choices leave: distinct new tokens, and the smallest gap
    between the best and the second-best score at any step (a difference below it cannot
    change a greedy token)."""
    import torch

    scores = torch.stack(reference.scores).nan_to_num(neginf=-1e30)
    best = scores.topk(2, dim=-1).values
    return {"distinct_new_tokens": int(reference.sequences[:, 1:].unique().numel()),
            "min_top2_margin": float((best[..., 0] - best[..., 1]).min())}  # fmt: skip


# Greedy decoding as served, and greedy with every generated token banned from repeating:
# a random-weight model repeats one token, and banning it walks down to closer scores.
CHECKS: dict[str, dict[str, Any]] = {"greedy": {},
                                     "greedy_no_repeat": {"no_repeat_ngram_size": 1}}  # fmt: skip


def generation(onnx_dir: Path, runs: dict[str, dict[str, Run]], args: argparse.Namespace,
               threads: int) -> dict[str, Any]:  # fmt: skip
    """Greedy generate() on each engine's runners against PyTorch's: tokens, then speed."""
    import torch
    from transformers import AutoModelForSeq2SeqLM

    from app.runtimes.onnx_seq2seq import ExportedSeq2Seq, decoder_layers

    torch.set_num_threads(threads)
    model_dir = marian_sized_seq2seq_dir()
    batch = padded_batch(model_dir, args.batch, args.source_tokens)
    kwargs = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens,
              "num_beams": 1, "do_sample": False}  # fmt: skip
    layers = decoder_layers(onnx_dir)
    generators: dict[str, Any] = {"torch": AutoModelForSeq2SeqLM.from_pretrained(str(model_dir))}
    generators["torch"].eval()
    for engine, graphs in runs.items():
        generators[engine] = ExportedSeq2Seq(onnx_dir, graphs, layers)

    def generate(name: str, **extra: Any) -> Any:
        with torch.inference_mode():
            return generators[name].generate(**batch, **kwargs, **extra)

    checks: dict[str, dict[str, Any]] = {}
    for check, extra in CHECKS.items():
        scored = {"output_scores": True, "return_dict_in_generate": True, **extra}
        reference = generate("torch", **scored)
        checks[check] = {"torch": how_decided(reference)} | {
            engine: compare(reference, generate(engine, **scored)) for engine in runs
        }
    speed = rotated_medians({engine: partial(generate, engine) for engine in runs},
                            args.rounds, args.seconds)  # fmt: skip
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    return {"rows": args.batch, "source_tokens": lengths, "new_tokens": args.new_tokens,
            "identical_to_torch": checks, "generate_calls_per_s": speed}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="per engine per round")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--source-tokens", type=int, default=80)
    parser.add_argument("--past", type=int, default=16, help="tokens already generated")
    parser.add_argument("--new-tokens", type=int, default=16, help="generated by generate()")
    args = parser.parse_args()
    import onnxruntime
    import openvino
    import transformers
    from transformers import AutoConfig

    started = time.perf_counter()
    threads = int(os.environ.get("NLP_SERVE_TORCH_THREADS") or os.cpu_count() or 1)
    onnx_dir, files = project_export()
    runs, compiles, precisions = compile_all(onnx_dir, files, threads)
    for role, status in compiles.items():
        print(f"OpenVINO, {role}: {status}")
    print(f"OpenVINO's precision: {precisions}", flush=True)
    config = AutoConfig.from_pretrained(str(onnx_dir))
    graphs: dict[str, dict[str, float]] = {}
    for role in TIMED_GRAPHS:
        feeds = graph_feeds(role, config, args.batch, args.source_tokens, args.past)
        calls = {engine: partial(graphs_of[role], feeds) for engine, graphs_of in runs.items()}
        graphs[role] = rotated_medians(calls, args.rounds, args.seconds)
        print(f"{role:>12}: " + ", ".join(f"{k} {v:.2f}" for k, v in graphs[role].items()),
              flush=True)  # fmt: skip
    generated = generation(onnx_dir, runs, args, threads)
    for check, results in generated["identical_to_torch"].items():
        torch_side = results["torch"]
        print(f"generate() {check}: PyTorch made {torch_side['distinct_new_tokens']} distinct "
              f"tokens, smallest top-2 score gap {torch_side['min_top2_margin']:.2e}")  # fmt: skip
        for engine in runs:
            same = results[engine]
            print(f"  {engine}: {same['rows_identical']}/{same['rows']} rows token-identical "
                  f"(first differing token per row {same['first_difference']}), max score "
                  f"diff {same['max_score_diff']:.2e}")  # fmt: skip
    print("generate() calls/s: " + ", ".join(
        f"{k} {v:.2f}" for k, v in generated["generate_calls_per_s"].items()))  # fmt: skip
    elapsed = time.perf_counter() - started
    versions = {"openvino": openvino.__version__, "onnxruntime": onnxruntime.__version__,
                "transformers": transformers.__version__}  # fmt: skip
    path = save("openvino-seq2seq", {
        "machine": machine(), "args": vars(args), "threads": threads, "versions": versions,
        "onnx_dir": str(onnx_dir), "openvino_compiles": compiles,
        "openvino_precision": precisions, "graph_calls_per_s": graphs,
        "generation": generated, "seconds": round(elapsed, 1),
    })  # fmt: skip
    print(f"saved {path} ({elapsed:.0f} s)")


if __name__ == "__main__":
    main()
