"""The core's tokenizer-only work: inline when small, else in the tokenize pool within the
call's deadline, dropped when the caller leaves."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.core import CallContext, InferenceCore
from app.errors import ClientClosedRequest, DeadlineExceeded
from app.settings import Settings


def core(pool: ThreadPoolExecutor | None = None, inline_chars: int = 0) -> InferenceCore:
    settings = Settings(_env_file=None, inline_tokenize_max_chars=inline_chars)  # type: ignore[call-arg]
    return InferenceCore(None, settings, pool)  # type: ignore[arg-type]


def call_within(seconds: float) -> CallContext:
    return CallContext(time.monotonic() + seconds)


async def test_small_work_runs_on_the_loop_and_large_work_in_the_pool() -> None:
    pool = ThreadPoolExecutor(1, thread_name_prefix="tokenize")
    on_loop = threading.current_thread().name
    try:
        small = await core(pool, 10)._tokenizer_work(
            call_within(5), 10, lambda: threading.current_thread().name
        )
        large = await core(pool, 10)._tokenizer_work(
            call_within(5), 11, lambda: threading.current_thread().name
        )
    finally:
        pool.shutdown()
    assert small == on_loop
    assert large.startswith("tokenize")
    default = await core()._tokenizer_work(call_within(5), 1, threading.current_thread)
    assert default is not threading.current_thread()  # asyncio's default executor


async def test_work_past_the_deadline_answers_504() -> None:
    with pytest.raises(DeadlineExceeded, match="X-Request-Timeout-Ms"):
        await core()._tokenizer_work(call_within(0.05), 1, lambda: time.sleep(0.5))


async def test_a_caller_that_leaves_drops_the_work() -> None:
    async def gone() -> None:
        await asyncio.sleep(0)

    call = CallContext(time.monotonic() + 5, gone=gone)
    with pytest.raises(ClientClosedRequest):
        await core()._tokenizer_work(call, 1, lambda: time.sleep(0.5))
