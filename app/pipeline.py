"""A served model: one task + one backend + one tokenizer, described by one ModelSpec.

The pipeline a request's items go through: encode (tokenize) one item, run the rows of a
batch through the backend (forward_rows), decode one item's own rows into its answer. Each
stage times itself here and only here. It sits between the batcher (app/batching/, which
decides when and with whom an item runs) and the tasks and backends it composes; loading
one is app/registry/model.py's job.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from app import metrics
from app.errors import InvalidInput
from app.runtimes.base import Backend, ModelOutputs, StepInputs
from app.runtimes.kv import KVCache
from app.spec import BatchingSpec, ModelSpec
from app.tasks.base import Encoded, Row, Task, all_finite, collate
from app.tasks.causal import GenerateTask, PromptTokens

T = TypeVar("T")


@dataclass(frozen=True)
class Timed(Generic[T]):
    """A stage's value and how long the stage took (seconds), measured once where it ran."""

    value: T
    seconds: float


class BatchSizeMismatch(RuntimeError):
    """A batch gave a different number of results than it took items: a bug, never hidden."""


class NonFiniteResult(RuntimeError):
    """A score came out NaN or infinite: a model fault, never sent as null."""


class ServedModel:
    def __init__(self, spec: ModelSpec, task: Task[Any, Any, Any], backend: Backend) -> None:
        self.spec = spec
        self.name = spec.name
        self.task = task
        self.backend = backend
        self.pad_token_id = int(task.tokenizer.pad_token_id or 0)
        self.decision: dict[str, Any] | None = None  # how `auto` chose the engine, if it did
        # Bound once: a labels() lookup per request is a lock and a dict walk on the hot path.
        self._tokenize_seconds = metrics.STAGE_SECONDS.labels(self.name, "tokenize")
        self._forward_seconds = metrics.STAGE_SECONDS.labels(self.name, "forward")
        self._postprocess_seconds = metrics.STAGE_SECONDS.labels(self.name, "postprocess")

    @property
    def batching(self) -> BatchingSpec:
        return self.spec.batching

    def batch_key(self, params: Any) -> Hashable:
        return self.task.batch_key(params)

    # Each stage is timed here and only here: the one measurement goes to the Prometheus
    # histogram and back to the caller (the batcher), which reports it in Server-Timing.

    def encode(self, item: Any, params: Any) -> Encoded:
        """Tokenize one item; its tokenize_s says how long that took."""
        started = time.perf_counter()
        encoded = self.task.encode(item, params)
        if not encoded.rows:
            raise InvalidInput(f"model {self.name!r} produced no tokens for an input; send text")
        encoded.tokenize_s = time.perf_counter() - started
        self._tokenize_seconds.observe(encoded.tokenize_s)
        return encoded

    def item_chars(self, item: Any) -> int:
        return self.task.item_chars(item)

    def forward_rows(
        self, rows: Sequence[Row], params: Any, deadline: float | None = None
    ) -> Timed[ModelOutputs]:
        """Collate rows into one padded batch and run it (their items share params)."""
        started = time.perf_counter()
        inputs = collate(rows, self.pad_token_id)
        outputs = self.task.execute(self.backend, inputs, params, deadline)
        seconds = time.perf_counter() - started
        self._forward_seconds.observe(seconds)
        produced = {len(value) for value in outputs.values()}
        if produced != {len(rows)}:
            raise BatchSizeMismatch(
                f"model {self.name!r} returned {sorted(produced)} rows for a batch of {len(rows)}"
            )
        return Timed(outputs, seconds)

    def decode(self, encoded: Encoded, outputs: ModelOutputs, params: Any) -> Timed[Any]:
        """One item's answer from its own rows of the outputs."""
        started = time.perf_counter()
        result = self.task.decode(encoded, outputs, params)
        if not all_finite(result):
            raise NonFiniteResult(f"model {self.name!r} produced a NaN or infinite score")
        seconds = time.perf_counter() - started
        self._postprocess_seconds.observe(seconds)
        return Timed(result, seconds)

    def warm_up(self) -> None:
        """One request through every stage, so the first real one pays no first-call costs."""
        item, params = self.task.warmup_request()
        encoded = self.encode(item, params)
        self.decode(encoded, self.forward_rows(encoded.rows, params).value, params)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.spec.task.value,
            "backend": self.backend.name,
            "device": self.backend.device,
            "precision": self.backend.precision,
            "max_length": self.task.max_length,
            **self.task.describe(),
            **({"auto": self.decision} if self.decision is not None else {}),
        }

    def close(self) -> None:
        self.backend.close()


class GenerativeModel(ServedModel):
    """A causal LM: its task is `generate`, and the continuous batcher runs it one decoder
    step at a time (prefill chunks and decode steps), timed here as the forward stage."""

    task: GenerateTask

    def __init__(self, spec: ModelSpec, task: GenerateTask, backend: Backend) -> None:
        super().__init__(spec, task, backend)
        self._prefill_seconds = metrics.STAGE_SECONDS.labels(self.name, "prefill")
        self._step_seconds = metrics.STAGE_SECONDS.labels(self.name, "decode_step")

    def step(self, inputs: StepInputs, cache: KVCache | None) -> Timed[tuple[Any, KVCache]]:
        """One decoder pass: logits at each row's last new token, and the grown cache."""
        started = time.perf_counter()
        logits, grown = self.backend.decode_step(inputs, cache)
        seconds = time.perf_counter() - started
        prefill = inputs.input_ids.shape[1] > 1 or cache is None
        (self._prefill_seconds if prefill else self._step_seconds).observe(seconds)
        if logits.shape[0] != inputs.input_ids.shape[0]:
            raise BatchSizeMismatch(
                f"model {self.name!r} returned {logits.shape[0]} rows for a step of "
                f"{inputs.input_ids.shape[0]}"
            )
        if not bool(np.isfinite(logits).all()):
            raise NonFiniteResult(f"model {self.name!r} produced NaN or infinite logits")
        return Timed((logits, grown), seconds)

    def warm_up(self) -> None:
        """A short prompt prefilled in two chunks, then two decoder steps of a batch of two:
        every shape of call the batcher makes, once."""
        item, params = self.task.warmup_request()
        ids = self.encode(item, params).context_as(PromptTokens).ids * 2
        half = max(1, len(ids) // 2)
        _, cache = self.step(StepInputs.prefill(ids, 0, half), None).value
        logits, cache = self.step(StepInputs.prefill(ids, half, len(ids)), cache).value
        cache = cache.extend(cache)
        for n in range(2):
            width = cache.width
            step = StepInputs(
                np.full((2, 1), int(np.argmax(logits[0]))),
                np.ones((2, width + 1), np.int64),
                np.full((2, 1), len(ids) + n),
            )
            logits, cache = self.step(step, cache).value
