"""embed-sparse: SPLADE vectors from a masked language model.

Each token's masked-LM logits [vocab] become weights log(1 + relu(logit)) (OpenSearch's
models: log(1 + log(1 + relu(logit)))), max-pooled over the input's real tokens into one
vocabulary-sized vector, as sentence-transformers' SpladePooling does. Both activations rise
monotonically, so the max is taken first, on the raw logits, and the activation runs on
[vocab] values only. The max runs in the backend (Backend.forward_token_max: PyTorch pools on
its device), so only [rows, vocab] leaves it.

A batch's logits are [rows, tokens, vocab] (32 x 512 x 30522 fp32 is 2 GB), so a batch runs
in passes of at most options.logits_budget_mb of them. Measured on 2 cores with a MiniLM-sized
model (bench/sparse.py), passes of ~1k tokens (128 MB) ran 27 rows/s where one pass of 4k
tokens ran 17: smaller passes are faster as well as smaller.

Answers list the kept weights as {index, value} (plus the token with return_tokens), sorted by
index: the layout of a sparse vector in Qdrant, Elasticsearch or a CSR row, and TEI's order.
Pruning keeps weights above `threshold`, then the `top_k` largest (ties: the lower index).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from app.errors import ModelLoadError, ServeError
from app.runtimes.base import Backend, Head, ModelInputs, ModelOutputs
from app.spec import ModelSpec, SparseEmbedOptions, TaskName
from app.tasks.base import Encoded, Task
from app.tasks.prompts import EncoderParams, PromptTable

Activation = Literal["relu", "log1p_relu"]
FLOAT32_BYTES = 4


@dataclass(frozen=True)
class SparseEmbedParams(EncoderParams):
    top_k: int | None = None  # None: the catalog entry's default
    threshold: float | None = None  # None: the catalog entry's default
    return_tokens: bool = False


@dataclass(frozen=True)
class SparseValue:
    index: int  # the vocabulary id
    value: float


@dataclass(frozen=True)
class TokenValue:
    index: int
    value: float
    token: str  # the vocabulary entry of the id, as the tokenizer spells it ("##ing")


SparseVector = list[SparseValue] | list[TokenValue]


@dataclass(frozen=True)
class SpladeConfig:
    activation: Activation = "relu"
    max_seq_length: int | None = None


def _json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text()) if path.is_file() else {}
    return data if isinstance(data, dict) else {}


def read_splade_config(spec: ModelSpec, model_dir: Path) -> SpladeConfig:
    """The model's sentence-transformers SparseEncoder modules, when it has them: a masked-LM
    Transformer then SpladePooling (max pooling). Any other module (a Router's static query
    side, a SparseAutoEncoder, sum pooling) is refused, naming it: answers would differ."""
    modules_file = model_dir / "modules.json"
    if not modules_file.is_file():
        return SpladeConfig()  # a plain masked LM: SPLADE's usual max and relu
    modules = json.loads(modules_file.read_text())
    kinds = [str(module.get("type", "")).rsplit(".", 1)[-1] for module in modules]
    if kinds[:1] not in (["Transformer"], ["MLMTransformer"]) or kinds[1:] != ["SpladePooling"]:
        raise ModelLoadError(
            f"model {spec.name!r}: its sentence-transformers modules are {kinds}; embed-sparse "
            "serves SPLADE models (a masked-LM Transformer, then SpladePooling) only"
        )
    pooling = _json(model_dir / str(modules[1].get("path", "")) / "config.json")
    strategy = pooling.get("pooling_strategy", "max")
    activation = pooling.get("activation_function", "relu")
    if strategy != "max" or activation not in ("relu", "log1p_relu"):
        raise ModelLoadError(
            f"model {spec.name!r}: SpladePooling with pooling_strategy {strategy!r} and "
            f"activation_function {activation!r}; embed-sparse serves max pooling with relu or "
            "log1p_relu"
        )
    st_config = _json(model_dir / "sentence_bert_config.json")
    max_length = st_config.get("max_seq_length")
    return SpladeConfig(activation, max_length if isinstance(max_length, int) else None)


def activate(pooled: np.ndarray, activation: Activation) -> np.ndarray:
    """SPLADE's weights from max-pooled logits (the activations commute with the max)."""
    weights = np.log1p(np.maximum(pooled, 0.0, dtype=np.float32))
    if activation == "log1p_relu":
        weights = np.log1p(weights)
    out: np.ndarray = weights.astype(np.float32, copy=False)
    return out


def prune(weights: np.ndarray, top_k: int | None, threshold: float) -> np.ndarray:
    """The ids kept, ascending: weights above threshold, then the top_k largest (ties: the
    lower id)."""
    keep = np.flatnonzero(weights > threshold)
    if top_k is not None and len(keep) > top_k:
        best = np.lexsort((keep, -weights[keep]))[:top_k]  # value down, then id up
        keep = np.sort(keep[best])
    return keep


class SparseEmbedTask(Task[str, SparseEmbedParams, SparseVector]):
    name = TaskName.EMBED_SPARSE
    head = Head.MASKED_LM
    agreement_kind = "cosine"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        architectures = list(getattr(self.config, "architectures", None) or [])
        if architectures and not any(a.endswith("ForMaskedLM") for a in architectures):
            raise ModelLoadError(
                f"model {self.spec.name!r}: its weights are {architectures}, without a "
                "masked-LM head; embed-sparse needs SPLADE weights (a ...ForMaskedLM model). "
                "Heads shipped as separate pickled layers (bge-m3's sparse_linear.pt) are not "
                "served"
            )
        self.splade = read_splade_config(self.spec, self.model_dir)
        if self.splade.max_seq_length and self.spec.max_length is None:
            self.max_length = min(self.max_length, self.splade.max_seq_length)
        options = self.spec.options_as(SparseEmbedOptions)
        self.top_k = options.top_k
        self.threshold = options.threshold
        self.budget_bytes = options.logits_budget_mb * 2**20
        self.dimensions = int(getattr(self.config, "vocab_size", 0) or len(self.tokenizer))
        self.prompts = PromptTable.load(self.spec, self.model_dir)
        self.method = f"SPLADE: max over tokens of {self._formula()}"
        self._tokens: list[str] | None = None

    def _formula(self) -> str:
        inner = "log(1 + relu(logits))"
        return f"log(1 + {inner})" if self.splade.activation == "log1p_relu" else inner

    def refusal(self, params: SparseEmbedParams) -> ServeError | None:
        return self.prompts.refusal(params) or self.truncation_refusal(params.truncation_direction)

    def encode(self, item: str, params: SparseEmbedParams) -> Encoded:
        text = self.prompts.apply(item, params)
        row, truncated = self.encode_text(text, params.truncate, params.truncation_direction)
        return Encoded(rows=[row], truncated=truncated)

    def rows_per_pass(self, width: int) -> int:
        return max(1, self.budget_bytes // (width * self.dimensions * FLOAT32_BYTES))

    def execute(
        self,
        backend: Backend,
        inputs: ModelInputs,
        params: SparseEmbedParams,
        deadline: float | None,
    ) -> ModelOutputs:
        """Each row's SPLADE weights [rows, vocab], in passes within the logits budget, each
        pass cut to its own longest row."""
        rows, width = inputs["input_ids"].shape
        lengths = inputs["attention_mask"].sum(axis=1)
        step = self.rows_per_pass(width)
        pooled = []
        for start in range(0, rows, step):
            longest = int(lengths[start : start + step].max())
            part = {
                key: np.ascontiguousarray(value[start : start + step, :longest])
                for key, value in inputs.items()
            }
            pooled.append(backend.forward_token_max(part)["logits"])
        weights = np.concatenate(pooled) if len(pooled) > 1 else pooled[0]
        return {"weights": activate(weights, self.splade.activation)}

    def tokens(self) -> list[str]:
        """Every id's vocabulary entry (ids past the tokenizer's vocabulary: "")."""
        if self._tokens is None:
            known = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
            names = [str(t) if t is not None else "" for t in known][: self.dimensions]
            self._tokens = names + [""] * (self.dimensions - len(names))
        return self._tokens

    def decode(
        self, encoded: Encoded, outputs: ModelOutputs, params: SparseEmbedParams
    ) -> SparseVector:
        weights = outputs["weights"][0]
        if not np.isfinite(weights).all():
            raise RuntimeError(f"model {self.spec.name!r} produced NaN or infinite weights")
        threshold = self.threshold if params.threshold is None else params.threshold
        top_k = self.top_k if params.top_k is None else params.top_k
        keep = prune(weights, top_k, threshold)
        ids, values = keep.tolist(), weights[keep].tolist()
        if params.return_tokens:
            tokens = self.tokens()
            return [TokenValue(i, v, tokens[i]) for i, v in zip(ids, values, strict=True)]
        return [SparseValue(i, v) for i, v in zip(ids, values, strict=True)]

    def warmup_request(self) -> tuple[str, SparseEmbedParams]:
        return "warm-up request", SparseEmbedParams()

    def agreement(self, reference: SparseVector, candidate: SparseVector) -> float:
        """The cosine of the two sparse vectors."""
        a = {entry.index: entry.value for entry in reference}
        b = {entry.index: entry.value for entry in candidate}
        dot = sum(value * b[index] for index, value in a.items() if index in b)
        norms = float(np.linalg.norm(list(a.values())) * np.linalg.norm(list(b.values())))
        return dot / norms if norms else float(not a and not b)

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "dimensions": self.dimensions,
            "top_k_default": self.top_k,
            "threshold_default": self.threshold,
            **self.prompts.describe(),
        }
