from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app.errors import PayloadTooLarge
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


def test_a_request_cuts_the_end_it_asks_for_and_it_never_leaks(make_task: Any) -> None:
    """Each side has its own encoder: a left cut does not turn the next default into one."""
    task = make_task("embed", "encoder", max_length=16)
    words = " ".join(f"w{i}" for i in range(40))
    wrapper = task.tokenizer(words, add_special_tokens=False)["input_ids"]
    cls, sep = task.tokenizer.cls_token_id, task.tokenizer.sep_token_id
    right, cut_right = task.encode_text(words)
    left, cut_left = task.encode_text(words, side="left")
    again, _ = task.encode_text(words)
    assert right["input_ids"] == [cls, *wrapper[:14], sep] == again["input_ids"]
    assert left["input_ids"] == [cls, *wrapper[-14:], sep]
    assert cut_right
    assert cut_left
    assert task.encode_text(words, side="right")[0] == right
    assert task.encode_text("short words") == (task.text_row("short words"), False)


def test_truncate_false_refuses_a_long_text_naming_its_tokens(make_task: Any) -> None:
    task = make_task("embed", "encoder", max_length=16)
    words = " ".join(f"w{i}" for i in range(40))
    tokens = len(task.tokenizer(words)["input_ids"])
    with pytest.raises(PayloadTooLarge, match=f"an input has {tokens} tokens; .* at most 16"):
        task.encode_text(words, truncate=False)
    assert task.encode_text("short words", truncate=False) == (task.text_row("short words"), False)
    task.max_length = 12  # a lowered max_length reaches every encoder made so far
    assert len(task.encode_text(words, side="left")[0]["input_ids"]) == 12
    with pytest.raises(PayloadTooLarge, match="at most 12"):
        task.encode_text(" ".join(["w"] * 12), truncate=False)
