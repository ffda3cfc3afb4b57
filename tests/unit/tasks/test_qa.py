from __future__ import annotations

from typing import Any

import numpy as np

from app.tasks.qa import QAItem, QAParams, WindowedContext

ITEM = QAItem("Who wrote it?", "The first program was written by Ada Lovelace in 1843.")


def peaked_outputs(encoded: Any, start_word: str, end_word: str) -> dict[str, np.ndarray]:
    """Logits peaking on the token that starts start_word and the one that ends end_word."""
    own = encoded.context_as(WindowedContext)
    context, windows = own.text, own.windows
    first = context.lower().index(start_word)
    last = context.lower().index(end_word) + len(end_word)
    start = np.zeros((len(windows), encoded.n_tokens), dtype=np.float32)
    end = np.zeros_like(start)
    for w, window in enumerate(windows):
        for t, (a, b) in enumerate(window.offsets):
            if window.context_mask[t] and a == first:
                start[w, t] = 12.0
            if window.context_mask[t] and b == last:
                end[w, t] = 12.0
    return {"start_logits": start, "end_logits": end}


def test_span_decoding_gives_exact_character_offsets(make_task: Any) -> None:
    task = make_task("qa", "qa")
    encoded = task.encode(ITEM, QAParams())
    best = task.decode(encoded, peaked_outputs(encoded, "ada", "lovelace"), QAParams())
    assert best.answer == "Ada Lovelace"
    assert ITEM.context[best.start : best.end] == "Ada Lovelace"
    assert best.score > 0.9


def test_max_answer_len_forbids_long_spans(make_task: Any) -> None:
    task = make_task("qa", "qa")
    encoded = task.encode(ITEM, QAParams())
    outputs = peaked_outputs(encoded, "first", "1843")
    long_ok = task.decode(encoded, outputs, QAParams(max_answer_len=30))
    assert long_ok.answer == "first program was written by Ada Lovelace in 1843"
    short = task.decode(encoded, outputs, QAParams(max_answer_len=3))
    assert short.answer != long_ok.answer
    assert len(task.tokenizer(short.answer, add_special_tokens=False)["input_ids"]) <= 3


def test_null_answer_only_where_the_model_allows_it(make_task: Any) -> None:
    for allowed in (True, False):
        task = make_task("qa", "qa", options={"null_answer": allowed})
        encoded = task.encode(ITEM, QAParams())
        outputs = peaked_outputs(encoded, "ada", "lovelace")
        outputs["start_logits"][:, 0] = outputs["end_logits"][:, 0] = 30.0  # [CLS] wins
        best = task.decode(encoded, outputs, QAParams())
        assert (best.answer == "") is allowed


def test_long_context_makes_overlapping_windows(make_task: Any) -> None:
    task = make_task("qa", "qa")
    context = " ".join(f"word{i}" for i in range(400)) + " Ada Lovelace wrote it."
    encoded = task.encode(QAItem("Who wrote it?", context), QAParams())
    windows = encoded.context_as(WindowedContext).windows
    assert len(windows) > 2
    assert all(len(row["input_ids"]) <= task.max_length for row in encoded.rows)
    answer = task.decode(encoded, peaked_outputs(encoded, "ada", "lovelace"), QAParams())
    assert answer.answer == "Ada Lovelace"
    assert context[answer.start : answer.end] == "Ada Lovelace"


def test_top_k_above_one_answers_a_list_best_first(make_task: Any) -> None:
    task = make_task("qa", "qa")
    encoded = task.encode(ITEM, QAParams(top_k=3))
    answers = task.decode(encoded, peaked_outputs(encoded, "ada", "lovelace"), QAParams(top_k=3))
    assert isinstance(answers, list)
    assert answers[0].answer == "Ada Lovelace"
    assert [a.score for a in answers] == sorted((a.score for a in answers), reverse=True)
