"""A deterministic test double for the batcher: the test decides when each forward pass runs.

An item is a string; its token length is its word count. The forward pass blocks until the
test opens the gate, records which items it got, and fails on any item containing "poison".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from app.batching.base import Timed
from app.runtimes.base import ModelOutputs
from app.spec import BatchingSpec
from app.tasks.base import Encoded


class GatedModel:
    name = "gated"

    def __init__(self, batching: BatchingSpec, *, wrong_row_count: bool = False) -> None:
        self.batching = batching
        self.gate = threading.Event()
        self.gate.set()
        self.forward_started = threading.Event()
        self.batches: list[list[str]] = []
        self.wrong_row_count = wrong_row_count

    def batch_key(self, params: Any) -> Hashable:
        key: Hashable = params
        return key

    def encode(self, item: str, params: Any) -> Encoded:
        started = time.perf_counter()
        if item.startswith("slow"):
            time.sleep(0.05)  # still tokenizing when faster neighbours are queued
        encoded = Encoded(rows=[{"input_ids": list(range(len(item.split())))}], context=item)
        encoded.tokenize_s = time.perf_counter() - started
        return encoded

    def forward_batch(self, encoded: Sequence[Encoded], params: Any) -> Timed[ModelOutputs]:
        started = time.perf_counter()
        outputs = self._forward(encoded)
        return Timed(outputs, time.perf_counter() - started)

    def _forward(self, encoded: Sequence[Encoded]) -> ModelOutputs:
        texts = [e.context_as(str) for e in encoded]
        self.batches.append(texts)
        self.forward_started.set()
        assert self.gate.wait(timeout=10), "test left the gate closed"
        if any("poison" in text for text in texts):
            raise RuntimeError("poisoned batch")
        rows = len(texts) + (1 if self.wrong_row_count else 0)
        return {"row": np.arange(rows)}

    def split_outputs(
        self, encoded: Sequence[Encoded], outputs: ModelOutputs
    ) -> list[ModelOutputs]:
        return [{"row": outputs["row"][i : i + 1]} for i in range(len(encoded))]

    def decode(self, encoded: Encoded, outputs: ModelOutputs, params: Any) -> Timed[Any]:
        started = time.perf_counter()
        return Timed(f"{encoded.context}|{params}", time.perf_counter() - started)
