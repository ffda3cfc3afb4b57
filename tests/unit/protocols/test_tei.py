"""Text Embeddings Inference's shapes: its tokens (UTF-8 byte offsets), its decode request's
one list or many, its error types."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from transformers import AutoTokenizer

from app.protocols.tei import TEIDecodeRequest, TEITokenizeRequest, byte_offsets, tei_tokens
from app.tasks.tokens import Tokenized, TokenizeParams, tokenize


@pytest.fixture(scope="module")
def tokenizer(tiny_models: dict[str, Path]) -> Any:
    return AutoTokenizer.from_pretrained(str(tiny_models["encoder"]))


@pytest.mark.parametrize("text", ["plain ascii, text.", "Zürich: café 😀 北京 naïve"])
def test_tokens_carry_utf8_byte_offsets_and_the_texts_own_characters(
    tokenizer: Any, text: str
) -> None:
    (tokenized,) = tokenize(tokenizer, [text], TokenizeParams(), 128)
    tokens = tei_tokens(text, tokenized)
    assert [t["id"] for t in tokens] == tokenized.ids
    assert tokens[0] == {"id": 101, "text": "[CLS]", "special": True, "start": None, "stop": None}
    assert tokens[-1]["text"] == "[SEP]"
    encoded = text.encode()
    for token in tokens[1:-1]:
        assert not token["special"]
        assert encoded[token["start"] : token["stop"]].decode() == token["text"]
    if "😀" in text:  # [UNK] comes as its own character, as TEI answers it
        assert "😀" in [t["text"] for t in tokens]


def test_byte_offsets() -> None:
    assert byte_offsets("ab") == [0, 1, 2]
    assert byte_offsets("aé😀b") == [0, 1, 3, 7, 8]


def test_a_tokenizer_without_offsets_gives_token_strings() -> None:
    tokenized = Tokenized([101, 7, 102], ["[CLS]", "x", "[SEP]"], [None] * 3,
                          [True, False, True], 3, 8)  # fmt: skip
    tokens = tei_tokens("x", tokenized)
    assert tokens[1] == {"id": 7, "text": "x", "special": False, "start": None, "stop": None}


@pytest.mark.parametrize(
    ("ids", "lists"),
    [([1, 2], [[1, 2]]), ([], [[]]), ([[1], [2, 3]], [[1], [2, 3]]), ([[]], [[]])],
)
def test_decode_takes_one_list_or_many(ids: Any, lists: list[list[int]]) -> None:
    assert TEIDecodeRequest(ids=ids).id_lists() == lists


@pytest.mark.parametrize(
    "body",
    [{"ids": [1.5]}, {"ids": ["1"]}, {"ids": [True]}, {"ids": [[1], 2]}, {"ids": 3},
     {"ids": [1], "model": "x"}],
)  # fmt: skip
def test_decode_refuses_what_are_not_ids(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TEIDecodeRequest.model_validate(body)


def test_tokenize_request_defaults_as_tei() -> None:
    request = TEITokenizeRequest.model_validate({"inputs": "x"})
    assert (request.add_special_tokens, request.prompt_name) == (True, None)
    with pytest.raises(ValidationError):
        TEITokenizeRequest.model_validate({"inputs": "x", "truncate": True})
