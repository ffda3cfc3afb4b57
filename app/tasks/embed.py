"""Sentence embeddings: pooling as the model's sentence-transformers config says, then L2."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.runtimes.base import Head, ModelOutputs
from app.spec import TaskName
from app.tasks.base import Encoded, ItemT, ParamsT, ResultT, Task


@dataclass(frozen=True)
class EmbedParams:
    normalize: bool | None = None  # None: the model's own default


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


class EmbedTask(SentenceEncoderTask[str, EmbedParams, list[float]]):
    name = TaskName.EMBED

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.method = f"encoder, {self.pooling.mode} pooling"

    def encode(self, item: str, params: EmbedParams) -> Encoded:
        return Encoded(rows=[self.text_row(item)])

    def decode(self, encoded: Encoded, outputs: ModelOutputs, params: EmbedParams) -> list[float]:
        vector = self.row_vectors(encoded, outputs)[0]
        normalize = self.pooling.normalize if params.normalize is None else params.normalize
        if normalize:
            vector = l2_normalize(vector)
        return [float(v) for v in vector]

    def warmup_request(self) -> tuple[str, EmbedParams]:
        return "warm-up request", EmbedParams()

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "normalize_default": self.pooling.normalize,
            "dimensions": int(getattr(self.config, "hidden_size", 0)),
        }
