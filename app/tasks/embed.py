"""Sentence embeddings: pooling as the model's sentence-transformers config says, then L2.

Inputs may take a prompt of the model's (app/tasks/prompts.py) and a request's truncation."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.errors import InvalidInput, ServeError
from app.runtimes.base import Head, ModelOutputs
from app.spec import EmbedOptions, TaskName
from app.tasks.base import Encoded, ItemT, ParamsT, ResultT, Task
from app.tasks.prompts import EncoderParams, PromptTable


@dataclass(frozen=True)
class EmbedParams(EncoderParams):
    normalize: bool | None = None  # None: the model's own default
    dimensions: int | None = None  # truncate to this size and L2-normalise again
    count_tokens: bool = False  # answer CountedEmbedding (the vector and its token count)


@dataclass(frozen=True)
class TokenIds:
    """An input already tokenized by the served model's own tokenizer: ids run as they are."""

    ids: tuple[int, ...]


@dataclass(frozen=True)
class CountedEmbedding:
    embedding: list[float]
    tokens: int  # the tokens the model ran on, after truncation


@dataclass(frozen=True)
class PoolingConfig:
    mode: str = "mean"  # mean | cls | max
    normalize: bool = True
    max_seq_length: int | None = None


def read_pooling_config(model_dir: Path) -> PoolingConfig:
    """Read sentence-transformers' modules.json / Pooling / sentence_bert_config when present."""
    modules_file = model_dir / "modules.json"
    if not modules_file.is_file():
        return PoolingConfig()
    modules = json.loads(modules_file.read_text())
    mode, normalize = "mean", False
    for module in modules:
        kind = str(module.get("type", ""))
        if kind.endswith("Pooling"):
            cfg_file = model_dir / module.get("path", "") / "config.json"
            cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
            if cfg.get("pooling_mode_cls_token"):
                mode = "cls"
            elif cfg.get("pooling_mode_max_tokens"):
                mode = "max"
        elif kind.endswith("Normalize"):
            normalize = True
    st_file = model_dir / "sentence_bert_config.json"
    max_len = json.loads(st_file.read_text()).get("max_seq_length") if st_file.is_file() else None
    return PoolingConfig(mode=mode, normalize=normalize, max_seq_length=max_len)


def pool(hidden: np.ndarray, mode: str) -> np.ndarray:
    """One row's unpadded token states [tokens, dim] -> its sentence vector."""
    vector: np.ndarray = (
        hidden[0] if mode == "cls" else (hidden.max(0) if mode == "max" else hidden.mean(0))
    )
    return vector


def cosine_similarities(source: Sequence[float], others: Sequence[Sequence[float]]) -> list[float]:
    """Each of `others`' cosine similarity to `source` (any norms)."""
    matrix = l2_normalize(np.asarray([source, *others], dtype=np.float64))
    return [float(value) for value in matrix[1:] @ matrix[0]]


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    out: np.ndarray = vectors / np.maximum(norms, 1e-12)
    return out


class SentenceEncoderTask(Task[ItemT, ParamsT, ResultT]):
    """Base for tasks built on sentence embeddings: pooling as the model's own config says."""

    head = Head.FEATURE_EXTRACTION

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pooling = read_pooling_config(self.model_dir)
        if self.pooling.max_seq_length and self.spec.max_length is None:
            self.max_length = min(self.max_length, self.pooling.max_seq_length)

    def row_vectors(self, encoded: Encoded, outputs: ModelOutputs) -> np.ndarray:
        """Pooled vectors [rows, dim] of this item's rows, each over its own tokens."""
        hidden = outputs["last_hidden_state"]
        return np.stack(
            [
                pool(hidden[i, : len(row["input_ids"])].astype(np.float64), self.pooling.mode)
                for i, row in enumerate(encoded.rows)
            ]
        )


class EmbedTask(SentenceEncoderTask[str | TokenIds, EmbedParams, list[float] | CountedEmbedding]):
    name = TaskName.EMBED
    agreement_kind = "cosine"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.method = f"encoder, {self.pooling.mode} pooling"
        self.dimensions = int(getattr(self.config, "hidden_size", 0))
        self.matryoshka = self.spec.options_as(EmbedOptions).matryoshka_dimensions
        self.vocab_size = len(self.tokenizer)
        self.prompts = PromptTable.load(self.spec, self.model_dir)

    def refusal(self, params: EmbedParams) -> ServeError | None:
        refused = self.prompts.refusal(params) or self.truncation_refusal(
            params.truncation_direction
        )
        if refused is not None:
            return refused
        if params.dimensions is None or params.dimensions in (self.dimensions, *self.matryoshka):
            return None
        allowed = sorted({self.dimensions, *self.matryoshka})
        return InvalidInput(
            f"dimensions: model {self.spec.name!r} gives vectors of {allowed} dimensions, not "
            f"{params.dimensions}; other sizes need a model trained for them, listed in its "
            "catalog entry's options.matryoshka_dimensions"
        )

    def encode(self, item: str | TokenIds, params: EmbedParams) -> Encoded:
        if isinstance(item, str):
            text = self.prompts.apply(item, params)
            row, truncated = self.encode_text(text, params.truncate, params.truncation_direction)
            return Encoded(rows=[row], truncated=truncated)
        if params.prompt_name is not None or params.input_type is not None:
            raise InvalidInput(
                "prompt_name and input_type apply to texts; token ids run as they are (put the "
                "prompt's ids in front of them)"
            )
        bad = [i for i in item.ids if not 0 <= i < self.vocab_size]
        if bad:
            raise InvalidInput(
                f"token ids {bad[:5]} are outside model {self.spec.name!r}'s vocabulary "
                f"(0 to {self.vocab_size - 1}); send text, or ids from this model's tokenizer"
            )
        truncated = len(item.ids) > self.max_length
        if truncated and not params.truncate:
            raise self.too_long(len(item.ids))
        side = params.truncation_direction or self.truncation_side
        kept = item.ids[-self.max_length :] if side == "left" else item.ids[: self.max_length]
        ids = list(kept)
        row = {"input_ids": ids, "attention_mask": [1] * len(ids)}
        if "token_type_ids" in self.model_inputs:
            row["token_type_ids"] = [0] * len(ids)
        rows = [{key: row[key] for key in self.model_inputs if key in row}]
        return Encoded(rows=rows, truncated=truncated)

    def decode(
        self, encoded: Encoded, outputs: ModelOutputs, params: EmbedParams
    ) -> list[float] | CountedEmbedding:
        vector = self.row_vectors(encoded, outputs)[0]
        normalize = self.pooling.normalize if params.normalize is None else params.normalize
        if normalize:
            vector = l2_normalize(vector)
        if params.dimensions is not None and params.dimensions < len(vector):
            vector = l2_normalize(vector[: params.dimensions])
        embedding = [float(v) for v in vector]
        if params.count_tokens:
            return CountedEmbedding(embedding, encoded.n_tokens)
        return embedding

    def warmup_request(self) -> tuple[str, EmbedParams]:
        return "warm-up request", EmbedParams()

    def agreement(
        self, reference: list[float] | CountedEmbedding, candidate: list[float] | CountedEmbedding
    ) -> float:
        a, b = (
            np.asarray(getattr(v, "embedding", v), dtype=np.float64) for v in (reference, candidate)
        )
        norms = float(np.linalg.norm(a) * np.linalg.norm(b))
        return float(a @ b) / norms if norms else float(not a.any() and not b.any())

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "normalize_default": self.pooling.normalize,
            "dimensions": self.dimensions,
            "matryoshka_dimensions": list(self.matryoshka),
            **self.prompts.describe(),
        }
