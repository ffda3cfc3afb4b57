"""POST /v1/tokenize, /v1/detokenize and Text Embeddings Inference's /tokenize and /decode:
which model's tokenizer, the answers' shapes, the limits, and each surface's errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import serve_in_process, settings_for

TEXT = "Ada Lovelace's notes, 1843."


async def post(client: httpx.AsyncClient, path: str, body: Any, status: int = 200) -> Any:
    response = await client.post(path, json=body)
    assert response.status_code == status, response.text
    return response.json()


async def test_tokenize_uses_the_default_embed_model(fake_client: httpx.AsyncClient) -> None:
    response = await fake_client.post("/v1/tokenize", json={"inputs": TEXT})
    assert response.status_code == 200, response.text
    assert "tokenize;dur=" in response.headers["server-timing"]
    answer = response.json()
    assert answer["model"] == "tiny-embed"
    (result,) = answer["results"]
    assert result["tokens"][:4] == ["[CLS]", "ada", "love", "##lace"]
    assert result["tokens"][-1] == "[SEP]"
    assert result["special"] == [True] + [False] * (len(result["ids"]) - 2) + [True]
    assert result["offsets"][0] is None
    assert result["offsets"][1:4] == [[0, 3], [4, 8], [8, 12]]
    assert result["model_tokens"] == len(result["ids"])
    assert result["max_length"] == 128


async def test_any_served_model_by_name(fake_client: httpx.AsyncClient) -> None:
    body = {"inputs": [TEXT, "two"], "model": "tiny-ner", "add_special_tokens": False}
    answer = await post(fake_client, "/v1/tokenize", body)
    assert answer["model"] == "tiny-ner"
    first, second = answer["results"]
    assert not any(first["special"])
    assert first["model_tokens"] == len(first["ids"]) + 2  # the model still adds [CLS], [SEP]
    assert second["tokens"] == ["two"]
    generator = await post(fake_client, "/v1/tokenize", {"inputs": TEXT, "model": "tiny-summarize"})
    assert generator["model"] == "tiny-summarize"


async def test_ids_back_to_text(fake_client: httpx.AsyncClient) -> None:
    tokens = await post(fake_client, "/v1/tokenize", {"inputs": [TEXT, "Zürich"]})
    ids = [r["ids"] for r in tokens["results"]]
    answer = await post(fake_client, "/v1/detokenize", {"inputs": [*ids, []]})
    assert answer == {"model": "tiny-embed",
                      "results": ["ada lovelace ' s notes, 1843.", "zurich", ""]}  # fmt: skip
    body = {"inputs": ids[1:], "skip_special_tokens": False, "model": "tiny-ner"}
    kept = await post(fake_client, "/v1/detokenize", body)
    assert kept == {"model": "tiny-ner", "results": ["[CLS] zurich [SEP]"]}


@pytest.mark.parametrize(
    ("path", "body", "status", "kind", "words"),
    [
        ("/v1/tokenize", {"inputs": "x", "model": "nope"}, 404, "model_not_found", ["'nope'"]),
        ("/v1/tokenize", {"inputs": ["a"] * 9}, 413, "payload_too_large",
         ["NLP_SERVE_MAX_ITEMS_PER_REQUEST"]),
        ("/v1/tokenize", {"inputs": "a" * 2001}, 413, "payload_too_large",
         ["NLP_SERVE_MAX_INPUT_CHARS"]),
        ("/v1/tokenize", {"inputs": ["fine", " \u200b"]}, 422, "invalid_input", ["inputs[1]"]),
        ("/v1/tokenize", {"inputs": "x", "truncate": True}, 422, "invalid_input", ["truncate"]),
        ("/v1/detokenize", {"inputs": [[1]] * 9}, 413, "payload_too_large",
         ["NLP_SERVE_MAX_ITEMS_PER_REQUEST"]),
        ("/v1/detokenize", {"inputs": [[101, -1], [5, 30522, 10**30]]}, 422, "invalid_input",
         ["id list 0: token ids -1 ", "vocabulary", "'tiny-embed'"]),
        ("/v1/detokenize", {"inputs": []}, 422, "invalid_input", ["inputs"]),
        ("/v1/detokenize", {"inputs": [1, 2]}, 422, "invalid_input", ["inputs[0]"]),
        ("/v1/detokenize", {"inputs": [[1.5, "2", True]]}, 422, "invalid_input",
         ["inputs[0][0]", "inputs[0][1]", "inputs[0][2]"]),
    ],
)  # fmt: skip
async def test_native_errors(
    fake_client: httpx.AsyncClient,
    path: str,
    body: dict[str, Any],
    status: int,
    kind: str,
    words: list[str],
) -> None:
    error = (await post(fake_client, path, body, status))["error"]
    assert error["type"] == kind
    for word in words:
        assert word in error["message"]


async def test_tei_tokenize_and_decode(fake_client: httpx.AsyncClient) -> None:
    (one,) = await post(fake_client, "/tokenize", {"inputs": "Zürich wins"})
    assert one == [
        {"id": 101, "text": "[CLS]", "special": True, "start": None, "stop": None},
        {"id": 10204, "text": "Zürich", "special": False, "start": 0, "stop": 7},
        {"id": 5222, "text": "wins", "special": False, "start": 8, "stop": 12},
        {"id": 102, "text": "[SEP]", "special": True, "start": None, "stop": None},
    ]
    two = await post(fake_client, "/tokenize", {"inputs": ["a", "b"], "add_special_tokens": False})
    assert [[t["text"] for t in tokens] for tokens in two] == [["a"], ["b"]]
    ids = [t["id"] for t in one]
    assert await post(fake_client, "/decode", {"ids": ids}) == ["zurich wins"]
    assert await post(fake_client, "/decode", {"ids": [ids, []], "skip_special_tokens": False}) == [
        "[CLS] zurich wins [SEP]", ""
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/tokenize", {"inputs": ["a"] * 9}, 413, ["NLP_SERVE_MAX_ITEMS_PER_REQUEST"]),
        ("/tokenize", {"inputs": "x", "prompt_name": "nope"}, 422,
         ["prompt_name", "'nope'", "'passage', 'query'"]),
        ("/tokenize", {"inputs": []}, 422, ["inputs"]),
        ("/decode", {"ids": [-4, 101]}, 422, ["-4", "vocabulary"]),
        ("/decode", {"ids": [[1], [1], [1], [1], [1], [1], [1], [1], [1]]}, 413,
         ["NLP_SERVE_MAX_ITEMS_PER_REQUEST"]),
        ("/decode", {"ids": "101"}, 422, ["ids"]),
    ],
)  # fmt: skip
async def test_tei_errors_in_its_shape(
    fake_client: httpx.AsyncClient, path: str, body: dict[str, Any], status: int, words: list[str]
) -> None:
    answer = await post(fake_client, path, body, status)
    assert set(answer) == {"error", "error_type"}
    assert answer["error_type"] == "Validation"
    for word in words:
        assert word in answer["error"]


async def test_tei_tokenize_shows_the_prompt_as_tei_does(fake_client: httpx.AsyncClient) -> None:
    """The prompt's tokens come first; offsets count in the prompted text. The native route
    tokenizes texts as sent."""
    (tokens,) = await post(fake_client, "/tokenize", {"inputs": "Zürich", "prompt_name": "query"})
    assert [(t["text"], t["start"], t["stop"]) for t in tokens] == [
        ("[CLS]", None, None), ("query", 0, 5), (":", 5, 6), ("Zürich", 7, 14),
        ("[SEP]", None, None),
    ]  # fmt: skip
    native = await post(fake_client, "/v1/tokenize", {"inputs": "Zürich"})
    assert native["results"][0]["tokens"] == ["[CLS]", "zurich", "[SEP]"]


async def test_tei_unknown_method_in_its_shape(fake_client: httpx.AsyncClient) -> None:
    response = await fake_client.get("/tokenize")
    assert response.status_code == 405
    assert response.json()["error_type"] == "Validation"


@pytest.fixture(scope="module")
async def no_embed_client(
    tiny_models: dict[str, Path], write_catalog: Callable[[list[dict[str, Any]]], Path]
) -> AsyncIterator[httpx.AsyncClient]:
    """A catalog without an embed model (no default tokenizer), and a small id budget."""
    entry = {"name": "tiny-ner", "task": "ner", "source": str(tiny_models["ner"]),
             "backend": "fake", "device": "cpu"}  # fmt: skip
    settings = settings_for(write_catalog([entry]), max_tokens_per_request=50)
    async with serve_in_process(settings) as client:
        yield client


async def test_without_an_embed_model_a_model_must_be_named(
    no_embed_client: httpx.AsyncClient,
) -> None:
    error = (await post(no_embed_client, "/v1/tokenize", {"inputs": "x"}, 404))["error"]
    assert error["type"] == "task_not_served"
    assert '"model"' in error["message"]
    tei = await post(no_embed_client, "/decode", {"ids": [101]}, 404)
    assert "no embed model" in tei["error"]
    named = await post(no_embed_client, "/v1/tokenize", {"inputs": "x", "model": "tiny-ner"})
    assert named["model"] == "tiny-ner"


async def test_the_id_budget_is_the_token_limit(no_embed_client: httpx.AsyncClient) -> None:
    body = {"inputs": [[101] * 30, [102] * 21], "model": "tiny-ner"}
    error = (await post(no_embed_client, "/v1/detokenize", body, 413))["error"]
    assert "51 token ids" in error["message"]
    assert "NLP_SERVE_MAX_TOKENS_PER_REQUEST" in error["message"]
    body["inputs"] = [[101] * 30, [102] * 20]
    assert len((await post(no_embed_client, "/v1/detokenize", body))["results"]) == 2


async def test_a_long_text_is_tokenized_whole_off_the_event_loop(
    no_embed_client: httpx.AsyncClient,
) -> None:
    text = "Lovelace " * 1111 + "x"  # 10,000 characters: over the inline budget (2,048)
    body = {"inputs": text, "model": "tiny-ner"}
    (result,) = (await post(no_embed_client, "/v1/tokenize", body))["results"]
    assert len(result["ids"]) == 2 * 1111 + 3  # love ##lace per word, x, [CLS], [SEP]
    assert result["model_tokens"] == result["max_length"] == 128
    assert result["offsets"][-2] == [9999, 10000]
