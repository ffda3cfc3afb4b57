"""Bad input gets a clear 4xx in the one error format, and never takes other requests down."""

from __future__ import annotations

import asyncio

import httpx
import pytest


def assert_error(response: httpx.Response, status: int, kind: str, *words: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["type"] == kind
    message: str = body["error"]["message"]
    for word in words:
        assert word in message, message
    return message


@pytest.mark.parametrize(
    ("route", "body", "words"),
    [
        ("/v1/sentiment", {"inputs": ""}, ["inputs", "empty"]),
        ("/v1/sentiment", {"inputs": "   \n"}, ["empty or only whitespace"]),
        ("/v1/sentiment", {"inputs": ["fine", ""]}, ["inputs", "empty"]),
        ("/v1/sentiment", {"inputs": []}, ["inputs"]),
        ("/v1/sentiment", {"inputs": 42}, ["inputs", "string"]),
        ("/v1/sentiment", {"inputs": [1, 2]}, ["inputs", "string"]),
        ("/v1/sentiment", {}, ["inputs", "required"]),
        ("/v1/sentiment", {"inputs": "ok", "topk": 3}, ["topk", "not permitted"]),
        ("/v1/classify", {"inputs": "ok", "top_k": 0}, ["top_k"]),
        ("/v1/qa", {"inputs": {"question": "q"}}, ["context", "required"]),
        ("/v1/qa", {"inputs": "just text"}, ["inputs"]),
        ("/v1/translate", {"inputs": "hi"}, ["target_lang", "required"]),
        ("/v1/summarize", {"inputs": "x", "max_length": 0}, ["max_length"]),
        ("/v1/embed", {"inputs": "x", "normalize": "maybe"}, ["normalize"]),
    ],
)
async def test_invalid_bodies_are_422_with_the_field_named(
    fake_client: httpx.AsyncClient, route: str, body: object, words: list[str]
) -> None:
    assert_error(await fake_client.post(route, json=body), 422, "invalid_input", *words)


async def test_malformed_json_is_400_invalid_json(fake_client: httpx.AsyncClient) -> None:
    response = await fake_client.post(
        "/v1/sentiment", content=b'{"inputs": ', headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "invalid_json", "JSON")


async def test_body_that_is_not_an_object_is_422(fake_client: httpx.AsyncClient) -> None:
    response = await fake_client.post("/v1/sentiment", content=b"plain words")
    assert_error(response, 422, "invalid_input", "JSON object", "Content-Type")


async def test_unknown_model_is_404_and_lists_models(fake_client: httpx.AsyncClient) -> None:
    response = await fake_client.post("/v1/sentiment", json={"inputs": "x", "model": "nope"})
    assert_error(response, 404, "model_not_found", "'nope'", "tiny-sentiment", "/v1/models")


async def test_model_of_another_task_is_422(fake_client: httpx.AsyncClient) -> None:
    response = await fake_client.post("/v1/sentiment", json={"inputs": "x", "model": "tiny-ner"})
    assert_error(response, 422, "invalid_input", "'tiny-ner' serves 'ner'", "tiny-sentiment")


async def test_unknown_route_and_wrong_method(fake_client: httpx.AsyncClient) -> None:
    assert_error(await fake_client.post("/v1/nothing", json={}), 404, "not_found", "/v1/nothing")
    assert_error(await fake_client.get("/v1/sentiment"), 405, "method_not_allowed", "GET")


async def test_too_many_items_is_413(fake_client: httpx.AsyncClient) -> None:
    response = await fake_client.post("/v1/sentiment", json={"inputs": ["x"] * 9})
    assert_error(response, 413, "payload_too_large", "9 inputs", "limit is 8", "split")


async def test_too_long_text_is_413(fake_client: httpx.AsyncClient) -> None:
    response = await fake_client.post("/v1/embed", json={"inputs": "a" * 2001})
    assert_error(response, 413, "payload_too_large", "2001 characters", "2000")


async def test_too_large_body_is_413(fake_client: httpx.AsyncClient) -> None:
    response = await fake_client.post("/v1/embed", json={"inputs": "a" * 70_000})
    assert_error(response, 413, "payload_too_large", "NLP_SERVE_MAX_BODY_BYTES")


async def test_too_large_chunked_body_is_413(fake_client: httpx.AsyncClient) -> None:
    async def chunks():  # no Content-Length: the limit must count streamed bytes
        for _ in range(20):
            yield b"x" * 4096

    response = await fake_client.post("/v1/embed", content=chunks())
    assert_error(response, 413, "payload_too_large")


async def test_zero_shot_without_labels_and_fixed_with_labels(
    fake_client: httpx.AsyncClient,
) -> None:
    response = await fake_client.post("/v1/classify", json={"inputs": "x", "model": "tiny-nli"})
    assert_error(response, 422, "invalid_input", "candidate_labels")
    response = await fake_client.post(
        "/v1/classify", json={"inputs": "x", "model": "tiny-topics", "candidate_labels": ["a"]}
    )
    assert_error(response, 422, "invalid_input", "fixed labels", "business")
    response = await fake_client.post(
        "/v1/classify",
        json={"inputs": "x", "candidate_labels": ["a"], "hypothesis_template": "no slot"},
    )
    assert_error(response, 422, "invalid_input", "{}")


async def test_unsupported_language_pair_lists_supported(fake_client: httpx.AsyncClient) -> None:
    response = await fake_client.post(
        "/v1/translate", json={"inputs": "x", "source_lang": "de", "target_lang": "en"}
    )
    assert_error(response, 422, "unsupported_language_pair", "de-en", "en-de", "en-fr")
    response = await fake_client.post(
        "/v1/translate", json={"inputs": "x", "target_lang": "ja", "model": "tiny-translate"}
    )
    assert_error(response, 422, "unsupported_language_pair", "'tiny-translate'", "*-ja")


async def test_summary_lengths_must_be_ordered(fake_client: httpx.AsyncClient) -> None:
    response = await fake_client.post(
        "/v1/summarize", json={"inputs": "x", "min_length": 9, "max_length": 3}
    )
    assert_error(response, 422, "invalid_input", "min_length", "max_length")


async def test_model_failure_is_500_and_others_still_succeed(
    fake_client: httpx.AsyncClient,
) -> None:
    poison = fake_client.post("/v1/sentiment", json={"inputs": "poison", "model": "fake-poison"})
    healthy = [
        fake_client.post("/v1/sentiment", json={"inputs": f"fine {i}", "model": "fake-poison"})
        for i in range(4)
    ]
    responses = await asyncio.gather(poison, *healthy)
    assert_error(responses[0], 500, "inference_failed", "fake-poison")
    assert all(r.status_code == 200 for r in responses[1:])
