"""The continuous batcher on the deterministic fake causal LM: sequences join and leave the
running batch between steps, and each generates what it would alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from app import metrics
from app.batching.continuous import ContinuousBatcher
from app.errors import DeadlineExceeded, InferenceFailed, PayloadTooLarge, QueueFull
from app.pipeline import GenerativeModel
from app.registry.model import load_model
from app.runtimes.fake import FakeBackend
from app.settings import Settings
from app.spec import ModelSpec
from app.tasks.causal import Completion, GenerateParams, Prompt, TokenEvent
from app.tasks.sampling import SamplingParams

GREEDY = SamplingParams(temperature=0.0)
PROMPTS = [
    "Hello world, this is a prompt",
    "Short",
    "A much longer prompt with several more words in it, and then some more words",
    "The cat sat",
]

Make = Callable[..., ContinuousBatcher]


@pytest.fixture
async def make_batcher(tiny_models: dict[str, Path]) -> AsyncIterator[Make]:
    made: list[tuple[ContinuousBatcher, ThreadPoolExecutor]] = []

    def make(
        options: dict[str, Any] | None = None,
        batching: dict[str, Any] | None = None,
        backend_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> ContinuousBatcher:
        spec = ModelSpec(
            name=f"fake-lm-{len(made)}",
            task="generate",  # type: ignore[arg-type]
            source=str(tiny_models["causal-lm"]),
            backend="fake",
            options=options or {},
            batching=batching or {},
            backend_options=backend_options or {},
        )
        model = load_model(spec, Settings(_env_file=None))  # type: ignore[call-arg]
        assert isinstance(model, GenerativeModel)
        thread = ThreadPoolExecutor(1)
        batcher = ContinuousBatcher(model, thread, 30.0, **kwargs)
        made.append((batcher, thread))
        return batcher

    yield make
    for batcher, thread in made:
        await batcher.close()
        thread.shutdown()


def backend(batcher: ContinuousBatcher) -> FakeBackend:
    fake = batcher.model.backend
    assert isinstance(fake, FakeBackend)
    return fake


def params(max_new_tokens: int = 12, **fields: Any) -> GenerateParams:
    return GenerateParams(max_new_tokens=max_new_tokens, sampling=GREEDY, **fields)


async def generate(batcher: ContinuousBatcher, prompt: str, p: GenerateParams) -> Completion:
    served = await batcher.submit([Prompt(prompt)], p)
    result: Completion = served.results[0]
    return result


async def test_each_sequence_generates_what_it_would_alone(make_batcher: Make) -> None:
    batcher = make_batcher()
    alone = [await generate(batcher, prompt, params(ignore_eos=True)) for prompt in PROMPTS]
    assert max(backend(batcher).calls) == 1  # one sequence at a time

    async def staggered(i: int, prompt: str) -> Completion:
        await asyncio.sleep(0.002 * i)  # arrivals while others run: they join mid-way
        return await generate(batcher, prompt, params(8 + 4 * i, ignore_eos=True))

    together = await asyncio.gather(*(staggered(i, p) for i, p in enumerate(PROMPTS)))
    for i, (solo, shared) in enumerate(zip(alone, together, strict=True)):
        assert shared.completion_tokens == 8 + 4 * i
        assert shared.finish_reason == "length"
        assert solo.text.startswith(shared.text) or shared.text.startswith(solo.text[:1])
    # Run with equal lengths: the same text as alone, token for token.
    same = await asyncio.gather(*(generate(batcher, p, params(ignore_eos=True)) for p in PROMPTS))
    assert [c.text for c in same] == [c.text for c in alone]
    assert max(backend(batcher).calls) > 1  # they did share decoder steps


async def test_sequences_leave_when_done_and_others_keep_going(make_batcher: Make) -> None:
    batcher = make_batcher(backend_options={"delay_ms": 2})
    short, long = await asyncio.gather(
        generate(batcher, PROMPTS[0], params(8, ignore_eos=True)),
        generate(batcher, PROMPTS[1], params(30, ignore_eos=True)),
    )
    assert (short.completion_tokens, long.completion_tokens) == (8, 30)
    calls = backend(batcher).calls
    assert 2 in calls
    assert calls[-1] == 1


async def test_a_long_prompt_is_prefilled_in_chunks(make_batcher: Make) -> None:
    batcher = make_batcher(options={"prefill_chunk_tokens": 4})
    prompt = " ".join(["word"] * 30)
    tokens = len(batcher.model.task.tokenizer(prompt)["input_ids"])
    done = await generate(batcher, prompt, params(3, ignore_eos=True))
    assert done.prompt_tokens == tokens
    # ceil(tokens / 4) prefill calls, then 2 decoder steps (the first token comes from prefill)
    assert len(backend(batcher).calls) == -(-tokens // 4) + 2


async def test_the_kv_budget_refuses_what_cannot_fit_and_queues_the_rest(
    make_batcher: Make,
) -> None:
    batcher = make_batcher(options={"kv_cache_tokens": 40}, backend_options={"delay_ms": 2})
    with pytest.raises(PayloadTooLarge, match="kv_cache_tokens"):
        await generate(batcher, PROMPTS[0], params(39))
    first = asyncio.ensure_future(generate(batcher, "one", params(30, ignore_eos=True)))
    await asyncio.sleep(0.01)
    second = asyncio.ensure_future(generate(batcher, "two", params(30, ignore_eos=True)))
    await asyncio.sleep(0.01)
    assert batcher.queue_depth() == 1  # waits for the first to free the budget
    with pytest.raises(QueueFull) as refused:  # a budget's worth already waits
        await generate(batcher, "three", params(30, ignore_eos=True))
    assert int(refused.value.headers["Retry-After"]) >= 1
    assert (await first).completion_tokens == (await second).completion_tokens == 30
    assert max(backend(batcher).calls) == 1  # never both at once: 31 + 31 > 40


async def test_the_waiting_line_is_bounded(make_batcher: Make) -> None:
    batcher = make_batcher(batching={"max_batch_size": 1, "max_queue": 1},
                           backend_options={"delay_ms": 2})  # fmt: skip
    running = asyncio.ensure_future(generate(batcher, "a", params(20, ignore_eos=True)))
    await asyncio.sleep(0.01)
    waiting = asyncio.ensure_future(generate(batcher, "b", params(2, ignore_eos=True)))
    await asyncio.sleep(0)
    with pytest.raises(QueueFull, match="max_queue 1"):
        await generate(batcher, "c", params(2))
    await asyncio.gather(running, waiting)


async def test_a_caller_that_leaves_ends_its_sequence_at_the_next_step(make_batcher: Make) -> None:
    batcher = make_batcher(backend_options={"delay_ms": 5})
    cancelled = metrics.SEQUENCES_FINISHED.labels(batcher.name, "cancelled")
    before = cancelled._value.get()
    run = await batcher.start([Prompt(PROMPTS[0])], params(200, ignore_eos=True))
    seen = 0
    async for _, event in run:
        assert isinstance(event, TokenEvent)
        seen += 1
        if seen == 3:
            break  # closing the iterator cancels the sequence
    for _ in range(200):
        if cancelled._value.get() > before:
            break
        await asyncio.sleep(0.01)
    assert cancelled._value.get() == before + 1
    assert len(backend(batcher).calls) < 20  # it did not run on to 200 tokens


async def test_a_deadline_ends_a_running_sequence(make_batcher: Make) -> None:
    batcher = make_batcher(backend_options={"delay_ms": 5})
    loop = asyncio.get_running_loop()
    with pytest.raises(DeadlineExceeded, match="tokens were generated"):
        await batcher.submit([Prompt("x")], params(200, ignore_eos=True), loop.time() + 0.1)
    # (the batcher's clock is time.monotonic, which the event loop's clock is on Linux)


async def test_a_failing_step_fails_its_sequences_and_the_model_serves_on(
    make_batcher: Make,
) -> None:
    batcher = make_batcher(backend_options={"fail_token": "Ġprom"})  # a token of its vocabulary
    with pytest.raises(InferenceFailed, match="server log"):
        await generate(batcher, "this prompt fails", params(4))
    assert (await generate(batcher, "fine", params(4, ignore_eos=True))).completion_tokens == 4


async def test_nan_logits_are_a_model_fault_not_a_token(make_batcher: Make) -> None:
    batcher = make_batcher(backend_options={"nan_token": "Ġprom"})
    with pytest.raises(InferenceFailed):
        await generate(batcher, "a bad prompt", params(4))


async def test_static_scheduling_starts_a_batch_only_when_the_last_one_ended(
    make_batcher: Make,
) -> None:
    batcher = make_batcher(options={"scheduling": "static"}, backend_options={"delay_ms": 2})
    first = asyncio.ensure_future(generate(batcher, "one", params(10, ignore_eos=True)))
    await asyncio.sleep(0.01)
    second = await generate(batcher, "two", params(3, ignore_eos=True))
    assert first.done()  # the later, shorter sequence waited for the whole first batch
    assert second.completion_tokens == 3
    assert max(backend(batcher).calls) == 1


async def test_stop_sequences_and_end_of_text_finish_with_stop(make_batcher: Make) -> None:
    batcher = make_batcher()
    free = await generate(batcher, PROMPTS[0], params(12, ignore_eos=True))
    stop = free.text[3:5]
    stopped = await generate(batcher, PROMPTS[0], params(12, ignore_eos=True, stop=(stop,)))
    assert stopped.finish_reason == "stop"
    assert stopped.text == free.text[: free.text.find(stop)]


async def test_a_seed_makes_sampling_repeatable(make_batcher: Make) -> None:
    batcher = make_batcher()
    sampled = GenerateParams(12, SamplingParams(temperature=1.0, seed=7), ignore_eos=True)
    runs = [await generate(batcher, PROMPTS[2], sampled) for _ in range(2)]
    assert runs[0].text == runs[1].text
    other = GenerateParams(12, SamplingParams(temperature=1.0, seed=8), ignore_eos=True)
    assert (await generate(batcher, PROMPTS[2], other)).text != runs[0].text


async def test_streamed_text_joins_into_the_completion(make_batcher: Make) -> None:
    batcher = make_batcher()
    run = await batcher.start([Prompt(p) for p in PROMPTS[:2]], params(10, stop=("zz",)))
    pieces: dict[int, list[str]] = {0: [], 1: []}
    finished: dict[int, Completion] = {}
    async for index, event in run:
        if isinstance(event, TokenEvent):
            pieces[index].append(event.text)
        else:
            finished[index] = event
    for index, completion in finished.items():
        assert "".join(pieces[index]) == completion.text


async def test_gauges_return_to_zero_when_idle(make_batcher: Make) -> None:
    batcher = make_batcher()
    await asyncio.gather(*(generate(batcher, p, params(5)) for p in PROMPTS))
    name = batcher.name
    assert metrics.SEQUENCES_RUNNING.labels(name)._value.get() == 0
    assert metrics.SEQUENCES_WAITING.labels(name)._value.get() == 0
    assert metrics.KV_CACHE_TOKENS.labels(name)._value.get() == 0
    assert metrics.KV_CACHE_CAPACITY.labels(name)._value.get() == 16384


async def test_a_fault_of_the_loop_itself_ends_every_sequence_and_serving_goes_on(
    make_batcher: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.batching.running import RunningBatch

    batcher = make_batcher()
    original = RunningBatch.join

    def broken(self: RunningBatch, seq: Any) -> None:
        raise RuntimeError("a bug between two steps")

    monkeypatch.setattr(RunningBatch, "join", broken)
    # the sequence is between prefilling and running when the bug strikes: it is ended too
    with pytest.raises(InferenceFailed, match="server log"):
        await asyncio.wait_for(generate(batcher, "caught mid-way", params(4)), timeout=10)
    monkeypatch.setattr(RunningBatch, "join", original)
    assert (await generate(batcher, "fine", params(4, ignore_eos=True))).completion_tokens == 4
