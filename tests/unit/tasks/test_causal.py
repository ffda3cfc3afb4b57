"""The generate task: prompts to ids (chat template), and a sequence's end."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from app.errors import InvalidInput, PayloadTooLarge
from app.spec import ModelSpec
from app.tasks.causal import ChatMessage, GenerateParams, GenerateTask, Prompt
from app.tasks.sampling import SamplingParams

GREEDY = SamplingParams(temperature=0.0)


@pytest.fixture(scope="module")
def gpt2(make_task: Any) -> GenerateTask:
    task: GenerateTask = make_task("generate", "causal-lm")
    return task


@pytest.fixture(scope="module")
def chat(make_task: Any) -> GenerateTask:
    task: GenerateTask = make_task("generate", "chat-lm")
    return task


def pointing_at(task: GenerateTask, token: int) -> np.ndarray:
    logits = np.zeros(task.vocab_size, dtype=np.float32)
    logits[token] = 10.0
    return logits


def test_a_sequence_ends_at_max_new_tokens_with_length(gpt2: GenerateTask) -> None:
    encoded = gpt2.encode(Prompt("Hello"), GenerateParams(3, GREEDY))
    seq = gpt2.continuation(encoded, GenerateParams(3, GREEDY))
    token = gpt2.tokenizer.convert_tokens_to_ids("Ġthe")
    events = [seq.advance(pointing_at(gpt2, token)) for _ in range(3)]
    assert seq.finished
    assert seq.completion().finish_reason == "length"
    assert "".join(e.text for e in events) == seq.completion().text == " the the the"


def test_end_of_text_stops_unless_ignored(gpt2: GenerateTask) -> None:
    eos = gpt2.tokenizer.eos_token_id
    encoded = gpt2.encode(Prompt("Hello"), GenerateParams(5, GREEDY))
    stops = gpt2.continuation(encoded, GenerateParams(5, GREEDY))
    stops.advance(pointing_at(gpt2, eos))
    assert stops.completion().finish_reason == "stop"
    assert stops.completion().text == ""
    ignores = gpt2.continuation(encoded, GenerateParams(5, GREEDY, ignore_eos=True))
    ignores.advance(pointing_at(gpt2, eos))
    assert not ignores.finished


def test_logprobs_name_each_token_and_its_alternatives(gpt2: GenerateTask) -> None:
    params = GenerateParams(2, GREEDY, logprobs=2)
    seq = gpt2.continuation(gpt2.encode(Prompt("Hi"), params), params)
    token = gpt2.tokenizer.convert_tokens_to_ids("Ġthe")
    event = seq.advance(pointing_at(gpt2, token))
    assert event.logprob is not None
    assert (event.logprob.id, event.logprob.text) == (token, " the")
    others = gpt2.vocab_size - 1  # each with logit 0 against the chosen token's 10
    assert event.logprob.logprob == pytest.approx(-np.log1p(others * np.exp(-10.0)))
    assert next(t.id for t in event.logprob.top) == token
    assert len(event.logprob.top) == 2


def test_a_model_without_a_chat_template_refuses_messages(gpt2: GenerateTask) -> None:
    with pytest.raises(InvalidInput, match="no chat template"):
        gpt2.encode(Prompt(messages=(ChatMessage("user", "hi"),)), GenerateParams(4))


def test_a_template_that_refuses_the_messages_answers_its_reason(make_task: Any) -> None:
    refusing = "{{ raise_exception('roles must alternate user/assistant') }}"
    task = make_task("generate", "chat-lm", options={"chat_template": refusing})
    with pytest.raises(InvalidInput, match="roles must alternate"):
        task.encode(Prompt(messages=(ChatMessage("user", "hi"),)), GenerateParams(4))


def test_prompt_and_new_tokens_must_fit_the_context(gpt2: GenerateTask) -> None:
    with pytest.raises(PayloadTooLarge, match="its context"):
        gpt2.encode(Prompt("hello " * 200), GenerateParams(100))
    assert gpt2.resolved(GenerateParams()).max_new_tokens == 64  # the catalog default


def test_the_catalog_refuses_auto_and_seq2seq_options_for_generate() -> None:
    with pytest.raises(ValidationError, match="make bench-generate"):
        ModelSpec(name="g", task="generate", source="x", backend="auto", export=True)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="applies to translate and summarize"):
        ModelSpec(name="g", task="generate", source="x", generation={"num_beams": 2})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="scheduling"):
        ModelSpec(name="g", task="generate", source="x", options={"scheduling": "eager"})  # type: ignore[arg-type]
