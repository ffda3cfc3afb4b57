"""The protocol surfaces in-process on the fake backend: content types, error envelopes, limits."""

from __future__ import annotations

import httpx
import orjson
import pytest

from app.protocols.v2_codec import serialize_bytes

TEXT = {"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": ["hello"]}]}


@pytest.mark.parametrize("content_type", [None, "application/octet-stream", "application/json"])
async def test_v2_infer_takes_any_content_type(
    fake_client: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await fake_client.post(
        "/v2/models/tiny-sentiment/infer", content=orjson.dumps(TEXT), headers=headers
    )
    assert response.status_code == 200, response.text
    native = await fake_client.post("/v1/sentiment", json={"inputs": "hello"})
    outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
    assert outputs["LABEL"] == [native.json()["results"][0]["label"]]


async def test_v2_binary_request_with_no_content_type(fake_client: httpx.AsyncClient) -> None:
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "TEXT", "shape": [2], "datatype": "BYTES",
                 "parameters": {"binary_data_size": 4 + 5 + 4 + 5}},
            ],
            "outputs": [{"name": "LABEL", "parameters": {"binary_data": False}}],
        }
    )  # fmt: skip
    body = header + serialize_bytes([b"hello", b"world"])
    response = await fake_client.post(
        "/v2/models/tiny-sentiment/infer",
        content=body,
        headers={"inference-header-content-length": str(len(header))},
    )
    assert response.status_code == 200, response.text
    assert [o["name"] for o in response.json()["outputs"]] == ["LABEL"]
    assert "inference-header-content-length" not in response.headers


@pytest.mark.parametrize(
    ("path", "status", "fragment"),
    [
        ("/v2/models/no-such-model/infer", 404, "no-such-model"),
        ("/v2/models/tiny-sentiment/versions/3/infer", 422, "only version '1'"),
        ("/hf/tasks/fill-mask", 404, "fill-mask"),
        ("/hf/models/no-such-model", 404, "no-such-model"),
        ("/v2/no/such/route", 404, "no route"),
    ],
)
async def test_plain_error_envelopes(
    fake_client: httpx.AsyncClient, path: str, status: int, fragment: str
) -> None:
    response = await fake_client.post(path, json=TEXT)
    assert response.status_code == status
    error = response.json()["error"]
    assert isinstance(error, str)
    assert fragment in error


async def test_body_limit_answers_in_each_envelope(fake_client: httpx.AsyncClient) -> None:
    big = "x" * (64 * 1024 + 1)  # the fake client allows 64 KiB
    v2 = await fake_client.post("/v2/models/tiny-embed/infer", content=big)
    assert v2.status_code == 413
    assert "NLP_SERVE_MAX_BODY_BYTES" in v2.json()["error"]
    hf = await fake_client.post("/hf/models/tiny-embed", json={"inputs": big})
    assert hf.status_code == 413
    assert isinstance(hf.json()["error"], str)
    openai = await fake_client.post("/v1/embeddings", json={"model": "tiny-embed", "input": big})
    assert openai.status_code == 413
    assert openai.json()["error"]["code"] == "payload_too_large"


async def test_item_limit_is_the_native_one(fake_client: httpx.AsyncClient) -> None:
    texts = ["a"] * 9  # the fake client's catalog allows 8 per request
    response = await fake_client.post(
        "/v1/embeddings", json={"model": "tiny-embed", "input": texts}
    )
    assert response.status_code == 413
    assert "NLP_SERVE_MAX_ITEMS_PER_REQUEST" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("user_agent", "shape"),
    [
        ("unknown/None; hf_hub/0.36.2; python/3.11.7", "0.x"),
        ("unknown/None; hf_hub/1.21.0; python/3.11.7", "current"),
        ("unknown/None; hf_hub/2.4.0; python/3.11.7", "current"),
        (None, "current"),  # httpx's own User-Agent: no huggingface_hub release named
    ],
)
async def test_hf_zero_shot_answers_in_the_shape_of_the_clients_generation(
    fake_client: httpx.AsyncClient, user_agent: str | None, shape: str
) -> None:
    body = {"inputs": "a match report", "parameters": {"candidate_labels": ["sports", "money"]}}
    headers = {"user-agent": user_agent} if user_agent else {}
    response = await fake_client.post(
        "/hf/tasks/zero-shot-classification", json=body, headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["vary"] == "User-Agent"
    native = await fake_client.post(
        "/v1/classify", json={"inputs": "a match report", "candidate_labels": ["sports", "money"]}
    )
    scores = native.json()["results"][0]
    if shape == "0.x":
        assert response.json() == {
            "sequence": "a match report",
            "labels": [s["label"] for s in scores],
            "scores": [s["score"] for s in scores],
        }
    else:
        assert response.json() == scores


async def test_hf_text_classification_top_k_on_a_sentiment_model(
    fake_client: httpx.AsyncClient,
) -> None:
    native = await fake_client.post("/v1/sentiment", json={"inputs": "fine", "top_k": 2})
    ranked = native.json()["results"][0]
    assert [s["score"] for s in ranked] == sorted((s["score"] for s in ranked), reverse=True)
    for top_k, expected in ((2, ranked), (7, ranked), (1, ranked[:1])):
        body = {"inputs": "fine", "parameters": {"top_k": top_k}}
        response = await fake_client.post("/hf/models/tiny-sentiment", json=body)
        assert response.status_code == 200, response.text
        assert response.json() == [expected], top_k
    zero = await fake_client.post(
        "/hf/models/tiny-sentiment", json={"inputs": "fine", "parameters": {"top_k": 0}}
    )
    assert zero.status_code == 422
    assert "top_k" in zero.json()["error"]
