"""A unit of queued work and what happens to it: the item, its future settled exactly once,
its own rows of a batch's outputs, and the errors a client hears about it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from opentelemetry.trace import SpanContext

from app.errors import DeadlineExceeded, InferenceFailed, ServeError
from app.logs import REQUEST_ID
from app.runtimes.base import ModelOutputs
from app.tasks.base import Encoded
from app.tracing import StageClock


@dataclass
class WorkerPools:
    """The thread pool every model's batcher tokenizes in."""

    tokenize: ThreadPoolExecutor

    @classmethod
    def create(cls, tokenize_threads: int) -> WorkerPools:
        return cls(ThreadPoolExecutor(tokenize_threads, thread_name_prefix="tokenize"))

    def shutdown(self) -> None:
        self.tokenize.shutdown(wait=True, cancel_futures=True)


@dataclass(eq=False)
class WorkItem:
    encoded: Encoded
    params: Any
    key: Hashable
    future: asyncio.Future[Any]
    deadline: float
    enqueued_at: float = field(default_factory=time.monotonic)
    drop_reason: str = "cancelled"
    request_id: str | None = field(default_factory=REQUEST_ID.get)  # for logs off the loop
    clock: StageClock = field(default_factory=StageClock)  # for trace spans, when tracing
    trace_parent: SpanContext | None = None  # the request's span, which batch spans link to
    # Where its time went (seconds): the model's own stage measurements, and the queue wait,
    # written before the future settles.
    queued_s: float = 0.0
    forward_s: float = 0.0
    postprocess_s: float = 0.0

    @property
    def tokens(self) -> int:
        return self.encoded.n_tokens

    @property
    def rows(self) -> int:
        return len(self.encoded.rows)

    def wanted(self, now: float) -> bool:
        """Someone still waits for it (read from the model thread between chunks)."""
        return not self.future.done() and now < self.deadline


def settle(future: asyncio.Future[Any], outcome: Any) -> None:
    """Set a future's result or exception unless it is already done: exactly once."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def for_input(error: ServeError, index: int, count: int) -> ServeError:
    """The same error, naming which input of a multi-input request it is about."""
    if count == 1:
        return error
    return type(error)(f"inputs[{index}]: {error.message}", headers=error.headers)


def model_failed(name: str) -> InferenceFailed:
    """What a client hears of a model fault; the exception itself goes to the log."""
    return InferenceFailed(
        f"model {name!r} failed on this input; the error is in the server log. "
        "Other inputs were served; if it persists for this input, report it with the input."
    )


def deadline_passed(name: str) -> DeadlineExceeded:
    """What an item hears when it is dropped because its deadline passed before it ran."""
    return DeadlineExceeded(f"deadline passed while queued for {name!r}")


def split_rows(outputs: ModelOutputs, counts: Sequence[int]) -> list[ModelOutputs]:
    """Each item's own rows of a batch's outputs, in order (counts: rows per item)."""
    slices, offset = [], 0
    for count in counts:
        slices.append({key: value[offset : offset + count] for key, value in outputs.items()})
        offset += count
    return slices


def stack_rows(rows: Sequence[ModelOutputs]) -> ModelOutputs:
    """One item's outputs from rows computed in different chunks.

    Chunks are padded to their own longest row, so per-token outputs differ in width: each row
    is padded with zeros to the widest. Tasks read only a row's own tokens, never the padding.
    """
    stacked: ModelOutputs = {}
    for key in rows[0]:
        arrays = [row[key] for row in rows]
        width = max(a.shape[0] for a in arrays) if arrays[0].ndim else 0
        if arrays[0].ndim:
            arrays = [
                np.pad(a, [(0, width - a.shape[0])] + [(0, 0)] * (a.ndim - 1)) for a in arrays
            ]
        stacked[key] = np.stack(arrays)
    return stacked
