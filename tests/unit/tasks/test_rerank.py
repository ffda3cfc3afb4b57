"""rerank: each (query, document) pair in windows, scores from one or more logits, the ranking,
and the semantic method's cosine; on the tiny models' real tokenizer."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app.errors import ModelLoadError, QueryTooLong
from app.tasks.rerank import (
    DocumentScore,
    RerankItem,
    RerankParams,
    logistic,
    rank,
    relevance_logits,
)

QUERY = "Who wrote the first program?"
LONG = " ".join(f"word{i}" for i in range(300))  # ~900 WordPiece tokens: several windows


def logits_for(encoded: Any, values: list[float]) -> dict[str, np.ndarray]:
    return {"logits": np.asarray(values, dtype=np.float32).reshape(len(encoded.rows), -1)}


def test_a_short_document_is_one_pair_with_segment_ids(make_task: Any) -> None:
    task = make_task("rerank", "cross-encoder")
    encoded = task.encode(RerankItem(QUERY, "Ada Lovelace did."), RerankParams())
    expected = task.tokenizer(QUERY, "Ada Lovelace did.")
    assert encoded.rows == [{key: list(expected[key]) for key in task.model_inputs}]
    assert set(encoded.rows[0]["token_type_ids"]) == {0, 1}
    assert encoded.truncated is False


def test_long_documents_are_windows_of_the_query_with_overlapping_parts(make_task: Any) -> None:
    """Windows as the tokenizer makes them for a pair cut on the document's side only, with
    doc_stride tokens of overlap: never a silent cut."""
    task = make_task("rerank", "cross-encoder", options={"doc_stride": 16})
    encoded = task.encode(RerankItem(QUERY, LONG), RerankParams())
    reference = task.tokenizer(
        QUERY, LONG, truncation="only_second", max_length=task.max_length, stride=16,
        return_overflowing_tokens=True,
    )  # fmt: skip
    assert len(encoded.rows) == len(reference["input_ids"]) > 5
    for row, i in zip(encoded.rows, range(len(reference["input_ids"])), strict=True):
        assert row == {key: list(reference[key][i]) for key in task.model_inputs}
        assert len(row["input_ids"]) <= task.max_length
    start = len(task.tokenizer(QUERY)["input_ids"])  # [CLS] query [SEP], then the document
    first, second = (row["input_ids"][start:-1] for row in encoded.rows[:2])
    assert first[-16:] == second[:16]  # 16 tokens of overlap
    assert encoded.truncated is False


def test_the_best_window_scores_the_document(make_task: Any) -> None:
    task = make_task("rerank", "cross-encoder")
    encoded = task.encode(RerankItem(QUERY, LONG), RerankParams())
    values = [-3.0] * len(encoded.rows)
    values[2] = 1.5
    result = task.decode(encoded, logits_for(encoded, values), RerankParams())
    assert result.score == pytest.approx(1 / (1 + np.exp(-1.5)))
    assert result.windows == len(encoded.rows)
    assert result.tokens == sum(len(row["input_ids"]) for row in encoded.rows)
    raw = task.decode(encoded, logits_for(encoded, values), RerankParams(raw_scores=True))
    assert raw.score == pytest.approx(1.5)


@pytest.mark.parametrize("direction", ["right", "left"])
def test_cuts_are_of_the_document_only_and_said(make_task: Any, direction: str) -> None:
    task = make_task("rerank", "cross-encoder")
    item = RerankItem(QUERY, LONG)
    query_ids = task.tokenizer(QUERY)["input_ids"]
    pieces = task.tokenizer(LONG, add_special_tokens=False)["input_ids"]
    cut = task.encode(item, RerankParams(max_doc_tokens=10, truncation_direction=direction))  # type: ignore[arg-type]
    assert len(cut.rows) == 1
    ids = cut.rows[0]["input_ids"]
    assert ids[: len(query_ids)] == query_ids  # the query whole, then 10 of the document's
    assert ids[len(query_ids) : -1] == (pieces[:10] if direction == "right" else pieces[-10:])
    assert cut.truncated is True
    fit = task.encode(item, RerankParams(fit_window=True))
    assert len(fit.rows) == 1
    assert len(fit.rows[0]["input_ids"]) == task.max_length
    assert fit.truncated is True
    capped = task.encode(item, RerankParams(max_windows=2))
    assert len(capped.rows) == 2
    assert capped.truncated is True
    short = task.encode(RerankItem(QUERY, "short"), RerankParams(max_doc_tokens=10))
    assert short.truncated is False  # nothing to cut


def test_a_query_with_no_room_for_a_document_is_refused_naming_it(make_task: Any) -> None:
    task = make_task("rerank", "cross-encoder")
    with pytest.raises(QueryTooLong, match=r"the query has .* tokens .* shorten the query"):
        task.encode(RerankItem("word " * 200, "a document"), RerankParams())


def test_two_logit_heads_score_the_positive_labels_probability(make_task: Any) -> None:
    task = make_task("rerank", "sentiment")  # labels NEGATIVE, POSITIVE
    assert task.positive == 1
    assert "'POSITIVE' (index 1)" in task.describe()["score"]
    encoded = task.encode(RerankItem(QUERY, "a"), RerankParams())
    result = task.decode(encoded, logits_for(encoded, [0.5, 2.0]), RerankParams())
    assert result.score == pytest.approx(np.exp(2.0) / (np.exp(0.5) + np.exp(2.0)))
    raw = task.decode(encoded, logits_for(encoded, [0.5, 2.0]), RerankParams(raw_scores=True))
    assert logistic(raw.score) == pytest.approx(result.score)  # raw ranks like the score
    named = make_task("rerank", "sentiment", options={"positive_label": "NEGATIVE"})
    assert named.positive == 0


def test_more_labels_need_the_positive_one_named(make_task: Any) -> None:
    with pytest.raises(ModelLoadError, match=r"options\.positive_label"):
        make_task("rerank", "nli")
    task = make_task("rerank", "nli", options={"positive_label": "entailment"})
    logits = np.array([[1.0, 0.0, 3.0]])
    expected = np.exp(3.0) / np.exp(logits).sum()
    assert logistic(float(relevance_logits(logits, task.positive)[0])) == pytest.approx(expected)
    with pytest.raises(ModelLoadError, match="not one of its labels"):
        make_task("rerank", "nli", options={"positive_label": "relevant"})


def test_rank_is_best_first_with_positions_ties_in_order_and_top_n() -> None:
    scores = [DocumentScore(s, 1, False, 3) for s in (0.2, 0.9, 0.2, 0.5)]
    assert [r.index for r in rank(scores, None)] == [1, 3, 0, 2]
    assert [(r.index, r.score) for r in rank(scores, 2)] == [(1, 0.9), (3, 0.5)]


def test_logistic_is_finite_at_both_ends() -> None:
    assert logistic(-1000.0) == 0.0
    assert logistic(1000.0) == 1.0
    assert logistic(0.0) == 0.5


def test_auto_compares_rankings_by_their_best_document(make_task: Any) -> None:
    task = make_task("rerank", "cross-encoder")
    fields = {"query": "q", "documents": ["a", "b", "c"], "relevant": 1}
    requests = task.example_requests(fields)
    assert [item.document for item, _ in requests] == ["a", "b", "c"]
    ranked = [DocumentScore(s, 1, False, 3) for s in (0.1, 0.8, 0.3)]
    moved = [DocumentScore(s, 1, False, 3) for s in (0.3, 0.7, 0.1)]  # scores move, best stays
    flipped = [DocumentScore(s, 1, False, 3) for s in (0.1, 0.5, 0.6)]
    assert task.probe_agreement(ranked, moved) == 1.0
    assert task.probe_agreement(ranked, flipped) == 0.0


# -- the semantic method --------------------------------------------------------------------


def test_semantic_rows_are_the_query_then_the_documents_windows(make_task: Any) -> None:
    task = make_task("rerank", "encoder", method="semantic", options={"doc_stride": 8})
    encoded = task.encode(RerankItem(QUERY, "Ada Lovelace did."), RerankParams())
    assert [row["input_ids"] for row in encoded.rows] == [
        task.tokenizer(QUERY)["input_ids"],
        task.tokenizer("Ada Lovelace did.")["input_ids"],
    ]
    long = task.encode(RerankItem(QUERY, LONG), RerankParams())
    assert len(long.rows) > 3
    assert all(len(row["input_ids"]) <= task.max_length for row in long.rows)


def test_semantic_score_is_the_best_windows_cosine(make_task: Any) -> None:
    task = make_task("rerank", "encoder", method="semantic",
                     options={"relevance_center": 0.5, "temperature": 0.1})  # fmt: skip
    encoded = task.encode(RerankItem(QUERY, LONG), RerankParams())
    width = max(len(row["input_ids"]) for row in encoded.rows)
    vectors = np.zeros((len(encoded.rows), 2))
    vectors[:, 1] = 1.0  # every window orthogonal to the query...
    vectors[0] = [1.0, 0.0]
    vectors[2] = [0.8, 0.6]  # ...but one, at cosine 0.8
    outputs = {"last_hidden_state": np.repeat(vectors[:, None, :], width, axis=1)}
    raw = task.decode(encoded, outputs, RerankParams(raw_scores=True))
    assert raw.score == pytest.approx(0.8)
    assert raw.windows == len(encoded.rows) - 1
    scored = task.decode(encoded, outputs, RerankParams())
    assert scored.score == pytest.approx(1 / (1 + np.exp(-(0.8 - 0.5) / 0.1)))


class CountingBackend:
    def __init__(self) -> None:
        self.rows: list[int] = []

    def forward(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.rows.append(len(inputs["input_ids"]))
        ids = inputs["input_ids"].astype(np.float32)
        return {"last_hidden_state": np.stack([ids, -ids], axis=-1)}


def test_semantic_runs_a_requests_repeated_query_rows_once(make_task: Any) -> None:
    from app.tasks.base import collate

    task = make_task("rerank", "encoder", method="semantic")
    rows = [row for doc in ("a b", "c", "d e f") for row in
            task.encode(RerankItem(QUERY, doc), RerankParams()).rows]  # fmt: skip
    inputs = collate(rows, 0)
    backend = CountingBackend()
    outputs = task.execute(backend, inputs, RerankParams(), None)  # type: ignore[arg-type]
    assert backend.rows == [4]  # the query once, and three documents
    expected = CountingBackend().forward(inputs)
    assert np.array_equal(outputs["last_hidden_state"], expected["last_hidden_state"])


def test_a_tokenizer_adding_tokens_outside_its_template_is_refused(make_task: Any) -> None:
    """Windows are put together by the tokenizer.json template; a tokenizer whose own call
    adds something else (special tokens added in Python) would be read wrongly: refused."""
    from app.tasks.rerank import check_template

    task = make_task("rerank", "cross-encoder")
    check_template(task, task.pieces, pair=True)  # the real one agrees with its template
    real = task.tokenizer

    def with_a_prefix(*texts: str) -> dict[str, list[int]]:
        encoded = real(*texts)
        return {key: [0, *encoded[key]] for key in task.model_inputs}

    task.tokenizer = with_a_prefix
    with pytest.raises(ModelLoadError, match="template"):
        check_template(task, task.pieces, pair=True)
