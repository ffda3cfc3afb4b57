"""Each task's standard metrics, from pinned libraries where they exist.

scikit-learn (accuracy, macro-F1), sacrebleu (BLEU, chrF), rouge-score (ROUGE-1/2/L). Written
here, because they are a few lines over our own result shapes: SQuAD v1.1 exact match and F1
(the official evaluation script's semantics), entity-level precision/recall/F1 over character
spans (CoNLL semantics: an entity counts only when type, start and end all match), pseudo-
perplexity from per-token log-likelihoods, and latency percentiles.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def squad_normalize(text: str) -> str:
    """SQuAD v1.1: lowercase, drop punctuation, drop the articles a/an/the, collapse spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def squad_exact(prediction: str, gold: str) -> float:
    return float(squad_normalize(prediction) == squad_normalize(gold))


def squad_f1(prediction: str, gold: str) -> float:
    """Token-overlap F1 of the normalised texts (0 when nothing is shared)."""
    pred, ref = squad_normalize(prediction).split(), squad_normalize(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def squad_item(prediction: str, golds: Sequence[str]) -> tuple[float, float]:
    """(exact match, F1) of one answer: the best over the gold answers, as the official script."""
    return (
        max(squad_exact(prediction, g) for g in golds),
        max(squad_f1(prediction, g) for g in golds),
    )


def squad(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """exact_match and f1 in percent, as the SQuAD v1.1 evaluation reports them."""
    scores = [squad_item(p, g) for p, g in zip(predictions, golds, strict=True)]
    return {
        "exact_match": 100.0 * float(np.mean([s[0] for s in scores])),
        "f1": 100.0 * float(np.mean([s[1] for s in scores])),
    }


def classification(predictions: Sequence[str], golds: Sequence[str]) -> dict[str, float]:
    """accuracy and macro-F1 (over the gold and predicted labels), in [0, 1]."""
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": float(accuracy_score(golds, predictions)),
        "macro_f1": float(f1_score(golds, predictions, average="macro", zero_division=0)),
    }


def rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measures (rouge-score, Porter stemming as in the original ROUGE-1.5.5
    -m option), in [0, 1]."""
    scorer = _rouge_scorer()
    totals: dict[str, list[float]] = {"rouge1": [], "rouge2": [], "rougeL": []}
    for prediction, reference in zip(predictions, references, strict=True):
        scores = scorer.score(reference, prediction)
        for key, values in totals.items():
            values.append(scores[key].fmeasure)
    return {key: float(np.mean(values)) for key, values in totals.items()}


def rouge_l(prediction: str, reference: str) -> float:
    return float(_rouge_scorer().score(reference, prediction)["rougeL"].fmeasure)


def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def translation(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU and chrF (sacrebleu defaults: 13a tokenisation, chrF n=6 beta=2), 0-100."""
    import sacrebleu

    refs = [list(references)]
    return {
        "bleu": float(sacrebleu.corpus_bleu(list(predictions), refs).score),
        "chrf": float(sacrebleu.corpus_chrf(list(predictions), refs).score),
    }


def sentence_chrf(prediction: str, reference: str) -> float:
    import sacrebleu

    return float(sacrebleu.sentence_chrf(prediction, [reference]).score)


Span = tuple[str, int, int]  # (type, start, end) in characters


def entities(predictions: Sequence[set[Span]], golds: Sequence[set[Span]]) -> dict[str, float]:
    """Entity-level micro precision, recall and F1 (exact type and boundaries), in [0, 1]."""
    true_pos = sum(len(p & g) for p, g in zip(predictions, golds, strict=True))
    predicted = sum(len(p) for p in predictions)
    gold = sum(len(g) for g in golds)
    precision = true_pos / predicted if predicted else 0.0
    recall = true_pos / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def entity_f1(prediction: set[Span], gold: set[Span]) -> float:
    if not prediction and not gold:
        return 1.0
    return entities([prediction], [gold])["f1"]


def pseudo_perplexity(token_log_probs: Sequence[Sequence[float]]) -> dict[str, float]:
    """exp(-mean log P(token | the rest)) over every scored token of the set (Salazar et al.
    2020, "Masked Language Model Scoring"), and the mean pseudo-log-likelihood per text."""
    flat = [lp for item in token_log_probs for lp in item]
    if not flat:
        return {"pseudo_perplexity": math.nan, "pll_per_text": math.nan}
    return {
        "pseudo_perplexity": math.exp(-float(np.mean(flat))),
        "pll_per_text": float(np.mean([sum(item) for item in token_log_probs])),
    }


def latency(seconds: Sequence[float], wall_s: float, items: int) -> dict[str, float]:
    """p50/p95/p99 of the request latencies in milliseconds, and items per second."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    p50, p95, p99 = (float(v) for v in np.percentile(ms, [50, 95, 99])) if len(ms) else (0, 0, 0)
    return {
        "latency_p50_ms": p50,
        "latency_p95_ms": p95,
        "latency_p99_ms": p99,
        "items_per_s": items / wall_s if wall_s > 0 else math.nan,
    }
