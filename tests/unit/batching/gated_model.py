"""A deterministic model for the batcher's tests: the test decides when each forward pass runs.

It is a real ServedModel (encode, forward_rows and decode timed and checked as in serving)
over a task and a backend made for these tests. An item is a string; its token length is its
word count. "rows=K ..." makes an item of K rows (like QA windows). The forward pass blocks
until the test opens the gate, records which items (and how many rows) it got, and fails on
any item containing "poison".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from types import SimpleNamespace

import numpy as np

from app.pipeline import ServedModel
from app.runtimes.base import Backend, Head, ModelInputs, ModelOutputs
from app.spec import BatchingSpec, ModelSpec, TaskName
from app.tasks.base import Encoded, Row, Task


class GatedModel(ServedModel):
    """The served model, plus the test's gate and what each stage saw."""

    def __init__(self, batching: BatchingSpec, *, wrong_row_count: bool = False) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.forward_started = threading.Event()
        self.batches: list[list[str]] = []  # the distinct items of each forward pass
        self.rows_per_pass: list[int] = []
        self.tokens_per_pass: list[int] = []  # padded: rows x longest
        self.decoded_rows: list[int] = []  # rows each decoded item got back
        self.wrong_row_count = wrong_row_count  # the backend returns one row too many
        self.texts: list[str] = []  # every item encoded; a row's "item" is its index here
        self.lock = threading.Lock()
        spec = ModelSpec(name="gated", task=TaskName.SENTIMENT, source="gated", batching=batching)
        super().__init__(spec, GatedTask(spec, self), GatedBackend(spec, self))


class GatedTask(Task[str, str, str]):
    """Items are strings, params a string (the batch key); the answer is "item|params"."""

    name = TaskName.SENTIMENT
    head = Head.SEQUENCE_CLASSIFICATION

    def __init__(self, spec: ModelSpec, model: GatedModel) -> None:
        # No tokenizer to read (Task.__init__ would): words are tokens.
        self.spec = spec
        self.tokenizer = SimpleNamespace(pad_token_id=0)
        self.model = model

    def encode(self, item: str, params: str) -> Encoded:
        if item.startswith("slow"):
            time.sleep(0.05)  # still tokenizing when faster neighbours are queued
        words = item.split()
        rows = int(words.pop(0).removeprefix("rows=")) if words[0].startswith("rows=") else 1
        with self.model.lock:
            self.model.texts.append(item)
            number = len(self.model.texts) - 1
        row: Row = {"input_ids": list(range(len(words))), "item": [number]}
        return Encoded(rows=[dict(row) for _ in range(rows)], context=item)

    def batch_key(self, params: str) -> Hashable:
        return params

    def decode(self, encoded: Encoded, outputs: ModelOutputs, params: str) -> str:
        self.model.decoded_rows.append(len(outputs["row"]))
        return f"{encoded.context}|{params}"

    def warmup_request(self) -> tuple[str, str]:
        return "warm", "p"


class GatedBackend(Backend):
    """Blocks each forward pass on the test's gate and records what it got."""

    name = "gated"

    def __init__(self, spec: ModelSpec, model: GatedModel) -> None:
        # Nothing to load (Backend.__init__ takes a model directory and settings).
        self.spec = spec
        self.head = GatedTask.head
        self.config = None
        self.model = model

    @property
    def device(self) -> str:
        return "cpu"

    @property
    def precision(self) -> str:
        return "fp32"

    def forward(self, inputs: ModelInputs) -> ModelOutputs:
        model = self.model
        rows, width = inputs["input_ids"].shape  # padded: rows x longest
        numbers = dict.fromkeys(int(n) for n in inputs["item"][:, 0])
        texts = [model.texts[n] for n in numbers]
        model.batches.append(texts)
        model.rows_per_pass.append(rows)
        model.tokens_per_pass.append(rows * width)
        model.forward_started.set()
        assert model.gate.wait(timeout=10), "test left the gate closed"
        if any("poison" in text for text in texts):
            raise RuntimeError("poisoned batch")
        count = rows + (1 if model.wrong_row_count else 0)
        return {"row": np.arange(count), "token": np.ones((count, width))}
