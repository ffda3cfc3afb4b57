"""OpenAI's POST /v1/completions and /v1/chat/completions in-process on the fake backend:
answers against the published schema, streams reassembled into the whole answer, n's choice
layout and seeds, logprobs, echo, stop, usage, and every refused or hostile field answered
in OpenAI's error shape, naming the field. The real openai SDK is in
tests/integration/test_openai_generate_clients.py."""

from __future__ import annotations

import json
from typing import Any

import httpx
import orjson
import pytest
from jsonschema import Draft202012Validator

COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"
GPT2 = "tiny-generate"  # no chat template
CHAT_MODEL = "tiny-chat"  # ChatML
USER = [{"role": "user", "content": "Say something."}]
JSON_HEADERS = {"content-type": "application/json"}


async def post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    answer: dict[str, Any] = response.json()
    return answer


async def stream(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> list[Any]:
    """The stream's data events, decoded; `[DONE]` must be the last and only there."""
    response = await client.post(path, json={**body, "stream": True})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [e for e in response.text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events), events
    data = [e.removeprefix("data: ") for e in events]
    assert data[-1] == "[DONE]", data[-3:]
    assert "[DONE]" not in data[:-1]
    return [orjson.loads(d) for d in data[:-1]]


def reassembled(chunks: list[dict[str, Any]], key: str = "text") -> dict[int, str]:
    """Each choice's text, its chunks joined in order."""
    texts: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            piece = choice[key] if key == "text" else choice["delta"].get("content") or ""
            texts[choice["index"]] = texts.get(choice["index"], "") + piece
    return texts


def finishes(chunks: list[dict[str, Any]]) -> dict[int, str]:
    found: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            if choice["finish_reason"] is not None:
                assert choice["index"] not in found, "one finish per choice"
                found[choice["index"]] = choice["finish_reason"]
    return found


async def published(client: httpx.AsyncClient, path: str) -> Draft202012Validator:
    spec = (await client.get("/openapi.json")).json()
    schema = spec["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]
    return Draft202012Validator({**schema["schema"], "components": spec["components"]})


# --- answers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (COMPLETIONS, {"model": GPT2, "prompt": "Once upon a time", "max_tokens": 4}),
        (COMPLETIONS, {"model": GPT2, "prompt": ["a", "b c"], "n": 2, "logprobs": 2, "seed": 1}),
        (COMPLETIONS, {"model": GPT2, "prompt": "x y", "echo": True, "stop": "e", "user": "u"}),
        (CHAT, {"model": CHAT_MODEL, "messages": USER, "max_tokens": 5}),
        (
            CHAT,
            {
                "model": CHAT_MODEL,
                "messages": USER,
                "n": 3,
                "logprobs": True,
                "top_logprobs": 3,
                "seed": 2,
                "max_completion_tokens": 4,
            },
        ),
    ],
)
async def test_answers_match_the_published_schema(
    fake_client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    answer = await post(fake_client, path, body)
    errors = [e.message for e in (await published(fake_client, path)).iter_errors(answer)]
    assert not errors, errors
    prompts = body.get("prompt", [None])
    count = (len(prompts) if isinstance(prompts, list) else 1) * body.get("n", 1)
    assert [c["index"] for c in answer["choices"]] == list(range(count))
    assert answer["object"] == ("text_completion" if path == COMPLETIONS else "chat.completion")
    assert answer["id"].startswith("cmpl-" if path == COMPLETIONS else "chatcmpl-")
    usage = answer["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_completions_default_to_16_tokens_and_count_each_prompt_once(
    fake_client: httpx.AsyncClient,
) -> None:
    one = await post(
        fake_client, COMPLETIONS, {"model": GPT2, "prompt": "Count me", "ignore_eos": True}
    )
    assert one["usage"]["completion_tokens"] == 16  # OpenAI's default max_tokens
    three = await post(
        fake_client,
        COMPLETIONS,
        {"model": GPT2, "prompt": "Count me", "n": 3, "ignore_eos": True, "max_tokens": 2},
    )
    assert three["usage"]["prompt_tokens"] == one["usage"]["prompt_tokens"]
    assert three["usage"]["completion_tokens"] == 6


async def test_greedy_completion_equals_the_native_route(fake_client: httpx.AsyncClient) -> None:
    native = await post(
        fake_client,
        "/v1/generate",
        {"model": GPT2, "inputs": "Hello there", "max_new_tokens": 6, "temperature": 0},
    )
    answer = await post(
        fake_client,
        COMPLETIONS,
        {"model": GPT2, "prompt": "Hello there", "max_tokens": 6, "temperature": 0},
    )
    assert answer["choices"][0]["text"] == native["results"][0]["text"]
    assert answer["usage"] == native["usage"]


@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"temperature": 1.3, "seed": 7}])
async def test_completion_stream_reassembles_the_whole_answer(
    fake_client: httpx.AsyncClient, sampling: dict[str, Any]
) -> None:
    body = {
        "model": GPT2,
        "prompt": ["Hello there", "Tell me"],
        "max_tokens": 8,
        "n": 2,
        **sampling,
    }
    whole = await post(fake_client, COMPLETIONS, body)
    chunks = await stream(fake_client, COMPLETIONS, body)
    assert all(c["object"] == "text_completion" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert all("usage" not in c for c in chunks)  # only with include_usage
    texts = reassembled(chunks)
    assert texts == {c["index"]: c["text"] for c in whole["choices"]}
    assert finishes(chunks) == {c["index"]: c["finish_reason"] for c in whole["choices"]}
    for chunk in chunks:  # a choice's finish is its last chunk
        (choice,) = chunk["choices"]
        later = chunks[chunks.index(chunk) + 1 :]
        if choice["finish_reason"] is not None:
            assert choice["index"] not in {c["choices"][0]["index"] for c in later}


async def test_chat_stream_reassembles_the_whole_answer(fake_client: httpx.AsyncClient) -> None:
    body = {"model": CHAT_MODEL, "messages": USER, "max_tokens": 8, "n": 2, "seed": 11}
    whole = await post(fake_client, CHAT, body)
    chunks = await stream(fake_client, CHAT, body)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    first: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        (choice,) = chunk["choices"]
        first.setdefault(choice["index"], choice["delta"])
        if choice["delta"] is not first[choice["index"]]:
            assert "role" not in choice["delta"]
    assert first == {
        0: {"role": "assistant", "content": ""},
        1: {"role": "assistant", "content": ""},
    }
    texts = reassembled(chunks, key="delta")
    assert texts == {c["index"]: c["message"]["content"] for c in whole["choices"]}
    assert finishes(chunks) == {c["index"]: c["finish_reason"] for c in whole["choices"]}
    assert texts[0] != texts[1]  # seeds 11 and 12


async def test_include_usage_adds_a_last_chunk_with_usage(fake_client: httpx.AsyncClient) -> None:
    for path, body in [
        (COMPLETIONS, {"model": GPT2, "prompt": ["one", "two"], "n": 2, "max_tokens": 3}),
        (CHAT, {"model": CHAT_MODEL, "messages": USER, "n": 2, "max_tokens": 3}),
    ]:
        whole = await post(fake_client, path, {**body, "temperature": 0})
        chunks = await stream(
            fake_client, path, {**body, "temperature": 0, "stream_options": {"include_usage": True}}
        )
        *rest, last = chunks
        assert last["choices"] == []
        assert last["usage"] == whole["usage"]
        assert all(c["usage"] is None and len(c["choices"]) == 1 for c in rest)


async def test_n_choices_are_laid_out_and_seeded_as_openai_does(
    fake_client: httpx.AsyncClient,
) -> None:
    """Choice i * n + j is prompt i's j-th, sampled with seed + j: the same as asking for it
    alone, and the same again for the same request."""
    prompts = ["The weather", "A story about"]
    body = {
        "model": GPT2,
        "prompt": prompts,
        "n": 3,
        "seed": 40,
        "max_tokens": 6,
        "temperature": 1.5,
    }
    answer = await post(fake_client, COMPLETIONS, body)
    texts = [c["text"] for c in answer["choices"]]
    assert len(set(texts)) == 6
    for i, prompt in enumerate(prompts):
        for j in range(3):
            alone = await post(
                fake_client, COMPLETIONS, {**body, "prompt": prompt, "n": 1, "seed": 40 + j}
            )
            assert alone["choices"][0]["text"] == texts[i * 3 + j], (i, j)
    again = await post(fake_client, COMPLETIONS, body)
    assert [c["text"] for c in again["choices"]] == texts
    unseeded = await post(fake_client, COMPLETIONS, {**body, "seed": None})
    assert len(unseeded["choices"]) == 6


async def test_any_int64_seed_is_taken(fake_client: httpx.AsyncClient) -> None:
    for seed in (-1, -(2**63), 2**63 - 1):
        body = {"model": GPT2, "prompt": "x", "seed": seed, "n": 2, "max_tokens": 2}
        first = await post(fake_client, COMPLETIONS, body)
        assert first["choices"] == (await post(fake_client, COMPLETIONS, body))["choices"]


async def test_completion_logprobs(fake_client: httpx.AsyncClient) -> None:
    body = {
        "model": GPT2,
        "prompt": "Hello there",
        "max_tokens": 5,
        "logprobs": 3,
        "temperature": 0,
        "ignore_eos": True,
    }
    choice = (await post(fake_client, COMPLETIONS, body))["choices"][0]
    logprobs = choice["logprobs"]
    assert len(logprobs["tokens"]) == len(logprobs["token_logprobs"]) == 5
    assert "".join(logprobs["tokens"]) == choice["text"]
    offsets = [sum(len(t) for t in logprobs["tokens"][:k]) for k in range(5)]
    assert logprobs["text_offset"] == offsets
    for token, logprob, top in zip(
        logprobs["tokens"], logprobs["token_logprobs"], logprobs["top_logprobs"], strict=True
    ):
        assert logprob <= 0
        assert top[token] == logprob  # the chosen token is always among them
        assert 3 <= len(top) <= 4
        assert max(top.values()) == logprob  # greedy: the chosen is the likeliest
    # streamed: the same tokens, logprobs and offsets, a token per chunk
    chunks = await stream(fake_client, COMPLETIONS, body)
    streamed = [c["choices"][0]["logprobs"] for c in chunks if c["choices"][0]["logprobs"]]
    assert [s["tokens"][0] for s in streamed] == logprobs["tokens"]
    assert [s["text_offset"][0] for s in streamed] == offsets
    assert [s["token_logprobs"][0] for s in streamed] == logprobs["token_logprobs"]
    zero = (await post(fake_client, COMPLETIONS, {**body, "logprobs": 0}))["choices"][0]
    assert all(len(top) == 1 for top in zero["logprobs"]["top_logprobs"])


async def test_chat_logprobs(fake_client: httpx.AsyncClient) -> None:
    body = {
        "model": CHAT_MODEL,
        "messages": USER,
        "max_tokens": 4,
        "logprobs": True,
        "top_logprobs": 2,
        "temperature": 0,
        "ignore_eos": True,
    }
    choice = (await post(fake_client, CHAT, body))["choices"][0]
    content = choice["logprobs"]["content"]
    assert len(content) == 4
    for token in content:
        assert token["bytes"] == list(token["token"].encode())
        assert len(token["top_logprobs"]) == 2
        assert token["top_logprobs"][0]["logprob"] >= token["top_logprobs"][1]["logprob"]
    plain = await post(fake_client, CHAT, {**body, "top_logprobs": None})
    assert all(t["top_logprobs"] == [] for t in plain["choices"][0]["logprobs"]["content"])
    without = await post(fake_client, CHAT, {**body, "logprobs": False, "top_logprobs": None})
    assert without["choices"][0]["logprobs"] is None
    assert without["choices"][0]["message"]["content"] == choice["message"]["content"]


async def test_echo_puts_the_prompt_first(fake_client: httpx.AsyncClient) -> None:
    prompts = ["Hello there", "Bye"]
    body = {"model": GPT2, "prompt": prompts, "max_tokens": 4, "temperature": 0}
    plain = await post(fake_client, COMPLETIONS, body)
    echoed = await post(fake_client, COMPLETIONS, {**body, "echo": True})
    for prompt, without, choice in zip(prompts, plain["choices"], echoed["choices"], strict=True):
        assert choice["text"] == prompt + without["text"]
    chunks = await stream(fake_client, COMPLETIONS, {**body, "echo": True})
    assert reassembled(chunks) == {c["index"]: c["text"] for c in echoed["choices"]}


async def test_a_stop_sequence_ends_the_text_before_it(fake_client: httpx.AsyncClient) -> None:
    body = {
        "model": GPT2,
        "prompt": "Hello there",
        "max_tokens": 10,
        "temperature": 0,
        "ignore_eos": True,
    }
    full = (await post(fake_client, COMPLETIONS, body))["choices"][0]["text"]
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    cut = await post(fake_client, COMPLETIONS, {**body, "stop": [stop, "never seen"]})
    assert cut["choices"][0]["text"] == full[: full.index(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"
    chunks = await stream(fake_client, COMPLETIONS, {**body, "stop": stop})
    assert reassembled(chunks)[0] == full[: full.index(stop)]


async def test_chat_content_parts_and_roles(fake_client: httpx.AsyncClient) -> None:
    base = {"model": CHAT_MODEL, "max_tokens": 5, "temperature": 0}
    parts = [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]
    by_parts = await post(
        fake_client, CHAT, {**base, "messages": [{"role": "user", "content": parts}]}
    )
    by_text = await post(
        fake_client, CHAT, {**base, "messages": [{"role": "user", "content": "first\nsecond"}]}
    )
    assert by_parts["choices"] == by_text["choices"]
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Answer in English.", "name": "dev"},
        {"role": "user", "content": "Hi", "name": "ada"},
        {"role": "assistant", "content": None, "refusal": None},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]},
        {"role": "tool", "content": "42", "tool_call_id": "call_1"},
        {"role": "user", "content": ""},
    ]
    answer = await post(
        fake_client,
        CHAT,
        {
            **base,
            "messages": conversation,
            "tools": [],
            "tool_choice": "auto",
            "response_format": {"type": "text"},
            "store": False,
            "metadata": {"k": "v"},
        },
    )
    assert answer["choices"][0]["message"]["role"] == "assistant"
    shorter = await post(fake_client, CHAT, {**base, "messages": conversation[:3]})
    assert shorter["usage"]["prompt_tokens"] < answer["usage"]["prompt_tokens"]


async def test_null_means_the_default(fake_client: httpx.AsyncClient) -> None:
    nulls = {
        "temperature": None,
        "top_p": None,
        "n": None,
        "stop": None,
        "seed": None,
        "presence_penalty": None,
        "frequency_penalty": None,
        "logit_bias": None,
        "user": None,
        "stream": None,
        "stream_options": None,
        "logprobs": None,
    }
    answer = await post(fake_client, COMPLETIONS, {"model": GPT2, "prompt": "x", **nulls})
    assert len(answer["choices"]) == 1
    chat = await post(
        fake_client,
        CHAT,
        {"model": CHAT_MODEL, "messages": USER, **nulls, "max_tokens": None, "tools": None},
    )
    assert chat["choices"][0]["logprobs"] is None


async def test_extensions_and_penalties_are_taken(fake_client: httpx.AsyncClient) -> None:
    body = {"model": GPT2, "prompt": "Hello there", "max_tokens": 6, "seed": 3}
    plain = await post(fake_client, COMPLETIONS, body)
    for extra in (
        {"top_k": 1},
        {"repetition_penalty": 1.5, "temperature": 0},
        {"presence_penalty": 2, "frequency_penalty": -2},
        {"top_p": 0.01},
    ):
        answer = await post(fake_client, COMPLETIONS, {**body, **extra})
        assert answer["choices"][0]["finish_reason"] in ("stop", "length")
    greedy = await post(fake_client, COMPLETIONS, {**body, "temperature": 0})
    top1 = await post(fake_client, COMPLETIONS, {**body, "top_k": 1})
    assert top1["choices"][0]["text"] == greedy["choices"][0]["text"]
    assert plain["choices"][0]["text"] != greedy["choices"][0]["text"]


async def test_openai_models_list_and_native_models_in_one_body(
    fake_client: httpx.AsyncClient,
) -> None:
    body = (await fake_client.get("/v1/models")).json()
    assert body["object"] == "list"
    native = [m["name"] for m in body["models"]]
    assert [m["id"] for m in body["data"]] == native
    assert {GPT2, CHAT_MODEL} <= set(native)
    for model in body["data"]:
        assert model["object"] == "model"
        assert model["owned_by"] == "nlp-serve"
        assert isinstance(model["created"], int)
        assert model["created"] > 1_600_000_000


async def test_one_model_in_both_shapes(fake_client: httpx.AsyncClient) -> None:
    listed = (await fake_client.get("/v1/models")).json()
    one = (await fake_client.get(f"/v1/models/{CHAT_MODEL}")).json()
    native = next(m for m in listed["models"] if m["name"] == CHAT_MODEL)
    openai = next(m for m in listed["data"] if m["id"] == CHAT_MODEL)
    assert one == {**native, **openai}
    missing = await fake_client.get("/v1/models/no-such-model")
    assert missing.status_code == 404
    assert "no-such-model" in missing.json()["error"]["message"]


# --- errors -----------------------------------------------------------------------------------


def assert_openai_error(
    response: httpx.Response, status: int, param: str | None, *fragments: str
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param, error
    assert error["type"] == "invalid_request_error"
    for fragment in fragments:
        assert fragment in error["message"], error["message"]
    assert "Traceback" not in error["message"]
    return error


CHAT_BODY = {"model": CHAT_MODEL, "messages": USER}
COMPLETION_BODY = {"model": GPT2, "prompt": "x"}

REFUSED: list[tuple[str, dict[str, Any], int, str | None, str]] = [
    # hostile values
    (CHAT, {"n": 10**9}, 422, "n", "128"),
    (CHAT, {"n": 9}, 413, "n", "NLP_SERVE_MAX_ITEMS_PER_REQUEST"),  # the test server's 8
    (COMPLETIONS, {"prompt": ["a", "b", "c"], "n": 3}, 413, "n", "lower n"),
    (COMPLETIONS, {"max_tokens": 10**12}, 422, "max_tokens", "32768"),
    (COMPLETIONS, {"max_tokens": 5000}, 422, "max_tokens", "NLP_SERVE_MAX_NEW_TOKENS"),
    (CHAT, {"max_completion_tokens": 5000}, 422, "max_completion_tokens", "at most 1024"),
    (CHAT, {"max_tokens": 4, "max_completion_tokens": 5}, 422, "max_tokens", "send one"),
    (COMPLETIONS, {"max_tokens": 0}, 422, "max_tokens", "greater than or equal to 1"),
    (COMPLETIONS, {"temperature": -0.5}, 422, "temperature", "greater than or equal to 0"),
    (CHAT, {"temperature": 2.5}, 422, "temperature", "less than or equal to 2"),
    (CHAT, {"messages": []}, 422, "messages", "at least 1"),
    (COMPLETIONS, {"stop": ["x"] * 1000}, 422, "stop", "at most 64"),
    (COMPLETIONS, {"stop": ["s"] * 9}, 422, "stop", "NLP_SERVE_MAX_STOP_SEQUENCES"),
    (COMPLETIONS, {"stop": "s" * 65}, 422, "stop", "NLP_SERVE_MAX_STOP_CHARS"),
    (COMPLETIONS, {"stop": [""]}, 422, "stop", "at least 1 character"),
    (COMPLETIONS, {"prompt": ""}, 422, "prompt", "empty"),
    (COMPLETIONS, {"prompt": "\ud800"}, 422, "prompt", "surrogate"),
    (CHAT, {"messages": [{"role": "user", "content": "\udfff"}]}, 422, "messages", "surrogate"),
    (COMPLETIONS, {"prompt": "x" * 3000}, 413, None, "NLP_SERVE_MAX_INPUT_CHARS"),
    (COMPLETIONS, {"seed": 2**64}, 422, "seed", "less than"),
    (COMPLETIONS, {"logprobs": 6}, 422, "logprobs", "less than or equal to 5"),
    (CHAT, {"logprobs": True, "top_logprobs": 21}, 422, "top_logprobs", "20"),
    (CHAT, {"top_logprobs": 2}, 422, "top_logprobs", "logprobs: true"),
    (COMPLETIONS, {"top_k": -1}, 422, "top_k", "greater than or equal to 0"),
    (COMPLETIONS, {"repetition_penalty": 0}, 422, "repetition_penalty", "greater than 0"),
    # content the models cannot read
    (COMPLETIONS, {"prompt": [1, 2, 3]}, 422, "prompt", "token-id prompts are not supported"),
    (COMPLETIONS, {"prompt": [[1, 2], [3]]}, 422, "prompt", "send the prompt as text"),
    (
        CHAT,
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
                }
            ]
        },
        422,
        "messages",
        "'image_url'",
    ),
    (
        CHAT,
        {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
        422,
        "messages",
        "text only",
    ),
    (CHAT, {"messages": [{"role": "user", "content": []}]}, 422, "messages", "at least 1"),
    (CHAT, {"messages": [{"role": "function", "content": "x"}]}, 422, "messages", "'tool'"),
    (CHAT, {"messages": [{"role": "user"}]}, 422, "messages", "needs content"),
    (
        CHAT,
        {"messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]}]},
        422,
        "messages",
        "tool calls",
    ),
    (
        CHAT,
        {"messages": [{"role": "user", "content": "x", "audio": {}}]},
        422,
        "messages",
        "Extra inputs",
    ),
    # fields that would change the output, refused by name
    (CHAT, {"tools": [{"type": "function", "function": {"name": "f"}}]}, 422, "tools", "tools"),
    (CHAT, {"tool_choice": "required"}, 422, "tool_choice", "'required' asks for a tool"),
    (
        CHAT,
        {"tool_choice": {"type": "function", "function": {"name": "f"}}},
        422,
        "tool_choice",
        "'a named tool'",
    ),
    (CHAT, {"functions": [{"name": "f"}]}, 422, "functions", "functions"),
    (CHAT, {"function_call": {"name": "f"}}, 422, "function_call", '"none" or "auto"'),
    (CHAT, {"response_format": {"type": "json_object"}}, 422, "response_format", "json_object"),
    (CHAT, {"store": True}, 422, "store", "keeps no completions"),
    (CHAT, {"logit_bias": {"50256": -100}}, 422, "logit_bias", "leave logit_bias out"),
    (COMPLETIONS, {"logit_bias": {"1": 5}}, 422, "logit_bias", "does not bias"),
    (COMPLETIONS, {"suffix": " the end"}, 422, "suffix", "does not insert"),
    (COMPLETIONS, {"best_of": 3}, 422, "best_of", "must equal n"),
    (COMPLETIONS, {"echo": True, "logprobs": 1}, 422, "echo", "drop echo or logprobs"),
    (
        COMPLETIONS,
        {"stream_options": {"include_usage": True}},
        422,
        "stream_options",
        "stream: true",
    ),
    (
        CHAT,
        {"stream": True, "stream_options": {"include_usage": True, "x": 1}},
        422,
        "stream_options",
        "Extra inputs",
    ),
    (CHAT, {"reasoning_effort": "high"}, 422, None, "reasoning_effort: Extra inputs"),
    (COMPLETIONS, {"messages": USER}, 422, None, "messages: Extra inputs"),
    (CHAT, {"prompt": "x"}, 422, None, "prompt: Extra inputs"),
    # the model
    (CHAT, {"model": GPT2}, 422, None, "no chat template"),
    (COMPLETIONS, {"model": "tiny-embed"}, 422, None, "tiny-embed"),
    (COMPLETIONS, {"model": ""}, 422, "model", "at least 1 character"),
]


@pytest.mark.parametrize(("path", "change", "status", "param", "fragment"), REFUSED)
@pytest.mark.parametrize("streamed", [False, True])
async def test_refused_requests_name_the_field(
    fake_client: httpx.AsyncClient,
    path: str,
    change: dict[str, Any],
    status: int,
    param: str | None,
    fragment: str,
    streamed: bool,
) -> None:
    """Refused before anything is generated: the same plain answer, streamed or not."""
    body = {**(CHAT_BODY if path == CHAT else COMPLETION_BODY), **change}
    if streamed and "stream_options" not in change:
        body["stream"] = True
    # json.dumps escapes lone surrogates (\ud800) as JSON allows; httpx's json= cannot
    content = json.dumps(body).encode()
    response = await fake_client.post(path, content=content, headers=JSON_HEADERS)
    assert_openai_error(response, status, param, fragment)


async def test_unknown_model_is_openai_not_found(fake_client: httpx.AsyncClient) -> None:
    for path, body in ((CHAT, CHAT_BODY), (COMPLETIONS, COMPLETION_BODY)):
        response = await fake_client.post(path, json={**body, "model": "no-such-model"})
        assert response.status_code == 404
        error = response.json()["error"]
        assert error["code"] == "model_not_found"
        assert "no-such-model" in error["message"]


@pytest.mark.parametrize("path", [COMPLETIONS, CHAT])
@pytest.mark.parametrize("content", [b"not json", b"[1, 2]", b'{"model": "x"', b"null", b'"text"'])
async def test_malformed_bodies(fake_client: httpx.AsyncClient, path: str, content: bytes) -> None:
    response = await fake_client.post(path, content=content, headers=JSON_HEADERS)
    assert response.status_code in (400, 422), response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
