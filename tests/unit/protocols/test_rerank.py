"""The rerank wire formats: Cohere's and Jina's answer and error bodies, TEI's, and the
fields the clients may send that are refused by name."""

from __future__ import annotations

import json

import pytest

from app.errors import InvalidInput
from app.protocols.errors import error_answer
from app.protocols.rerank import RerankRequest, rerank_answer
from app.protocols.tei_rerank import TEIRerankRequest, tei_ranks
from app.tasks.rerank import RankedDocument, RerankParams

RANKED = [RankedDocument(2, 0.9, 3, False), RankedDocument(0, 0.4, 1, True)]


def body_on(path: str, status: int = 422) -> dict[str, str]:
    payload, headers = error_answer(path, status, "invalid_input", "what was wrong")
    assert (b"content-type", b"application/json") in headers
    parsed: dict[str, str] = json.loads(payload)
    return parsed


def test_each_rerank_path_answers_its_clients_error_body() -> None:
    assert body_on("/v2/rerank") == {"message": "what was wrong"}  # Cohere, not v2's plain shape
    assert body_on("/v2/models/m/infer") == {"error": "what was wrong"}
    assert body_on("/v1/rerank") == {"message": "what was wrong", "detail": "what was wrong"}
    assert body_on("/rerank", 429) == {"error": "what was wrong", "error_type": "Overloaded"}


def test_the_answer_gives_documents_back_as_sent_when_asked() -> None:
    request = RerankRequest.model_validate(
        {"query": "q", "documents": ["a", "b", {"text": "c", "title": "t"}]}
    )
    common = {"request_id": "r1", "model": "m", "ranked": RANKED, "documents": request.documents,
              "tokens": 42, "version": "2"}  # fmt: skip
    answer = rerank_answer(return_documents=True, **common)  # type: ignore[arg-type]
    assert answer["results"] == [
        {"index": 2, "relevance_score": 0.9, "document": {"text": "c", "title": "t"},
         "windows": 3, "truncated": False},
        {"index": 0, "relevance_score": 0.4, "document": {"text": "a"}, "windows": 1,
         "truncated": True},
    ]  # fmt: skip
    assert (answer["id"], answer["model"], answer["usage"]) == ("r1", "m", {"total_tokens": 42})
    assert answer["meta"] == {"api_version": {"version": "2"}, "tokens": {"input_tokens": 42}}
    bare = rerank_answer(return_documents=False, **common)  # type: ignore[arg-type]
    assert [set(r) for r in bare["results"]] == [{"index", "relevance_score", "windows",
                                                  "truncated"}] * 2  # fmt: skip


def test_the_request_maps_to_the_cores_params() -> None:
    request = RerankRequest.model_validate(
        {"query": "q", "documents": ["a"], "top_n": 3, "max_tokens_per_doc": 100,
         "max_chunks_per_doc": 4}
    )  # fmt: skip
    assert request.task_params() == RerankParams(top_n=3, max_doc_tokens=100, max_windows=4)
    tei = TEIRerankRequest.model_validate(
        {"query": "q", "texts": ["a"], "raw_scores": True, "truncate": True,
         "truncation_direction": "Left"}
    )  # fmt: skip
    assert tei.task_params() == RerankParams(
        raw_scores=True, fit_window=True, truncation_direction="left"
    )


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"rank_fields": ["title", "text"]}, "rank_fields"),
        ({"relevant_spans": {"mode": "enabled", "threshold": 0.2}}, "relevant_spans"),
        ({"priority": 1}, "priority"),
    ],
)
def test_fields_not_served_are_refused_by_name(fields: dict[str, object], named: str) -> None:
    request = RerankRequest.model_validate({"query": "q", "documents": ["a"], **fields})
    with pytest.raises(InvalidInput, match=named):
        request.check_served()
    served = {"rank_fields": ["text"], "relevant_spans": {"mode": "disabled"}, "priority": 0}
    RerankRequest.model_validate({"query": "q", "documents": ["a"], **served}).check_served()


def test_tei_answers_every_text_and_its_text_when_asked() -> None:
    assert tei_ranks(RANKED, ["x", "y", "z"], return_text=True) == [
        {"index": 2, "score": 0.9, "text": "z", "windows": 3, "truncated": False},
        {"index": 0, "score": 0.4, "text": "x", "windows": 1, "truncated": True},
    ]
    assert "text" not in tei_ranks(RANKED, ["x", "y", "z"], return_text=False)[0]
