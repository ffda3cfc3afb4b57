"""The dynamic batcher: one queue per model (docs/architecture.md).

A request's items are tokenized off the event loop as they arrive (in a shared pool), so the
next batch is tokenized while the current one runs on the model's own thread. The scheduling
loop waits at most max_wait_ms from the oldest waiting item, and only while more items are on
their way (still being tokenized) and the batch is not full: an idle model with one request
runs it at once. Items whose client left or whose deadline passed are dropped before the
forward pass and counted. Decoding runs in a shared pool while the model starts its next
batch. A failed batch is retried one item at a time so a poison input fails alone. Every
future is settled exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from app import metrics
from app.batching.base import Served, StageTimes, Timed
from app.batching.policy import padded_tokens, select_batch
from app.errors import DeadlineExceeded, InferenceFailed, NotReady, QueueFull, ServeError
from app.runtimes.base import ModelOutputs
from app.spec import BatchingSpec
from app.tasks.base import Encoded

logger = logging.getLogger(__name__)


class BatchableModel(Protocol):
    """What the batcher needs from a model (ServedModel, or a test double)."""

    name: str

    @property
    def batching(self) -> BatchingSpec: ...

    def batch_key(self, params: Any) -> Hashable: ...

    def encode(self, item: Any, params: Any) -> Encoded:
        """Tokenize one item, setting its tokenize_s."""
        ...

    def forward_batch(self, encoded: Sequence[Encoded], params: Any) -> Timed[ModelOutputs]: ...

    def split_outputs(
        self, encoded: Sequence[Encoded], outputs: ModelOutputs
    ) -> list[ModelOutputs]: ...

    def decode(self, encoded: Encoded, outputs: ModelOutputs, params: Any) -> Timed[Any]: ...


@dataclass
class WorkerPools:
    """Thread pools shared by every model's batcher: tokenization and decoding."""

    tokenize: ThreadPoolExecutor
    postprocess: ThreadPoolExecutor

    @classmethod
    def create(cls, tokenize_threads: int, postprocess_threads: int) -> WorkerPools:
        return cls(
            ThreadPoolExecutor(tokenize_threads, thread_name_prefix="tokenize"),
            ThreadPoolExecutor(postprocess_threads, thread_name_prefix="postprocess"),
        )

    def shutdown(self) -> None:
        self.tokenize.shutdown(wait=True, cancel_futures=True)
        self.postprocess.shutdown(wait=True, cancel_futures=True)


@dataclass(eq=False)
class WorkItem:
    encoded: Encoded
    params: Any
    key: Hashable
    future: asyncio.Future[Any]
    deadline: float
    enqueued_at: float = field(default_factory=time.monotonic)
    drop_reason: str = "cancelled"
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


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    """Set a future's result or exception unless it is already done: exactly once."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _as_client_error(model: str, exc: Exception) -> ServeError:
    if isinstance(exc, ServeError):
        return exc
    return InferenceFailed(
        f"model {model!r} failed on this input ({type(exc).__name__}: {exc}); other inputs "
        "were served. If it persists for this input, report it with the input attached."
    )


class Batcher:
    def __init__(
        self,
        model: BatchableModel,
        pools: WorkerPools,
        default_timeout_s: float,
        model_thread: ThreadPoolExecutor,
    ):
        """model_thread (one worker, owned by the caller) runs every forward pass."""
        self.model = model
        self.spec = model.batching
        self.pools = pools
        self.default_timeout_s = default_timeout_s
        self._queue: list[WorkItem] = []
        self._incoming = 0  # items admitted but still being tokenized
        self._wake = asyncio.Event()
        self._closing = False
        self._forward = model_thread
        self._background: set[asyncio.Task[None]] = set()
        self._batch_seconds = 0.0  # moving average, for Retry-After
        self._running = False  # a batch is on the model thread
        self._depth_gauge = metrics.QUEUE_DEPTH.labels(model.name)
        self._queue_wait = metrics.QUEUE_WAIT_SECONDS.labels(model.name)
        self._batch_size = metrics.BATCH_SIZE.labels(model.name)
        self._batch_tokens = metrics.BATCH_TOKENS.labels(model.name)
        metrics.QUEUE_CAPACITY.labels(model.name).set(self.spec.max_queue)
        self._loop_task = asyncio.get_running_loop().create_task(self._loop())

    # -- admission -------------------------------------------------------------------------

    def queue_depth(self) -> int:
        return len(self._queue) + self._incoming

    def _retry_after_s(self) -> int:
        batches_ahead = math.ceil(self.queue_depth() / self.spec.max_batch_size)
        return max(1, math.ceil(batches_ahead * self._batch_seconds))

    def _idle(self) -> bool:
        return not self._queue and not self._incoming and not self._running

    def _encode_all(self, items: Sequence[Any], params: Any) -> list[Encoded]:
        return [self.model.encode(item, params) for item in items]

    async def submit(
        self, items: Sequence[Any], params: Any, deadline: float | None = None
    ) -> Served:
        """Queue the items and wait for their results (aligned with items)."""
        if self._closing:
            raise self._shutting_down()
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
        if self._idle():
            # Nobody to overlap with: tokenizing here saves two thread hops of latency.
            encoded = self._encode_all(items, params)
        else:
            self._incoming += count
            try:
                encoded = await loop.run_in_executor(
                    self.pools.tokenize, self._encode_all, items, params
                )
            finally:
                self._incoming -= count
                self._wake.set()  # the loop may be waiting for these items
        if self._closing:
            raise self._shutting_down()
        key = self.model.batch_key(params)
        work = [WorkItem(e, params, key, loop.create_future(), deadline) for e in encoded]
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

    def _purge(self) -> None:
        """Drop items whose client left or whose deadline passed, before any forward pass."""
        now = time.monotonic()
        keep = []
        for item in self._queue:
            if item.future.done():
                metrics.ITEMS_DROPPED.labels(self.model.name, item.drop_reason).inc()
            elif now >= item.deadline:
                metrics.ITEMS_DROPPED.labels(self.model.name, "deadline").inc()
                _settle(
                    item.future,
                    DeadlineExceeded(f"deadline passed while queued for {self.model.name!r}"),
                )
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
        name = self.model.name
        for item in batch:
            item.queued_s = started - item.enqueued_at
            self._queue_wait.observe(item.queued_s)
        self._batch_size.observe(len(batch))
        longest = max(item.tokens for item in batch)
        self._batch_tokens.observe(padded_tokens(longest, sum(i.rows for i in batch)))
        # Nothing else waiting: decode on the model thread too and save a thread hop. Under
        # load, decoding goes to the shared pool so the model starts its next batch at once.
        inline = not self._queue and not self._incoming
        try:
            if inline:
                outcomes = await loop.run_in_executor(
                    self._forward, self._forward_and_decode, batch
                )
            else:
                outputs = await loop.run_in_executor(self._forward, self._forward_only, batch)
        except Exception as exc:
            logger.warning(
                "model %s: batch of %d failed (%s: %s); retrying its items one by one",
                name,
                len(batch),
                type(exc).__name__,
                exc,
            )
            outcomes = await loop.run_in_executor(self._forward, self._one_by_one, batch)
            inline = True
        if inline:
            for item, outcome in zip(batch, outcomes, strict=True):
                _settle(item.future, outcome)
        else:
            self._spawn(self._decode(batch, outputs))
        elapsed = time.monotonic() - started
        self._batch_seconds = (
            elapsed if not self._batch_seconds else (0.8 * self._batch_seconds + 0.2 * elapsed)
        )

    def _one_by_one(self, batch: list[WorkItem]) -> list[Any]:
        """Run each item alone: the poison input fails by itself, the others succeed."""
        outcomes: list[Any] = []
        for item in batch:
            if item.future.done():
                outcomes.append(None)  # abandoned meanwhile; _settle ignores it
                continue
            try:
                outcomes.append(self._forward_and_decode([item])[0])
            except Exception as exc:
                outcomes.append(_as_client_error(self.model.name, exc))
        return outcomes

    def _forward_only(self, batch: list[WorkItem]) -> ModelOutputs:
        # Items share a batch key, so the first item's params drive the forward pass.
        forward = self.model.forward_batch([item.encoded for item in batch], batch[0].params)
        for item in batch:
            item.forward_s = forward.seconds
        return forward.value

    def _decode_all(self, batch: list[WorkItem], outputs: ModelOutputs) -> list[Any]:
        """Decode item by item: one item's decoding error is that item's alone."""
        outcomes: list[Any] = []
        slices = self.model.split_outputs([item.encoded for item in batch], outputs)
        for item, own in zip(batch, slices, strict=True):
            try:
                decoded = self.model.decode(item.encoded, own, item.params)
            except Exception as exc:
                outcomes.append(_as_client_error(self.model.name, exc))
                continue
            item.postprocess_s = decoded.seconds
            outcomes.append(decoded.value)
        return outcomes

    def _forward_and_decode(self, batch: list[WorkItem]) -> list[Any]:
        return self._decode_all(batch, self._forward_only(batch))

    async def _decode(self, batch: list[WorkItem], outputs: ModelOutputs) -> None:
        loop = asyncio.get_running_loop()
        try:
            outcomes = await loop.run_in_executor(
                self.pools.postprocess, self._decode_all, batch, outputs
            )
        except Exception as exc:  # the pool itself failed: never leave futures hanging
            outcomes = [_as_client_error(self.model.name, exc)] * len(batch)
        for item, outcome in zip(batch, outcomes, strict=True):
            _settle(item.future, outcome)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- shutdown --------------------------------------------------------------------------

    def _shutting_down(self) -> NotReady:
        return NotReady(f"model {self.model.name!r} is shutting down; retry on another replica")

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
        self._depth_gauge.set(0)
