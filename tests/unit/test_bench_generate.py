"""bench/generate.py's own logic: the seeded workload, the streaming client and the server's
figures against a real server (fake backend, continuous and static), the one-at-a-time
pipeline replay, and the aims' verdicts."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

import bench.common
from bench import generate


def test_the_workload_is_seeded_and_within_its_ranges(tiny_models: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_models["causal-lm"]))
    pool = generate.workload(tokenizer, count=40, seed=3)
    assert pool == generate.workload(tokenizer, count=40, seed=3)
    assert pool != generate.workload(tokenizer, count=40, seed=4)
    for request in pool:
        low, high = generate.PROMPT_TOKENS
        # the prompt is read back by the tokenizer: its length is the slice's, give or take
        assert low - 2 <= request.prompt_tokens <= high + 2
        assert len(tokenizer(request.prompt)["input_ids"]) == request.prompt_tokens
        assert generate.NEW_TOKENS[0] <= request.max_new_tokens <= generate.NEW_TOKENS[1]
    body = generate.body(pool[0], "m")
    assert (body["stream"], body["ignore_eos"], body["temperature"]) == (True, True, 0)
    # each stream count sends the same sequence of requests, every stream its own part of it
    firsts = [generate.nth(pool, 8, stream, 0) for stream in range(8)]
    assert firsts == pool[:8]
    assert generate.nth(pool, 8, 3, 1) == pool[11]
    starts = generate.offsets(32, 2.0)
    assert starts == generate.offsets(32, 2.0)
    assert all(0 <= start < 2.0 for start in starts)


def test_the_pipeline_replay_serves_one_request_at_a_time() -> None:
    served = [(0.5, 50)]  # every request: 0.5 s, 50 tokens
    alone = generate.one_at_a_time(served, 1, duration=20.0, stagger=0.0)
    assert alone["tokens_per_s"] == pytest.approx(100, rel=0.05)
    assert alone["ttft_p50_ms"] == pytest.approx(500)  # no streaming: the whole generation
    assert alone["simulated"] is False
    crowded = generate.one_at_a_time(served, 8, duration=20.0, stagger=0.1)
    assert crowded["tokens_per_s"] == pytest.approx(100, rel=0.05)  # still one at a time
    assert crowded["ttft_p50_ms"] == pytest.approx(8 * 500, rel=0.05)  # 7 ahead of each
    assert crowded["simulated"] is True


def test_the_aims_verdicts() -> None:
    def row(mode: str, streams: int, tokens_per_s: float, ttft: float) -> dict[str, object]:
        return {"engine": "torch", "mode": mode, "streams": streams, "tokens_per_s": tokens_per_s,
                "ttft_p50_ms": ttft, "ttft_p99_ms": ttft, "itl_p50_ms": 5.0, "itl_p99_ms": 9.0,
                "decode_step_ms": 10.0, "rows_per_step": 30.0, "errors": 0}  # fmt: skip

    rows = [row("continuous", 1, 200, 30), row("static", 1, 200, 30),
            row("continuous", 32, 900, 45), row("static", 32, 250, 900)]  # fmt: skip
    summary = generate.report(rows)["engines"]["torch"]
    assert summary["speedup_vs_static"] == pytest.approx(3.6)
    assert summary["speedup_aim_met"] is True
    assert summary["ttft_extra_steps"] == pytest.approx(1.5)
    assert summary["ttft_aim_met"] is True
    rows[2] = row("continuous", 32, 700, 55)
    summary = generate.report(rows)["engines"]["torch"]
    assert summary["speedup_aim_met"] is False  # 2.8x
    assert summary["ttft_aim_met"] is False  # 2.5 steps


def test_the_streams_against_a_real_server(tiny_models: dict[str, Path]) -> None:
    """Both schedulings of the fake backend's causal LM, 3 streams for ~1 s each: every
    request streamed to its end, the token events timed, and the server's decoder steps
    read from its /metrics."""
    from transformers import AutoTokenizer

    source = str(tiny_models["causal-lm"])
    pool = generate.workload(AutoTokenizer.from_pretrained(source), count=16,
                             prompt_tokens=(4, 24), new_tokens=(2, 8))  # fmt: skip
    models = [
        {**generate.model_entry("fake", scheduling, source),
         "options": {"scheduling": scheduling, "kv_cache_tokens": 1024},
         "batching": {"max_batch_size": 2}}
        for scheduling in generate.SCHEDULINGS
    ]  # fmt: skip
    with bench.common.serve(models) as server:
        for scheduling in generate.SCHEDULINGS:
            name = f"gen-fake-{scheduling}"
            run = asyncio.run(generate.drive(server.base, name, pool, 3, 0.8, 0.2,
                                             server.process.pid))  # fmt: skip
            result = generate.summarize(run.outcomes, run.window)
            assert result["errors"] == 0, result.get("first_error")
            assert result["requests"] > 0
            assert result["tokens_per_s"] > 0
            assert all(o.completion_tokens == len(o.tokens) for o in run.outcomes)
            assert result["ttft_p50_ms"] > 0
            seconds = run.window[1] - run.window[0]
            view = generate.server_view(*run.metrics, name, seconds)
            assert view["decode_step_ms"] > 0
            assert 1 <= view["rows_per_step"] <= 2  # max_batch_size 2
            assert 0 < view["decode_share"] < 1
            assert run.server_cpu_s > 0
    assert math.isfinite(result["itl_p50_ms"])
