from __future__ import annotations

from typing import Any

import numpy as np
import pytest

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


TEXTS = [
    "A short one.",
    "Ünïcödé, emoji 🙂 and   odd   spacing\tacross words",
    " ".join(["truncate"] * 600),  # longer than any model's max_length
]


@pytest.mark.parametrize(
    ("task", "model"), [("sentiment", "sentiment"), ("embed", "encoder"), ("summarize", "seq2seq")]
)
def test_plain_text_rows_match_the_transformers_tokenizer(
    make_task: Any, task: str, model: str
) -> None:
    """The direct Rust-core path gives exactly the rows transformers' wrapper gives."""
    made = make_task(task, model, max_length=64)
    assert made._encoder is not None
    wrapper = [made.row(made.tokenize(text)) for text in TEXTS]
    assert made.rows(TEXTS) == wrapper
    assert [made.text_row(text) for text in TEXTS] == wrapper
    assert len(wrapper[2]["input_ids"]) == 64


def test_plain_text_rows_follow_a_lowered_max_length(make_task: Any) -> None:
    task = make_task("sentiment", "sentiment")
    task.max_length = 16  # as an embedding model's max_seq_length lowers it
    assert len(task.text_row(TEXTS[2])["input_ids"]) == 16
