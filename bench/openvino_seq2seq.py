"""Would seq2seq generation be faster on OpenVINO? Encoder and decoder-step graphs of the
Marian-sized model, run by ONNX Runtime and by OpenVINO (fp32, read from the same ONNX
files), in-process, NLP_SERVE_TORCH_THREADS threads (default: all cores).

Generation is one encoder pass and then one decoder step per output token, so the decoder
step at a realistic past length and batch is what decides. Rounds alternate between engines
and each figure is the median. Issue 16 asked for this answer either way.

The project's own export merges the two decoders into one graph with an If node; OpenVINO's
CPU plugin refuses that graph (an If whose outputs have dynamic rank), and the script records
the refusal. So both engines here run optimum's unmerged decoder-with-past graph, exported
once into bench/.cache.

    .venv/bin/python -m bench.openvino_seq2seq --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import CACHE, machine, marian_sized_seq2seq_dir, save

Feeds = dict[str, np.ndarray]


def project_export() -> Path:
    """The ONNX export nlp-serve itself makes (`export: true`), merged decoder included."""
    from app.runtimes.base import Head
    from app.runtimes.onnx import exported_dir
    from app.settings import Settings
    from app.spec import ModelSpec

    source = marian_sized_seq2seq_dir()
    spec = ModelSpec.model_validate(
        {"name": "gen", "task": "summarize", "source": str(source), "backend": "onnx",
         "export": True, "device": "cpu"}
    )  # fmt: skip
    settings = Settings(_env_file=None, onnx_cache_dir=CACHE / "onnx")  # type: ignore[call-arg]
    return exported_dir(spec, source, Head.SEQ2SEQ_LM, settings)


def unmerged_export() -> Path:
    """optimum's export with separate decoder graphs (no post-processing merge)."""
    out = CACHE / "marian-sized-seq2seq-onnx-unmerged"
    if not (out / "decoder_with_past_model.onnx").is_file():
        from optimum.exporters.onnx import main_export

        main_export(str(marian_sized_seq2seq_dir()), output=str(out), device="cpu",
                    task="text2text-generation-with-past", library_name="transformers",
                    no_post_process=True)  # fmt: skip
    return out


def merged_decoder_on_openvino(onnx_dir: Path, threads: int) -> str:
    """Whether OpenVINO compiles the project's merged decoder; the refusal if not."""
    try:
        openvino_runner(onnx_dir / "decoder_model_merged.onnx", threads)
    except Exception as exc:  # the refusal is the finding: record it
        return f"refused: {str(exc).strip().splitlines()[-1]}"
    return "compiles"


def feeds_for(inputs: list[Any], sizes: dict[str, int], config: Any) -> Feeds:
    """Inputs of one call: random hidden states / past, ids in the vocabulary, full masks."""
    rng = np.random.default_rng(0)
    feeds: Feeds = {}
    for port in inputs:
        name = port.name
        shape = [dim if isinstance(dim, int) else sizes[dim] for dim in port.shape]
        if "mask" in name:
            feeds[name] = np.ones(shape, dtype=np.int64)
        elif "ids" in name:
            feeds[name] = rng.integers(5, config.vocab_size, shape, dtype=np.int64)
        else:
            feeds[name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def ort_runner(path: Path, threads: int) -> tuple[Callable[[Feeds], Any], list[Any]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return (lambda feeds: session.run(None, feeds)), session.get_inputs()


def openvino_runner(path: Path, threads: int) -> Callable[[Feeds], Any]:
    import openvino as ov

    properties = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32",
                  "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}  # fmt: skip
    request = ov.Core().compile_model(str(path), "CPU", properties).create_infer_request()
    return lambda feeds: request.infer(feeds, share_inputs=True, share_outputs=False)


def calls_per_s(run: Callable[[Feeds], Any], feeds: Feeds, seconds: float) -> float:
    run(feeds)
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        run(feeds)
        count += 1
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="per engine per round")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--source-tokens", type=int, default=80)
    parser.add_argument("--past", type=int, default=16, help="tokens already generated")
    args = parser.parse_args()
    from transformers import AutoConfig

    threads = int(os.environ.get("NLP_SERVE_TORCH_THREADS") or os.cpu_count() or 1)
    merged = merged_decoder_on_openvino(project_export(), threads)
    print(f"the project's merged decoder on OpenVINO: {merged}")
    onnx_dir = unmerged_export()
    config = AutoConfig.from_pretrained(str(marian_sized_seq2seq_dir()))
    sizes = {"batch_size": args.batch, "encoder_sequence_length": args.source_tokens,
             "past_decoder_sequence_length": args.past, "decoder_sequence_length": 1}  # fmt: skip
    graphs = {"encoder": onnx_dir / "encoder_model.onnx",
              "decoder step": onnx_dir / "decoder_with_past_model.onnx"}  # fmt: skip
    results: dict[str, dict[str, float]] = {}
    for graph, path in graphs.items():
        ort_run, inputs = ort_runner(path, threads)
        feeds = feeds_for(inputs, sizes, config)
        engines = {"onnxruntime": ort_run, "openvino": openvino_runner(path, threads)}
        rates: dict[str, list[float]] = {name: [] for name in engines}
        for round_index in range(args.rounds):
            order = list(engines) if round_index % 2 == 0 else list(engines)[::-1]
            for name in order:
                rates[name].append(calls_per_s(engines[name], feeds, args.seconds))
        results[graph] = {name: statistics.median(r) for name, r in rates.items()}
        ratio = results[graph]["openvino"] / results[graph]["onnxruntime"]
        results[graph]["openvino_over_onnxruntime"] = ratio
        ort_rate, ov_rate = results[graph]["onnxruntime"], results[graph]["openvino"]
        print(f"{graph:>12}: ONNX Runtime {ort_rate:7.1f} calls/s, OpenVINO {ov_rate:7.1f} "
              f"calls/s -> {ratio:.2f}x", flush=True)  # fmt: skip
    path = save("openvino-seq2seq", {"machine": machine(), "args": vars(args),
                                     "threads": threads, "merged_decoder": merged,
                                     "results": results})  # fmt: skip
    print(f"saved {path}")


if __name__ == "__main__":
    main()
