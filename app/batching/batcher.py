"""The dynamic batcher: one queue per model (docs/architecture.md).

A request's items are tokenized off the event loop as they arrive (in a shared pool), so the
next batch is tokenized while the current one runs on the model's own thread. The scheduling
loop waits at most max_wait_ms from the oldest waiting item, and only while more items are on
their way (still being tokenized) and the batch is not full: an idle model with one request
runs it at once. Items whose client left or whose deadline passed are dropped before the
forward pass and counted. No forward pass exceeds max_batch_tokens: an item with many rows
runs in several passes, and rows of items nobody waits for any more are skipped between them.
Decoding runs in the model's own decode pool while the model starts its next batch. A failed
batch is retried one item at a time so a poison input fails alone; its exception goes to the
log, never to the client. Every future is settled exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanContext, Tracer

from app import metrics
from app.batching.base import Served, StageTimes, Timed, WorkLimits
from app.batching.policy import padded_tokens, select_batch
from app.errors import (
    DeadlineExceeded,
    InferenceFailed,
    NotReady,
    PayloadTooLarge,
    QueueFull,
    ServeError,
)
from app.logs import REQUEST_ID
from app.runtimes.base import ModelOutputs
from app.runtimes.memory import release_free_heap
from app.spec import BatchingSpec
from app.tasks.base import Encoded, Row
from app.tracing import StageClock, current_span_context, emit_batch_span, emit_request_spans

logger = logging.getLogger(__name__)


class BatchableModel(Protocol):
    """What the batcher needs from a model (ServedModel, or a test double)."""

    name: str

    @property
    def batching(self) -> BatchingSpec: ...

    def batch_key(self, params: Any) -> Hashable: ...

    def item_chars(self, item: Any) -> int: ...

    def encode(self, item: Any, params: Any) -> Encoded:
        """Tokenize one item, setting its tokenize_s."""
        ...

    def forward_rows(
        self, rows: Sequence[Row], params: Any, deadline: float | None = None
    ) -> Timed[ModelOutputs]: ...

    def decode(self, encoded: Encoded, outputs: ModelOutputs, params: Any) -> Timed[Any]: ...


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


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    """Set a future's result or exception unless it is already done: exactly once."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _for_input(error: ServeError, index: int, count: int) -> ServeError:
    """The same error, naming which input of a multi-input request it is about."""
    if count == 1:
        return error
    return type(error)(f"inputs[{index}]: {error.message}", headers=error.headers)


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


class Batcher:
    def __init__(
        self,
        model: BatchableModel,
        pools: WorkerPools,
        default_timeout_s: float,
        model_thread: ThreadPoolExecutor,
        *,
        limits: WorkLimits,
        postprocess_threads: int = 1,
        tracer: Tracer | None = None,
    ):
        """model_thread (one worker, owned by the caller) runs every forward pass; decoding
        runs in this model's own pool, so one model's decoding never holds up another's."""
        self.model = model
        self.spec = model.batching
        self.pools = pools
        self.limits = limits
        self.tracer = tracer
        self.default_timeout_s = default_timeout_s
        self._queue: list[WorkItem] = []
        self._incoming = 0  # items admitted but still being tokenized
        self._wake = asyncio.Event()
        self._closing = False
        self._forward = model_thread
        self._decoder = ThreadPoolExecutor(postprocess_threads, thread_name_prefix="decode")
        self._background: set[asyncio.Task[None]] = set()
        self._batch_seconds = 0.0  # moving average, for Retry-After
        self._running = False  # a batch is on the model thread
        self._active = 0  # submit() calls not yet answered: queued, tokenizing or running
        self._idle = asyncio.Event()
        self._idle.set()
        self._depth_gauge = metrics.QUEUE_DEPTH.labels(model.name)
        self._queue_wait = metrics.QUEUE_WAIT_SECONDS.labels(model.name)
        self._batch_size = metrics.BATCH_SIZE.labels(model.name)
        self._batch_tokens = metrics.BATCH_TOKENS.labels(model.name)
        metrics.QUEUE_CAPACITY.labels(model.name).set(self.spec.max_queue)
        for reason in metrics.DROP_REASONS:  # every series exists from start-up, at 0
            metrics.ITEMS_DROPPED.labels(model.name, reason)
        self._loop_task = asyncio.get_running_loop().create_task(self._loop())

    # -- admission -------------------------------------------------------------------------

    def queue_depth(self) -> int:
        return len(self._queue) + self._incoming

    def _retry_after_s(self) -> int:
        batches_ahead = math.ceil(self.queue_depth() / self.spec.max_batch_size)
        return max(1, math.ceil(batches_ahead * self._batch_seconds))

    def _tokenize_inline(self, items: Sequence[Any]) -> bool:
        """Idle model and a small request: tokenizing on the loop saves two thread hops, and
        there is no running batch to overlap with. Large requests never block the loop."""
        if self._queue or self._incoming or self._running:
            return False
        budget = self.limits.inline_tokenize_max_chars
        return sum(self.model.item_chars(item) for item in items) <= budget

    def _encode_all(self, items: Sequence[Any], params: Any) -> list[Encoded]:
        """Tokenize every item and check the request's work against the limits."""
        encoded = []
        for index, item in enumerate(items):
            try:
                encoded.append(self.model.encode(item, params))
            except ServeError as exc:
                raise _for_input(exc, index, len(items)) from None
            except Exception:
                logger.exception("model %s: tokenizing inputs[%d] failed", self.model.name, index)
                raise _for_input(self._failed(), index, len(items)) from None
        self._check_work(encoded)
        return encoded

    def _check_work(self, encoded: Sequence[Encoded]) -> None:
        name, limits = self.model.name, self.limits
        for index, item in enumerate(encoded):
            if len(item.rows) > limits.max_rows_per_item:
                raise PayloadTooLarge(
                    f"inputs[{index}] expands to {len(item.rows)} model rows for model {name!r} "
                    "(context windows, sentences or labels); the limit is "
                    f"{limits.max_rows_per_item} (NLP_SERVE_MAX_ROWS_PER_ITEM): shorten it or "
                    "split it into several inputs"
                )
        total = sum(padded_tokens(item.n_tokens, len(item.rows)) for item in encoded)
        if total > limits.max_tokens_per_request:
            raise PayloadTooLarge(
                f"this request needs {total} padded tokens on model {name!r}; the limit is "
                f"{limits.max_tokens_per_request} (NLP_SERVE_MAX_TOKENS_PER_REQUEST): send "
                "fewer or shorter inputs per request"
            )

    async def submit(
        self, items: Sequence[Any], params: Any, deadline: float | None = None
    ) -> Served:
        """Queue the items and wait for their results (aligned with items)."""
        if self._closing:
            raise self._shutting_down()
        self._active += 1
        self._idle.clear()
        try:
            return await self._submit(items, params, deadline)
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()

    async def _submit(self, items: Sequence[Any], params: Any, deadline: float | None) -> Served:
        count = len(items)
        if self.queue_depth() + count > self.spec.max_queue:
            metrics.ITEMS_DROPPED.labels(self.model.name, "overload").inc(count)
            retry = self._retry_after_s()
            raise QueueFull(
                f"model {self.model.name!r} has {self.queue_depth()} items queued (max_queue "
                f"{self.spec.max_queue}); retry after {retry} s or send fewer items at once",
                headers={"Retry-After": str(retry)},
            )
        loop = asyncio.get_running_loop()
        deadline = deadline if deadline is not None else time.monotonic() + self.default_timeout_s
        tokenize_started = time.time_ns()
        if self._tokenize_inline(items):
            encoded = self._encode_all(items, params)
        else:
            self._incoming += count
            try:  # in the request's context: its id (and trace) reach the pool's logs
                encoded = await loop.run_in_executor(
                    self.pools.tokenize, copy_context().run, self._encode_all, items, params
                )
            finally:
                self._incoming -= count
                self._wake.set()  # the loop may be waiting for these items
        if self._closing:
            raise self._shutting_down()
        key = self.model.batch_key(params)
        work = [WorkItem(e, params, key, loop.create_future(), deadline) for e in encoded]
        if self.tracer is not None:
            trace_parent = otel_context.get_current()
            enqueued = time.time_ns()
            for item in work:
                item.clock.enqueued = enqueued
                item.trace_parent = current_span_context(trace_parent)
        self._queue.extend(work)
        self._depth_gauge.set(self.queue_depth())
        self._wake.set()
        futures = [w.future for w in work]
        try:
            _, pending = await asyncio.wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        except asyncio.CancelledError:  # the client went away
            self._abandon(work, "cancelled")
            raise
        if pending:
            self._abandon(work, "deadline")
            timeout_ms = round((deadline - work[0].enqueued_at) * 1000)
            raise DeadlineExceeded(
                f"model {self.model.name!r} did not answer within the request deadline "
                f"(~{timeout_ms} ms); retry later or allow more time with X-Request-Timeout-Ms"
            )
        for index, future in enumerate(futures):
            error = future.exception()
            if isinstance(error, ServeError):
                raise _for_input(error, index, count)
            if error is not None:
                raise error
        if self.tracer is not None:
            emit_request_spans(
                self.tracer,
                trace_parent,
                self.model.name,
                (tokenize_started, work[0].clock.enqueued),
                [item.clock for item in work],
            )
        times = StageTimes(
            tokenize=sum(item.encoded.tokenize_s for item in work),
            queue=max(item.queued_s for item in work),
            forward=max(item.forward_s for item in work),
            postprocess=max(item.postprocess_s for item in work),
        )
        return Served([future.result() for future in futures], times)

    def _abandon(self, work: list[WorkItem], reason: str) -> None:
        for item in work:
            if not item.future.done():
                item.drop_reason = reason
                item.future.cancel()
        self._wake.set()  # let the loop purge them now, freeing queue room

    # -- scheduling loop -------------------------------------------------------------------

    def _deadline_passed(self) -> DeadlineExceeded:
        return DeadlineExceeded(f"deadline passed while queued for {self.model.name!r}")

    def _purge(self) -> None:
        """Drop items whose client left or whose deadline passed, before any forward pass."""
        now = time.monotonic()
        keep = []
        for item in self._queue:
            if item.future.done():
                metrics.ITEMS_DROPPED.labels(self.model.name, item.drop_reason).inc()
            elif now >= item.deadline:
                metrics.ITEMS_DROPPED.labels(self.model.name, "deadline").inc()
                _settle(item.future, self._deadline_passed())
            else:
                keep.append(item)
        self._queue = keep
        self._depth_gauge.set(self.queue_depth())

    def _batch_is_full(self) -> bool:
        return len(self._queue) >= self.spec.max_batch_size

    async def _wait_window(self) -> None:
        """Wait for items on their way, at most max_wait_ms from the oldest waiting item."""
        window_end = self._queue[0].enqueued_at + self.spec.max_wait_ms / 1000.0
        while self._incoming > 0 and not self._batch_is_full():
            remaining = window_end - time.monotonic()
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                if self._closing:
                    break
            self._purge()
            if not self._queue:
                continue
            await self._wait_window()
            self._purge()
            batch = select_batch(
                self._queue,
                self.spec.max_batch_size,
                self.spec.max_batch_tokens,
                self.spec.min_fill,
            )
            if not batch:
                continue
            chosen = set(map(id, batch))
            self._queue = [item for item in self._queue if id(item) not in chosen]
            self._depth_gauge.set(self.queue_depth())
            self._running = True
            try:
                await self._run_batch(loop, batch)
            finally:
                self._running = False

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list[WorkItem]) -> None:
        started = time.monotonic()
        for item in batch:
            item.queued_s = started - item.enqueued_at
            self._queue_wait.observe(item.queued_s)
        if self.tracer is not None:
            batch_started = time.time_ns()
            for item in batch:
                item.clock.batch_started = batch_started
        self._batch_size.observe(len(batch))
        longest = max(item.tokens for item in batch)
        self._batch_tokens.observe(padded_tokens(longest, sum(i.rows for i in batch)))
        # Nothing else waiting: decode on the model thread too and save a thread hop. Under
        # load, decoding goes to this model's decode pool so the model starts its next batch.
        # A batch over the token budget (one large item) is decoded right away as well, so its
        # outputs are freed and the heap trimmed before the next batch.
        oversized = self._oversized(batch)
        inline = oversized or (not self._queue and not self._incoming)
        try:
            if inline:
                outcomes = await loop.run_in_executor(
                    self._forward, self._forward_and_decode, batch
                )
            else:
                outputs = await loop.run_in_executor(self._forward, self._forward_only, batch)
        except Exception as exc:
            logger.warning(
                "model %s: batch of %d failed (%s); retrying its items one by one",
                self.model.name,
                len(batch),
                type(exc).__name__,
            )
            outcomes = await loop.run_in_executor(self._forward, self._one_by_one, batch)
            inline = True
        if self.tracer is not None:
            self._trace_batch(batch)
        if inline:
            for item, outcome in zip(batch, outcomes, strict=True):
                _settle(item.future, outcome)
            del outcomes
            if oversized:
                await loop.run_in_executor(self._forward, release_free_heap)
        else:
            self._spawn(self._decode(batch, outputs))
        elapsed = time.monotonic() - started
        self._batch_seconds = (
            elapsed if not self._batch_seconds else (0.8 * self._batch_seconds + 0.2 * elapsed)
        )

    def _trace_batch(self, batch: list[WorkItem]) -> None:
        """The batch's span, linked to its requests; their forward spans link back to it."""
        assert self.tracer is not None
        rows = sum(item.rows for item in batch)
        context = emit_batch_span(
            self.tracer,
            self.model.name,
            min(item.clock.forward_started for item in batch),
            max(item.clock.forward_ended for item in batch),
            [item.trace_parent for item in batch if item.trace_parent is not None],
            rows,
            padded_tokens(max(item.tokens for item in batch), rows),
        )
        for item in batch:
            item.clock.batch_span = context

    # -- on the model thread ---------------------------------------------------------------

    def _failed(self) -> InferenceFailed:
        """What a client hears of a model fault; the exception itself goes to the log."""
        return InferenceFailed(
            f"model {self.model.name!r} failed on this input; the error is in the server log. "
            "Other inputs were served; if it persists for this input, report it with the input."
        )

    def _fault(self, item: WorkItem, where: str) -> InferenceFailed:
        """Log the exception being handled, once, with the item's request id; the client's
        error names no backend text."""
        logger.exception(
            "model %s: an input %s",
            self.model.name,
            where,
            extra={"request_id": item.request_id, "model": self.model.name},
        )
        return self._failed()

    def _one_by_one(self, batch: list[WorkItem]) -> list[Any]:
        """Run each item alone: the poison input fails by itself, the others succeed."""
        outcomes: list[Any] = []
        for item in batch:
            if item.future.done():
                outcomes.append(None)  # abandoned meanwhile; _settle ignores it
                continue
            try:
                outcomes.append(self._forward_and_decode([item])[0])
            except ServeError as exc:
                outcomes.append(exc)
            except Exception:
                outcomes.append(self._fault(item, "failed on its own"))
        return outcomes

    def _oversized(self, batch: list[WorkItem]) -> bool:
        rows = sum(item.rows for item in batch)
        return padded_tokens(max(item.tokens for item in batch), rows) > self.spec.max_batch_tokens

    def _forward_only(self, batch: list[WorkItem]) -> list[ModelOutputs | BaseException]:
        """Each item's own outputs, or why it has none (dropped between chunks)."""
        # Items share a batch key, so the first item's params drive the forward pass.
        params = batch[0].params
        started = time.time_ns()
        if self._oversized(batch):
            outputs = self._forward_in_chunks(batch, params)
        else:
            # Generation stops once the last waiting item's deadline has passed.
            forward = self.model.forward_rows(
                [row for item in batch for row in item.encoded.rows],
                params,
                max(item.deadline for item in batch),
            )
            for item in batch:
                item.forward_s = forward.seconds
            outputs = list(split_rows(forward.value, [item.rows for item in batch]))
        ended = time.time_ns()
        for item in batch:
            item.clock.forward_started, item.clock.forward_ended = started, ended
        return outputs

    def _forward_in_chunks(
        self, batch: list[WorkItem], params: Any
    ) -> list[ModelOutputs | BaseException]:
        """Run rows in passes of at most max_batch_tokens padded tokens (one item may hold
        hundreds of rows), shortest first; between passes, rows of items nobody waits for any
        more (client gone, deadline passed) are skipped."""
        order = sorted(
            (len(row["input_ids"]), index, position)
            for index, item in enumerate(batch)
            for position, row in enumerate(item.encoded.rows)
        )
        per_row: list[list[ModelOutputs]] = [[{} for _ in range(item.rows)] for item in batch]
        dropped: dict[int, BaseException] = {}
        next_row = 0
        while next_row < len(order):
            now = time.monotonic()
            for index, item in enumerate(batch):
                if index not in dropped and not item.wanted(now):
                    dropped[index] = self._drop_running(item)
            chunk: list[tuple[int, int]] = []
            longest = 0
            while next_row < len(order):
                length, index, position = order[next_row]
                if index in dropped:
                    next_row += 1
                    continue
                wider = max(longest, length)
                if chunk and padded_tokens(wider, len(chunk) + 1) > self.spec.max_batch_tokens:
                    break
                chunk.append((index, position))
                longest = wider
                next_row += 1
            if not chunk:
                break
            members = {index for index, _ in chunk}
            forward = self.model.forward_rows(
                [batch[index].encoded.rows[position] for index, position in chunk],
                params,
                max(batch[index].deadline for index in members),
            )
            for k, (index, position) in enumerate(chunk):
                per_row[index][position] = {key: value[k] for key, value in forward.value.items()}
            for index in members:
                batch[index].forward_s += forward.seconds
        return [
            dropped[index] if index in dropped else stack_rows(per_row[index])
            for index in range(len(batch))
        ]

    def _drop_running(self, item: WorkItem) -> BaseException:
        """Count an item dropped mid-run; its outcome (ignored if its future is done)."""
        reason = item.drop_reason if item.future.done() else "deadline"
        metrics.ITEMS_DROPPED.labels(self.model.name, reason).inc()
        return self._deadline_passed()

    def _decode_all(
        self, batch: list[WorkItem], outputs: Sequence[ModelOutputs | BaseException]
    ) -> list[Any]:
        """Decode item by item: one item's decoding error is that item's alone."""
        outcomes: list[Any] = []
        for item, own in zip(batch, outputs, strict=True):
            item.clock.decode_started = item.clock.decode_ended = time.time_ns()
            if isinstance(own, BaseException):
                outcomes.append(own)
                continue
            try:
                decoded = self.model.decode(item.encoded, own, item.params)
            except ServeError as exc:
                outcomes.append(exc)
                continue
            except Exception:
                outcomes.append(self._fault(item, "failed in decoding"))
                continue
            item.postprocess_s = decoded.seconds
            item.clock.decode_ended = time.time_ns()
            outcomes.append(decoded.value)
        return outcomes

    def _forward_and_decode(self, batch: list[WorkItem]) -> list[Any]:
        return self._decode_all(batch, self._forward_only(batch))

    async def _decode(
        self, batch: list[WorkItem], outputs: Sequence[ModelOutputs | BaseException]
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            outcomes = await loop.run_in_executor(self._decoder, self._decode_all, batch, outputs)
        except Exception:  # the pool itself failed: never leave futures hanging
            logger.exception("model %s: the decode pool failed", self.model.name)
            outcomes = [self._failed()] * len(batch)
        for item, outcome in zip(batch, outcomes, strict=True):
            _settle(item.future, outcome)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- shutdown --------------------------------------------------------------------------

    def _shutting_down(self) -> NotReady:
        return NotReady(f"model {self.model.name!r} is shutting down; retry on another replica")

    async def drain(self) -> None:
        """Finish every request already submitted (queued, tokenizing, running), then close.

        Whoever calls this has stopped sending new work here (the registry retires the
        handle first); a submit that arrives anyway is still served, never failed.
        """
        while self._active:
            await self._idle.wait()
        await self.close()

    async def close(self) -> None:
        """Stop taking work, fail what waits with 503, let the running batch finish."""
        self._closing = True
        for item in self._queue:
            _settle(item.future, self._shutting_down())
        self._queue.clear()
        self._wake.set()
        await asyncio.gather(self._loop_task, return_exceptions=True)  # ends after its batch
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        self._decoder.shutdown(wait=True)
        self._depth_gauge.set(0)
