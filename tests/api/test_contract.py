"""Every task route's real answers match the OpenAPI schema it publishes.

The response models name the tasks' own result types, so the schema is generated from what
the routes return; this checks it end to end, for every route in TASK_ROUTES.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from app.routers.tasks import TASK_ROUTES

REQUESTS: dict[str, list[dict[str, Any]]] = {
    "/v1/classify": [
        {"inputs": ["a match report", "a budget"], "model": "tiny-topics"},
        {"inputs": "a match report", "candidate_labels": ["sports", "money"], "top_k": 1},
        {"inputs": "x", "candidate_labels": ["a", "b"], "multi_label": True},
    ],
    "/v1/sentiment": [{"inputs": ["good", "bad"]}, {"inputs": ["good", "bad"], "top_k": 2}],
    "/v1/qa": [
        {"inputs": {"question": "Who?", "context": "Ada wrote it. Then she left."}},
        {"inputs": [{"question": "Who?", "context": "Ada wrote it."}], "top_k": 3},
        {"inputs": {"question": "Who?", "context": "Ada wrote it."}, "model": "tiny-qa-null"},
    ],
    "/v1/translate": [{"inputs": "hello there", "target_lang": "de"}],
    "/v1/summarize": [{"inputs": "A long text. With two sentences.", "max_length": 8}],
    "/v1/ner": [
        {"inputs": ["Ada Lovelace lived in London.", "nothing here"]},
        {"inputs": "Ada Lovelace lived in London.", "aggregation_strategy": "none"},
        {"inputs": ["Ada Lovelace lived in London."], "aggregation_strategy": "average"},
    ],
    "/v1/embed": [
        {"inputs": ["one", "two"]},
        {"inputs": "one", "normalize": False, "truncate": False, "truncation_direction": "left"},
    ],
    "/v1/embed-sparse": [
        {"inputs": ["one", "two"], "top_k": 5},
        {"inputs": "one", "threshold": 0.5, "return_tokens": True, "prompt_name": "query"},
    ],
    "/v1/fill-mask": [
        {"inputs": ["Paris is the [MASK] of France.", "a [MASK]"]},
        {"inputs": "a [MASK] day", "top_k": 2, "targets": ["good", "bad", "##ing"]},
    ],
}


def test_every_task_route_has_contract_cases() -> None:
    assert set(REQUESTS) == {route.path for route in TASK_ROUTES}


@pytest.mark.parametrize(
    ("path", "body"), [(path, body) for path, bodies in REQUESTS.items() for body in bodies]
)
async def test_answers_match_the_published_schema(
    fake_client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    answer, _ = await published_answer(fake_client, path, body)
    inputs = body["inputs"]
    assert len(answer["results"]) == (len(inputs) if isinstance(inputs, list) else 1)


async def test_the_schema_would_catch_a_wrong_shape(fake_client: httpx.AsyncClient) -> None:
    spec = (await fake_client.get("/openapi.json")).json()
    published = spec["paths"]["/v1/qa"]["post"]["responses"]["200"]["content"]["application/json"]
    validator = Draft202012Validator({**published["schema"], "components": spec["components"]})
    assert not validator.is_valid({"model": "m", "results": [{"answer": "a", "score": 0.5}]})
    assert not validator.is_valid({"model": "m", "results": [[{"label": "x", "score": 1.0}]]})


# -- Text Embeddings Inference's encoder routes (bare JSON answers) ---------------------------

SURFACE_REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("/embed", {"inputs": ["one", "two"], "prompt_name": "query"}),
    ("/embed", {"inputs": [[101, 2028, 102]], "normalize": False, "truncation_direction": "Left"}),
    ("/embed_sparse", {"inputs": "one", "truncate": True}),
    ("/embed_sparse", {"inputs": ["one", "two"], "prompt_name": "document"}),
]


async def published_answer(
    fake_client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> tuple[Any, Draft202012Validator]:
    """A 200 answer to `body` on `path`, checked against the route's published schema, and
    that schema's validator."""
    spec = (await fake_client.get("/openapi.json")).json()
    published = spec["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]
    validator = Draft202012Validator({**published["schema"], "components": spec["components"]})
    response = await fake_client.post(path, json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(answer)]
    assert not errors, errors[:3]
    return answer, validator


@pytest.mark.parametrize(("path", "body"), SURFACE_REQUESTS)
async def test_surface_answers_match_the_published_schema(
    fake_client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    answer, validator = await published_answer(fake_client, path, body)
    inputs = body["inputs"]
    assert len(answer) == (len(inputs) if isinstance(inputs, list) else 1)
    assert not validator.is_valid([["x"]])  # a wrong shape fails the published schema


# -- the tokenizer routes, native and Text Embeddings Inference's (bare JSON answers) ------

TOKENIZER_REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("/v1/tokenize", {"inputs": ["Zürich wins.", "two"]}),
    ("/v1/tokenize", {"inputs": "x", "model": "tiny-ner", "add_special_tokens": False}),
    ("/v1/detokenize", {"inputs": [[101, 7592, 102], []], "skip_special_tokens": False}),
    ("/tokenize", {"inputs": "Zürich wins."}),
    ("/tokenize", {"inputs": ["a", "b"], "add_special_tokens": False}),
    ("/decode", {"ids": [101, 7592, 102]}),
    ("/decode", {"ids": [[101], [7592, 102]], "skip_special_tokens": False}),
]


@pytest.mark.parametrize(("path", "body"), TOKENIZER_REQUESTS)
async def test_tokenizer_answers_match_the_published_schema(
    fake_client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    _, validator = await published_answer(fake_client, path, body)
    # the published schema is not a bare "anything": a wrong shape fails it
    assert not validator.is_valid({"results": 1} if path.startswith("/v1/") else [[{"id": "x"}]])


# The rerank routes (Jina and Cohere, TEI): their answers against their published schemas.
RERANK_REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("/v1/rerank", {"query": "q", "documents": ["a", {"text": "b", "title": "t"}], "top_n": 1}),
    ("/v1/rerank", {"query": "q", "documents": ["a", "b " * 300], "return_documents": False,
                    "max_chunks_per_doc": 2, "rank_fields": ["text"]}),
    ("/v2/rerank", {"model": "tiny-rerank", "query": "q", "documents": ["a", "b"], "priority": 0,
                    "relevant_spans": {"mode": "disabled"}, "max_tokens_per_doc": 4}),
    ("/rerank", {"query": "q", "texts": ["a", "b " * 300], "return_text": True,
                 "raw_scores": True}),
    ("/rerank", {"query": "q", "texts": ["a"], "truncate": True, "truncation_direction": "Left"}),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body"), RERANK_REQUESTS)
async def test_rerank_answers_match_the_published_schema(
    fake_client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    answer, validator = await published_answer(fake_client, path, body)
    results = answer if path == "/rerank" else answer["results"]
    sent: list[Any] = body["documents"] if "documents" in body else body["texts"]
    assert len(results) == min(body.get("top_n", len(sent)), len(sent))
    # the published schema is not a bare "anything": a result without its score fails it
    wrong = [{"index": 0, "windows": 1, "truncated": False}]
    assert not validator.is_valid(wrong if path == "/rerank" else {**answer, "results": wrong})


# Text generation (native; the OpenAI routes have their own tests): answers against the schema.
GENERATE_REQUESTS: list[dict[str, Any]] = [
    {"inputs": ["Once upon", "a time"], "max_new_tokens": 4, "ignore_eos": True},
    {"inputs": "x", "max_new_tokens": 3, "logprobs": 2, "seed": 1, "stop": "e", "top_k": 5,
     "top_p": 0.9, "temperature": 0.7, "repetition_penalty": 1.2, "model": "tiny-chat"},
]  # fmt: skip


@pytest.mark.parametrize("body", GENERATE_REQUESTS)
async def test_generate_answers_match_the_published_schema(
    fake_client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    answer, validator = await published_answer(fake_client, "/v1/generate", body)
    inputs = body["inputs"]
    assert len(answer["results"]) == (len(inputs) if isinstance(inputs, list) else 1)
    wrong = {**answer, "results": [{"text": "t", "finish_reason": "tired"}]}
    assert not validator.is_valid(wrong)
