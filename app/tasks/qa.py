"""Extractive question answering: sliding windows over the context, span decoding, offsets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.errors import InvalidInput
from app.runtimes.base import Head, ModelOutputs
from app.spec import TaskName
from app.tasks.base import Encoded, Task, softmax

DEFAULT_DOC_STRIDE = 128


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
    answer: str
    score: float
    start: int
    end: int


@dataclass(frozen=True)
class _Window:
    length: int
    context_mask: np.ndarray  # bool [length]: True where the token belongs to the context
    offsets: list[tuple[int, int]]


class QATask(Task[QAItem, QAParams, list[Answer]]):
    """Returns up to top_k answers per item, best first.

    With catalog option `null_answer: true` (SQuAD 2.0-style models) the empty answer
    (start = end = 0) competes with the spans, scored by the [CLS] position.
    """

    name = TaskName.QA
    head = Head.QUESTION_ANSWERING
    method = "extractive span head"
    needs_offsets = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.null_answer = bool(self.spec.options.get("null_answer", False))
        stride = int(self.spec.options.get("doc_stride", DEFAULT_DOC_STRIDE))
        self.doc_stride = max(1, min(stride, self.max_length // 2))

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
            windows.append(_Window(len(sequence_ids), mask, offsets))
            rows.append(self.row(enc, i))
        return Encoded(rows=rows, context=(item.context, windows))

    def decode(self, encoded: Encoded, outputs: ModelOutputs, params: QAParams) -> list[Answer]:
        context, windows = encoded.context
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
        return answers[: params.top_k]

    def warmup_request(self) -> tuple[QAItem, QAParams]:
        return QAItem("What is warmed up?", "The model is warmed up before serving."), QAParams()

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "null_answer": self.null_answer}
