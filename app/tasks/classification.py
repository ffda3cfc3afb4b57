"""classify and sentiment: sequence-classification heads, and zero-shot through NLI models."""

from __future__ import annotations

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
        order = np.argsort(-scores, kind="stable")
        if params.top_k is not None:
            order = order[: params.top_k]
        return [LabelScore(labels[i], float(scores[i])) for i in order]

    def warmup_request(self) -> tuple[str, ClassifyParams]:
        labels = ("positive", "negative") if self.zero_shot else None
        return "warm-up request", ClassifyParams(candidate_labels=labels)

    def describe(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"method": self.method}
        if not self.zero_shot:
            facts["labels"] = self.labels
        return facts


class SentimentTask(Task[str, None, LabelScore]):
    name = TaskName.SENTIMENT
    head = Head.SEQUENCE_CLASSIFICATION

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.labels = [str(self.config.id2label[i]) for i in range(self.config.num_labels)]

    def encode(self, item: str, params: None) -> Encoded:
        return Encoded(rows=[self.text_row(item)])

    def decode(self, encoded: Encoded, outputs: ModelOutputs, params: None) -> LabelScore:
        scores = softmax(outputs["logits"][0].astype(np.float64))
        best = int(np.argmax(scores))
        return LabelScore(self.labels[best], float(scores[best]))

    def warmup_request(self) -> tuple[str, None]:
        return "warm-up request", None

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "labels": self.labels}
