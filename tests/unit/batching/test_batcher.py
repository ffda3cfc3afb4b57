"""The batcher's behaviour with a gated fake model: no wall-clock assertions, only order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from app import metrics
from app.batching.base import WorkLimits
from app.batching.batcher import Batcher, WorkerPools
from app.errors import DeadlineExceeded, InferenceFailed, NotReady, PayloadTooLarge, QueueFull
from app.spec import BatchingSpec
from tests.unit.batching.gated_model import GatedModel

MakeBatcher = Callable[..., tuple[Batcher, GatedModel]]
LIMITS = WorkLimits(max_rows_per_item=64, max_tokens_per_request=4096, inline_tokenize_max_chars=64)


@pytest.fixture
async def make_batcher() -> AsyncIterator[MakeBatcher]:
    pools = WorkerPools.create(tokenize_threads=2)
    made: list[Batcher] = []
    model_thread = ThreadPoolExecutor(1, thread_name_prefix="model-gated")

    def make(**batching: Any) -> tuple[Batcher, GatedModel]:
        defaults: dict[str, Any] = {"max_batch_size": 8, "max_wait_ms": 0, "max_queue": 100}
        model = GatedModel(BatchingSpec(**{**defaults, **batching}))
        batcher = Batcher(
            model, pools, default_timeout_s=30, model_thread=model_thread, limits=LIMITS
        )
        made.append(batcher)
        return batcher, model

    yield make
    for batcher in made:
        batcher.model.gate.set()  # type: ignore[attr-defined]
        await batcher.close()
    model_thread.shutdown(wait=True)
    pools.shutdown()


async def submit(
    batcher: Batcher, items: list[str], params: str, deadline: float | None = None
) -> list[Any]:
    """The results alone (where the time went is tested on its own)."""
    return (await batcher.submit(items, params, deadline)).results


async def hold_worker(batcher: Batcher, model: GatedModel) -> asyncio.Task[list[Any]]:
    """Occupy the model with one blocked batch, so later items pile up in the queue."""
    model.gate.clear()
    blocker = asyncio.create_task(submit(batcher, ["blocker"], "p"))
    await asyncio.to_thread(model.forward_started.wait, 5)
    return blocker


async def queued(batcher: Batcher, count: int) -> None:
    """Wait (bounded) until `count` items sit in the queue."""
    for _ in range(500):
        if len(batcher._queue) >= count:
            return
        await asyncio.sleep(0.002)
    raise AssertionError(f"only {len(batcher._queue)} of {count} items were queued")


def dropped(reason: str) -> float:
    return float(metrics.ITEMS_DROPPED.labels("gated", reason)._value.get())


async def test_full_batches_form_while_the_model_is_busy(make_batcher: MakeBatcher) -> None:
    batcher, model = make_batcher(max_batch_size=4)
    blocker = await hold_worker(batcher, model)
    tasks = [asyncio.create_task(submit(batcher, [f"item {i}"], "p")) for i in range(10)]
    await queued(batcher, 10)
    model.gate.set()
    results = await asyncio.gather(blocker, *tasks)
    assert results[1:] == [[f"item {i}|p"] for i in range(10)]
    assert [len(b) for b in model.batches] == [1, 4, 4, 2]


async def test_idle_model_runs_a_lone_request_at_once(make_batcher: MakeBatcher) -> None:
    batcher, model = make_batcher(max_wait_ms=10_000)  # a long window that must not be waited
    started = time.monotonic()
    assert await submit(batcher, ["alone"], "p") == ["alone|p"]
    assert time.monotonic() - started < 5  # far below the 10 s window
    assert model.batches == [["alone"]]


async def test_wait_window_gathers_items_still_being_tokenized(make_batcher: MakeBatcher) -> None:
    batcher, model = make_batcher(max_wait_ms=5_000)
    fast = asyncio.create_task(submit(batcher, ["fast"], "p"))
    slow = asyncio.create_task(submit(batcher, ["slow one"], "p"))
    await asyncio.gather(fast, slow)
    assert model.batches == [["fast", "slow one"]]


async def test_zero_wait_window_flushes_at_once(make_batcher: MakeBatcher) -> None:
    batcher, model = make_batcher(max_wait_ms=0)
    fast = asyncio.create_task(submit(batcher, ["fast"], "p"))
    slow = asyncio.create_task(submit(batcher, ["slow one"], "p"))
    await asyncio.gather(fast, slow)
    assert model.batches == [["fast"], ["slow one"]]


async def test_token_budget_splits_batches(make_batcher: MakeBatcher) -> None:
    batcher, model = make_batcher(max_batch_tokens=20)
    blocker = await hold_worker(batcher, model)
    eight_words = " ".join(["w"] * 8)
    tasks = [asyncio.create_task(submit(batcher, [eight_words], "p")) for _ in range(5)]
    await queued(batcher, 5)
    model.gate.set()
    await asyncio.gather(blocker, *tasks)
    assert [len(b) for b in model.batches[1:]] == [2, 2, 1]


async def test_similar_lengths_share_batches(make_batcher: MakeBatcher) -> None:
    batcher, model = make_batcher(max_batch_size=3)
    blocker = await hold_worker(batcher, model)
    texts = [" ".join(["w"] * n) for n in (2, 30, 3, 31, 2, 29)]
    tasks = []
    for text in texts:  # one at a time, so arrival order is the list order
        tasks.append(asyncio.create_task(submit(batcher, [text], "p")))
        await queued(batcher, len(tasks))
    model.gate.set()
    await asyncio.gather(blocker, *tasks)
    lengths = [sorted(len(t.split()) for t in batch) for batch in model.batches[1:]]
    assert lengths == [[2, 2, 3], [29, 30, 31]]


async def test_oldest_long_item_is_not_starved(make_batcher: MakeBatcher) -> None:
    batcher, model = make_batcher(max_batch_size=4, max_batch_tokens=100)
    blocker = await hold_worker(batcher, model)
    long_text = " ".join(["w"] * 50)
    tasks = [asyncio.create_task(submit(batcher, [long_text], "p"))]
    await queued(batcher, 1)
    tasks += [asyncio.create_task(submit(batcher, ["short"], "p")) for _ in range(10)]
    await queued(batcher, 11)
    model.gate.set()
    await asyncio.gather(blocker, *tasks)
    assert long_text in model.batches[1]


async def test_cancelled_items_are_dropped_before_forward(make_batcher: MakeBatcher) -> None:
    batcher, model = make_batcher()
    before = dropped("cancelled")
    blocker = await hold_worker(batcher, model)
    keep = asyncio.create_task(submit(batcher, ["keep"], "p"))
    leave = asyncio.create_task(submit(batcher, ["leave", "leave too"], "p"))
    await queued(batcher, 3)
    leave.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leave
    model.gate.set()
    assert await keep == ["keep|p"]
    await blocker
    assert all("leave" not in text for batch in model.batches for text in batch)
    assert dropped("cancelled") - before == 2


async def test_deadline_expiry_gives_504_and_skips_the_work(make_batcher: MakeBatcher) -> None:
    batcher, model = make_batcher()
    before = dropped("deadline")
    blocker = await hold_worker(batcher, model)
    with pytest.raises(DeadlineExceeded, match="X-Request-Timeout-Ms"):
        await submit(batcher, ["late"], "p", deadline=time.monotonic() + 0.05)
    model.gate.set()
    await blocker
    assert await submit(batcher, ["after"], "p") == ["after|p"]
    assert all("late" not in batch for batch in model.batches)
    assert dropped("deadline") - before == 1


async def test_full_queue_answers_429_at_once(make_batcher: MakeBatcher) -> None:
    batcher, model = make_batcher(max_queue=3)
    before = dropped("overload")
    blocker = await hold_worker(batcher, model)
    waiting = [asyncio.create_task(submit(batcher, [f"w{i}"], "p")) for i in range(3)]
    await queued(batcher, 3)
    with pytest.raises(QueueFull) as caught:
        await submit(batcher, ["one too many"], "p")
    assert int(caught.value.headers["Retry-After"]) >= 1
    assert "max_queue 3" in caught.value.message
    with pytest.raises(QueueFull):
        await submit(batcher, ["a", "b"], "p")  # a list counts every item
    assert batcher.queue_depth() == 3  # nothing queued beyond max_queue
    model.gate.set()
    await asyncio.gather(blocker, *waiting)
    assert dropped("overload") - before == 3


async def test_poison_input_fails_alone(make_batcher: MakeBatcher) -> None:
    batcher, model = make_batcher()
    blocker = await hold_worker(batcher, model)
    good = [asyncio.create_task(submit(batcher, [f"good {i}"], "p")) for i in range(3)]
    bad = asyncio.create_task(submit(batcher, ["poison pill"], "p"))
    await queued(batcher, 4)
    model.gate.set()
    await blocker
    assert [await task for task in good] == [[f"good {i}|p"] for i in range(3)]
    with pytest.raises(InferenceFailed, match=r"gated.*server log.*Other inputs") as caught:
        await bad
    assert "poisoned" not in caught.value.message  # the backend's text stays in the log
    assert len(model.batches[1]) == 4  # tried together first
    assert sorted(len(b) for b in model.batches[2:]) == [1, 1, 1, 1]  # then one by one


async def test_a_model_fault_is_logged_once_with_its_traceback_never_sent(
    make_batcher: MakeBatcher, caplog: pytest.LogCaptureFixture
) -> None:
    from app.pipeline import BatchSizeMismatch

    batcher, model = make_batcher()
    model.wrong_row_count = True  # ServedModel.forward_rows raises BatchSizeMismatch
    with pytest.raises(InferenceFailed) as caught:
        await submit(batcher, ["x"], "p")
    assert "BatchSizeMismatch" not in caught.value.message
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[0] is BatchSizeMismatch]
    assert len(logged) == 1


async def test_a_failing_input_is_named_by_its_index(make_batcher: MakeBatcher) -> None:
    batcher, _ = make_batcher()
    with pytest.raises(InferenceFailed, match=r"^inputs\[2\]: model 'gated' failed"):
        await submit(batcher, ["fine", "also fine", "poison", "fine again"], "p")


async def test_work_beyond_the_limits_is_refused_before_it_is_queued(
    make_batcher: MakeBatcher,
) -> None:
    batcher, model = make_batcher()
    with pytest.raises(PayloadTooLarge, match=r"inputs\[1\].*65 model rows.*MAX_ROWS_PER_ITEM"):
        await submit(batcher, ["a", "rows=65 b"], "p")
    long_text = " ".join(["w"] * 100)
    with pytest.raises(PayloadTooLarge, match=r"4200 padded tokens.*MAX_TOKENS_PER_REQUEST"):
        await submit(batcher, [f"rows=42 {long_text}"], "p")
    assert model.batches == []  # nothing reached the model


async def test_an_item_larger_than_a_batch_runs_in_several_passes(
    make_batcher: MakeBatcher,
) -> None:
    batcher, model = make_batcher(max_batch_tokens=12)
    assert await submit(batcher, ["rows=10 a b c"], "p") == ["rows=10 a b c|p"]
    assert model.rows_per_pass == [4, 4, 2]  # 3 tokens a row: at most 4 rows a pass
    assert max(model.tokens_per_pass) <= 12
    assert model.decoded_rows == [10]  # every row's outputs came back, in one answer


async def test_rows_of_an_abandoned_item_are_skipped_between_passes(
    make_batcher: MakeBatcher,
) -> None:
    batcher, model = make_batcher(max_batch_tokens=3)
    model.gate.clear()
    leaving = asyncio.create_task(submit(batcher, ["rows=5 a b c"], "p"))
    await asyncio.to_thread(model.forward_started.wait, 5)
    leaving.cancel()  # the client goes away while its first pass runs
    with pytest.raises(asyncio.CancelledError):
        await leaving
    model.gate.set()
    assert await submit(batcher, ["after"], "p") == ["after|p"]
    assert model.rows_per_pass == [1, 1]  # one pass of the 5, then the next request


async def test_each_future_is_settled_once() -> None:
    from app.batching.work import settle

    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    settle(future, "first")
    settle(future, "second")
    settle(future, RuntimeError("late"))
    assert future.result() == "first"


async def test_different_batch_keys_never_mix(make_batcher: MakeBatcher) -> None:
    batcher, model = make_batcher()
    blocker = await hold_worker(batcher, model)
    tasks = [
        asyncio.create_task(submit(batcher, [f"t{i}"], "de" if i % 2 else "fr")) for i in range(6)
    ]
    await queued(batcher, 6)
    model.gate.set()
    results = await asyncio.gather(blocker, *tasks)
    assert results[1:] == [[f"t{i}|{'de' if i % 2 else 'fr'}"] for i in range(6)]
    assert sorted(len(b) for b in model.batches[1:]) == [3, 3]


async def test_shutdown_fails_waiting_items_with_503(make_batcher: MakeBatcher) -> None:
    batcher, model = make_batcher()
    blocker = await hold_worker(batcher, model)
    waiting = [asyncio.create_task(submit(batcher, [f"w{i}"], "p")) for i in range(3)]
    await queued(batcher, 3)
    closing = asyncio.create_task(batcher.close())
    for task in waiting:  # fail at once, while the running batch is still blocked
        with pytest.raises(NotReady, match="shutting down"):
            await task
    with pytest.raises(NotReady):
        await submit(batcher, ["new"], "p")
    model.gate.set()
    assert await blocker == ["blocker|p"]  # the running batch finishes and answers
    await closing


async def test_stage_times_say_where_a_request_waited(make_batcher: MakeBatcher) -> None:
    batcher, model = make_batcher()
    blocker = await hold_worker(batcher, model)
    waiting = asyncio.create_task(batcher.submit(["a b c"], "p"))
    await queued(batcher, 1)
    held_s = 0.05
    await asyncio.sleep(held_s)  # it waits behind the blocked batch at least this long
    model.gate.set()
    assert await blocker == ["blocker|p"]
    served = await waiting
    assert served.results == ["a b c|p"]
    times = served.times
    assert times.queue >= held_s
    assert min(times.tokenize, times.forward, times.postprocess) > 0
    names = [entry.split(";")[0] for entry in times.server_timing().split(", ")]
    assert names == ["tokenize", "queue", "forward", "postprocess"]
