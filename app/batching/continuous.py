"""Continuous batching for causal LMs: sequences share decoder steps, joining and leaving
between them (docs/architecture.md, generation).

Each scheduler iteration, on the model's own thread:
1. sequences whose caller left or whose deadline passed leave (at the next step, never
   mid-step), and their KV rows with them;
2. waiting sequences start, first come first served, while the batch has room
   (`max_batch_size`) and their reservation (prompt + max_new_tokens) fits the KV budget
   (`kv_cache_tokens`); in `static` scheduling only once the running batch is empty;
3. prompts are prefilled, at most `prefill_chunk_tokens` of them per iteration, so a long prompt
   costs the running streams one chunk's time per step, not its whole length; a sequence whose
   prompt is read samples its first token and joins the running batch;
4. one decoder step runs every running sequence, and each samples its next token.

Rows of the running batch are left-padded to one width (app/runtimes/kv.py); a leaving
sequence's row stays free for the next one to join (app/batching/running.py). First tokens
go to their callers as soon as they are sampled, the others after each decoder step, from
the event loop.

A request that cannot fit the budget alone answers 413; one that finds the waiting line full
(`max_queue` sequences, or a whole budget's worth of reservations already waiting) answers
429 with Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from app import metrics
from app.batching.base import Served, StageTimes
from app.batching.running import Event, GenSequence, RunningBatch
from app.errors import (
    DeadlineExceeded,
    InferenceFailed,
    NotReady,
    PayloadTooLarge,
    QueueFull,
    ServeError,
)
from app.pipeline import GenerativeModel
from app.runtimes.base import StepInputs
from app.spec import GenerateOptions
from app.tasks.base import Encoded
from app.tasks.causal import Completion, GenerateParams, Prompt, TokenEvent

logger = logging.getLogger(__name__)


class Generation:
    """One request's sequences as they run: iterate for (prompt index, token or completion)
    until every sequence has completed; a sequence's error is raised. Leaving early (the
    iterator closed, the task cancelled) ends them all at the next step."""

    def __init__(
        self,
        batcher: ContinuousBatcher,
        sequences: list[GenSequence],
        events: asyncio.Queue[tuple[int, Event]],
    ) -> None:
        self.sequences = sequences
        self._batcher = batcher
        self._events = events

    async def __aiter__(self) -> AsyncIterator[tuple[int, TokenEvent | Completion]]:
        running = len(self.sequences)
        try:
            while running:
                index, event = await self._events.get()
                if isinstance(event, ServeError):
                    raise event
                if isinstance(event, Completion):
                    running -= 1
                yield index, event
        finally:
            self.cancel()

    def cancel(self) -> None:
        for seq in self.sequences:
            self._batcher.cancel(seq)

    def times(self) -> StageTimes:
        """Tokenizing (all prompts), waiting to start and generating (the slowest's)."""
        sequences = self.sequences
        return StageTimes(
            tokenize=sum(seq.tokenize_s for seq in sequences),
            queue=max((seq.started or seq.arrived) - seq.arrived for seq in sequences),
            forward=max(seq.forward_s for seq in sequences),
        )


class ContinuousBatcher:
    def __init__(
        self,
        model: GenerativeModel,
        model_thread: ThreadPoolExecutor,
        default_timeout_s: float,
        tokenize_pool: Executor | None = None,
        *,
        inline_tokenize_max_chars: int = 2048,
        max_prompt_tokens: int | None = None,
    ) -> None:
        self.model = model
        self.name = model.name
        self.options: GenerateOptions = model.task.options
        self.max_running = model.batching.max_batch_size
        self.max_waiting = model.batching.max_queue
        self.default_timeout_s = default_timeout_s
        self._thread = model_thread
        self._tokenize_pool = tokenize_pool
        self._inline_chars = inline_tokenize_max_chars
        self._max_prompt_tokens = max_prompt_tokens
        self._waiting: deque[GenSequence] = deque()
        self._waiting_reserved = 0
        self._prefilling: list[GenSequence] = []
        # Every sequence admitted and not yet ended, wherever it is (waiting, prefilling,
        # running, or between two of those inside an iteration): what a failure must end.
        self._live: set[GenSequence] = set()
        self._batch = RunningBatch(static=self.options.scheduling == "static")
        self._reserved = 0  # KV tokens reserved by prefilling and running sequences
        self._lock = threading.Lock()  # the two reservation counters and the live set
        self._step_s = 0.05  # moving average of an iteration (Retry-After)
        self._wake = asyncio.Event()
        self._closed = False
        self._submitted = 0  # sequences submitted and not yet answered (drain)
        self._idle = asyncio.Event()
        self._idle.set()
        self._loop_task: asyncio.Task[None] | None = None
        labels = (self.name,)
        self._running_gauge = metrics.SEQUENCES_RUNNING.labels(*labels)
        self._waiting_gauge = metrics.SEQUENCES_WAITING.labels(*labels)
        self._kv_gauge = metrics.KV_CACHE_TOKENS.labels(*labels)
        self._ttft = metrics.TIME_TO_FIRST_TOKEN.labels(*labels)
        self._itl = metrics.INTER_TOKEN_SECONDS.labels(*labels)
        self._generated = metrics.GENERATED_TOKENS.labels(*labels)
        self._prompt_tokens = metrics.PROMPT_TOKENS.labels(*labels)
        metrics.KV_CACHE_CAPACITY.labels(*labels).set(self.options.kv_cache_tokens)
        metrics.QUEUE_CAPACITY.labels(*labels).set(self.max_waiting)
        for gauge in (self._running_gauge, self._waiting_gauge, self._kv_gauge):
            gauge.set(0)

    # -- the caller's side (event loop) ----------------------------------------------------

    def queue_depth(self) -> int:
        return len(self._waiting)

    async def submit(
        self, items: Sequence[Prompt], params: GenerateParams, deadline: float | None = None
    ) -> Served:
        """Generate for every prompt (not streamed): their completions, in order."""
        run = await self.start(items, params, deadline)
        completions: dict[int, Completion] = {}
        async for index, event in run:
            if isinstance(event, Completion):
                completions[index] = event
        return Served([completions[i] for i in range(len(run.sequences))], run.times())

    def cancel(self, seq: GenSequence) -> None:
        """The caller left: the sequence ends at the next step (a no-op once it has ended)."""
        if not seq.done:
            seq.cancelled = True
            self._wake.set()

    async def start(
        self, items: Sequence[Prompt], params: GenerateParams, deadline: float | None = None
    ) -> Generation:
        """Tokenize and check every prompt, then queue them all (or none: 413, 429)."""
        if self._closed:
            raise NotReady(f"model {self.name!r} is shutting down; retry on another replica")
        arrived = time.monotonic()
        deadline = deadline if deadline is not None else arrived + self.default_timeout_s
        loop = asyncio.get_running_loop()
        encoded: list[Encoded] = []
        for item in items:
            # An idle model tokenizes a short prompt on the loop; a long one never blocks it.
            if self.model.item_chars(item) <= self._inline_chars and not self._waiting:
                encoded.append(self.model.encode(item, params))
            else:
                encoded.append(
                    await loop.run_in_executor(self._tokenize_pool, self.model.encode, item, params)
                )
        events: asyncio.Queue[tuple[int, Event]] = asyncio.Queue()
        sequences = [
            self._sequence(i, e, params, deadline, arrived, events) for i, e in enumerate(encoded)
        ]
        self._admit_to_line(sequences)
        return Generation(self, sequences, events)

    def _sequence(
        self,
        index: int,
        encoded: Encoded,
        params: GenerateParams,
        deadline: float,
        arrived: float,
        events: asyncio.Queue[tuple[int, Event]],
    ) -> GenSequence:
        continuation = self.model.task.continuation(encoded, params)
        prompt = list(encoded.rows[0]["input_ids"])
        if self._max_prompt_tokens is not None and len(prompt) > self._max_prompt_tokens:
            raise PayloadTooLarge(
                f"prompts[{index}] has {len(prompt)} tokens; this server reads at most "
                f"{self._max_prompt_tokens} (NLP_SERVE_MAX_PROMPT_TOKENS): shorten it"
            )
        reserve = len(prompt) + continuation.max_new_tokens
        if reserve > self.options.kv_cache_tokens:
            raise PayloadTooLarge(
                f"the prompt ({len(prompt)} tokens) and max_new_tokens "
                f"({continuation.max_new_tokens}) "
                f"need {reserve} tokens of KV cache; model {self.name!r} holds "
                f"{self.options.kv_cache_tokens} for all its sequences (kv_cache_tokens): "
                "shorten the prompt or ask for fewer new tokens (max_new_tokens; max_tokens on "
                "the OpenAI routes)"
            )
        return GenSequence(
            index, continuation, prompt, deadline, arrived, encoded.tokenize_s, events, reserve
        )

    def _admit_to_line(self, sequences: list[GenSequence]) -> None:
        reserve = sum(seq.reserve for seq in sequences)
        with self._lock:
            waiting = len(self._waiting)
            line_full = waiting + len(sequences) > self.max_waiting
            # Waiting beyond a whole budget's worth would not start within one turnover.
            budget_full = waiting and self._waiting_reserved + reserve > (
                self.options.kv_cache_tokens
            )
            if not (line_full or budget_full):
                self._waiting_reserved += reserve
                self._waiting.extend(sequences)
                self._live.update(sequences)
        if line_full or budget_full:
            metrics.ITEMS_DROPPED.labels(self.name, "overload").inc(len(sequences))
            retry = self._retry_after(waiting)
            raise QueueFull(
                f"model {self.name!r} has {waiting} sequences waiting for room in its batch "
                f"or KV cache (max_queue {self.max_waiting}, kv_cache_tokens "
                f"{self.options.kv_cache_tokens}); retry after {retry} s",
                headers={"Retry-After": str(retry)},
            )
        self._submitted += len(sequences)
        self._idle.clear()
        self._waiting_gauge.set(len(self._waiting))
        self._ensure_loop()
        self._wake.set()

    def _retry_after(self, waiting: int) -> int:
        """Seconds until the line ahead has likely started: its sequences' tokens, a step
        each, shared by the running batch."""
        tokens = self._waiting_reserved or waiting
        return max(1, math.ceil(tokens / max(1, self.max_running) * self._step_s))

    # -- the scheduling loop ----------------------------------------------------------------

    def _ensure_loop(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._run())

    def _busy(self) -> bool:
        return bool(self._waiting or self._prefilling or self._batch)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            if not self._busy():
                self._wake.clear()
                if not self._busy():
                    await self._wake.wait()
                    continue
            self._wake.clear()
            started = time.perf_counter()
            try:
                deliveries = await loop.run_in_executor(self._thread, self._iteration, loop)
            except Exception:  # a bug of the loop itself: fail everything, keep serving
                logger.exception("generation loop of model %s failed", self.name)
                deliveries = self._fail_all(
                    InferenceFailed(f"model {self.name!r} failed; the error is in the server log")
                )
            self._step_s = 0.9 * self._step_s + 0.1 * (time.perf_counter() - started)
            self._deliver(deliveries)

    def _deliver(self, deliveries: list[tuple[GenSequence, Event]]) -> None:
        for seq, event in deliveries:
            if isinstance(event, (Completion, ServeError)):
                seq.done = True
                self._submitted -= 1
            seq.events.put_nowait((seq.index, event))
        if self._submitted == 0:
            self._idle.set()
        self._running_gauge.set(len(self._batch) + len(self._prefilling))
        self._waiting_gauge.set(len(self._waiting))
        self._kv_gauge.set(self._reserved)

    # -- one iteration (model thread) -------------------------------------------------------

    def _iteration(self, loop: asyncio.AbstractEventLoop) -> list[tuple[GenSequence, Event]]:
        out: list[tuple[GenSequence, Event]] = []
        self._leave(out)
        self._start_waiting()
        self._prefill(out)
        if self._batch:
            if out:  # first tokens go out now, not after the decoder step (time to first token)
                loop.call_soon_threadsafe(self._deliver, out)
                out = []
            self._decode(out)
        self._batch.tidy()
        return out

    def _ended(self, seq: GenSequence, now: float) -> Event | None:
        """Why a sequence must leave before its next step, if it must."""
        if seq.cancelled:
            return ServeError("the caller left")  # nobody reads it; counted as cancelled
        if now >= seq.deadline:
            return DeadlineExceeded(
                f"generation did not finish within the request's deadline "
                f"(NLP_SERVE_GENERATE_TIMEOUT_MS or X-Request-Timeout-Ms); "
                f"{len(seq.continuation.tokens)} tokens were generated: ask for fewer tokens "
                "or retry when the model is less busy"
            )
        return None

    def _leave(self, out: list[tuple[GenSequence, Event]]) -> None:
        now = time.monotonic()
        with self._lock:  # the event loop appends meanwhile: deque.remove must not see it
            waiting = list(self._waiting)
        for seq in waiting:
            event = self._ended(seq, now)
            if event is not None:
                with self._lock:
                    self._waiting.remove(seq)
                    self._waiting_reserved -= seq.reserve
                self._end(seq, event, out)
        for seq in list(self._prefilling):
            event = self._ended(seq, now)
            if event is not None:
                self._prefilling.remove(seq)
                self._release(seq)
                self._end(seq, event, out)
        for seq in self._batch.sequences:
            event = self._ended(seq, now)
            if event is not None:
                self._release(seq)
                self._end(seq, event, out)
                self._batch.leave(seq)

    def _end(self, seq: GenSequence, event: Event, out: list[tuple[GenSequence, Event]]) -> None:
        reason: str
        if isinstance(event, Completion):
            reason = event.finish_reason
        elif seq.cancelled:
            reason = "cancelled"
        elif isinstance(event, DeadlineExceeded):
            reason = "deadline"
        else:
            reason = "error"
        with self._lock:
            self._live.discard(seq)
        metrics.SEQUENCES_FINISHED.labels(self.name, reason).inc()
        if reason in ("cancelled", "deadline") and seq.started is None:
            metrics.ITEMS_DROPPED.labels(self.name, reason).inc()
        seq.cache = None
        out.append((seq, event))

    def _release(self, seq: GenSequence) -> None:
        with self._lock:
            self._reserved -= seq.reserve

    def _start_waiting(self) -> None:
        if self.options.scheduling == "static" and (self._batch or self._prefilling):
            return
        budget = self.options.kv_cache_tokens
        while self._waiting and len(self._batch) + len(self._prefilling) < self.max_running:
            seq = self._waiting[0]
            with self._lock:
                if self._reserved + seq.reserve > budget:
                    return  # first come, first served: nobody overtakes it
                self._reserved += seq.reserve
                self._waiting_reserved -= seq.reserve
                self._waiting.popleft()
            seq.started = time.monotonic()
            metrics.QUEUE_WAIT_SECONDS.labels(self.name).observe(seq.started - seq.arrived)
            self._prefilling.append(seq)

    def _prefill(self, out: list[tuple[GenSequence, Event]]) -> None:
        budget = self.options.prefill_chunk_tokens
        for seq in list(self._prefilling):
            if budget <= 0:
                return
            count = min(budget, len(seq.prompt) - seq.prefilled)
            budget -= count
            start, end = seq.prefilled, seq.prefilled + count
            inputs = StepInputs.prefill(seq.prompt, start, end)
            try:
                timed = self.model.step(inputs, seq.cache)
            except Exception:
                logger.exception("model %s failed to prefill a prompt", self.name)
                self._prefilling.remove(seq)
                self._release(seq)
                self._end(seq, self._model_fault(), out)
                continue
            logits, seq.cache = timed.value
            seq.forward_s += timed.seconds
            seq.prefilled = seq.cached = end
            if end == len(seq.prompt):
                self._prompt_tokens.inc(len(seq.prompt))
                self._prefilling.remove(seq)
                self._first_token(seq, logits[0], out)

    def _first_token(
        self, seq: GenSequence, logits: Any, out: list[tuple[GenSequence, Event]]
    ) -> None:
        now = time.monotonic()
        self._ttft.observe(now - seq.arrived)
        seq.last_token_at = now
        if self._advance(seq, logits, out):
            self._batch.join(seq)

    def _advance(self, seq: GenSequence, logits: Any, out: list[tuple[GenSequence, Event]]) -> bool:
        """Sample the sequence's next token and send it; False once the sequence finished."""
        out.append((seq, seq.continuation.advance(logits)))
        self._generated.inc()
        if seq.continuation.finished:
            self._release(seq)
            self._end(seq, seq.continuation.completion(), out)
            return False
        return True

    def _decode(self, out: list[tuple[GenSequence, Event]]) -> None:
        batch = self._batch
        try:
            timed = self.model.step(batch.step_inputs(), batch.cache)
        except Exception:
            logger.exception("model %s failed a decoder step of %d rows", self.name, len(batch))
            for seq in batch.sequences:
                self._release(seq)
                self._end(seq, self._model_fault(), out)
            batch.clear()
            return
        logits, cache = timed.value
        batch.stepped(cache)
        now = time.monotonic()
        for i, row in enumerate(batch.rows):
            if row is None:
                continue
            row.forward_s += timed.seconds
            self._itl.observe(now - row.last_token_at)
            row.last_token_at = now
            if not self._advance(row, logits[i], out):
                batch.leave(row)

    def _model_fault(self) -> InferenceFailed:
        return InferenceFailed(
            f"model {self.name!r} failed while generating; the error is in the server log"
        )

    def _fail_all(self, error: ServeError) -> list[tuple[GenSequence, Event]]:
        out: list[tuple[GenSequence, Event]] = []
        with self._lock:
            live = list(self._live)
        for seq in live:
            self._end(seq, error, out)
        self._prefilling = []
        self._batch.clear()
        with self._lock:
            self._waiting.clear()
            self._reserved = self._waiting_reserved = 0
        return out

    # -- stopping ------------------------------------------------------------------------

    async def drain(self) -> None:
        """Finish every sequence already submitted, then close."""
        await self._idle.wait()
        await self.close()

    async def close(self) -> None:
        """Stop: whatever is waiting or running ends with 503 at once."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._loop_task is not None:
            await asyncio.gather(self._loop_task, return_exceptions=True)
        self._deliver(
            self._fail_all(NotReady(f"model {self.name!r} is shutting down; retry the request"))
        )
        for gauge in (self._running_gauge, self._waiting_gauge, self._kv_gauge):
            gauge.set(0)
