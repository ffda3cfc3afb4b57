"""Per task: the request bodies an example sends, what the answers predicted, and the scores."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from app.eval import metrics
from app.eval.data import DataError, Example
from app.spec import TaskName

Body = dict[str, Any]


@dataclass(frozen=True)
class Prediction:
    """One example's outcome: what it predicted (shown, and compared across models for
    agreement) and its own score (correct 1/0, F1, ROUGE-L, chrF, or log-likelihood)."""

    shown: str
    key: str
    score: float
    value: Any  # what the set-level metric reads


def _label(answer: Any) -> str:
    best = answer[0] if isinstance(answer, list) else answer
    return str(best["label"])


def _same_label(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()


def masked_texts(text: str, tokenizer: Any) -> list[tuple[str, str]]:
    """(text with one token masked, that token) for every token of the text: the inputs of a
    pseudo-log-likelihood. The mask replaces the token's characters, so a word's first piece
    masked leaves its continuation to be re-tokenised as a word start (docs/evaluation.md)."""
    encoding = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    tokens = tokenizer.convert_ids_to_tokens(encoding["input_ids"])
    mask = str(tokenizer.mask_token)
    return [
        (text[:start] + mask + text[end:], str(token))
        for token, (start, end) in zip(tokens, encoding["offset_mapping"], strict=True)
        if end > start
    ]


def requests(task: TaskName, example: Example, tokenizer: Any = None) -> list[Body]:
    f, params = example.fields, example.params
    if task in (TaskName.CLASSIFY, TaskName.SENTIMENT, TaskName.NER, TaskName.SUMMARIZE):
        return [{"inputs": f["text"], **params}]
    if task is TaskName.QA:
        return [{"inputs": {"question": f["question"], "context": f["context"]}, **params}]
    if task is TaskName.TRANSLATE:
        langs = {"source_lang": f["source_lang"], "target_lang": f["target_lang"]}
        return [{"inputs": f["text"], **langs, **params}]
    if task is TaskName.FILL_MASK:
        if tokenizer is None:
            raise DataError(
                "fill-mask (pseudo-perplexity) masks each token of the text in turn, so it needs "
                "the model's tokenizer: run in-process (--models) or pass --tokenizer DIR"
            )
        return [
            {"inputs": masked, "targets": [token], "top_k": 1, **params}
            for masked, token in masked_texts(f["text"], tokenizer)
        ]
    raise DataError(f"task {task.value!r} has no evaluation")


def predict(task: TaskName, example: Example, answers: Sequence[Any]) -> Prediction:
    f = example.fields
    if task in (TaskName.CLASSIFY, TaskName.SENTIMENT):
        label = _label(answers[0])
        right = float(_same_label(label, str(f["label"])))
        return Prediction(label, label.casefold(), right, label.casefold())
    if task is TaskName.QA:
        answer = answers[0][0] if isinstance(answers[0], list) else answers[0]
        golds = f["answers"] if isinstance(f["answers"], list) else [f["answers"]]
        _, f1 = metrics.squad_item(str(answer["answer"]), [str(g) for g in golds])
        text = str(answer["answer"])
        return Prediction(text, f"{answer['start']}:{answer['end']}", f1, text)
    if task is TaskName.SUMMARIZE:
        text = str(answers[0]["summary_text"])
        return Prediction(text, text, metrics.rouge_l(text, str(f["summary"])), text)
    if task is TaskName.TRANSLATE:
        text = str(answers[0]["translation_text"])
        return Prediction(text, text, metrics.sentence_chrf(text, str(f["translation"])), text)
    if task is TaskName.NER:
        found = {(str(e["entity_group"]), int(e["start"]), int(e["end"])) for e in answers[0]}
        gold = gold_entities(example)
        shown = ", ".join(f"{f['text'][s:e]}/{t}" for t, s, e in sorted(found, key=lambda x: x[1]))
        key = repr(sorted(found))
        return Prediction(shown, key, metrics.entity_f1(found, gold), found)
    if task is TaskName.FILL_MASK:
        log_probs = [math.log(max(float(a[0]["score"]), 1e-300)) for a in answers]
        pll = sum(log_probs)
        return Prediction(f"PLL {pll:.2f}", f"{pll:.3f}", pll, log_probs)
    raise DataError(f"task {task.value!r} has no evaluation")


def gold_entities(example: Example) -> set[metrics.Span]:
    gold = set()
    for entity in example.fields["entities"]:
        kind = entity.get("entity_group", entity.get("label"))
        if kind is None or "start" not in entity or "end" not in entity:
            raise DataError(f"line {example.line}: each entity needs entity_group (or label), "
                            "start and end (character offsets)")  # fmt: skip
        gold.add((str(kind), int(entity["start"]), int(entity["end"])))
    return gold


def _qa_golds(example: Example) -> list[str]:
    golds = example.fields["answers"]
    return [str(g) for g in golds] if isinstance(golds, list) else [str(golds)]


SetMetric = Callable[[Sequence[Example], Sequence[Prediction]], dict[str, float]]

SET_METRICS: dict[TaskName, SetMetric] = {
    TaskName.CLASSIFY: lambda ex, pr: metrics.classification(
        [p.value for p in pr], [str(e.fields["label"]).casefold() for e in ex]
    ),
    TaskName.SENTIMENT: lambda ex, pr: metrics.classification(
        [p.value for p in pr], [str(e.fields["label"]).casefold() for e in ex]
    ),
    TaskName.QA: lambda ex, pr: metrics.squad([p.value for p in pr], [_qa_golds(e) for e in ex]),
    TaskName.SUMMARIZE: lambda ex, pr: metrics.rouge(
        [p.value for p in pr], [str(e.fields["summary"]) for e in ex]
    ),
    TaskName.TRANSLATE: lambda ex, pr: metrics.translation(
        [p.value for p in pr], [str(e.fields["translation"]) for e in ex]
    ),
    TaskName.NER: lambda ex, pr: metrics.entities(
        [p.value for p in pr], [gold_entities(e) for e in ex]
    ),
    TaskName.FILL_MASK: lambda ex, pr: metrics.pseudo_perplexity([p.value for p in pr]),
}

# How an item's own score reads, for the worst-disagreement list.
ITEM_SCORE: dict[TaskName, str] = {
    TaskName.CLASSIFY: "correct",
    TaskName.SENTIMENT: "correct",
    TaskName.QA: "F1",
    TaskName.SUMMARIZE: "ROUGE-L",
    TaskName.TRANSLATE: "chrF",
    TaskName.NER: "entity F1",
    TaskName.FILL_MASK: "pseudo-log-likelihood",
}
