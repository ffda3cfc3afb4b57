"""Encoder routes in-process on the fake backend: /v1/embed-sparse, and the prompts and
truncation every encoder surface takes (native embed and embed-sparse, OpenAI, Hugging Face):
the X-Truncated-Inputs header, 413 for truncate=false, 422 for an unknown prompt."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fixtures.tiny_models import real_tokenizer

LONG = " ".join(f"word{i}" for i in range(200))  # over the tiny models' 128 tokens
LONG_TOKENS = len(real_tokenizer()(LONG)["input_ids"])  # with [CLS] and [SEP]
SHORT = "a short text"


async def post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
    return await client.post(path, json=body)


async def test_sparse_answers_are_sorted_by_index_and_pruned(
    fake_client: httpx.AsyncClient,
) -> None:
    response = await post(fake_client, "/v1/embed-sparse", {"inputs": [SHORT, "x"], "top_k": 7})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "tiny-embed-sparse"
    for vector in body["results"]:
        assert len(vector) == 7
        assert set(vector[0]) == {"index", "value"}
        indices = [entry["index"] for entry in vector]
        assert indices == sorted(indices)
    everything = (await post(fake_client, "/v1/embed-sparse", {"inputs": SHORT})).json()
    kept = {e["index"]: e["value"] for e in everything["results"][0]}
    best = sorted(kept.values(), reverse=True)[:7]
    assert sorted(e["value"] for e in body["results"][0]) == sorted(best)
    above = await post(fake_client, "/v1/embed-sparse", {"inputs": SHORT, "threshold": 0.6})
    assert all(e["value"] > 0.6 for e in above.json()["results"][0])
    assert len(above.json()["results"][0]) == sum(v > 0.6 for v in kept.values())


async def test_sparse_tokens_and_prompts(fake_client: httpx.AsyncClient) -> None:
    body = {"inputs": SHORT, "top_k": 5, "return_tokens": True}
    plain = (await post(fake_client, "/v1/embed-sparse", body)).json()["results"][0]
    assert all(isinstance(entry["token"], str) and entry["token"] for entry in plain)
    query = await post(fake_client, "/v1/embed-sparse", {**body, "prompt_name": "query"})
    prompted = await post(fake_client, "/v1/embed-sparse", {**body, "inputs": "query: " + SHORT})
    assert query.json()["results"] == prompted.json()["results"] != [plain]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"top_k": 0}, "top_k"),
        ({"threshold": -1}, "threshold"),
        ({"truncation_direction": "middle"}, "truncation_direction"),
        ({"prompt_name": "qry"}, "its prompts: ['document', 'query']"),
    ],
)
async def test_sparse_refusals(
    fake_client: httpx.AsyncClient, body: dict[str, Any], fragment: str
) -> None:
    response = await post(fake_client, "/v1/embed-sparse", {"inputs": SHORT, **body})
    assert response.status_code == 422
    assert fragment in response.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/embed", "/v1/embed-sparse"])
async def test_truncated_inputs_are_named_in_a_header(
    fake_client: httpx.AsyncClient, path: str
) -> None:
    response = await post(fake_client, path, {"inputs": [SHORT, LONG, SHORT, LONG]})
    assert response.status_code == 200, response.text
    assert response.headers["x-truncated-inputs"] == "1,3"
    short = await post(fake_client, path, {"inputs": [SHORT]})
    assert "x-truncated-inputs" not in short.headers


@pytest.mark.parametrize("path", ["/v1/embed", "/v1/embed-sparse"])
async def test_truncate_false_refuses_a_long_input(
    fake_client: httpx.AsyncClient, path: str
) -> None:
    response = await post(fake_client, path, {"inputs": [SHORT, LONG], "truncate": False})
    assert response.status_code == 413
    message = response.json()["error"]["message"]
    assert message.startswith(f"inputs[1]: an input has {LONG_TOKENS} tokens;")
    assert "at most 128" in message
    fits = await post(fake_client, path, {"inputs": SHORT, "truncate": False})
    assert fits.status_code == 200


async def test_the_cut_end_follows_the_request(fake_client: httpx.AsyncClient) -> None:
    async def embed(text: str, **fields: Any) -> list[float]:
        response = await post(fake_client, "/v1/embed", {"inputs": text, **fields})
        vector: list[float] = response.json()["results"][0]
        return vector

    other = " ".join(f"other{i}" for i in range(40))
    right, left = await embed(LONG), await embed(LONG, truncation_direction="left")
    assert left != right
    assert await embed(LONG, truncation_direction="right") == right
    # the fake backend's vectors are a function of the tokens kept: the left cut keeps the
    # end, the right cut the start
    assert await embed(other + " " + LONG, truncation_direction="left") == left
    assert await embed(LONG + " " + other) == right


async def test_native_embed_prompts(fake_client: httpx.AsyncClient) -> None:
    query = await post(fake_client, "/v1/embed", {"inputs": SHORT, "prompt_name": "query"})
    written = await post(fake_client, "/v1/embed", {"inputs": "query: " + SHORT})
    assert query.json()["results"] == written.json()["results"]
    unknown = await post(fake_client, "/v1/embed", {"inputs": SHORT, "prompt_name": "document"})
    assert unknown.status_code == 422
    assert "its prompts: ['passage', 'query']" in unknown.json()["error"]["message"]


async def test_openai_input_type_prompts_and_truncation(fake_client: httpx.AsyncClient) -> None:
    async def embeddings(**fields: Any) -> httpx.Response:
        body = {"model": "tiny-embed", "input": [SHORT, LONG], **fields}
        return await post(fake_client, "/v1/embeddings", body)

    document = await embeddings(input_type="document")  # mapped to the "passage" prompt
    passage = await embeddings(prompt_name="passage")
    assert document.json()["data"] == passage.json()["data"] != (await embeddings()).json()["data"]
    assert document.headers["x-truncated-inputs"] == "1"
    refused = await embeddings(input_type="clustering")
    assert refused.status_code == 422
    assert refused.json()["error"]["param"] == "input_type"
    too_long = await embeddings(truncate=False)
    assert too_long.status_code == 413
    assert f"{LONG_TOKENS} tokens" in too_long.json()["error"]["message"]


async def test_hf_feature_extraction_honours_truncation_and_prompts(
    fake_client: httpx.AsyncClient,
) -> None:
    async def hf(**fields: Any) -> httpx.Response:
        return await post(fake_client, "/hf/models/tiny-embed", {"inputs": [SHORT, LONG], **fields})

    native = await post(
        fake_client, "/v1/embed", {"inputs": [SHORT, LONG], "truncation_direction": "left"}
    )
    left = await hf(truncation_direction="Left")
    assert left.json() == native.json()["results"]
    assert left.headers["x-truncated-inputs"] == "1"
    refused = await hf(truncate=False)
    assert refused.status_code == 413
    assert f"{LONG_TOKENS} tokens" in refused.json()["error"]
    prompted = await hf(prompt_name="query")
    query = await post(fake_client, "/v1/embed", {"inputs": [SHORT, LONG], "prompt_name": "query"})
    assert prompted.json() == query.json()["results"]


async def test_tei_embed_is_the_native_embed_in_teis_shape(fake_client: httpx.AsyncClient) -> None:
    body = {"inputs": [SHORT, LONG], "prompt_name": "query", "truncation_direction": "Left"}
    tei = await post(fake_client, "/embed", body)
    native = await post(
        fake_client,
        "/v1/embed",
        {"inputs": [SHORT, LONG], "prompt_name": "query", "truncation_direction": "left"},
    )
    assert tei.json() == native.json()["results"]
    assert tei.headers["x-truncated-inputs"] == "1"
    raw = await post(fake_client, "/embed", {"inputs": SHORT, "normalize": False})
    assert (
        raw.json()
        == (await post(fake_client, "/v1/embed", {"inputs": [SHORT], "normalize": False})).json()[
            "results"
        ]
    )


async def test_tei_embed_sparse_answers_every_weight_by_index(
    fake_client: httpx.AsyncClient,
) -> None:
    tei = (await post(fake_client, "/embed_sparse", {"inputs": SHORT})).json()
    native = (await post(fake_client, "/v1/embed-sparse", {"inputs": SHORT})).json()
    assert tei == native["results"]
    assert tei[0]
    assert set(tei[0][0]) == {"index", "value"}


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("/embed_sparse", {"inputs": SHORT, "prompt_name": "nope"}, 422, "its prompts"),
        ("/embed_sparse", {"inputs": LONG, "truncate": False}, 413, f"{LONG_TOKENS} tokens"),
        ("/embed", {"inputs": SHORT, "dimensions": 3}, 422, "matryoshka_dimensions"),
        ("/embed", {"inputs": SHORT, "truncation_direction": "up"}, 422, "truncation_direction"),
    ],
)
async def test_tei_errors_are_teis_shape(
    fake_client: httpx.AsyncClient, path: str, body: dict[str, Any], status: int, fragment: str
) -> None:
    response = await post(fake_client, path, body)
    assert response.status_code == status
    error = response.json()
    assert error["error_type"] == "Validation"
    assert fragment in error["error"]
