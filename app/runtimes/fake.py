"""A deterministic fake backend for fast unit tests of tasks, batching and the API.

Its outputs are pure functions of each row's own unpadded token ids, so an item gives the same
answer alone or in any batch, like a real model with an attention mask. Catalog
`backend_options` (FakeBackendOptions) steer it: `fail_token` (a token string that makes any
batch holding it raise), `nan_token` (rows holding it come out as NaN) and `delay_ms` (sleep
per batch). It reads config.json and the
tokenizer from the model dir like a real one.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.runtimes.base import (
    Backend,
    GenerationRequest,
    Head,
    ModelInputs,
    ModelOutputs,
    StepInputs,
)
from app.runtimes.kv import KVCache, NumpyKV
from app.settings import Settings
from app.spec import FakeBackendOptions, ModelSpec

logger = logging.getLogger(__name__)

FAKE_HIDDEN_SIZE = 16


def _token_features(ids: npt.NDArray[np.int64], width: int) -> npt.NDArray[np.float32]:
    """[rows, seq] ids -> [rows, seq, width] features, a fixed function of each id."""
    freq = np.arange(1, width + 1, dtype=np.float64)
    return np.sin(ids[..., None].astype(np.float64) * 0.37 * freq).astype(np.float32)


def _token_id(tokenizer: Any, token: str) -> int:
    found = tokenizer.convert_tokens_to_ids(token)
    return int(found[0] if isinstance(found, list) else found)


class FakeBackend(Backend):
    name = "fake"

    @classmethod
    def precisions(cls, head: Head, device: str) -> tuple[str, ...]:
        return ("fp32", "int8")

    def __init__(self, model_dir: Path, head: Head, spec: ModelSpec, settings: Settings) -> None:
        super().__init__(model_dir, head, spec, settings)
        from transformers import AutoConfig, AutoTokenizer

        logger.warning("model %s runs on the FAKE backend: outputs are not a model's", spec.name)
        self.config = AutoConfig.from_pretrained(str(model_dir))
        options = spec.backend_options_as(FakeBackendOptions)
        self._delay_s = options.delay_ms / 1000.0
        fail_token = options.fail_token
        self._fail_id: int | None = None
        self._nan_id: int | None = None
        if fail_token is not None or options.nan_token is not None:
            tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
            if fail_token is not None:
                self._fail_id = _token_id(tokenizer, fail_token)
            if options.nan_token is not None:
                self._nan_id = _token_id(tokenizer, options.nan_token)
        self.calls: list[int] = []  # rows per forward/generate call, for tests
        self.threads = {threading.get_ident()}  # where it was loaded and run, for tests
        self._lock = threading.Lock()

    @property
    def device(self) -> str:
        return "cpu"

    @property
    def precision(self) -> str:
        return "int8" if self.spec.precision == "int8" else "fp32"

    def _enter(self, inputs: ModelInputs) -> None:
        with self._lock:
            self.calls.append(int(inputs["input_ids"].shape[0]))
            self.threads.add(threading.get_ident())
        if self._delay_s:
            time.sleep(self._delay_s)
        if self._fail_id is not None and bool((inputs["input_ids"] == self._fail_id).any()):
            raise RuntimeError("fake backend: batch holds the configured fail_token")

    def forward(self, inputs: ModelInputs) -> ModelOutputs:
        self._enter(inputs)
        outputs = self._forward(inputs)
        if self.precision == "int8":  # a quantised model's answers: values on a coarse grid
            outputs = {name: np.round(value * 8) / 8 for name, value in outputs.items()}
        if self._nan_id is not None:
            poisoned = (inputs["input_ids"] == self._nan_id).any(axis=1)
            for value in outputs.values():
                value[poisoned] = np.nan
        return outputs

    def _forward(self, inputs: ModelInputs) -> ModelOutputs:
        ids = inputs["input_ids"]
        mask = inputs["attention_mask"].astype(np.float32)
        if self.head is Head.SEQUENCE_CLASSIFICATION:
            feats = _token_features(ids, self.config.num_labels) * mask[..., None]
            return {"logits": feats.sum(1) / np.maximum(mask.sum(1, keepdims=True), 1.0)}
        if self.head is Head.TOKEN_CLASSIFICATION:
            return {"logits": _token_features(ids, self.config.num_labels)}
        if self.head is Head.MASKED_LM:
            return {"logits": _token_features(ids, self.config.vocab_size)}
        if self.head is Head.QUESTION_ANSWERING:
            feats = _token_features(ids, 2)
            return {"start_logits": feats[..., 0], "end_logits": feats[..., 1]}
        if self.head is Head.FEATURE_EXTRACTION:
            return {"last_hidden_state": _token_features(ids, FAKE_HIDDEN_SIZE)}
        raise NotImplementedError(f"fake backend has no forward for head {self.head}")

    def generate(self, inputs: ModelInputs, request: GenerationRequest) -> ModelOutputs:
        """Echo each row's own tokens, repeated or cut to the requested length."""
        self._enter(inputs)
        ids, mask = inputs["input_ids"], inputs["attention_mask"].astype(bool)
        pad = int(getattr(self.config, "pad_token_id", 0) or 0)
        rows = []
        for row_ids, row_mask in zip(ids, mask, strict=True):
            own = row_ids[row_mask]
            length = max(request.min_new_tokens, min(len(own), request.max_new_tokens))
            rows.append(np.resize(own, length) if len(own) else np.full(length, pad))
        width = max((len(r) for r in rows), default=0)
        out = np.full((len(rows), width), pad, dtype=np.int64)
        for i, row in enumerate(rows):
            out[i, : len(row)] = row
        return {"sequences": out}

    def decode_step(
        self, step: StepInputs, cache: KVCache | None
    ) -> tuple[npt.NDArray[np.float32], KVCache]:
        """A causal LM's step: the cache holds the token ids themselves (one layer), and each
        row's logits are a fixed function of its own tokens so far (padding excluded), so a
        sequence generates the same alone or in any batch."""
        self._enter({"input_ids": step.input_ids})
        new = step.input_ids.astype(np.float32)[:, None, :, None]
        ids = new if cache is None else np.concatenate([cache.layers[0][0], new], axis=2)
        own = ids[:, 0, :, 0].astype(np.int64) * step.attention_mask
        seed = (own.sum(axis=1) * 31 + step.attention_mask.sum(axis=1)) % 100_003
        logits = _token_features(seed[:, None], self.config.vocab_size)[:, 0] * 4
        if self._nan_id is not None:
            logits[(own == self._nan_id).any(axis=1)] = np.nan
        return logits.astype(np.float32), NumpyKV([(ids, ids)])
