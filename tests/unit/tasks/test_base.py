from __future__ import annotations

import numpy as np

from app.tasks.base import Encoded, collate, softmax


def test_collate_right_pads_with_the_pad_id() -> None:
    rows = [
        {"input_ids": [101, 7, 102], "attention_mask": [1, 1, 1]},
        {"input_ids": [101, 102], "attention_mask": [1, 1]},
    ]
    batch = collate(rows, pad_token_id=0)
    assert batch["input_ids"].tolist() == [[101, 7, 102], [101, 102, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["input_ids"].dtype == np.int64


def test_encoded_counts_its_longest_row() -> None:
    assert Encoded(rows=[{"input_ids": [1, 2]}, {"input_ids": [1, 2, 3, 4]}]).n_tokens == 4


def test_softmax_is_stable_for_large_logits() -> None:
    out = softmax(np.array([1000.0, 1000.0]))
    assert out.tolist() == [0.5, 0.5]
