"""POST /v1/generate on the fake causal LM: answers, streams, and every hostile value a 4xx."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import httpx
import pytest

OK = {"inputs": "Once upon a time", "max_new_tokens": 4, "ignore_eos": True}


async def test_an_answer_carries_text_reason_and_usage(fake_client: httpx.AsyncClient) -> None:
    response = await fake_client.post("/v1/generate", json={**OK, "inputs": ["a", "b c"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "tiny-generate"
    assert [r["completion_tokens"] for r in body["results"]] == [4, 4]
    assert {r["finish_reason"] for r in body["results"]} == {"length"}
    usage = body["usage"]
    assert usage["completion_tokens"] == 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + 8
    assert "Server-Timing" in response.headers


async def test_a_stream_is_server_sent_events_ending_with_usage(
    fake_client: httpx.AsyncClient,
) -> None:
    response = await fake_client.post("/v1/generate", json={**OK, "stream": True, "seed": 3})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line]
    assert [e["type"] for e in events] == ["token"] * 4 + ["finish", "usage"]
    whole = (await fake_client.post("/v1/generate", json={**OK, "seed": 3})).json()
    assert "".join(e["text"] for e in events[:4]) == whole["results"][0]["text"]


async def test_the_same_seed_gives_the_same_text(fake_client: httpx.AsyncClient) -> None:
    body = {**OK, "max_new_tokens": 12, "seed": 11, "temperature": 1.0}
    first, second = [(await fake_client.post("/v1/generate", json=body)).json() for _ in "ab"]
    assert first["results"] == second["results"]


BAD: list[tuple[dict[str, Any], int, str]] = [
    ({"inputs": ""}, 422, "empty"),
    ({"inputs": " \u200b\n"}, 422, "empty"),
    ({"inputs": []}, 422, "inputs"),
    ({"inputs": ["x"] * 9}, 413, "9 inputs"),
    ({"inputs": "x" * 2001}, 413, "2001 characters"),
    ({"inputs": "x", "max_new_tokens": 0}, 422, "max_new_tokens"),
    ({"inputs": "x", "max_new_tokens": 10**9}, 422, "max_new_tokens"),
    ({"inputs": "x", "max_new_tokens": 5000}, 422, "NLP_SERVE_MAX_NEW_TOKENS"),
    ({"inputs": "x " * 200, "max_new_tokens": 200}, 413, "context"),
    ({"inputs": "x", "temperature": -0.1}, 422, "temperature"),
    ({"inputs": "x", "temperature": "NaN"}, 422, "temperature"),
    ({"inputs": "x", "temperature": 1e308}, 422, "temperature"),
    ({"inputs": "x", "top_p": 0}, 422, "top_p"),
    ({"inputs": "x", "top_p": 1.5}, 422, "top_p"),
    ({"inputs": "x", "top_k": -1}, 422, "top_k"),
    ({"inputs": "x", "repetition_penalty": 0}, 422, "repetition_penalty"),
    ({"inputs": "x", "presence_penalty": 3}, 422, "presence_penalty"),
    ({"inputs": "x", "seed": 2**70}, 422, "seed"),
    ({"inputs": "x", "seed": 1.5}, 422, "seed"),
    ({"inputs": "x", "logprobs": 21}, 422, "logprobs"),
    ({"inputs": "x", "stop": [""]}, 422, "stop"),
    ({"inputs": "x", "stop": ["s"] * 1000}, 422, "stop"),
    ({"inputs": "x", "stop": ["s"] * 9}, 422, "NLP_SERVE_MAX_STOP_SEQUENCES"),
    ({"inputs": "x", "stop": ["s" * 65]}, 422, "NLP_SERVE_MAX_STOP_CHARS"),
    ({"inputs": "x", "stop": 7}, 422, "stop"),
    ({"inputs": "x", "n": 2}, 422, "n"),
    ({"inputs": "x", "stream": "yes please"}, 422, "stream"),
    ({"inputs": "x", "model": "tiny-sentiment"}, 422, "not 'generate'"),
    ({"inputs": "x", "model": "nope"}, 404, "nope"),
]


@pytest.mark.parametrize(("body", "status", "named"), BAD)
async def test_hostile_values_get_a_4xx_naming_them(
    fake_client: httpx.AsyncClient, body: dict[str, Any], status: int, named: str
) -> None:
    for stream in (False, True):  # a stream's refusal is a plain answer, before any event
        response = await fake_client.post("/v1/generate", json={**body, "stream": stream}
                                          if "stream" not in body else body)  # fmt: skip
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert named in error["message"], error
        assert error["type"]


async def test_generate_is_in_the_published_schema(fake_client: httpx.AsyncClient) -> None:
    spec = (await fake_client.get("/openapi.json")).json()
    operation = spec["paths"]["/v1/generate"]["post"]
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    models = (await fake_client.get("/v1/models")).json()["models"]
    chat = next(m for m in models if m["name"] == "tiny-chat")
    assert chat["chat_template"] is True
    assert chat["task"] == "generate"


async def cancelled(client: httpx.AsyncClient, model: str = "tiny-generate") -> float:
    prefix = f'nlp_serve_sequences_finished_total{{model="{model}",reason="cancelled"}}'
    text = (await client.get("/metrics")).text
    return next((float(line.split()[-1]) for line in text.splitlines()
                 if line.startswith(prefix)), 0.0)  # fmt: skip


async def test_a_stream_whose_client_left_before_its_first_byte_is_cancelled(
    fake_client: httpx.AsyncClient,
) -> None:
    """The events' own cleanup never runs when the response never starts: the stream's."""
    app = fake_client._transport.app  # type: ignore[attr-defined]
    before = await cancelled(fake_client)
    body = json.dumps({**OK, "max_new_tokens": 200, "stream": True}).encode()
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1", "method": "POST", "scheme": "http", "path": "/v1/generate",
        "raw_path": b"/v1/generate", "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()), (b"host", b"test")],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80), "state": {},
    }  # fmt: skip
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            raise OSError("the client has gone")

    with contextlib.suppress(Exception):
        await app(scope, receive, send)
    for _ in range(100):
        if await cancelled(fake_client) > before:
            break
        await asyncio.sleep(0.01)
    assert await cancelled(fake_client) == before + 1
