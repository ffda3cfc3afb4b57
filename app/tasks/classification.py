"""classify and sentiment: sequence-classification heads, and zero-shot through NLI models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.errors import InvalidInput
from app.runtimes.base import Head, ModelOutputs
from app.spec import PLACEHOLDER, TaskName
from app.tasks.base import Encoded, Task, sigmoid, softmax

DEFAULT_HYPOTHESIS_TEMPLATE = "This example is {}."


@dataclass(frozen=True)
class ClassifyParams:
    candidate_labels: tuple[str, ...] | None = None
    multi_label: bool = False
    top_k: int | None = None
    hypothesis_template: str | None = None  # None: the model's own template


def fill_template(template: str, label: str) -> str:
    """Put the label where the template's one {} is: plain text, never str.format."""
    return template.replace(PLACEHOLDER, label, 1)


@dataclass(frozen=True)
class LabelScore:
    label: str
    score: float


def top_label_agreement(reference: Sequence[LabelScore], candidate: Sequence[LabelScore]) -> float:
    """Two rankings agree when their best label is the same (the rest may trade places)."""
    return float(bool(reference) and bool(candidate) and reference[0].label == candidate[0].label)


def example_labels(fields: Mapping[str, Any]) -> tuple[str, ...] | None:
    """A labelled example's candidate labels, if it names any."""
    labels = fields.get("candidate_labels")
    return tuple(str(label) for label in labels) if isinstance(labels, list) and labels else None


def ranked(labels: Sequence[str], scores: np.ndarray, top_k: int | None) -> list[LabelScore]:
    """The labels with their scores, best first (ties keep label order), at most top_k."""
    order = np.argsort(-scores, kind="stable")[:top_k]
    return [LabelScore(labels[i], float(scores[i])) for i in order]


@dataclass(frozen=True)
class SentimentParams:
    top_k: int = 1  # labels per input, best first; above 1 the result is a list


# One label (top_k 1, the contract's default) or the top_k best, best first.
SentimentResult = LabelScore | list[LabelScore]


def shape_sentiment(labels: list[LabelScore], params: SentimentParams) -> SentimentResult:
    """top_k == 1 keeps the contract's one label per input; above 1 each is a list."""
    return labels[0] if params.top_k == 1 else labels


def _nli_indices(config: Any) -> tuple[int, int] | None:
    """(entailment, contradiction) label ids of an NLI model, or None for a plain classifier."""
    by_name = {str(name).lower(): int(idx) for name, idx in config.label2id.items()}
    entail = next((i for n, i in by_name.items() if n.startswith("entail")), None)
    contra = next((i for n, i in by_name.items() if n.startswith("contradict")), None)
    if entail is None or contra is None:
        return None
    return entail, contra


class ClassifyTask(Task[str, ClassifyParams, list[LabelScore]]):
    name = TaskName.CLASSIFY
    head = Head.SEQUENCE_CLASSIFICATION

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.nli = _nli_indices(self.config)
        self.labels = [str(self.config.id2label[i]) for i in range(self.config.num_labels)]
        self.method = "zero-shot NLI" if self.nli else "fine-tuned head"
        self.multi_label_head = getattr(self.config, "problem_type", None) == (
            "multi_label_classification"
        )

    @property
    def zero_shot(self) -> bool:
        return self.nli is not None

    def refusal(self, params: ClassifyParams) -> InvalidInput | None:
        if self.zero_shot and not params.candidate_labels:
            return InvalidInput(
                f"model {self.spec.name!r} is a zero-shot (NLI) classifier: pass "
                '"candidate_labels", e.g. ["sports", "politics"]'
            )
        if not self.zero_shot and params.candidate_labels:
            return InvalidInput(
                f"model {self.spec.name!r} has fixed labels {self.labels} and cannot take "
                '"candidate_labels"; drop them or choose a zero-shot model (GET /v1/models)'
            )
        return None

    def encode(self, item: str, params: ClassifyParams) -> Encoded:
        if params.candidate_labels:
            template = params.hypothesis_template or DEFAULT_HYPOTHESIS_TEMPLATE
            return Encoded(
                rows=[
                    self.row(
                        self.tokenize(item, fill_template(template, label), truncation="only_first")
                    )
                    for label in params.candidate_labels
                ]
            )
        return Encoded(rows=[self.text_row(item)])

    def decode(
        self, encoded: Encoded, outputs: ModelOutputs, params: ClassifyParams
    ) -> list[LabelScore]:
        logits = outputs["logits"].astype(np.float64)
        if params.candidate_labels:
            assert self.nli is not None
            entail, contra = self.nli
            labels = list(params.candidate_labels)
            if params.multi_label or len(labels) == 1:
                scores = softmax(logits[:, [contra, entail]], axis=-1)[:, 1]
            else:
                scores = softmax(logits[:, entail], axis=-1)
        else:
            labels = self.labels
            row = logits[0]
            scores = sigmoid(row) if (params.multi_label or self.multi_label_head) else softmax(row)
        return ranked(labels, scores, params.top_k)

    def warmup_request(self) -> tuple[str, ClassifyParams]:
        labels = ("positive", "negative") if self.zero_shot else None
        return "warm-up request", ClassifyParams(candidate_labels=labels)

    def example_request(self, fields: Mapping[str, Any]) -> tuple[str, ClassifyParams]:
        text, params = super().example_request(fields)
        labels = example_labels(fields)
        return text, ClassifyParams(
            candidate_labels=labels
        ) if labels and self.zero_shot else params

    def agreement(self, reference: list[LabelScore], candidate: list[LabelScore]) -> float:
        return top_label_agreement(reference, candidate)

    def describe(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"method": self.method}
        if not self.zero_shot:
            facts["labels"] = self.labels
        return facts


class SentimentTask(Task[str, SentimentParams, SentimentResult]):
    """The best label, or the top_k best with their softmax scores (params.top_k > 1)."""

    name = TaskName.SENTIMENT
    head = Head.SEQUENCE_CLASSIFICATION

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.labels = [str(self.config.id2label[i]) for i in range(self.config.num_labels)]

    def encode(self, item: str, params: SentimentParams) -> Encoded:
        return Encoded(rows=[self.text_row(item)])

    def decode(
        self, encoded: Encoded, outputs: ModelOutputs, params: SentimentParams
    ) -> SentimentResult:
        scores = softmax(outputs["logits"][0].astype(np.float64))
        return shape_sentiment(ranked(self.labels, scores, params.top_k), params)

    def warmup_request(self) -> tuple[str, SentimentParams]:
        return "warm-up request", SentimentParams()

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "labels": self.labels}
