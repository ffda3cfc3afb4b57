"""The rerank routes on the fake backend: Jina's and Cohere's shapes on /v1/rerank and
/v2/rerank, TEI's on /rerank, each surface's error body, the limits (413 naming the setting),
and windows and cuts said per document."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.tasks.rerank import logistic
from tests.conftest import serve_in_process, settings_for

DOCS = ["Ada Lovelace wrote the first program.", "The weather is mild.", "Bread needs flour."]
LONG = " ".join(f"word{i}" for i in range(150))  # ~450 tokens: several 128-token windows


async def ok(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> Any:
    response = await client.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def cohere_error(response: httpx.Response, status: int, *words: str) -> str:
    """/v2/rerank answers Cohere's {"message"}, nothing else."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"message"}, body
    for word in words:
        assert word in body["message"], body["message"]
    return str(body["message"])


async def test_v1_answers_jina_and_cohere_v1_best_first_with_documents(
    fake_client: httpx.AsyncClient,
) -> None:
    documents: list[Any] = [*DOCS[:2], {"text": DOCS[2], "title": "baking"}]
    response = await fake_client.post("/v1/rerank", json={"query": "Who wrote it?",
                                                          "documents": documents})  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "tiny-rerank"
    assert body["id"] == response.headers["x-request-id"]
    scores = [r["relevance_score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert sorted(r["index"] for r in body["results"]) == [0, 1, 2]
    for result in body["results"]:  # Jina's default: the documents come back, as sent
        sent = documents[result["index"]]
        assert result["document"] == (sent if isinstance(sent, dict) else {"text": sent})
        assert (result["windows"], result["truncated"]) == (1, False)
    assert body["usage"]["total_tokens"] == body["meta"]["tokens"]["input_tokens"] > 0
    assert body["meta"]["api_version"] == {"version": "1"}
    assert "Server-Timing" in response.headers


async def test_v2_answers_cohere_v2_without_documents_unless_asked(
    fake_client: httpx.AsyncClient,
) -> None:
    v1 = await ok(fake_client, "/v1/rerank", {"query": "q", "documents": DOCS})
    v2 = await ok(fake_client, "/v2/rerank", {"model": "tiny-rerank", "query": "q",
                                              "documents": DOCS})  # fmt: skip
    assert [(r["index"], r["relevance_score"]) for r in v2["results"]] == [
        (r["index"], r["relevance_score"]) for r in v1["results"]
    ]
    assert all("document" not in r for r in v2["results"])
    assert v2["meta"]["api_version"] == {"version": "2"}
    top = await ok(fake_client, "/v2/rerank", {"query": "q", "documents": DOCS, "top_n": 1,
                                               "return_documents": True})  # fmt: skip
    assert top["results"] == [{**v1["results"][0]}]
    quiet = await ok(fake_client, "/v1/rerank", {"query": "q", "documents": DOCS,
                                                 "return_documents": False})  # fmt: skip
    assert all("document" not in r for r in quiet["results"])


async def test_tei_rerank_answers_every_text_best_first(fake_client: httpx.AsyncClient) -> None:
    cohere = await ok(fake_client, "/v2/rerank", {"query": "q", "documents": DOCS})
    tei = await ok(fake_client, "/rerank", {"query": "q", "texts": DOCS, "return_text": True})
    assert [(r["index"], r["score"]) for r in tei] == [
        (r["index"], r["relevance_score"]) for r in cohere["results"]
    ]
    assert [r["text"] for r in tei] == [DOCS[r["index"]] for r in tei]
    raw = await ok(fake_client, "/rerank", {"query": "q", "texts": DOCS, "raw_scores": True})
    assert [r["index"] for r in raw] == [r["index"] for r in tei]
    for scored, logit in zip(tei, raw, strict=True):
        assert logistic(logit["score"]) == pytest.approx(scored["score"])
        assert "text" not in logit


async def test_long_documents_are_windowed_and_cut_only_when_asked(
    fake_client: httpx.AsyncClient,
) -> None:
    whole = await ok(fake_client, "/v2/rerank", {"query": "q", "documents": [LONG, "short"]})
    facts = {r["index"]: (r["windows"], r["truncated"]) for r in whole["results"]}
    assert facts[0][0] > 1
    assert facts[0][1] is False
    assert facts[1] == (1, False)
    cut = await ok(fake_client, "/v2/rerank", {"query": "q", "documents": [LONG, "short"],
                                               "max_tokens_per_doc": 16})  # fmt: skip
    assert {r["index"]: (r["windows"], r["truncated"]) for r in cut["results"]} == {
        0: (1, True), 1: (1, False)}  # fmt: skip
    assert cut["usage"]["total_tokens"] < whole["usage"]["total_tokens"]
    chunks = await ok(fake_client, "/v1/rerank", {"query": "q", "documents": [LONG],
                                                  "max_chunks_per_doc": 2})  # fmt: skip
    assert (chunks["results"][0]["windows"], chunks["results"][0]["truncated"]) == (2, True)
    tei = await ok(fake_client, "/rerank", {"query": "q", "texts": [LONG], "truncate": True,
                                            "truncation_direction": "Left"})  # fmt: skip
    assert (tei[0]["windows"], tei[0]["truncated"]) == (1, True)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"query": "q", "documents": []}, ["documents", "at least 1"]),
        ({"query": " ", "documents": ["a"]}, ["query", "empty"]),
        ({"query": "q", "documents": [{"image": "x.png"}]}, ["documents[0]", "text"]),
        ({"query": "q", "documents": ["a"], "top_n": 0}, ["top_n"]),
        ({"query": "q", "documents": ["a"], "truncation": True}, ["truncation", "Extra"]),
        ({"query": "q", "documents": ["a"], "rank_fields": ["title"]}, ["rank_fields", "text"]),
        ({"query": "q", "documents": ["a"], "relevant_spans": {"mode": "enabled"}},
         ["relevant_spans", "disabled"]),
        ({"query": "q", "documents": ["a"], "priority": 2}, ["priority", "omit it or send 0"]),
        ({"query": "q", "documents": ["a"], "model": "tiny-embed"}, ["'tiny-embed'", "rerank"]),
        ({"query": "word " * 200, "documents": ["a", "b"]}, ["the query has", "shorten"]),
    ],
)  # fmt: skip
async def test_v2_refuses_in_cohere_shape_naming_the_field(
    fake_client: httpx.AsyncClient, body: dict[str, Any], words: list[str]
) -> None:
    message = cohere_error(await fake_client.post("/v2/rerank", json=body), 422, *words)
    assert "documents[0]: the query" not in message  # the query is not a document's fault


async def test_each_route_answers_its_own_error_shape(fake_client: httpx.AsyncClient) -> None:
    unknown = {"query": "q", "documents": ["a"], "model": "nope"}
    cohere_error(await fake_client.post("/v2/rerank", json=unknown), 404, "'nope'")
    v1 = await fake_client.post("/v1/rerank", json=unknown)
    assert v1.status_code == 404
    assert set(v1.json()) == {"message", "detail"}  # Cohere's and Jina's key, the same text
    assert v1.json()["message"] == v1.json()["detail"]
    tei = await fake_client.post("/rerank", json={"query": "q", "texts": ["a"], "model": "nope"})
    assert tei.status_code == 404
    assert tei.json() == {"error": v1.json()["message"], "error_type": "Validation"}
    broken = await fake_client.post("/v2/rerank", content=b"{not json",
                                    headers={"content-type": "application/json"})  # fmt: skip
    cohere_error(broken, 400, "not valid JSON")
    v2_infer = await fake_client.post(
        "/v2/models/tiny-rerank/infer",
        json={"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": ["q"]}]},
    )
    assert v2_infer.status_code == 422
    assert "POST /v1/rerank" in v2_infer.json()["error"]  # the v2 protocol's own shape


@pytest.fixture(scope="module")
async def limited_client(
    tiny_models: dict[str, Path], write_catalog: Callable[[list[dict[str, Any]]], Path]
) -> AsyncIterator[httpx.AsyncClient]:
    catalog = write_catalog([{"name": "r", "task": "rerank", "backend": "fake",
                              "source": str(tiny_models["cross-encoder"])}])  # fmt: skip
    settings = settings_for(catalog, max_documents_per_rerank=3, max_tokens_per_request=300,
                            max_input_chars=2000, max_rows_per_item=4)  # fmt: skip
    async with serve_in_process(settings) as client:
        yield client


@pytest.mark.parametrize(
    ("documents", "words"),
    [
        (["a", "b", "c", "d"], ["4 documents", "limit is 3", "NLP_SERVE_MAX_DOCUMENTS_PER_RERANK"]),
        (["a", "b" * 2001], ["documents[1] has 2001 characters", "NLP_SERVE_MAX_INPUT_CHARS"]),
        ([LONG], ["documents", "model rows", "NLP_SERVE_MAX_ROWS_PER_ITEM"]),
        (["word " * 100] * 3, ["padded tokens", "NLP_SERVE_MAX_TOKENS_PER_REQUEST"]),
    ],
)  # fmt: skip
async def test_limits_answer_413_naming_the_setting(
    limited_client: httpx.AsyncClient, documents: list[str], words: list[str]
) -> None:
    body = {"query": "q", "documents": documents}
    cohere_error(await limited_client.post("/v2/rerank", json=body), 413, *words)
    tei = await limited_client.post("/rerank", json={"query": "q", "texts": documents})
    assert tei.status_code == 413
    assert words[-1] in tei.json()["error"]
