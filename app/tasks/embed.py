"""Sentence embeddings: pooling as the model's sentence-transformers config says, then L2."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.registry.spec import TaskName
from app.runtimes.base import Head, ModelOutputs
from app.tasks.base import Encoded, Task


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


class EmbedTask(Task[str, EmbedParams, list[float]]):
    name = TaskName.EMBED
    head = Head.FEATURE_EXTRACTION
    method = "encoder pooling"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pooling = read_pooling_config(self.model_dir)
        if self.pooling.max_seq_length and self.spec.max_length is None:
            self.max_length = min(self.max_length, self.pooling.max_seq_length)
        self.method = f"encoder, {self.pooling.mode} pooling"

    def encode(self, item: str, params: EmbedParams) -> Encoded:
        return Encoded(rows=[self.row(self.tokenize(item))])

    def decode(self, encoded: Encoded, outputs: ModelOutputs, params: EmbedParams) -> list[float]:
        n = encoded.n_tokens
        hidden = outputs["last_hidden_state"][0, :n].astype(np.float64)
        if self.pooling.mode == "cls":
            vector = hidden[0]
        elif self.pooling.mode == "max":
            vector = hidden.max(0)
        else:
            vector = hidden.mean(0)
        normalize = self.pooling.normalize if params.normalize is None else params.normalize
        if normalize:
            vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
        return [float(v) for v in vector]

    def warmup_request(self) -> tuple[str, EmbedParams]:
        return "warm-up request", EmbedParams()

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "normalize_default": self.pooling.normalize,
            "dimensions": int(getattr(self.config, "hidden_size", 0)),
        }
