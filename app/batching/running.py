"""The running batch of a causal LM: its sequences, each in one row of a left-padded KV cache
(app/runtimes/kv.py), and what a decoder step over them takes.

Changing rows costs copies: dropping a row copies every other row's keys and values, and so
does trimming columns. So a leaving sequence's row stays, free (computed as padding, its
answer ignored), until a joining sequence takes it (a copy of that row only) or free rows pass
a share of the batch; unused columns before every row are trimmed once they pass a share of
the width. In static scheduling free rows stay until every row is free: the batch keeps its
size until its last sequence ends, as transformers' generate() runs a batch.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from app.errors import ServeError
from app.runtimes.base import StepInputs
from app.runtimes.kv import KVCache
from app.tasks.causal import Completion, Continuation, TokenEvent

# Free rows are dropped (one copy of the cache) once they are more than this share of the rows.
FREE_ROWS_SHARE = 0.25
# Columns no row uses are trimmed (one copy of the cache) once they are this share of the width.
UNUSED_COLUMNS_SHARE = 0.25

# What a sequence's caller receives: tokens, then its completion or an error.
Event = TokenEvent | Completion | ServeError


@dataclass(eq=False)
class GenSequence:
    index: int  # its prompt's place in the request
    continuation: Continuation
    prompt: list[int]
    deadline: float
    arrived: float
    tokenize_s: float
    events: asyncio.Queue[tuple[int, Event]]  # the request's, shared by its sequences
    reserve: int  # KV tokens held while it runs: prompt + max_new_tokens
    prefilled: int = 0  # prompt tokens in its cache
    cached: int = 0  # tokens in the KV cache (its own columns of the running batch)
    cache: KVCache | None = None  # its own cache while prefilling
    started: float | None = None
    last_token_at: float = 0.0
    forward_s: float = 0.0
    cancelled: bool = False  # set from the event loop; read between steps
    done: bool = False

    @property
    def last_token(self) -> int:
        return self.continuation.tokens[-1]


class RunningBatch:
    def __init__(self, static: bool = False) -> None:
        self.static = static
        self.rows: list[GenSequence | None] = []  # None: a free row
        self.cache: KVCache | None = None

    @property
    def sequences(self) -> list[GenSequence]:
        return [seq for seq in self.rows if seq is not None]

    def __len__(self) -> int:
        return sum(seq is not None for seq in self.rows)

    def join(self, seq: GenSequence) -> None:
        """A prefilled sequence takes a free row, or a new one."""
        own = seq.cache
        if own is None:  # pragma: no cover - a prefilled sequence has its cache
            raise AssertionError("a sequence joins with its prefilled cache")
        seq.cache = None
        if self.cache is None:
            self.rows, self.cache = [seq], own
            return
        free = [i for i, row in enumerate(self.rows) if row is None]
        if free and not self.static and own.width <= self.cache.width:
            self.cache.write_row(free[0], own)
            self.rows[free[0]] = seq
            return
        self.cache = self.cache.extend(own)
        self.rows.append(seq)

    def leave(self, seq: GenSequence) -> None:
        self.rows[self.rows.index(seq)] = None
        if not len(self):
            self.clear()

    def tidy(self) -> None:
        """Drop free rows and unused columns where that is worth a copy (never in static)."""
        if self.cache is None or self.static:
            return
        free = len(self.rows) - len(self)
        if free and free > FREE_ROWS_SHARE * len(self.rows):
            kept = [i for i, row in enumerate(self.rows) if row is not None]
            self.cache = self.cache.select(kept)
            self.rows = [self.rows[i] for i in kept]
        unused = self.cache.width - max(seq.cached for seq in self.sequences)
        if unused > 0 and unused >= UNUSED_COLUMNS_SHARE * self.cache.width:
            self.cache = self.cache.trim(unused)

    def step_inputs(self) -> StepInputs:
        """Each row's last token at its own position, masked to its own columns; a free row
        reads only its new column (its logits are finite and ignored)."""
        width = self.cache.width if self.cache is not None else 0
        count = len(self.rows)
        ids = np.zeros((count, 1), dtype=np.int64)
        positions = np.zeros((count, 1), dtype=np.int64)
        mask = np.zeros((count, width + 1), dtype=np.int64)
        for i, seq in enumerate(self.rows):
            if seq is None:
                mask[i, width] = 1
                continue
            ids[i, 0] = seq.last_token
            positions[i, 0] = seq.cached
            mask[i, width - seq.cached :] = 1
        return StepInputs(ids, mask, positions)

    def stepped(self, cache: KVCache) -> None:
        self.cache = cache
        for seq in self.sequences:
            seq.cached += 1

    def clear(self) -> None:
        self.rows, self.cache = [], None
