"""Seq2seq generation on exported graphs: the export, and the model generate() drives.

No maintained exporter writes seq2seq graphs with a key/value cache for transformers 5 (optimum-
onnx stopped below 4.58; optimum-intel's stops below 5.6), so the export is the project's own:
three graphs from torch.onnx's dynamo exporter,

    encoder:       input_ids, attention_mask -> last_hidden_state
    decoder_init:  decoder_input_ids, encoder_attention_mask, encoder_hidden_states
                   -> logits, present.{i}.self.{key,value}, present.{i}.cross.{key,value}
    decoder_step:  the same + past.{i}.self.*, past.{i}.cross.* -> logits, present.{i}.self.*

and `ExportedSeq2Seq`, a transformers model whose forward() runs them, so transformers' own
generate() (greedy, beams, sampling, every logits processor, max_time) runs unchanged on any
engine that can run the graphs: generated tokens match PyTorch's.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModelForSeq2SeqLM,
    GenerationConfig,
    GenerationMixin,
    PreTrainedModel,
)
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput

from app.errors import ModelLoadError
from app.runtimes.base import GenerationRequest, ModelInputs, ModelOutputs
from app.runtimes.onnx_trace import DYNAMO_OPSET, check_parity
from app.spec import GenerationOptions

logger = logging.getLogger(__name__)

LAYOUT = "seq2seq.json"  # layer count beside the graphs
# What the export reads of a config: the BART family's names (T5 names them otherwise).
BART_LIKE = ("decoder_layers", "decoder_attention_heads", "d_model", "decoder_start_token_id")
# A graph runner: feeds by input name in, outputs in graph order out.
Run = Callable[[dict[str, np.ndarray]], list[np.ndarray]]


def _cache_argument(module: Any) -> str:
    """transformers renamed `past_key_values` to `cache` during 5.x."""
    params = inspect.signature(module.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _flat(cache: EncoderDecoderCache, layers: int, cross: bool) -> list[torch.Tensor]:
    """Self-attention keys and values, layer by layer, then (if `cross`) cross-attention's."""
    parts = [cache.self_attention_cache]
    if cross:
        parts.append(cache.cross_attention_cache)
    flat: list[torch.Tensor] = []
    for part in parts:
        for i in range(layers):
            layer: Any = part.layers[i]
            flat += [layer.keys, layer.values]
    return flat


def _names(layers: int, prefix: str, kinds: tuple[str, ...]) -> list[str]:
    """Graph input/output names in _flat's order."""
    return [
        f"{prefix}.{i}.{kind}.{kv}"
        for kind in kinds
        for i in range(layers)
        for kv in ("key", "value")
    ]


def _cache(own: list[torch.Tensor], cross: list[torch.Tensor], layers: int) -> EncoderDecoderCache:
    """An EncoderDecoderCache from _flat-ordered self and cross tensors."""
    return EncoderDecoderCache(
        [(own[2 * i], own[2 * i + 1], cross[2 * i], cross[2 * i + 1]) for i in range(layers)]
    )


class _Encoder(torch.nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.encoder = model.get_encoder()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        hidden: torch.Tensor = out.last_hidden_state
        return hidden


class _Decoder(torch.nn.Module):
    """One decoder step with the LM head; `with_past` takes the cache as inputs."""

    def __init__(self, model: Any, with_past: bool) -> None:
        super().__init__()
        self.decoder = model.get_decoder()
        self.lm_head = model.lm_head
        self.bias = getattr(model, "final_logits_bias", None)
        self.layers = model.config.decoder_layers
        self.with_past = with_past
        self.cache_argument = _cache_argument(self.decoder)

    def forward(
        self,
        decoder_input_ids: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        *past: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        n = self.layers
        if self.with_past:
            cache = _cache(list(past[: 2 * n]), list(past[2 * n :]), n)
        else:
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        out = self.decoder(
            input_ids=decoder_input_ids,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            use_cache=True,
            **{self.cache_argument: cache},
        )
        logits = self.lm_head(out.last_hidden_state)
        if self.bias is not None:
            logits = logits + self.bias
        present = getattr(out, self.cache_argument, None)
        if present is None:
            present = out[1]
        return (logits, *_flat(present, n, cross=not self.with_past))


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The dynamo exporter logs every graph pass at INFO, and warns that axes sharing a
    constraint share a name; keep the service's log readable."""
    loggers = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript", "torch.onnx")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*The axis name", category=UserWarning)
            yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


def export_seq2seq(model_dir: Path, out: Path, files: dict[str, str]) -> str:
    """Write the three graphs into `out` and check them against PyTorch; returns the exporter."""
    import onnxruntime as ort
    from torch.export import Dim

    config = AutoConfig.from_pretrained(str(model_dir))
    missing = [name for name in BART_LIKE if not hasattr(config, name)]
    if missing:
        raise ModelLoadError(
            f"{model_dir} is a {config.model_type!r} model; the seq2seq export knows the BART "
            f"family's decoder (bart, mbart, marian, pegasus, ...), and this config lacks "
            f"{missing}: serve it with backend torch"
        )
    model = AutoModelForSeq2SeqLM.from_pretrained(str(model_dir)).eval()
    layers, heads = config.decoder_layers, config.decoder_attention_heads
    head_dim = config.d_model // heads
    batch, source, past = Dim("batch"), Dim("encoder_sequence"), Dim("past_sequence")
    rows, length, past_length = 2, 7, 3
    rng = np.random.default_rng(0)
    ids = torch.from_numpy(rng.integers(5, config.vocab_size, (rows, length), dtype=np.int64))
    mask = torch.ones(rows, length, dtype=torch.int64)
    mask[1, -2:] = 0
    hidden = torch.randn(rows, length, config.d_model)
    start = torch.full((rows, 1), config.decoder_start_token_id, dtype=torch.int64)
    self_names = _names(layers, "past", ("self",))
    cross_names = _names(layers, "past", ("cross",))
    decoder_inputs = ["decoder_input_ids", "encoder_attention_mask", "encoder_hidden_states"]

    sequence_axes = {0: batch, 1: source}

    def export(module: Any, args: tuple[Any, ...], role: str, inputs: list[str],
               outputs: list[str], shapes: tuple[Any, ...]) -> None:  # fmt: skip
        torch.onnx.export(
            module.eval(),
            args,
            str(out / files[role]),
            input_names=inputs,
            output_names=outputs,
            dynamic_shapes=shapes,
            opset_version=DYNAMO_OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )

    cache = [torch.randn(rows, heads, past_length, head_dim) for _ in self_names]
    cache += [torch.randn(rows, heads, length, head_dim) for _ in cross_names]
    cache_axes = [{0: batch, 2: past}] * len(self_names) + [{0: batch, 2: source}] * len(
        cross_names
    )
    with torch.no_grad(), _quiet_exporter():
        export(_Encoder(model), (ids, mask), "encoder", ["input_ids", "attention_mask"],
               ["last_hidden_state"], (sequence_axes, sequence_axes))  # fmt: skip
        export(_Decoder(model, with_past=False), (start, mask, hidden), "decoder_init",
               decoder_inputs, ["logits", *_names(layers, "present", ("self", "cross"))],
               ({0: batch}, sequence_axes, sequence_axes))  # fmt: skip
        export(_Decoder(model, with_past=True), (start, mask, hidden, *cache), "decoder_step",
               [*decoder_inputs, *self_names, *cross_names],
               ["logits", *_names(layers, "present", ("self",))],
               ({0: batch}, sequence_axes, sequence_axes, tuple(cache_axes)))  # fmt: skip
    (out / LAYOUT).write_text(json.dumps({"decoder_layers": layers}))
    sessions = {
        role: ort.InferenceSession(str(out / name), providers=["CPUExecutionProvider"])
        for role, name in files.items()
    }
    exported = ExportedSeq2Seq(
        model_dir, {role: _ort_runner(s) for role, s in sessions.items()}, layers
    )
    _check_generation(model, exported, ids, mask)
    return "dynamo"


def _ort_runner(session: Any) -> Run:
    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return list(session.run(None, feeds))

    return run


def _check_generation(model: Any, exported: ExportedSeq2Seq, ids: Any, mask: Any) -> None:
    """The graphs' logits at each of a few greedy steps match PyTorch's."""
    kwargs = {"max_new_tokens": 4, "num_beams": 1, "do_sample": False,
              "output_scores": True, "return_dict_in_generate": True}  # fmt: skip
    batch = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}

    def scores(generator: Any) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
        def run(b: dict[str, np.ndarray]) -> list[np.ndarray]:
            with torch.inference_mode():
                out = generator.generate(
                    input_ids=torch.from_numpy(b["input_ids"]),
                    attention_mask=torch.from_numpy(b["attention_mask"]), **kwargs,
                )  # fmt: skip
            return [s.float().numpy() for s in out.scores]

        return run

    check_parity(scores(model), scores(exported), [batch], "seq2seq export")


class _GraphEncoder(torch.nn.Module):
    main_input_name = "input_ids"

    def __init__(self, run: Run) -> None:
        super().__init__()
        self.run = run

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any
    ) -> BaseModelOutput:
        feeds = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
        return BaseModelOutput(last_hidden_state=torch.from_numpy(self.run(feeds)[0]))


class ExportedSeq2Seq(PreTrainedModel, GenerationMixin):  # type: ignore[no-untyped-call]
    """A seq2seq LM whose forward() runs the exported graphs (by any engine's `Run`), so that
    transformers' generate() decodes exactly as it does for the PyTorch model."""

    main_input_name = "input_ids"

    def __init__(self, model_dir: Path, runs: dict[str, Run], layers: int) -> None:
        config = AutoConfig.from_pretrained(str(model_dir))
        super().__init__(config)
        try:
            self.generation_config = GenerationConfig.from_pretrained(str(model_dir))
        except OSError:  # no generation_config.json: the config's defaults
            self.generation_config = GenerationConfig.from_model_config(config)
        # generate() reads the device and dtype from the parameters
        self._anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)
        self.encoder = _GraphEncoder(runs["encoder"])
        self._init, self._step = runs["decoder_init"], runs["decoder_step"]
        self._layers = layers
        self._past_names = _names(layers, "past", ("self", "cross"))  # decoder_step's inputs
        fields = Seq2SeqLMOutput.__dataclass_fields__
        self._output_field = "cache" if "cache" in fields else "past_key_values"

    def get_encoder(self, *_: Any, **__: Any) -> Any:
        return self.encoder

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        encoder_outputs: Any = None,
        cache: EncoderDecoderCache | None = None,
        past_key_values: EncoderDecoderCache | None = None,
        **_: Any,
    ) -> Seq2SeqLMOutput:
        cache = cache if cache is not None else past_key_values
        if encoder_outputs is None:
            encoder_outputs = self.encoder(input_ids, attention_mask)
        if decoder_input_ids is None or attention_mask is None:
            raise ValueError("generation passes decoder_input_ids and attention_mask")
        feeds = {
            "encoder_attention_mask": attention_mask.numpy(),
            "encoder_hidden_states": encoder_outputs[0].numpy(),
        }
        n = self._layers
        if cache is None or cache.get_seq_length() == 0:
            feeds["decoder_input_ids"] = decoder_input_ids.numpy()
            logits, *kv = self._init(feeds)
            tensors = [torch.from_numpy(t) for t in kv]
            own, cross = tensors[: 2 * n], tensors[2 * n :]
        else:
            past = _flat(cache, n, cross=True)
            cross = past[2 * n :]
            feeds["decoder_input_ids"] = decoder_input_ids[:, -1:].numpy()
            for name, tensor in zip(self._past_names, past, strict=True):
                feeds[name] = np.ascontiguousarray(tensor.numpy())
            logits, *kv = self._step(feeds)
            own = [torch.from_numpy(t) for t in kv]
        output = Seq2SeqLMOutput(logits=torch.from_numpy(logits))
        output[self._output_field] = _cache(own, cross, n)
        return output


def decoder_layers(onnx_dir: Path) -> int:
    layout: dict[str, int] = json.loads((onnx_dir / LAYOUT).read_text())
    return layout["decoder_layers"]


def generate_sequences(
    generator: ExportedSeq2Seq,
    inputs: ModelInputs,
    request: GenerationRequest,
    options: GenerationOptions,
) -> ModelOutputs:
    """A backend's generate() over exported graphs: transformers' loop, numpy in and out."""
    kwargs = request.generate_kwargs(options)
    tensors = {key: torch.from_numpy(inputs[key]) for key in ("input_ids", "attention_mask")}
    with torch.inference_mode():
        sequences = generator.generate(**tensors, **kwargs)
    return {"sequences": sequences.cpu().numpy().astype(np.int64, copy=False)}
