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
