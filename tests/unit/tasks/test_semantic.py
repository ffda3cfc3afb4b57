from __future__ import annotations

from typing import Any

from app.tasks.classification import DEFAULT_HYPOTHESIS_TEMPLATE, ClassifyParams
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
