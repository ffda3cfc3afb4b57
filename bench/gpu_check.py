"""The GPU check: nlp-serve's own CUDA paths on a MiniLM-sized classifier, as one table.

Each engine path is loaded the way a catalog entry is (app.registry.model.load_model: the
tokenizer, the sentiment task, TorchBackend or OnnxBackend) and run through
ServedModel.forward_rows, the call the batcher makes:

- torch cpu fp32, the reference;
- torch cuda fp32 / fp16 / bf16: max |logit - reference| on 32 inputs (each precision within
  a sanity bound: a broken path, not a rounding error, fails it), how many of the 32 labels
  agree, and the median forward time at batch 1, 8 and 32;
- onnx cuda fp32 (IO binding), when onnxruntime has the CUDA provider; otherwise the row
  says why it was not checked;
- the batcher (app.batching.batcher.Batcher) in front of one model under 32 concurrent
  clients: requests/s and the mean batch size it formed (nlp_serve_batch_size).

`--cpu` runs the CPU rows only (reference and batcher), so the plumbing runs anywhere;
tests/integration/test_gpu_check.py does that. scripts/gpu-check.sh decides whether there is a
GPU to check and runs this module with the chosen interpreter.

The model is built here from a BertConfig of all-MiniLM-L6-v2's size (6 layers x 384) with
seeded random weights, and a WordPiece vocabulary of bench.common's words: no model package,
no network, and the same code under transformers 4.57 and 5.x. Speed does not depend on the
weights' values; with random weights two labels' logits are often close, so label agreement
is reported, and only the logit bound decides.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import string
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import REGISTRY

from app.batching.base import WorkLimits
from app.batching.batcher import Batcher, WorkerPools
from app.pipeline import ServedModel
from app.registry.model import load_model
from app.settings import Settings
from app.spec import ModelSpec
from app.tasks.base import Row
from app.tasks.classification import SentimentParams
from bench.common import WORDS, sentences

LABELS = ("NEGATIVE", "POSITIVE")
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# all-MiniLM-L6-v2's shape (its vocabulary size too: the embedding table is as large);
# "tiny" keeps the test fast on two shared cores.
SIZES: dict[str, dict[str, Any]] = {
    "minilm": {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
               "intermediate_size": 1536, "vocab_size": 30522},
    "tiny": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64, "vocab_size": 1024},
}  # fmt: skip
BATCHES = (1, 8, 32)
INPUTS = 32
# Largest max |logit - cpu fp32| each precision may show. Sanity bounds: a wrong path (bad
# padding, wrong dtype, garbage kernels) is off by far more; rounding is far below.
TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2, "bf16": 1e-1}
CONCURRENCY = 32
PARAMS = SentimentParams()


@dataclass
class Result:
    """One row of the table."""

    check: str
    status: str = "ok"  # ok | FAILED: why | not checked (why)
    max_diff: float | None = None
    agree: int | None = None
    ms: dict[int, float] = field(default_factory=dict)
    throughput: str = ""

    @property
    def failed(self) -> bool:
        return self.status.startswith("FAILED")


@dataclass(frozen=True)
class EnginePath:
    """An engine path: how a catalog entry would name it."""

    backend: str
    device: str
    precision: str

    @property
    def label(self) -> str:
        io = " (IO binding)" if self.backend == "onnx" and self.device == "cuda" else ""
        return f"{self.backend} {self.device} {self.precision}{io}"


REFERENCE = EnginePath("torch", "cpu", "fp32")
CUDA_PATHS = (
    EnginePath("torch", "cuda", "fp32"),
    EnginePath("torch", "cuda", "fp16"),
    EnginePath("torch", "cuda", "bf16"),
    EnginePath("onnx", "cuda", "fp32"),
)


# -- the model ---------------------------------------------------------------------------------


def vocabulary() -> list[str]:
    """Special tokens, the benchmark's words, and single characters (also as ## pieces) so
    any text tokenizes without [UNK]."""
    chars = string.ascii_lowercase + string.digits
    pieces = [*WORDS, *chars, *string.punctuation, *(f"##{c}" for c in chars)]
    return list(dict.fromkeys([*SPECIALS, *pieces]))


def build_tokenizer() -> Any:
    """A BERT-style WordPiece fast tokenizer (lowercasing, [CLS] x [SEP])."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(vocabulary())}
    core = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    core.normalizer = normalizers.BertNormalizer(lowercase=True)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=512,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )  # fmt: skip


def build_classifier(out: Path, size: str = "minilm") -> Path:
    """A 2-label BERT classifier of the given size with seeded random weights, saved with its
    tokenizer in `out` (what a catalog `source` points at)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        **SIZES[size],
        max_position_embeddings=512,
        id2label=dict(enumerate(LABELS)),
        label2id={label: index for index, label in enumerate(LABELS)},
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    build_tokenizer().save_pretrained(str(out))
    return out


# -- measuring one path ------------------------------------------------------------------------


def spec_for(path: EnginePath, source: Path) -> ModelSpec:
    name = f"gpu-check-{path.backend}-{path.device}-{path.precision}"
    return ModelSpec.model_validate(
        {"name": name, "task": "sentiment", "source": str(source), "backend": path.backend,
         "device": path.device, "precision": path.precision, "export": path.backend == "onnx"}
    )  # fmt: skip


def check_placement(model: ServedModel, path: EnginePath) -> None:
    """Fallbacks (CUDA missing, fp16 on CPU, no CUDA provider) are failures here."""
    device = model.backend.device
    if (device == "cpu") != (path.device == "cpu"):
        raise RuntimeError(f"asked for {path.device}, runs on {device} (fell back)")
    if model.backend.precision != path.precision:
        raise RuntimeError(f"asked for {path.precision}, runs in {model.backend.precision}")
    session = getattr(model.backend, "session", None)
    if session is not None and path.device == "cuda":
        providers = session.get_providers()
        if providers[0] != "CUDAExecutionProvider":
            raise RuntimeError(f"onnxruntime session providers {providers}")


def median_ms(run: Callable[[], object], warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def logits_of(model: ServedModel, rows: Sequence[Row]) -> npt.NDArray[np.float32]:
    outputs = model.forward_rows(rows, PARAMS).value
    return np.asarray(outputs["logits"], dtype=np.float32)


def measure_forward(model: ServedModel, rows: Sequence[Row], result: Result,
                    warmup: int, repeats: int) -> npt.NDArray[np.float32]:  # fmt: skip
    """Logits for all rows, and the median forward time at each batch size into result."""
    logits = logits_of(model, rows)
    for size in BATCHES:
        chunk = rows[:size]
        result.ms[size] = median_ms(partial(logits_of, model, chunk), warmup, repeats)
    result.throughput = f"{BATCHES[-1] * 1000 / result.ms[BATCHES[-1]]:,.0f} items/s"
    return logits


def compare(result: Result, logits: npt.NDArray[np.float32],
            reference: npt.NDArray[np.float32], precision: str) -> None:  # fmt: skip
    if not np.isfinite(logits).all():
        result.status = "FAILED: NaN or infinite logits"
        return
    result.max_diff = float(np.abs(logits - reference).max())
    result.agree = int((logits.argmax(-1) == reference.argmax(-1)).sum())
    bound = TOLERANCE[precision]
    if result.max_diff > bound:
        result.status = f"FAILED: max |logit diff| {result.max_diff:.2e} > {bound:.0e}"


def run_path(path: EnginePath, source: Path, settings: Settings, texts: Sequence[str],
             reference: npt.NDArray[np.float32] | None, args: argparse.Namespace,
             ) -> tuple[Result, npt.NDArray[np.float32] | None]:  # fmt: skip
    result = Result(path.label + (" (reference)" if path == REFERENCE else ""))
    try:
        model = load_model(spec_for(path, source), settings)
    except Exception as exc:
        result.status = f"FAILED: {type(exc).__name__}: {exc}"[:300]
        return result, None
    try:
        check_placement(model, path)
        rows = [model.encode(text, PARAMS).rows[0] for text in texts]
        logits = measure_forward(model, rows, result, args.warmup, args.repeats)
        if reference is not None:
            compare(result, logits, reference, path.precision)
        elif path != REFERENCE:
            result.status = "FAILED: no cpu fp32 reference to compare with"
        return result, logits
    except Exception as exc:
        result.status = f"FAILED: {type(exc).__name__}: {exc}"[:300]
        return result, None
    finally:
        model.close()


def onnx_cuda_missing() -> str | None:
    """Why the ONNX Runtime CUDA path cannot be checked here, or None when it can."""
    try:
        import onnxruntime
    except ImportError:
        return "not checked (onnxruntime not installed)"
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return "not checked (no CUDA provider in this onnxruntime)"
    return None


# -- the batcher -------------------------------------------------------------------------------


def batch_totals(model: str) -> tuple[float, float]:
    """(items, batches) the batcher has run for `model`, from nlp_serve_batch_size."""
    labels = {"model": model}
    total = REGISTRY.get_sample_value("nlp_serve_batch_size_sum", labels) or 0.0
    count = REGISTRY.get_sample_value("nlp_serve_batch_size_count", labels) or 0.0
    return total, count


async def drive(batcher: Batcher, texts: Sequence[str], requests: int) -> float:
    """CONCURRENCY clients, each sending one-input requests back to back; seconds taken."""

    async def client(first: int) -> None:
        for index in range(first, requests, CONCURRENCY):
            await batcher.submit([texts[index % len(texts)]], PARAMS)

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(CONCURRENCY)))
    return time.perf_counter() - started


async def batcher_rate(model: ServedModel, settings: Settings, texts: Sequence[str],
                       requests: int) -> tuple[float, float]:  # fmt: skip
    """(requests/s, mean batch size) of the batcher in front of `model`."""
    pools = WorkerPools.create(settings.tokenize_threads)
    thread = ThreadPoolExecutor(1, thread_name_prefix=f"model-{model.name}")
    limits = WorkLimits(
        max_rows_per_item=settings.max_rows_per_item,
        max_tokens_per_request=settings.max_tokens_per_request,
        inline_tokenize_max_chars=settings.inline_tokenize_max_chars,
    )
    batcher = Batcher(model, pools, settings.request_timeout_ms / 1000, thread, limits=limits,
                      postprocess_threads=settings.postprocess_threads)  # fmt: skip
    try:
        await drive(batcher, texts, CONCURRENCY)  # warm: the first batches pay one-off costs
        items, batches = batch_totals(model.name)
        seconds = await drive(batcher, texts, requests)
        items_after, batches_after = batch_totals(model.name)
    finally:
        await batcher.close()
        thread.shutdown(wait=True)
        pools.shutdown()
    mean_batch = (items_after - items) / max(batches_after - batches, 1.0)
    return requests / seconds, mean_batch


def run_batcher(path: EnginePath, source: Path, settings: Settings, texts: Sequence[str],
                requests: int) -> Result:  # fmt: skip
    result = Result(f"batcher, {path.label}, {CONCURRENCY} concurrent")
    try:
        model = load_model(spec_for(path, source), settings)
    except Exception as exc:
        result.status = f"FAILED: {type(exc).__name__}: {exc}"[:300]
        return result
    try:
        check_placement(model, path)
        model.warm_up()
        rate, mean_batch = asyncio.run(batcher_rate(model, settings, texts, requests))
        result.throughput = f"{rate:,.0f} req/s, mean batch {mean_batch:.1f}"
        if mean_batch <= 1.0:
            result.status = "FAILED: the batcher never formed a batch above 1"
    except Exception as exc:
        result.status = f"FAILED: {type(exc).__name__}: {exc}"[:300]
    finally:
        model.close()
    return result


# -- the table ---------------------------------------------------------------------------------


def cells(result: Result) -> list[str]:
    diff = "-" if result.max_diff is None else f"{result.max_diff:.2e}"
    agree = "-" if result.agree is None else f"{result.agree}/{INPUTS}"
    times = [f"{result.ms[size]:.2f}" if size in result.ms else "-" for size in BATCHES]
    return [result.check, diff, agree, *times, result.throughput or "-", result.status]


def table(results: Sequence[Result]) -> str:
    header = ["check", "max |logit diff|", "labels agree", *(f"b{s} ms" for s in BATCHES),
              "throughput", "result"]  # fmt: skip
    rows = [header, *(cells(r) for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for row in rows:
        padded = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*padded, row[-1]]))
    lines.insert(1, "  ".join("-" * width for width in [*widths, len(header[-1])]))
    return "\n".join(lines)


def describe(args: argparse.Namespace) -> str:
    import torch
    import transformers

    where = "CPU only (--cpu)" if args.cpu else torch.cuda.get_device_name(0)
    shape = SIZES[args.model_size]
    return (
        f"gpu-check on {where}: python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}\n"
        f"model: {args.model_size} classifier ({shape['num_hidden_layers']} layers x "
        f"{shape['hidden_size']}, random weights), {INPUTS} inputs of {args.words} words; "
        f"forward = median of {args.repeats} after {args.warmup} warm-up; batcher: "
        f"{args.requests} one-input requests from {CONCURRENCY} concurrent clients"
    )


def run_checks(args: argparse.Namespace, source: Path, settings: Settings) -> list[Result]:
    texts = sentences(INPUTS, words=args.words)
    reference_result, reference = run_path(REFERENCE, source, settings, texts, None, args)
    results = [reference_result]
    if not args.cpu:
        for path in CUDA_PATHS:
            missing = onnx_cuda_missing() if path.backend == "onnx" else None
            if missing is not None:
                results.append(Result(path.label, status=missing))
                continue
            results.append(run_path(path, source, settings, texts, reference, args)[0])
    served = REFERENCE if args.cpu else EnginePath("torch", "cuda", "fp16")
    results.append(run_batcher(served, source, settings, texts, args.requests))
    return results


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="python -m bench.gpu_check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    main.add_argument("--cpu", action="store_true", help="the CPU rows only (no GPU needed)")
    main.add_argument("--model-size", choices=sorted(SIZES), default="minilm")
    main.add_argument("--repeats", type=int, default=20, help="timed forwards per batch size")
    main.add_argument("--warmup", type=int, default=3, help="untimed forwards first")
    main.add_argument("--requests", type=int, default=512, help="batcher requests, all told")
    main.add_argument("--words", type=int, default=20, help="words per input")
    main.add_argument("--workdir", help="where the model is built (default: a temp dir)")
    return main


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # transformers 5 draws one per load and save
    if not args.cpu:
        import torch

        if not torch.cuda.is_available():
            print("gpu-check: this torch sees no CUDA device; nothing to check (--cpu runs "
                  "the CPU rows)")  # fmt: skip
            return 0
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        source = build_classifier(work / f"{args.model_size}-classifier", args.model_size)
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            onnx_cache_dir=work / "onnx",
            openvino_cache_dir=work / "openvino",
            auto_cache_dir=work / "auto",
        )
        results = run_checks(args, source, settings)
    print(describe(args))
    print(table(results))
    failed = [r.check for r in results if r.failed]
    print(f"gpu-check: {'FAILED ' + ', '.join(failed) if failed else 'all checked paths ok'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
