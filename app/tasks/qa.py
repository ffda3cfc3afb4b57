"""Extractive question answering: sliding windows over the context, span decoding, offsets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.errors import InvalidInput
from app.runtimes.base import Head, ModelOutputs
from app.spec import QAHeadOptions, TaskName
from app.tasks.base import Encoded, Task, softmax


@dataclass(frozen=True)
class QAItem:
    question: str
    context: str


@dataclass(frozen=True)
class QAParams:
    top_k: int = 1
    max_answer_len: int = 15


@dataclass(frozen=True)
class Answer:
    """An answer span: context[start:end] is the answer (start = end = 0: no answer)."""

    answer: str
    score: float
    start: int
    end: int


QAResult = Answer | list[Answer]


def example_qa_request(fields: Mapping[str, Any]) -> tuple[QAItem, QAParams]:
    """A labelled example's question and context (a calibration text is both)."""
    return QAItem(str(fields["question"]), str(fields["context"])), QAParams()


def shape_answers(answers: list[Answer], params: QAParams) -> QAResult:
    """top_k == 1 keeps the contract's one answer per input; above 1 each is a list."""
    return answers[0] if params.top_k == 1 else answers


@dataclass(frozen=True)
class Window:
    length: int
    context_mask: np.ndarray  # bool [length]: True where the token belongs to the context
    offsets: list[tuple[int, int]]


@dataclass(frozen=True)
class WindowedContext:
    """What decoding a QA item needs: the context text and its token windows (one per row)."""

    text: str
    windows: list[Window]


class QATask(Task[QAItem, QAParams, QAResult]):
    """Returns up to top_k answers per item, best first (one answer when top_k is 1).

    With catalog option `null_answer: true` (SQuAD 2.0-style models) the empty answer
    (start = end = 0) competes with the spans, scored by the [CLS] position.
    """

    name = TaskName.QA
    head = Head.QUESTION_ANSWERING
    method = "extractive span head"
    needs_offsets = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        options = self.spec.options_as(QAHeadOptions)
        self.null_answer = options.null_answer
        self.doc_stride = max(1, min(options.doc_stride, self.max_length // 2))

    def encode(self, item: QAItem, params: QAParams) -> Encoded:
        try:
            enc = self.tokenize(
                item.question,
                item.context,
                truncation="only_second",
                stride=self.doc_stride,
                return_overflowing_tokens=True,
                return_offsets_mapping=True,
            )
        except Exception as exc:  # tokenizers raise when the question leaves no room
            raise InvalidInput(
                f"question is too long for model {self.spec.name!r} (limit {self.max_length} "
                f"tokens for question and context together); shorten it ({exc})"
            ) from None
        windows, rows = [], []
        for i in range(len(enc["input_ids"])):
            sequence_ids = enc.sequence_ids(i)
            mask = np.array([sid == 1 for sid in sequence_ids], dtype=bool)
            offsets = [(int(a), int(b)) for a, b in enc["offset_mapping"][i]]
            windows.append(Window(len(sequence_ids), mask, offsets))
            rows.append(self.row(enc, i))
        return Encoded(rows=rows, context=WindowedContext(item.context, windows))

    def decode(self, encoded: Encoded, outputs: ModelOutputs, params: QAParams) -> QAResult:
        own = encoded.context_as(WindowedContext)
        context, windows = own.text, own.windows
        best: dict[tuple[int, int], float] = {}
        null_score = 1.0
        for w, window in enumerate(windows):
            n = window.length
            keep = window.context_mask.copy()
            keep[0] = True  # [CLS] stays in the softmax: it carries the no-answer score
            start = np.where(keep, outputs["start_logits"][w, :n].astype(np.float64), -np.inf)
            end = np.where(keep, outputs["end_logits"][w, :n].astype(np.float64), -np.inf)
            p_start, p_end = softmax(start), softmax(end)
            null_score = min(null_score, float(p_start[0] * p_end[0]))
            ctx = window.context_mask
            scores = np.outer(p_start * ctx, p_end * ctx)
            scores = np.triu(scores) - np.triu(scores, k=params.max_answer_len)
            flat = np.argsort(-scores, axis=None)[: params.top_k]
            for index in flat:
                i, j = np.unravel_index(index, scores.shape)
                score = float(scores[i, j])
                if score <= 0.0:
                    break
                span = (window.offsets[i][0], window.offsets[j][1])
                best[span] = max(best.get(span, 0.0), score)
        answers = [Answer(context[s:e], sc, s, e) for (s, e), sc in best.items()]
        if self.null_answer or not answers:
            answers.append(Answer("", null_score, 0, 0))
        answers.sort(key=lambda a: -a.score)
        return shape_answers(answers[: params.top_k], params)

    def warmup_request(self) -> tuple[QAItem, QAParams]:
        return QAItem("What is warmed up?", "The model is warmed up before serving."), QAParams()

    def example_request(self, fields: Mapping[str, Any]) -> tuple[QAItem, QAParams]:
        return example_qa_request(fields)

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "null_answer": self.null_answer}
