"""Choosing a sequence's next token from the model's logits, one row at a time.

Each sequence samples with its own random generator (seeded by the request, or from the OS),
so a sequence's tokens do not depend on which others share its decoder steps, and the same
request run alone twice with the same seed gives the same text. Engine-independent: logits
arrive as numpy rows from any backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Logits = npt.NDArray[np.float32]

# Candidates the nucleus (top_p) search sorts first; widened 4x until they hold top_p of the
# mass. Peaked distributions (trained LMs) rarely need more than the first 64.
NUCLEUS_FIRST_CANDIDATES = 64


@dataclass(frozen=True)
class SamplingParams:
    """How the next token is chosen. temperature 0 is greedy (the likeliest token)."""

    temperature: float = 1.0
    top_p: float = 1.0  # keep the fewest likeliest tokens holding this share of the mass
    top_k: int = 0  # keep only the k likeliest (0: all)
    repetition_penalty: float = 1.0  # transformers': tokens already in prompt or output
    presence_penalty: float = 0.0  # OpenAI's: subtracted once from any generated token
    frequency_penalty: float = 0.0  # OpenAI's: subtracted per time a token was generated
    seed: int | None = None


@dataclass(frozen=True)
class TokenLogprob:
    """A token's log-probability under the model (its raw logits), with the likeliest
    alternatives at that step when asked for."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


def log_softmax_at(logits: Logits, tokens: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    row = logits.astype(np.float64)
    peak = row.max()
    total = peak + np.log(np.exp(row - peak).sum())
    return row[tokens] - total  # type: ignore[no-any-return]


def logprob_of(logits: Logits, token: int, top: int) -> TokenLogprob:
    """The chosen token's log-probability and the `top` likeliest tokens' (best first)."""
    if top > 0:
        best = np.argpartition(-logits, min(top, len(logits) - 1))[:top]
        best = best[np.argsort(-logits[best], kind="stable")]
        values = log_softmax_at(logits, np.concatenate([[token], best]).astype(np.int64))
        pairs = tuple((int(t), float(v)) for t, v in zip(best, values[1:], strict=True))
        return TokenLogprob(token, float(values[0]), pairs)
    return TokenLogprob(token, float(log_softmax_at(logits, np.array([token]))[0]))


class Sampler:
    """One sequence's token chooser: its generator, and what it has generated (penalties)."""

    def __init__(self, params: SamplingParams, prompt: list[int]) -> None:
        self.params = params
        # OpenAI's seeds may be negative; numpy's may not: the same 64 bits, read unsigned.
        seed = None if params.seed is None else params.seed % 2**64
        self._rng = np.random.default_rng(seed)
        self._counts: dict[int, int] = {}
        self._seen = set(prompt)  # the repetition penalty covers the prompt too

    def observe(self, token: int) -> None:
        self._counts[token] = self._counts.get(token, 0) + 1
        self._seen.add(token)

    def choose(self, logits: Logits) -> int:
        row = self._penalized(logits)
        p = self.params
        if p.temperature == 0.0:
            return int(np.argmax(row))
        # float32 throughout: a vocabulary of 50k in float64 took twice as long, and sampling
        # draws from the cumulative sum it builds itself, so rounding cannot skew a choice.
        candidates: npt.NDArray[np.int64] | None = None
        if 0 < p.top_k < len(row):
            candidates = np.argpartition(-row, p.top_k - 1)[: p.top_k]
            row = row[candidates]
        probs = np.exp((row - row.max()) / np.float32(p.temperature))
        if p.top_p < 1.0:
            keep = _nucleus(probs / probs.sum(dtype=np.float64), p.top_p)
            probs = probs[keep]
            candidates = keep if candidates is None else candidates[keep]
        cumulative = np.cumsum(probs, dtype=np.float64)
        pick = int(np.searchsorted(cumulative, self._rng.random() * cumulative[-1], side="right"))
        pick = min(pick, len(cumulative) - 1)
        return pick if candidates is None else int(candidates[pick])

    def _penalized(self, logits: Logits) -> Logits:
        p = self.params
        penalize = p.repetition_penalty != 1.0 and self._seen
        offsets = (p.presence_penalty or p.frequency_penalty) and self._counts
        if not (penalize or offsets):
            return logits
        row = logits.copy()
        if penalize:
            seen = np.fromiter(self._seen, dtype=np.int64)
            values = row[seen]
            row[seen] = np.where(
                values < 0, values * p.repetition_penalty, values / p.repetition_penalty
            )
        if offsets:
            tokens = np.fromiter(self._counts, dtype=np.int64)
            counts = np.fromiter(self._counts.values(), dtype=np.float32)
            row[tokens] -= p.presence_penalty + p.frequency_penalty * counts
        return row


def _nucleus(probs: npt.NDArray[np.floating[Any]], top_p: float) -> npt.NDArray[np.int64]:
    """Indices of the fewest likeliest probabilities whose sum reaches top_p, best first.

    Sorting the whole vocabulary each step costs milliseconds; the nucleus is found among the
    first candidates unless the distribution is flat, so those are sorted first."""
    size = len(probs)
    width = min(NUCLEUS_FIRST_CANDIDATES, size)
    while True:
        order = np.argpartition(-probs, width - 1)[:width] if width < size else np.arange(size)
        order = order[np.argsort(-probs[order], kind="stable")]
        mass = np.cumsum(probs[order], dtype=np.float64)
        if mass[-1] >= top_p or width == size:
            return order[: int(np.searchsorted(mass, top_p)) + 1]
        width = min(width * 4, size)
