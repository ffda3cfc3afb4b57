from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app.errors import InvalidInput
from app.tasks.classification import ClassifyParams, LabelScore, SentimentParams
from tests.fixtures.tiny_models import NLI_LABELS


def test_zero_shot_rows_pair_text_with_each_hypothesis(make_task: Any) -> None:
    task = make_task("classify", "nli")
    params = ClassifyParams(candidate_labels=("sport", "money"), hypothesis_template="About {}.")
    encoded = task.encode("A goal in the last minute.", params)
    assert len(encoded.rows) == 2
    decoded = [task.tokenizer.decode(row["input_ids"]) for row in encoded.rows]
    assert decoded[0].endswith("about sport. [SEP]")
    assert decoded[1].endswith("about money. [SEP]")


def test_zero_shot_scores_follow_entailment(make_task: Any) -> None:
    task = make_task("classify", "nli")
    entail, contra = NLI_LABELS.index("entailment"), NLI_LABELS.index("contradiction")
    logits = np.zeros((3, 3), dtype=np.float32)
    logits[:, entail] = [2.0, 0.0, 1.0]
    logits[:, contra] = [0.0, 2.0, 0.0]
    params = ClassifyParams(candidate_labels=("a", "b", "c"))
    single = task.decode(None, {"logits": logits}, params)
    assert [r.label for r in single] == ["a", "c", "b"]
    expected = np.exp([2.0, 1.0, 0.0]) / np.exp([2.0, 1.0, 0.0]).sum()
    assert np.allclose([r.score for r in single], expected)
    multi = task.decode(None, {"logits": logits}, ClassifyParams(("a", "b", "c"), multi_label=True))
    by_label = {r.label: r.score for r in multi}
    assert by_label["a"] == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert by_label["b"] == pytest.approx(1 / (1 + np.exp(2.0)))


def test_each_classifier_says_which_requests_it_refuses(make_task: Any) -> None:
    nli, topics = make_task("classify", "nli"), make_task("classify", "topics")
    without_labels, with_labels = ClassifyParams(), ClassifyParams(candidate_labels=("x",))
    assert isinstance(nli.refusal(without_labels), InvalidInput)
    assert "candidate_labels" in nli.refusal(without_labels).message
    assert nli.refusal(with_labels) is None
    assert "fixed labels" in topics.refusal(with_labels).message
    assert topics.refusal(without_labels) is None


def test_sentiment_answers_its_best_label_or_the_top_k_with_softmax_scores(
    make_task: Any,
) -> None:
    task = make_task("sentiment", "sentiment")  # labels NEGATIVE, POSITIVE
    logits = {"logits": np.array([[0.5, 2.0]], dtype=np.float32)}
    probabilities = np.exp([0.5, 2.0]) / np.exp([0.5, 2.0]).sum()
    best = task.decode(None, logits, SentimentParams())
    assert isinstance(best, LabelScore)
    assert best.label == "POSITIVE"
    assert best.score == pytest.approx(probabilities[1])
    both = task.decode(None, logits, SentimentParams(top_k=2))
    assert [(r.label, r.score) for r in both] == [
        ("POSITIVE", pytest.approx(probabilities[1])),
        ("NEGATIVE", pytest.approx(probabilities[0])),
    ]
    assert task.decode(None, logits, SentimentParams(top_k=9)) == both  # up to its labels
