"""A generated sequence's text token by token: whole characters only, stops held back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from app.tasks.text_stream import TextStream

TEXT = "Grüße aus Köln 🙂 — naïve café, 東京 and more words."


@pytest.fixture(scope="module")
def tokenizer(tiny_models: dict[str, Path]) -> Any:
    return AutoTokenizer.from_pretrained(str(tiny_models["causal-lm"]))


def stream(tokenizer: Any, text: str, stop: tuple[str, ...] = ()) -> tuple[list[str], TextStream]:
    prompt = tokenizer("The prompt:")["input_ids"]
    ids = tokenizer(text)["input_ids"]
    texts = TextStream(tokenizer, prompt, stop)
    released = []
    for token in ids:
        texts.push(token)
        if texts.stopped:
            break
        released.append(texts.release(finished=False))
    released.append(texts.release(finished=True))
    return released, texts


def test_the_released_pieces_join_into_the_decoded_text(tokenizer: Any) -> None:
    released, texts = stream(tokenizer, TEXT)
    assert "".join(released) == texts.text == TEXT
    assert all("\ufffd" not in piece for piece in released)  # a byte-level token splits 🙂


def test_a_stop_sequence_cuts_the_text_before_it(tokenizer: Any) -> None:
    released, texts = stream(tokenizer, TEXT, stop=("café",))
    assert texts.stopped
    assert texts.text == TEXT[: TEXT.find("café")]
    assert "".join(released) == texts.text  # nothing of "caf" was sent before it was clear


def test_text_that_may_start_a_stop_is_held_back_until_it_cannot(tokenizer: Any) -> None:
    texts = TextStream(tokenizer, [], stop=("Köln!",))
    sent = ""
    for token in tokenizer("aus Köln 🙂")["input_ids"]:
        texts.push(token)
        sent += texts.release(finished=False)
        assert not texts.text[len(sent) :].startswith("Köln ") or texts.stopped
    assert not texts.stopped
    assert sent + texts.release(finished=True) == "aus Köln 🙂"
