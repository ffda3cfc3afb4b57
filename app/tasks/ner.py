"""Named entities: token classification with B-/I- grouping into character spans."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.runtimes.base import Head, ModelOutputs
from app.spec import TaskName
from app.tasks.base import Encoded, Task, softmax


@dataclass(frozen=True)
class Entity:
    entity_group: str
    score: float
    word: str
    start: int
    end: int


def _split_tag(label: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'PER' -> ('I', 'PER'); 'O' -> ('O', '')."""
    if label == "O":
        return "O", ""
    if len(label) > 2 and label[1] in "-_" and label[0] in "BIES":
        return label[0], label[2:]
    return "I", label


@dataclass(frozen=True)
class TokenSpans:
    """What decoding an NER item needs: the text, each token's character span, and which
    tokens are special ([CLS], [SEP])."""

    text: str
    offsets: list[tuple[int, int]]
    special: list[int]


class NERTask(Task[str, None, list[Entity]]):
    name = TaskName.NER
    head = Head.TOKEN_CLASSIFICATION
    needs_offsets = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.labels = [str(self.config.id2label[i]) for i in range(self.config.num_labels)]

    def encode(self, item: str, params: None) -> Encoded:
        enc = self.tokenize(item, return_offsets_mapping=True, return_special_tokens_mask=True)
        return Encoded(
            rows=[self.row(enc)],
            context=TokenSpans(item, enc["offset_mapping"], enc["special_tokens_mask"]),
        )

    def decode(self, encoded: Encoded, outputs: ModelOutputs, params: None) -> list[Entity]:
        spans = encoded.context_as(TokenSpans)
        text, offsets, special = spans.text, spans.offsets, spans.special
        n = len(offsets)
        probs = softmax(outputs["logits"][0, :n].astype(np.float64))
        best = probs.argmax(-1)
        entities: list[Entity] = []
        group: str | None = None
        span_start = span_end = 0
        scores: list[float] = []

        def close() -> None:
            if group is not None:
                entities.append(
                    Entity(
                        group,
                        float(np.mean(scores)),
                        text[span_start:span_end],
                        span_start,
                        span_end,
                    )
                )

        for t in range(n):
            start, end = offsets[t]
            if special[t] or start == end:
                continue
            tag, kind = _split_tag(self.labels[int(best[t])])
            if tag == "O":
                close()
                group = None
                continue
            continues = group == kind and tag in ("I", "E")
            if not continues:
                close()
                group, span_start, scores = kind, start, []
            span_end = end
            scores.append(float(probs[t, best[t]]))
        close()
        return entities

    def warmup_request(self) -> tuple[str, None]:
        return "Ada Lovelace lived in London.", None

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "labels": self.labels}
