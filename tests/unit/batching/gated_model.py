"""A deterministic test double for the batcher: the test decides when each forward pass runs.

An item is a string; its token length is its word count. "rows=K ..." makes an item of K rows
(like QA windows). The forward pass blocks until the test opens the gate, records which items
(and how many rows) it got, and fails on any item containing "poison".
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
from app.tasks.base import Encoded, Row


class GatedModel:
    name = "gated"

    def __init__(self, batching: BatchingSpec, *, wrong_row_count: bool = False) -> None:
        self.batching = batching
        self.gate = threading.Event()
        self.gate.set()
        self.forward_started = threading.Event()
        self.batches: list[list[str]] = []  # the distinct items of each forward pass
        self.rows_per_pass: list[int] = []
        self.tokens_per_pass: list[int] = []  # padded: rows x longest
        self.decoded_rows: list[int] = []  # rows each decoded item got back
        self.wrong_row_count = wrong_row_count
        self._texts: list[str] = []
        self._lock = threading.Lock()

    def batch_key(self, params: Any) -> Hashable:
        key: Hashable = params
        return key

    def item_chars(self, item: str) -> int:
        return len(item)

    def encode(self, item: str, params: Any) -> Encoded:
        started = time.perf_counter()
        if item.startswith("slow"):
            time.sleep(0.05)  # still tokenizing when faster neighbours are queued
        words = item.split()
        rows = int(words.pop(0).removeprefix("rows=")) if words[0].startswith("rows=") else 1
        with self._lock:
            self._texts.append(item)
            number = len(self._texts) - 1
        row: Row = {"input_ids": list(range(len(words))), "item": [number]}
        encoded = Encoded(rows=[dict(row) for _ in range(rows)], context=item)
        encoded.tokenize_s = time.perf_counter() - started
        return encoded

    def forward_rows(
        self, rows: Sequence[Row], params: Any, deadline: float | None = None
    ) -> Timed[ModelOutputs]:
        started = time.perf_counter()
        texts = [self._texts[n] for n in dict.fromkeys(row["item"][0] for row in rows)]
        self.batches.append(texts)
        self.rows_per_pass.append(len(rows))
        self.tokens_per_pass.append(len(rows) * max(len(row["input_ids"]) for row in rows))
        self.forward_started.set()
        assert self.gate.wait(timeout=10), "test left the gate closed"
        if any("poison" in text for text in texts):
            raise RuntimeError("poisoned batch")
        count = len(rows) + (1 if self.wrong_row_count else 0)
        width = max(len(row["input_ids"]) for row in rows)
        outputs = {"row": np.arange(count), "token": np.ones((count, width))}
        return Timed(outputs, time.perf_counter() - started)

    def decode(self, encoded: Encoded, outputs: ModelOutputs, params: Any) -> Timed[Any]:
        started = time.perf_counter()
        self.decoded_rows.append(len(outputs["row"]))
        return Timed(f"{encoded.context}|{params}", time.perf_counter() - started)
