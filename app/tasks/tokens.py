"""A served model's tokenizer on its own, no model run: texts to tokens, token ids to text.

What POST /v1/tokenize and /v1/detokenize (and Text Embeddings Inference's /tokenize and
/decode) answer with. Pure functions over a Hugging Face tokenizer: a fast tokenizer's Rust
core where there is one (ids, token strings, character offsets, which tokens the tokenizer
added), else the tokenizer's own Python code, which knows no offsets.

Texts are tokenized whole, never truncated, so a client sees every token; `model_tokens` says
how many of them (special tokens included) the model reads of the text as one input.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.errors import InvalidInput

# Out-of-vocabulary ids named in an error at most; the count of the rest follows.
MAX_IDS_NAMED = 10


@dataclass(frozen=True)
class TokenizeParams:
    add_special_tokens: bool = True


@dataclass(frozen=True)
class DetokenizeParams:
    skip_special_tokens: bool = True
    # None: the tokenizer's own clean_up_tokenization_spaces, as transformers' decode() has
    # it; False: the Rust decoder's text as it is (what Text Embeddings Inference answers).
    clean_up_spaces: bool | None = None


@dataclass(frozen=True)
class Tokenized:
    """One text's tokens, in order."""

    ids: list[int]
    tokens: list[str]
    # Each token's [start, end) in the text, in characters; null for the tokens the tokenizer
    # adds ([CLS], [SEP]) and where it cannot tell (a tokenizer without a Rust core).
    offsets: list[tuple[int, int] | None]
    special: list[bool]  # added by the tokenizer around the text, not read from it
    model_tokens: int  # what the model reads of this text alone: specials added, truncated
    max_length: int  # the model's longest input, in tokens


# Each tokenizer's Rust core, copied once without truncation or padding (the wrapper's own
# core changes both with every call), and dropped with the tokenizer when its model goes.
_UNTRUNCATED: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def prepared(tokenizer: Any) -> bool:
    """Whether tokenize() is ready to run at once: its copy of the tokenizer's core made (tens
    to hundreds of milliseconds, by vocabulary), or none needed."""
    return getattr(tokenizer, "backend_tokenizer", None) is None or tokenizer in _UNTRUNCATED


def _untruncated(tokenizer: Any) -> Any:
    """The tokenizer's Rust core, untruncated and unpadded; None for a tokenizer without one."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    core = _UNTRUNCATED.get(tokenizer)
    if core is None:
        from tokenizers import Tokenizer

        core = Tokenizer.from_str(backend.to_str())
        core.no_truncation()
        core.no_padding()
        _UNTRUNCATED[tokenizer] = core
    return core


def tokenize(
    tokenizer: Any, texts: Sequence[str], params: TokenizeParams, max_length: int
) -> list[Tokenized]:
    """Each text's tokens, untruncated; model_tokens counts what the model reads of it
    (special tokens added, cut at max_length) whether or not they were asked for here."""
    added = 0 if params.add_special_tokens else tokenizer.num_special_tokens_to_add(pair=False)
    core = _untruncated(tokenizer)
    if core is None:
        return [_slow(tokenizer, text, params, added, max_length) for text in texts]
    encodings = core.encode_batch(list(texts), add_special_tokens=params.add_special_tokens)
    return [
        Tokenized(
            ids=list(enc.ids),
            tokens=list(enc.tokens),
            offsets=[
                None if special else (start, end)
                for (start, end), special in zip(enc.offsets, enc.special_tokens_mask, strict=True)
            ],
            special=[bool(s) for s in enc.special_tokens_mask],
            model_tokens=min(len(enc.ids) + added, max_length),
            max_length=max_length,
        )
        for enc in encodings
    ]


def _slow(
    tokenizer: Any, text: str, params: TokenizeParams, added: int, max_length: int
) -> Tokenized:
    """A tokenizer with no Rust core (SentencePiece models such as Marian's): no offsets."""
    enc = tokenizer(
        text,
        add_special_tokens=params.add_special_tokens,
        return_special_tokens_mask=True,
        truncation=False,
    )
    ids = [int(i) for i in enc["input_ids"]]
    special = [bool(s) for s in enc["special_tokens_mask"]]
    return Tokenized(
        ids=ids,
        tokens=[str(t) for t in tokenizer.convert_ids_to_tokens(ids)],
        offsets=[None] * len(ids),
        special=special,
        model_tokens=min(len(ids) + added, max_length),
        max_length=max_length,
    )


def out_of_vocabulary(tokenizer: Any, ids: Sequence[int]) -> list[int]:
    """The ids the tokenizer has no token for (negative ones included), in order, once each."""
    size = len(tokenizer)
    return list(dict.fromkeys(i for i in ids if not 0 <= i < size))


def detokenize(
    tokenizer: Any, id_lists: Sequence[Sequence[int]], params: DetokenizeParams, model: str
) -> list[str]:
    """Each id list's text; ids the tokenizer has no token for are refused by name."""
    for index, ids in enumerate(id_lists):
        bad = out_of_vocabulary(tokenizer, ids)
        if bad:
            named = ", ".join(map(str, bad[:MAX_IDS_NAMED]))
            more = f" and {len(bad) - MAX_IDS_NAMED} more" if len(bad) > MAX_IDS_NAMED else ""
            raise InvalidInput(
                f"id list {index}: token ids {named}{more} are not in the vocabulary of model "
                f"{model!r} (ids 0 to {len(tokenizer) - 1}); send ids from this model's own "
                "tokenizer (POST /v1/tokenize)"
            )
    return [
        str(
            tokenizer.decode(
                list(ids),
                skip_special_tokens=params.skip_special_tokens,
                clean_up_tokenization_spaces=params.clean_up_spaces,
            )
        )
        for ids in id_lists
    ]
