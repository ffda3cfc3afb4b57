"""A model's tokenizer on its own: tokens with offsets, what the model reads, ids back to text.

The tokenizers are the tiny models' real ones (all-MiniLM-L6-v2's WordPiece), plus the same
vocabulary in transformers' Python (no Rust core) tokenizer for the path without offsets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer
from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

from app.errors import InvalidInput
from app.tasks.tokens import (
    MAX_IDS_NAMED,
    DetokenizeParams,
    TokenizeParams,
    detokenize,
    out_of_vocabulary,
    prepared,
    tokenize,
)

TEXTS = [
    "Ada Lovelace's notes, 1843.",
    "Grzegorz Brzęczyszczykiewicz visited Zürich 😀 and 北京",
    "  spaces   around  ",
]


@pytest.fixture(scope="module")
def tokenizer(tiny_models: dict[str, Path]) -> Any:
    return AutoTokenizer.from_pretrained(str(tiny_models["encoder"]))


@pytest.fixture(scope="module")
def python_tokenizer(tokenizer: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The same vocabulary in transformers' Python tokenizer, which has no Rust core."""
    vocab = tmp_path_factory.mktemp("python-tokenizer") / "vocab.txt"
    by_id = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    vocab.write_text("".join(f"{token}\n" for token, _ in by_id))
    slow = BertTokenizerLegacy(vocab_file=str(vocab))
    assert not slow.is_fast
    return slow


def test_tokens_are_the_tokenizers_own_with_character_offsets(tokenizer: Any) -> None:
    for text, got in zip(TEXTS, tokenize(tokenizer, TEXTS, TokenizeParams(), 128), strict=True):
        expected = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
        assert got.ids == expected["input_ids"]
        assert got.tokens == tokenizer.convert_ids_to_tokens(expected["input_ids"])
        assert got.special == [bool(s) for s in expected["special_tokens_mask"]]
        assert got.special[0]
        assert got.special[-1]
        assert not any(got.special[1:-1])
        offsets = [tuple(o) for o in expected["offset_mapping"]]
        assert got.offsets == [None if s else o for s, o in zip(got.special, offsets, strict=True)]
        # offsets are characters of the text: the lower-cased, accent-stripped token comes
        # from the text's own characters there
        for token, span in zip(got.tokens, got.offsets, strict=True):
            if span is not None and token != "[UNK]":
                piece = text[span[0] : span[1]]
                normalized = tokenizer.backend_tokenizer.normalizer.normalize_str(piece)
                assert normalized.strip() == token.removeprefix("##")  # CJK comes spaced


def test_without_special_tokens(tokenizer: Any) -> None:
    (got,) = tokenize(tokenizer, [TEXTS[0]], TokenizeParams(add_special_tokens=False), 128)
    assert got.ids == tokenizer(TEXTS[0], add_special_tokens=False)["input_ids"]
    assert not any(got.special)
    assert None not in got.offsets
    assert got.model_tokens == len(got.ids) + 2  # the model still reads [CLS] and [SEP]


@pytest.mark.parametrize("add_special_tokens", [True, False])
@pytest.mark.parametrize(("task", "model"), [("embed", "encoder"), ("ner", "ner")])
def test_model_tokens_is_what_the_task_feeds_the_model(
    make_task: Any, task: str, model: str, add_special_tokens: bool
) -> None:
    served = make_task(task, model)
    texts = ["short", "word " * 60, "word " * 200]  # under, near and over max_length (128)
    params = TokenizeParams(add_special_tokens=add_special_tokens)
    for text, got in zip(
        texts, tokenize(served.tokenizer, texts, params, served.max_length), strict=True
    ):
        assert got.model_tokens == len(served.text_row(text)["input_ids"])
        assert got.max_length == served.max_length == 128
    long = tokenize(served.tokenizer, [texts[2]], params, served.max_length)[0]
    assert len(long.ids) > long.model_tokens == served.max_length  # never truncated here


def test_tokenizing_whole_texts_leaves_the_models_truncation_alone(make_task: Any) -> None:
    served = make_task("embed", "encoder")
    text = "word " * 500
    tokenize(served.tokenizer, [text], TokenizeParams(), served.max_length)
    assert len(served.text_row(text)["input_ids"]) == served.max_length
    assert len(served.tokenize(text)["input_ids"]) == served.max_length


def test_a_tokenizer_without_a_rust_core_has_no_offsets(
    tokenizer: Any, python_tokenizer: Any
) -> None:
    text = "Ada Lovelace wrote notes"
    (slow,) = tokenize(python_tokenizer, [text], TokenizeParams(), 128)
    (fast,) = tokenize(tokenizer, [text], TokenizeParams(), 128)
    assert (slow.ids, slow.tokens, slow.special) == (fast.ids, fast.tokens, fast.special)
    assert slow.offsets == [None] * len(slow.ids)
    assert slow.model_tokens == fast.model_tokens
    (bare,) = tokenize(python_tokenizer, [text], TokenizeParams(add_special_tokens=False), 128)
    assert bare.ids == fast.ids[1:-1]
    assert bare.model_tokens == fast.model_tokens


def test_ids_back_to_text(tokenizer: Any, python_tokenizer: Any) -> None:
    tokens = tokenize(tokenizer, TEXTS, TokenizeParams(), 128)
    ids = [t.ids for t in tokens] + [[]]
    for params in (DetokenizeParams(), DetokenizeParams(skip_special_tokens=False)):
        expected = [
            tokenizer.decode(i, skip_special_tokens=params.skip_special_tokens) for i in ids
        ]
        assert detokenize(tokenizer, ids, params, "m") == expected
        # each tokenizer's own clean_up_tokenization_spaces: True for this one ("lovelace's")
        slow = python_tokenizer.decode(ids[0], skip_special_tokens=params.skip_special_tokens)
        assert detokenize(python_tokenizer, ids[:1], params, "m") == [slow]
    # this one's clean_up_tokenization_spaces is False: the Rust decoder's text as it is
    assert detokenize(tokenizer, ids[:1], DetokenizeParams(), "m") == [
        "ada lovelace ' s notes, 1843."
    ]
    kept = detokenize(tokenizer, ids[:1], DetokenizeParams(skip_special_tokens=False), "m")
    assert kept == ["[CLS] ada lovelace ' s notes, 1843. [SEP]"]


def test_the_rust_decoders_text_or_the_tokenizers_clean_up(tokenizer: Any) -> None:
    ids = tokenizer("it isn't so . right ?", add_special_tokens=False)["input_ids"]
    raw = tokenizer.backend_tokenizer.decode(ids)
    assert detokenize(tokenizer, [ids], DetokenizeParams(clean_up_spaces=False), "m") == [raw]
    cleaned = detokenize(tokenizer, [ids], DetokenizeParams(clean_up_spaces=True), "m")[0]
    assert cleaned != raw
    assert "isn't" in cleaned


def test_ids_outside_the_vocabulary_are_named(tokenizer: Any) -> None:
    size = len(tokenizer)
    assert out_of_vocabulary(tokenizer, [0, size - 1, size, -1, size, 10**30]) == [
        size, -1, 10**30,
    ]  # fmt: skip
    with pytest.raises(InvalidInput) as refused:
        detokenize(tokenizer, [[101, 102], [5, -3, size + 7]], DetokenizeParams(), "tiny")
    message = refused.value.message
    assert message.startswith("id list 1: token ids -3, ")
    for named in (f"{size + 7}", "'tiny'", f"0 to {size - 1}"):
        assert named in message
    many = list(range(size, size + MAX_IDS_NAMED + 5))
    with pytest.raises(InvalidInput, match="and 5 more"):
        detokenize(tokenizer, [many], DetokenizeParams(), "tiny")


def test_the_untruncated_core_is_made_once_per_tokenizer(
    tiny_models: dict[str, Path], python_tokenizer: Any
) -> None:
    fresh = AutoTokenizer.from_pretrained(str(tiny_models["ner"]))
    assert not prepared(fresh)  # the core calls this first one off the event loop
    tokenize(fresh, ["x"], TokenizeParams(), 128)
    assert prepared(fresh)
    assert prepared(python_tokenizer)  # nothing to make
