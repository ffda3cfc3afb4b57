"""Choosing tokens: greedy, top-k, nucleus, penalties, seeds and log-probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from app.tasks.sampling import Sampler, SamplingParams, _nucleus, logprob_of


def logits(size: int = 500, seed: int = 0, scale: float = 3.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(size) * scale).astype(np.float32)


def test_temperature_zero_is_the_likeliest_token() -> None:
    row = logits()
    assert Sampler(SamplingParams(temperature=0.0), []).choose(row) == int(np.argmax(row))


def test_the_same_seed_gives_the_same_tokens_and_another_seed_others() -> None:
    def draw(seed: int) -> list[int]:
        sampler = Sampler(SamplingParams(seed=seed), [])
        return [sampler.choose(logits(seed=i)) for i in range(30)]

    assert draw(1) == draw(1)
    assert draw(1) != draw(2)


def test_negative_and_huge_seeds_are_seeds_too() -> None:
    for seed in (-1, -(2**63), 2**63 - 1):
        assert Sampler(SamplingParams(seed=seed), []).choose(logits()) >= 0


def test_top_k_samples_only_among_the_k_likeliest() -> None:
    row = logits(scale=0.1)  # nearly flat: without top_k anything could come
    best = set(np.argsort(-row)[:3].tolist())
    sampler = Sampler(SamplingParams(top_k=3, seed=0), [])
    assert {sampler.choose(row) for _ in range(200)} == best


@pytest.mark.parametrize("scale", [0.01, 1.0, 8.0])  # flat, moderate, peaked
@pytest.mark.parametrize("top_p", [0.05, 0.5, 0.9, 0.999])
def test_the_nucleus_is_the_fewest_likeliest_tokens_reaching_top_p(
    scale: float, top_p: float
) -> None:
    row = logits(2000, seed=3, scale=scale).astype(np.float64)
    probs = np.exp(row - row.max())
    probs /= probs.sum()
    order = np.argsort(-probs, kind="stable")
    expected = order[: int(np.searchsorted(np.cumsum(probs[order]), top_p)) + 1]
    assert set(_nucleus(probs, top_p).tolist()) == set(expected.tolist())


def test_repetition_penalty_discourages_tokens_already_seen() -> None:
    row = np.zeros(10, dtype=np.float32)
    row[4], row[5] = 2.0, 1.9
    greedy = SamplingParams(temperature=0.0, repetition_penalty=1.5)
    assert Sampler(greedy, prompt=[4]).choose(row) == 5  # 2.0 / 1.5 < 1.9
    assert Sampler(SamplingParams(temperature=0.0), prompt=[4]).choose(row) == 4


def test_presence_and_frequency_penalties_count_generated_tokens() -> None:
    row = np.zeros(10, dtype=np.float32)
    row[4], row[5] = 2.0, 1.0
    sampler = Sampler(SamplingParams(temperature=0.0, frequency_penalty=0.6), prompt=[])
    assert sampler.choose(row) == 4
    sampler.observe(4)
    assert sampler.choose(row) == 4  # 2.0 - 0.6 > 1.0
    sampler.observe(4)
    assert sampler.choose(row) == 5  # 2.0 - 1.2 < 1.0
    presence = Sampler(SamplingParams(temperature=0.0, presence_penalty=1.5), prompt=[4])
    assert presence.choose(row) == 4  # the prompt does not count
    presence.observe(4)
    assert presence.choose(row) == 5


def test_logprobs_are_log_softmax_of_the_raw_logits() -> None:
    row = logits(50)
    expected = row.astype(np.float64) - np.log(np.exp(row.astype(np.float64)).sum())
    chosen = logprob_of(row, 7, top=3)
    assert chosen.logprob == pytest.approx(expected[7])
    assert [t for t, _ in chosen.top] == np.argsort(-expected)[:3].tolist()
    assert [v for _, v in chosen.top] == pytest.approx(np.sort(expected)[::-1][:3])
    assert logprob_of(row, 7, top=0).top == ()
