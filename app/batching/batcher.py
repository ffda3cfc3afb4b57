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

Its parts: admission.py (queue room, tokenizing, the work limits), model_thread.py (what
runs on the model thread), work.py (the queued item and its future); this module holds the
queue, the scheduling loop and shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import Tracer

from app import metrics
from app.batching.admission import Admission
from app.batching.base import Served, StageTimes, WorkLimits
from app.batching.model_thread import ModelRunner
from app.batching.policy import padded_tokens, select_batch
from app.batching.work import (
    WorkerPools,
    WorkItem,
    deadline_passed,
    for_input,
    model_failed,
    settle,
)
from app.errors import DeadlineExceeded, NotReady, ServeError
from app.pipeline import ServedModel
from app.runtimes.base import ModelOutputs
from app.runtimes.memory import release_free_heap
from app.tracing import current_span_context, emit_batch_span, emit_request_spans

__all__ = ["Batcher", "WorkerPools"]

logger = logging.getLogger(__name__)


class Batcher:
    def __init__(
        self,
        model: ServedModel,
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
        self._admission = Admission(model, limits)
        self._runner = ModelRunner(model)
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

    # -- submit ----------------------------------------------------------------------------

    def queue_depth(self) -> int:
        return len(self._queue) + self._incoming

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
        self._admission.check_room(self.queue_depth(), count, self._batch_seconds)
        loop = asyncio.get_running_loop()
        deadline = deadline if deadline is not None else time.monotonic() + self.default_timeout_s
        tokenize_started = time.time_ns()
        idle = not (self._queue or self._incoming or self._running)
        if self._admission.tokenize_inline(items, idle):
            encoded = self._admission.encode_all(items, params)
        else:
            self._incoming += count
            try:  # in the request's context: its id (and trace) reach the pool's logs
                encoded = await loop.run_in_executor(
                    self.pools.tokenize,
                    copy_context().run,
                    self._admission.encode_all,
                    items,
                    params,
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
                f"(~{timeout_ms} ms); retry later, or allow more time: X-Request-Timeout-Ms (HTTP) "
                "or the call's deadline (gRPC), up to NLP_SERVE_REQUEST_TIMEOUT_MS"
            )
        for index, future in enumerate(futures):
            error = future.exception()
            if isinstance(error, ServeError):
                raise for_input(error, index, count)
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
        truncated = [index for index, item in enumerate(work) if item.encoded.truncated]
        return Served([future.result() for future in futures], times, truncated)

    def _abandon(self, work: list[WorkItem], reason: str) -> None:
        for item in work:
            if not item.future.done():
                item.drop_reason = reason
                item.future.cancel()
        self._wake.set()  # let the loop purge them now, freeing queue room

    # -- scheduling loop -------------------------------------------------------------------

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

    def _purge(self) -> None:
        """Drop items whose client left or whose deadline passed, before any forward pass."""
        now = time.monotonic()
        keep = []
        for item in self._queue:
            if item.future.done():
                metrics.ITEMS_DROPPED.labels(self.model.name, item.drop_reason).inc()
            elif now >= item.deadline:
                metrics.ITEMS_DROPPED.labels(self.model.name, "deadline").inc()
                settle(item.future, deadline_passed(self.model.name))
            else:
                keep.append(item)
        self._queue = keep
        self._depth_gauge.set(self.queue_depth())

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

    def _batch_is_full(self) -> bool:
        return len(self._queue) >= self.spec.max_batch_size

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
        runner = self._runner
        oversized = runner.oversized(batch)
        inline = oversized or (not self._queue and not self._incoming)
        try:
            if inline:
                outcomes = await loop.run_in_executor(
                    self._forward, runner.forward_and_decode, batch
                )
            else:
                outputs = await loop.run_in_executor(self._forward, runner.forward_only, batch)
        except Exception as exc:
            logger.warning(
                "model %s: batch of %d failed (%s); retrying its items one by one",
                self.model.name,
                len(batch),
                type(exc).__name__,
            )
            outcomes = await loop.run_in_executor(self._forward, runner.one_by_one, batch)
            inline = True
        if self.tracer is not None:
            self._trace_batch(batch)
        if inline:
            for item, outcome in zip(batch, outcomes, strict=True):
                settle(item.future, outcome)
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

    async def _decode(
        self, batch: list[WorkItem], outputs: Sequence[ModelOutputs | BaseException]
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            outcomes = await loop.run_in_executor(
                self._decoder, self._runner.decode_all, batch, outputs
            )
        except Exception:  # the pool itself failed: never leave futures hanging
            logger.exception("model %s: the decode pool failed", self.model.name)
            outcomes = [model_failed(self.model.name)] * len(batch)
        for item, outcome in zip(batch, outcomes, strict=True):
            settle(item.future, outcome)

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
            settle(item.future, self._shutting_down())
        self._queue.clear()
        self._wake.set()
        await asyncio.gather(self._loop_task, return_exceptions=True)  # ends after its batch
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        self._decoder.shutdown(wait=True)
        self._depth_gauge.set(0)
