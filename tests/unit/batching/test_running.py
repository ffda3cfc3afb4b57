"""The running batch's rows: a leaving sequence's row stays free until it is worth a copy."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np

from app.batching.running import GenSequence, RunningBatch
from app.runtimes.kv import NumpyKV


def sequence(width: int, fill: float) -> GenSequence:
    generated = SimpleNamespace(tokens=[5])  # the continuation's last token is all a row needs
    seq = GenSequence(0, continuation=generated, prompt=[1] * width, deadline=0.0, arrived=0.0,  # type: ignore[arg-type]
                      tokenize_s=0.0, events=asyncio.Queue(), reserve=width)  # fmt: skip
    array = np.full((1, 1, width, 2), fill, dtype=np.float32)
    seq.cache, seq.cached = NumpyKV([(array, array)]), width
    return seq


def test_a_free_row_is_taken_by_the_next_sequence_without_copying_the_others() -> None:
    batch = RunningBatch()
    seqs = [sequence(6, float(i + 1)) for i in range(5)]
    for seq in seqs:
        batch.join(seq)
    assert batch.cache is not None
    keys = batch.cache.layers[0][0]
    batch.leave(seqs[1])
    batch.tidy()  # one free row of five: kept
    assert batch.rows[1] is None
    assert len(batch) == 4
    inputs = batch.step_inputs()
    assert inputs.attention_mask[1].tolist() == [0] * 6 + [1]  # a free row reads its own column
    newcomer = sequence(4, 9.0)
    batch.join(newcomer)
    assert batch.rows[1] is newcomer
    assert batch.cache.layers[0][0] is keys  # written in place
    assert keys[1, 0, :, 0].tolist() == [0, 0, 9, 9, 9, 9]  # right-aligned, zeros before


def test_free_rows_past_a_share_are_dropped_and_unused_columns_trimmed() -> None:
    batch = RunningBatch()
    seqs = [sequence(8 if i == 0 else 3, float(i)) for i in range(4)]
    for seq in seqs:
        batch.join(seq)
    batch.leave(seqs[0])  # the widest leaves: 5 of 8 columns unused
    batch.leave(seqs[1])  # two free rows of four: past the share
    batch.tidy()
    assert batch.cache is not None
    assert batch.rows == [seqs[2], seqs[3]]
    assert batch.cache.width == 3


def test_static_batches_keep_their_rows_until_the_last_sequence_ends() -> None:
    batch = RunningBatch(static=True)
    seqs = [sequence(3, float(i)) for i in range(3)]
    for seq in seqs:
        batch.join(seq)
    batch.leave(seqs[0])
    batch.leave(seqs[1])
    batch.tidy()
    assert len(batch.rows) == 3
    assert len(batch) == 1
    batch.leave(seqs[2])
    assert batch.rows == []
    assert batch.cache is None
