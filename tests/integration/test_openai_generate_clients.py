"""The real openai SDK (sync and async) against one real server on 127.0.0.1: completions and
chat completions whole and streamed, n, logprobs, usage, stop, refused fields, an error in the
middle of a stream, models.list/retrieve, and docs/clients.md's snippets as written.

The models are the tiny GPT-2 (no chat template) and Llama-family ChatML model on the
deterministic fake backend: this checks the wire protocol and the SDK's parsing of it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from bench.common import serve
from tests.fixtures.doc_snippets import SNIPPET_KEY, python_blocks, run_snippets

pytestmark = pytest.mark.integration

KEY = "generate-client-key"
SNIPPET_MODEL = "smollm2-instruct"  # models/hub.yaml's, served by the tiny chat model
GPT2 = "tiny-generate"
CHAT = "tiny-chat"
SLOW = "slow-chat"
MESSAGES: list[Any] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Tell me about the sea."},
]


@pytest.fixture(scope="module")
def server(tiny_models: dict[str, Path]) -> Iterator[str]:
    def entry(name: str, source: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "task": "generate",
            "source": str(tiny_models[source]),
            "backend": "fake",
            "device": "cpu",
            **extra,
        }

    models = [
        entry(GPT2, "causal-lm", default=True),
        entry(CHAT, "chat-lm"),
        entry(SNIPPET_MODEL, "chat-lm"),
        entry(SLOW, "chat-lm", backend_options={"delay_ms": 40}),
    ]
    env = {"NLP_SERVE_WARMUP": "false", "NLP_SERVE_API_KEYS": f'["{KEY}", "{SNIPPET_KEY}"]'}
    with serve(models, env) as running:
        yield running.base


def client(server: str, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0, **kwargs)


def async_client(server: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)


# --- completions ------------------------------------------------------------------------------


def test_completions_whole_and_streamed_are_the_same_text(server: str) -> None:
    sdk = client(server)
    asked: dict[str, Any] = {
        "model": GPT2,
        "prompt": ["Once upon a time", "The weather"],
        "max_tokens": 8,
        "n": 2,
        "seed": 5,
        "temperature": 1.2,
    }
    whole = sdk.completions.create(**asked)
    assert whole.object == "text_completion"
    assert whole.model == GPT2
    assert [c.index for c in whole.choices] == [0, 1, 2, 3]
    assert whole.usage is not None
    assert whole.usage.prompt_tokens > 0
    assert whole.usage.completion_tokens <= 4 * 8
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens
    texts = {c.index: "" for c in whole.choices}
    reasons: dict[int, str] = {}
    usage = None
    for chunk in sdk.completions.create(
        **asked, stream=True, stream_options={"include_usage": True}
    ):
        if not chunk.choices:
            usage = chunk.usage
            continue
        for choice in chunk.choices:
            texts[choice.index] += choice.text
            if choice.finish_reason is not None:
                reasons[choice.index] = choice.finish_reason
    assert texts == {c.index: c.text for c in whole.choices}
    assert reasons == {c.index: c.finish_reason for c in whole.choices}
    assert usage == whole.usage


def test_completion_choices_follow_the_seed(server: str) -> None:
    sdk = client(server)
    both = sdk.completions.create(
        model=GPT2, prompt="Hello", max_tokens=6, n=2, seed=9, temperature=1.5
    )
    for j in range(2):
        alone = sdk.completions.create(
            model=GPT2, prompt="Hello", max_tokens=6, seed=9 + j, temperature=1.5
        )
        assert alone.choices[0].text == both.choices[j].text
    assert both.choices[0].text != both.choices[1].text


def test_completion_logprobs_echo_and_stop(server: str) -> None:
    sdk = client(server)
    asked: dict[str, Any] = {
        "model": GPT2,
        "prompt": "Hello there",
        "max_tokens": 6,
        "temperature": 0,
        "extra_body": {"ignore_eos": True},
    }
    scored = sdk.completions.create(**asked, logprobs=2)
    logprobs = scored.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.tokens is not None
    assert logprobs.token_logprobs is not None
    assert logprobs.top_logprobs is not None
    assert "".join(logprobs.tokens) == scored.choices[0].text
    assert len(logprobs.token_logprobs) == 6
    assert all(
        token in top for token, top in zip(logprobs.tokens, logprobs.top_logprobs, strict=True)
    )
    assert logprobs.text_offset == [sum(map(len, logprobs.tokens[:k])) for k in range(6)]
    text = scored.choices[0].text
    echoed = sdk.completions.create(**asked, echo=True)
    assert echoed.choices[0].text == "Hello there" + text
    stop = text[3:5]
    stopped = sdk.completions.create(**asked, stop=stop)
    assert stopped.choices[0].text == text[: text.index(stop)]
    assert stopped.choices[0].finish_reason == "stop"
    top1 = sdk.completions.create(
        **{**asked, "temperature": 1.0, "seed": 1, "extra_body": {"top_k": 1, "ignore_eos": True}}
    )
    assert top1.choices[0].text == text  # top_k 1 is greedy


# --- chat -------------------------------------------------------------------------------------


async def test_async_chat_whole_and_streamed_are_the_same_text(server: str) -> None:
    sdk = async_client(server)
    asked: dict[str, Any] = {
        "model": CHAT,
        "messages": MESSAGES,
        "max_completion_tokens": 8,
        "seed": 3,
        "n": 2,
    }
    whole = await sdk.chat.completions.create(**asked)
    assert whole.object == "chat.completion"
    assert [c.message.role for c in whole.choices] == ["assistant", "assistant"]
    stream = await sdk.chat.completions.create(
        **asked, stream=True, stream_options={"include_usage": True}
    )
    texts = {0: "", 1: ""}
    roles: dict[int, str | None] = {}
    reasons: dict[int, str] = {}
    usage = None
    async for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if not chunk.choices:
            usage = chunk.usage
            continue
        (choice,) = chunk.choices
        roles.setdefault(choice.index, choice.delta.role)
        texts[choice.index] += choice.delta.content or ""
        if choice.finish_reason is not None:
            reasons[choice.index] = choice.finish_reason
    assert roles == {0: "assistant", 1: "assistant"}
    assert texts == {c.index: c.message.content for c in whole.choices}
    assert reasons == {c.index: c.finish_reason for c in whole.choices}
    assert usage == whole.usage
    await sdk.close()


async def test_concurrent_chat_streams_share_the_batch(server: str) -> None:
    """Streams running together (one continuous batch) give each its own answer."""
    sdk = async_client(server)

    async def streamed(seed: int) -> str:
        stream = await sdk.chat.completions.create(
            model=CHAT, messages=MESSAGES, max_tokens=12, seed=seed, stream=True
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    seeds = range(6)
    texts = await asyncio.gather(*(streamed(seed) for seed in seeds))
    for seed, text in zip(seeds, texts, strict=True):
        whole = await sdk.chat.completions.create(
            model=CHAT, messages=MESSAGES, max_tokens=12, seed=seed
        )
        assert whole.choices[0].message.content == text
    await sdk.close()


def test_chat_logprobs(server: str) -> None:
    sdk = client(server)
    whole = sdk.chat.completions.create(
        model=CHAT,
        messages=MESSAGES,
        max_tokens=5,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
        extra_body={"ignore_eos": True},
    )
    logprobs = whole.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.content is not None
    assert len(logprobs.content) == 5
    assert "".join(t.token for t in logprobs.content) == whole.choices[0].message.content
    for token in logprobs.content:
        assert token.bytes == list(token.token.encode())
        assert len(token.top_logprobs) == 3
        assert token.top_logprobs[0].logprob == pytest.approx(token.logprob)  # greedy
    streamed = [
        chunk.choices[0].logprobs.content[0].logprob
        for chunk in sdk.chat.completions.create(
            model=CHAT,
            messages=MESSAGES,
            max_tokens=5,
            temperature=0,
            logprobs=True,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        if chunk.choices and chunk.choices[0].logprobs and chunk.choices[0].logprobs.content
    ]
    assert streamed == [t.logprob for t in logprobs.content]


def test_chat_without_a_template_is_refused_with_our_message(server: str) -> None:
    sdk = client(server)
    for stream in (False, True):
        with pytest.raises(openai.UnprocessableEntityError) as refused:
            sdk.chat.completions.create(model=GPT2, messages=MESSAGES, stream=stream)
        assert "no chat template" in refused.value.message
        assert refused.value.code == "invalid_input"


@pytest.mark.parametrize(
    ("extra", "param", "fragment"),
    [
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
            "tools",
            "does not call tools",
        ),
        ({"response_format": {"type": "json_object"}}, "response_format", "json_object"),
        ({"logit_bias": {"10": 5}}, "logit_bias", "does not bias"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}}
                        ],
                    }
                ]
            },
            "messages",
            "'image_url'",
        ),
        ({"n": 1000}, "n", "128"),
        ({"temperature": -1}, "temperature", "greater than or equal to 0"),
        ({"extra_body": {"guided_json": {}}}, None, "guided_json: Extra inputs"),
    ],
)
def test_refused_chat_fields(
    server: str, extra: dict[str, Any], param: str | None, fragment: str
) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        client(server).chat.completions.create(**{"model": CHAT, "messages": MESSAGES, **extra})
    assert refused.value.param == param
    assert fragment in refused.value.message


@pytest.mark.parametrize(
    ("extra", "param", "fragment"),
    [
        ({"prompt": [1, 2, 3]}, "prompt", "token-id prompts are not supported"),
        ({"suffix": "end"}, "suffix", "does not insert"),
        ({"best_of": 4}, "best_of", "must equal n"),
        ({"echo": True, "logprobs": 1}, "echo", "drop echo or logprobs"),
    ],
)
def test_refused_completion_fields(
    server: str, extra: dict[str, Any], param: str, fragment: str
) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        client(server).completions.create(**{"model": GPT2, "prompt": "x", **extra})
    assert refused.value.param == param
    assert fragment in refused.value.message


def test_unknown_model_is_not_found(server: str) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client(server).completions.create(model="no-such-model", prompt="x")
    assert missing.value.code == "model_not_found"


def test_an_error_after_the_stream_started_ends_it(server: str) -> None:
    """The deadline passes mid-way: the chunks so far, then the SDK raises our error."""
    stream = client(server).chat.completions.create(
        model=SLOW,
        messages=MESSAGES,
        max_tokens=200,
        stream=True,
        extra_body={"ignore_eos": True},
        extra_headers={"X-Request-Timeout-Ms": "600"},
    )
    chunks: list[Any] = []
    with pytest.raises(openai.APIError) as failed:
        chunks.extend(stream)
    assert len(chunks) >= 2  # the role chunk and some text came first
    assert "deadline" in failed.value.message
    assert isinstance(failed.value.body, dict)
    assert failed.value.body["code"] == "deadline_exceeded"
    raw = httpx.post(
        f"{server}/v1/completions",
        json={"model": SLOW, "prompt": "x", "max_tokens": 200, "stream": True, "ignore_eos": True},
        headers={"Authorization": f"Bearer {KEY}", "X-Request-Timeout-Ms": "600"},
        timeout=30,
    )
    assert raw.status_code == 200
    events = [e for e in raw.text.split("\n\n") if e]
    assert "[DONE]" not in events[-1]
    assert '"error":' in events[-1]
    assert all('"error":' not in e for e in events[:-1])


def metric(server: str, name: str, **labels: str) -> float:
    """The sum of a metric's series whose labels include `labels`."""
    wanted = {f'{key}="{value}"' for key, value in labels.items()}
    total = 0.0
    for line in httpx.get(f"{server}/metrics", timeout=10).text.splitlines():
        series, _, value = line.rpartition(" ")
        if series.split("{", 1)[0] == name and wanted <= set(
            series.partition("{")[2].rstrip("}").split(",")
        ):
            total += float(value)
    return total


def cancelled(server: str) -> float:
    return metric(server, "nlp_serve_sequences_finished_total", model=SLOW, reason="cancelled")


def wait_for_cancelled(server: str, count: float) -> None:
    """Cancelled sequences reach `count` and none runs, well before 200 tokens x 40 ms."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        running = metric(server, "nlp_serve_sequences_running", model=SLOW)
        if cancelled(server) >= count and running == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"cancelled {cancelled(server)}, wanted {count}")


@pytest.mark.parametrize("seed", [None, 4])  # one generation, or one per choice (merged)
def test_a_client_leaving_a_stream_ends_its_sequences(server: str, seed: int | None) -> None:
    before = cancelled(server)
    body = {
        "model": SLOW,
        "messages": MESSAGES,
        "max_tokens": 200,
        "n": 3,
        "stream": True,
        "ignore_eos": True,
        "seed": seed,
    }
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.stream(
        "POST", f"{server}/v1/chat/completions", json=body, headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        assert sum(1 for _, line in zip(range(8), lines, strict=False) if line) >= 4
    wait_for_cancelled(server, before + 3)


def test_a_client_leaving_a_whole_answer_ends_its_sequences(server: str) -> None:
    before = cancelled(server)
    with pytest.raises(openai.APITimeoutError):
        client(server, timeout=0.5).completions.create(
            model=SLOW, prompt="x", max_tokens=200, n=2, seed=1, extra_body={"ignore_eos": True}
        )
    wait_for_cancelled(server, before + 2)


def test_models_list_and_retrieve(server: str) -> None:
    sdk = client(server)
    listed = {m.id: m for m in sdk.models.list()}
    assert {GPT2, CHAT, SLOW, SNIPPET_MODEL} <= set(listed)
    assert listed[CHAT].object == "model"
    assert listed[CHAT].owned_by == "nlp-serve"
    one = sdk.models.retrieve(CHAT)
    assert one.id == CHAT
    assert one.created == listed[CHAT].created
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("no-such-model")


# --- docs/clients.md --------------------------------------------------------------------------


def test_the_docs_snippets_run(server: str) -> None:
    """As written, but for the address; their model is served under the docs' name."""
    snippets = python_blocks("OpenAI completions")
    assert len(snippets) >= 2
    outputs = run_snippets(snippets, server, SNIPPET_MODEL)
    assert all(output.strip() for output in outputs), outputs
    assert "tools Error code: 422 - tools: this server" in outputs[-1], outputs[-1]
