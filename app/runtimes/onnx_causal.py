"""Causal LMs (GPT-2, the Llama family) on an exported graph: the export, and decode steps.

One graph from torch.onnx's dynamo exporter, the model's forward with a key/value cache:

    model: input_ids [rows, tokens], attention_mask [rows, past + tokens],
           position_ids [rows, tokens], past.{i}.key, past.{i}.value [rows, kv heads, past, dim]
           -> logits [rows, vocab] (each row's last token only), present.{i}.key,
              present.{i}.value [rows, kv heads, past + tokens, dim]

The graph is traced with transformers' eager attention: its matmul against the transposed
keys is one fused MatMul in ONNX Runtime, where the dynamo exporter's decomposition of SDPA
copies the whole cache twice per step (a transpose and a scale): measured on a 6-layer,
384-wide GPT-2 at 32 rows and 200 cached tokens, 16 ms a step against 23-41 ms (2 cores).
A sequence's first prefill chunk feeds a past zero columns wide: ONNX Runtime and OpenVINO
both run the same graph on it (checked at export), so there is no separate first-step graph as
seq2seq has. The continuous batcher drives the graph through `CausalGraph` (numpy in, numpy
out), not transformers' generate(): serving an export imports no torch.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.errors import ModelLoadError
from app.runtimes.base import StepInputs
from app.runtimes.kv import KVCache, NumpyKV

logger = logging.getLogger(__name__)

STEP_INPUTS = ("input_ids", "attention_mask", "position_ids")
# A graph runner: feeds by input name in, outputs in graph order out.
Run = Callable[[dict[str, np.ndarray]], list[np.ndarray]]
Logits = npt.NDArray[np.float32]
# Logits within this of PyTorch's (relative to the largest logit) on the export's probe.
PARITY_TOLERANCE = 1e-3
# Past this many bytes of weights the graph keeps them in `model.onnx.data` beside it: one
# protobuf holds at most 2 GiB (Qwen2.5-0.5B's fp32 weights are 1.98 GB, 1.5B's 6 GB).
EXTERNAL_DATA_BYTES = 1 << 30


def past_names(layers: int, prefix: str = "past") -> list[str]:
    """keys 0, values 0, keys 1, ...: KVCache.flat()'s order."""
    return [f"{prefix}.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]


def output_names(layers: int) -> list[str]:
    return ["logits", *past_names(layers, "present")]


@dataclass(frozen=True)
class PastShape:
    """One past input's fixed sizes (heads, head dim), read from the graph."""

    name: str
    heads: int
    head_dim: int


class CausalGraph:
    """Backend.decode_step over the exported graph, run by any engine's `Run`."""

    def __init__(self, run: Run, past: list[PastShape]) -> None:
        self._run = run
        self._past = past

    @property
    def past(self) -> list[PastShape]:
        return list(self._past)

    def step(self, step: StepInputs, cache: KVCache | None) -> tuple[Logits, NumpyKV]:
        feeds = {name: np.ascontiguousarray(getattr(step, name)) for name in STEP_INPUTS}
        rows = step.input_ids.shape[0]
        if cache is None:
            arrays = [np.zeros((rows, p.heads, 0, p.head_dim), np.float32) for p in self._past]
        else:
            arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in cache.flat()]
        feeds.update({p.name: array for p, array in zip(self._past, arrays, strict=True)})
        logits, *present = self._run(feeds)
        return np.asarray(logits, dtype=np.float32), NumpyKV.from_flat(present)


def past_shapes(inputs: Sequence[tuple[str, Sequence[Any]]], where: Path) -> list[PastShape]:
    """The graph's past inputs in flat order, from (name, shape) pairs; refuses a graph that is
    not a causal-LM export (the engines spell dynamic sizes differently: only ints are kept)."""
    shapes = dict(inputs)
    layers = sum(1 for name in shapes if name.startswith("past.")) // 2
    past = []
    for name in past_names(layers):
        shape = shapes.get(name)
        if shape is None or len(shape) != 4 or not all(isinstance(shape[i], int) for i in (1, 3)):
            raise ModelLoadError(
                f"{where} is not a causal-LM export (input {name!r}: {shape}); export it again"
            )
        past.append(PastShape(name, int(shape[1]), int(shape[3])))
    missing = [name for name in STEP_INPUTS if name not in shapes]
    if missing or not past:
        raise ModelLoadError(f"{where} is not a causal-LM export (inputs {sorted(shapes)})")
    return past


# -- export ------------------------------------------------------------------------------


def _cache_argument(model: Any) -> str:
    from app.runtimes.torch import cache_argument

    return cache_argument(model.forward)


def _step_module(model: Any, layers: int) -> Any:
    """The model's forward over flat past tensors: what the graph is, and (run eagerly) the
    PyTorch reference it is checked against, as TorchBackend.decode_step runs it."""
    import torch
    from transformers.cache_utils import DynamicCache

    argument = _cache_argument(model)

    class Step(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            position_ids: torch.Tensor,
            *past: torch.Tensor,
        ) -> tuple[torch.Tensor, ...]:
            pairs = [(past[2 * i], past[2 * i + 1]) for i in range(layers)]
            out = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=True,
                logits_to_keep=1,
                **{argument: DynamicCache(ddp_cache_data=pairs)},
            )
            present = _present(out, argument)
            flat = [t for layer in present.layers for t in (layer.keys, layer.values)]
            return (out.logits[:, -1, :], *flat)

    return Step().eval()


def _present(output: Any, argument: str) -> Any:
    present = output.get(argument)
    return present if present is not None else output[1]


def _torch_run(module: Any, layers: int) -> Run:
    import torch

    names = [*STEP_INPUTS, *past_names(layers)]

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with torch.inference_mode():
            out = module(*(torch.from_numpy(feeds[n]) for n in names))
        return [t.float().numpy() for t in out]

    return run


def _example(model: Any, layers: int) -> tuple[Any, ...]:
    """Two rows, five new tokens after three cached ones, the second row left-padded by two;
    the cache's sizes come from running the model (any attention layout)."""
    import torch

    rows, tokens, width = 2, 5, 3
    generator = torch.Generator().manual_seed(0)
    vocab = int(model.config.vocab_size)
    ids = torch.randint(5, vocab, (rows, tokens), generator=generator)
    with torch.no_grad():
        prefix = _step_module(model, layers)(
            torch.randint(5, vocab, (rows, width), generator=generator),
            torch.ones(rows, width, dtype=torch.int64),
            torch.arange(width).expand(rows, width).clone(),
            *_empty_past(model, rows),
        )
    past = [t.clone() for t in prefix[1:]]
    mask = torch.ones(rows, width + tokens, dtype=torch.int64)
    mask[1, :2] = 0
    positions = torch.stack([torch.arange(width, width + tokens), torch.arange(1, 1 + tokens)])
    return (ids, mask, positions, *past)


def _empty_past(model: Any, rows: int) -> list[Any]:
    """Zero-width keys and values of the sizes the model's own cache has."""
    import torch

    argument = _cache_argument(model)
    with torch.no_grad():  # the model's own kind of cache: refused below unless keys/values
        out = model(input_ids=torch.ones(rows, 1, dtype=torch.int64), use_cache=True)
    present = _present(out, argument)
    layers_of = getattr(present, "layers", None)
    if not layers_of or not all(
        isinstance(getattr(layer, "keys", None), torch.Tensor) for layer in layers_of
    ):
        raise TypeError(f"its cache is a {type(present).__name__}, not per-layer keys and values")
    return [t[:, :, :0].clone() for layer in layers_of for t in (layer.keys, layer.values)]


def _weight_bytes(model: Any) -> int:
    return sum(int(p.numel() * p.element_size()) for p in model.parameters())


@contextlib.contextmanager
def _attention(model: Any, implementation: str) -> Iterator[None]:
    """The model with another attention implementation, then the one it had (the one the
    PyTorch backend serves, which the graph is checked against)."""
    served = model.config._attn_implementation
    model.set_attn_implementation(implementation)
    try:
        yield
    finally:
        model.set_attn_implementation(served)


def export_causal_lm(model_dir: Path, path: Path) -> str:
    """Write the graph to `path` and check it against PyTorch; returns the exporter."""
    import onnxruntime as ort
    import torch
    from torch.export import Dim
    from transformers import AutoConfig, AutoModelForCausalLM

    from app.runtimes.onnx_seq2seq import _quiet_exporter
    from app.runtimes.onnx_trace import DYNAMO_OPSET

    model_type = AutoConfig.from_pretrained(str(model_dir)).model_type
    model: Any = AutoModelForCausalLM.from_pretrained(str(model_dir))
    model.eval()
    layers = int(model.config.num_hidden_layers)
    batch, sequence, past = Dim("batch"), Dim("sequence"), Dim("past_sequence")
    cache_axes = tuple({0: batch, 2: past} for _ in range(2 * layers))
    shapes = ({0: batch, 1: sequence}, {0: batch, 1: Dim("total_sequence")},
              {0: batch, 1: sequence}, cache_axes)  # fmt: skip
    try:
        example = _example(model, layers)
        with torch.no_grad(), _quiet_exporter(), _attention(model, "eager"):
            # torch.export's own pytree deprecation, said once per export
            warnings.filterwarnings("ignore", message=".*LeafSpec", category=FutureWarning)
            torch.onnx.export(
                _step_module(model, layers),
                example,
                str(path),
                input_names=[*STEP_INPUTS, *past_names(layers)],
                output_names=output_names(layers),
                dynamic_shapes=shapes,
                opset_version=DYNAMO_OPSET,
                dynamo=True,
                external_data=_weight_bytes(model) > EXTERNAL_DATA_BYTES,
                verbose=False,
            )
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        graph = CausalGraph(
            lambda feeds: list(session.run(None, feeds)),
            past_shapes([(i.name, i.shape) for i in session.get_inputs()], path),
        )
        reference = CausalGraph(_torch_run(_step_module(model, layers), layers), graph.past)
        worst = check_decoding(reference, graph, int(model.config.vocab_size))
    except Exception as exc:
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".data").unlink(missing_ok=True)
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ModelLoadError(
            f"{model_dir} is a {model_type!r} causal LM, which the ONNX export cannot run "
            f"with a key/value cache ({type(exc).__name__}: {first}): serve it with backend "
            "torch"
        ) from exc
    logger.info("%s: causal-LM export within %.2g of PyTorch", model_dir, worst)
    return "dynamo"


# -- parity ------------------------------------------------------------------------------


def _difference(want: Logits, got: Logits) -> float:
    if want.shape != got.shape:
        raise ValueError(f"logits of shape {got.shape}, PyTorch {want.shape}")
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    return float(np.abs(want - got).max(initial=0.0)) / scale


def _prefill(
    reference: CausalGraph, graph: CausalGraph, prompt: np.ndarray, chunks: int
) -> tuple[list[tuple[Logits, Logits]], KVCache, KVCache]:
    """Both runs over one prompt in `chunks` chunks: each chunk's logits, then both caches."""
    pairs: list[tuple[Logits, Logits]] = []
    want_cache: KVCache | None = None
    got_cache: KVCache | None = None
    bounds = [int(b) for b in np.linspace(0, len(prompt), chunks + 1)]
    for start, stop in itertools.pairwise(bounds):
        chunk = StepInputs.prefill(prompt, start, stop)
        want, want_cache = reference.step(chunk, want_cache)
        got, got_cache = graph.step(chunk, got_cache)
        pairs.append((want, got))
    assert want_cache is not None
    assert got_cache is not None
    return pairs, want_cache, got_cache


def decoding_script(
    reference: CausalGraph, graph: CausalGraph, vocab: int, steps: int = 3
) -> list[tuple[Logits, Logits]]:
    """Both runs' logits through what the batcher does: two prompts of different lengths
    prefilled apart (the longer in two chunks), their caches joined into one left-padded
    batch, then `steps` greedy steps on the reference's tokens."""
    rng = np.random.default_rng(0)
    long, short = (rng.integers(5, vocab, size=n, dtype=np.int64) for n in (9, 4))
    pairs, want_cache, got_cache = _prefill(reference, graph, long, chunks=2)
    more, want_other, got_other = _prefill(reference, graph, short, chunks=1)
    last = [pairs[-1][0], more[-1][0]]
    pairs += more
    want_cache, got_cache = want_cache.extend(want_other), got_cache.extend(got_other)
    lengths = np.array([len(long), len(short)], dtype=np.int64)
    tokens = np.array([[row.argmax()] for row in last], dtype=np.int64)
    for _ in range(steps):
        width = want_cache.width
        mask = (np.arange(width + 1)[None] >= width - lengths[:, None]).astype(np.int64)
        step = StepInputs(tokens, mask, lengths[:, None])
        want, want_cache = reference.step(step, want_cache)
        got, got_cache = graph.step(step, got_cache)
        pairs.append((want, got))
        tokens, lengths = want.argmax(axis=1)[:, None].astype(np.int64), lengths + 1
    return pairs


def same_greedy_tokens(want: Logits, got: Logits, tolerance: float) -> bool:
    """Whether each row's greedy token agrees, but for near-ties: the graph's choice may
    differ where PyTorch's own logit for it is within `tolerance` (relative) of its best."""
    scale = np.maximum(1.0, np.abs(want).max(axis=1))
    chosen = np.take_along_axis(want, got.argmax(axis=1)[:, None], axis=1)[:, 0]
    return bool(np.all(want.max(axis=1) - chosen <= tolerance * scale))


def check_decoding(reference: CausalGraph, graph: CausalGraph, vocab: int) -> float:
    """The largest relative logit difference over decoding_script; raises past the tolerance
    or where a greedy token differs."""
    worst = 0.0
    for want, got in decoding_script(reference, graph, vocab):
        worst = max(worst, _difference(want, got))
        if worst > PARITY_TOLERANCE:
            raise ValueError(f"logits differ from PyTorch by {worst:.3g}")
        if not same_greedy_tokens(want, got, PARITY_TOLERANCE):
            raise ValueError("greedy tokens differ from PyTorch's")
    return worst
