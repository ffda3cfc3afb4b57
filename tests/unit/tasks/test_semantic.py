from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app.tasks.classification import (
    DEFAULT_HYPOTHESIS_TEMPLATE,
    ClassifyParams,
    LabelScore,
    SentimentParams,
)
from app.tasks.semantic import LabelHypotheses

CATALOG_TEMPLATE = "The topic is {}."


def hypotheses(make_task: Any, params: ClassifyParams) -> tuple[str, ...]:
    task = make_task(
        "classify",
        "encoder",
        method="semantic",
        options={"labels": ["sports"], "hypothesis_template": CATALOG_TEMPLATE},
    )
    return task.encode("text", params).context_as(LabelHypotheses).texts  # type: ignore[no-any-return]


def test_the_catalog_template_serves_requests_that_send_none(make_task: Any) -> None:
    assert hypotheses(make_task, ClassifyParams()) == ("The topic is sports.",)


def test_a_template_the_request_sends_is_used_as_sent_even_the_nli_default(
    make_task: Any,
) -> None:
    sent = ClassifyParams(candidate_labels=("a",), hypothesis_template=DEFAULT_HYPOTHESIS_TEMPLATE)
    assert hypotheses(make_task, sent) == ("This example is a.",)


def test_templates_are_filled_as_plain_text_never_formatted(make_task: Any) -> None:
    sent = ClassifyParams(candidate_labels=("x",), hypothesis_template="{0:>9} {1} {}")
    assert hypotheses(make_task, sent) == ("{0:>9} {1} x",)


def test_semantic_sentiment_answers_its_best_label_or_the_top_k(make_task: Any) -> None:
    labels = {"positive": ["good"], "negative": ["bad"], "neutral": ["so-so"]}
    task = make_task("sentiment", "encoder", method="semantic",
                     options={"labels": labels, "temperature": 1.0})  # fmt: skip
    encoded = task.encode("a text", SentimentParams())
    assert len(encoded.rows) == 4  # the text, then each description
    # every token of a row holds that row's vector: the text, then good, bad, so-so
    vectors = np.array([[1.0, 0.0], [0.8, 0.6], [-1.0, 0.0], [0.0, 1.0]])
    width = max(len(row["input_ids"]) for row in encoded.rows)
    outputs = {"last_hidden_state": np.repeat(vectors[:, None, :], width, axis=1)}
    similarities = np.array([0.8, -1.0, 0.0])  # cosine of each label's vector with the text's
    expected = np.exp(similarities) / np.exp(similarities).sum()
    best = task.decode(encoded, outputs, SentimentParams())
    assert isinstance(best, LabelScore)
    assert best.label == "positive"
    assert best.score == pytest.approx(expected[0])
    ranked = task.decode(encoded, outputs, SentimentParams(top_k=3))
    assert [(r.label, r.score) for r in ranked] == [
        ("positive", pytest.approx(expected[0])),
        ("neutral", pytest.approx(expected[2])),
        ("negative", pytest.approx(expected[1])),
    ]
