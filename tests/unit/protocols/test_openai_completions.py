"""The OpenAI completions protocol alone: n's fan-out, usage, logprobs and chunk shapes, and
which request field an error's `param` names on each OpenAI route."""

from __future__ import annotations

import orjson
import pytest

from app.protocols.errors import error_answer
from app.protocols.openai_completions import (
    SEED_MODULUS,
    ChatChunks,
    ChatCompletionsRequest,
    CompletionChunks,
    CompletionsRequest,
    Envelope,
    chat_logprobs,
    completion_logprobs,
    fan_out,
    usage,
)
from app.tasks.causal import Completion, GenerateParams, LoggedToken, Prompt, TokenEvent
from app.tasks.sampling import SamplingParams

PROMPTS = [Prompt("a"), Prompt("b")]


def test_without_a_seed_n_is_one_run_of_repeated_prompts() -> None:
    (run,) = fan_out(PROMPTS, GenerateParams(), 3)
    assert run.prompts == [Prompt("a")] * 3 + [Prompt("b")] * 3
    assert run.choices == [0, 1, 2, 3, 4, 5]


def test_with_a_seed_choice_j_samples_with_seed_plus_j() -> None:
    params = GenerateParams(sampling=SamplingParams(seed=SEED_MODULUS - 1))
    runs = fan_out(PROMPTS, params, 3)
    assert [r.params.sampling.seed for r in runs] == [SEED_MODULUS - 1, 0, 1]  # wraps
    assert [r.choices for r in runs] == [[0, 3], [1, 4], [2, 5]]  # prompt i, j: i * n + j
    assert all(r.prompts == PROMPTS for r in runs)
    (one,) = fan_out(PROMPTS, params, 1)
    assert one.params is params


def test_negative_seeds_are_taken_modulo_2_64() -> None:
    body = CompletionsRequest(model="m", prompt="x", seed=-1)
    assert body.params().sampling.seed == SEED_MODULUS - 1


def test_usage_counts_each_prompt_once() -> None:
    done = [
        Completion("t", "length", 5, 2),
        Completion("u", "stop", 5, 1),
        Completion("v", "length", 7, 2),
        Completion("w", "length", 7, 2),
    ]
    assert usage(enumerate(done), 2) == {
        "prompt_tokens": 12,
        "completion_tokens": 7,
        "total_tokens": 19,
    }


TOKENS = (
    LoggedToken(1, "He", -0.5, (LoggedToken(1, "He", -0.5), LoggedToken(2, "A", -1.0))),
    LoggedToken(3, "llo", -2.0, (LoggedToken(4, "y", -0.1),)),
)


def test_completion_logprobs_always_hold_the_chosen_token() -> None:
    shaped = completion_logprobs(TOKENS, 4)
    assert shaped == {
        "tokens": ["He", "llo"],
        "token_logprobs": [-0.5, -2.0],
        "top_logprobs": [{"He": -0.5, "A": -1.0}, {"y": -0.1, "llo": -2.0}],
        "text_offset": [4, 6],
    }


def test_chat_logprobs_carry_bytes() -> None:
    token = LoggedToken(9, "é", -0.25, (LoggedToken(8, "e", -1.5),))
    assert chat_logprobs([token]) == {
        "content": [
            {
                "token": "é",
                "logprob": -0.25,
                "bytes": [195, 169],
                "top_logprobs": [{"token": "e", "logprob": -1.5, "bytes": [101]}],
            }
        ],
        "refusal": None,
    }


def test_completion_chunks() -> None:
    envelope = Envelope("cmpl-1", 10, "m", n=1, include_usage=True)
    chunks = CompletionChunks(envelope, 1, prompts=["Say"], echo=True)
    (opening,) = chunks.opening()
    assert opening["choices"] == [
        {"index": 0, "text": "Say", "logprobs": None, "finish_reason": None}
    ]
    assert opening["usage"] is None
    assert chunks.token(0, TokenEvent(5, "")) is None  # nothing released, no logprob
    assert chunks.token(0, TokenEvent(5, " hi"))["choices"][0]["text"] == " hi"  # type: ignore[index]
    end = chunks.finish(0, Completion(" hi", "stop", 1, 2))
    assert end["choices"][0]["finish_reason"] == "stop"
    last = chunks.last()
    assert last is not None
    assert last["choices"] == []
    assert last["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}


def test_chat_chunks() -> None:
    chunks = ChatChunks(Envelope("chatcmpl-1", 10, "m", n=2), 2)
    assert [c["choices"][0]["delta"] for c in chunks.opening()] == [
        {"role": "assistant", "content": ""},
        {"role": "assistant", "content": ""},
    ]
    assert all("usage" not in c for c in chunks.opening())
    logged = chunks.token(1, TokenEvent(3, "", TOKENS[0]))
    assert logged is not None
    assert logged["choices"][0]["delta"] == {"content": ""}
    assert logged["choices"][0]["logprobs"]["content"][0]["token"] == "He"
    assert chunks.finish(1, Completion("", "length", 1, 1))["choices"][0]["delta"] == {}
    assert chunks.last() is None


def test_chat_params() -> None:
    body = ChatCompletionsRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                }
            ],
            "max_tokens": 7,
            "logprobs": True,
            "stop": "x",
            "top_k": 3,
            "ignore_eos": True,
        }
    )
    (prompt,) = body.prompts()
    assert prompt.messages[0].content == "a\nb"
    params = body.params()
    assert (params.max_new_tokens, params.logprobs, params.stop) == (7, 0, ("x",))
    assert (params.sampling.top_k, params.ignore_eos) == (3, True)
    plain = ChatCompletionsRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "a"}]}
    )
    assert (plain.params().logprobs, plain.params().max_new_tokens) == (None, None)


@pytest.mark.parametrize(
    ("path", "message", "param"),
    [
        ("/v1/completions", "echo: not with logprobs", "echo"),
        ("/v1/completions", "messages: Extra inputs are not permitted", None),
        ("/v1/chat/completions", "messages[0].content: part 0 ...", "messages"),
        ("/v1/chat/completions", "prompt: Extra inputs are not permitted", None),
        ("/v1/chat/completions", "dimensions: ...", None),
        ("/v1/embeddings", "dimensions: ...", "dimensions"),
        ("/v1/embeddings", "n: ...", None),
    ],
)
def test_param_names_a_field_of_that_route(path: str, message: str, param: str | None) -> None:
    body, headers = error_answer(path, 422, "invalid_input", message)
    assert orjson.loads(body)["error"]["param"] == param
    assert (b"content-type", b"application/json") in headers
