"""Hugging Face Text Embeddings Inference (TEI): its requests, answers and error shape.

No model logic. Read from TEI's router (router/src/http/types.rs, server.rs, lib.rs) and
core/src/tokenization.rs:

- ``POST /tokenize`` ``{"inputs": str | [str], "add_special_tokens": true, "prompt_name"?}``
  answers one list of ``{"id", "text", "special", "start", "stop"}`` per input (a lone text
  too). The text tokenized is the input with the model's prompt first (the one named, else its
  default prompt). ``start``/``stop`` are UTF-8 byte offsets into that text and ``text`` its
  own characters there; the tokens the tokenizer adds have their token string as ``text`` and
  null offsets. Texts are not truncated.
- ``POST /decode`` ``{"ids": [..] | [[..]], "skip_special_tokens": true}`` answers one text
  per id list, the Rust decoder's text as it is.
- Errors are ``{"error": "...", "error_type": ...}`` with TEI's ErrorType names as it
  serialises them: Unhealthy, Backend, Overloaded, Validation, Tokenizer, Empty.

TEI serves one model; here its routes use the catalog's default embed model.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.common import TextInputs
from app.schemas.tokenize import TokenIdList, TokenIdLists
from app.tasks.tokens import Tokenized

TEIErrorType = Literal["Unhealthy", "Backend", "Overloaded", "Validation", "Tokenizer", "Empty"]


class TEITokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: TextInputs
    add_special_tokens: bool = True
    prompt_name: str | None = Field(
        default=None,
        description=(
            "A prompt of the model's, put before each input; omitted: the model's default "
            "prompt, if it has one. Offsets then count in the prompted text."
        ),
    )


class TEIToken(BaseModel):
    id: int
    text: str
    special: bool
    start: int | None = Field(description="UTF-8 byte offset; null for added special tokens.")
    stop: int | None = Field(description="UTF-8 byte offset; null for added special tokens.")


class TEIDecodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # One list of ids first, as TEI reads it: [] is one empty list, not an empty batch.
    ids: Annotated[TokenIdList | TokenIdLists, Field(union_mode="left_to_right")]
    skip_special_tokens: bool = True

    def id_lists(self) -> list[list[int]]:
        """The ids as a list of id lists (one list sent alone is one text)."""
        ids: list[Any] = self.ids
        return [ids] if not ids or isinstance(ids[0], int) else ids


class TEIError(BaseModel):
    error: str
    error_type: TEIErrorType


def byte_offsets(text: str) -> list[int]:
    """Where each character of `text` starts in its UTF-8 bytes, and the end."""
    if text.isascii():
        return list(range(len(text) + 1))
    starts = [0]
    for char in text:
        starts.append(starts[-1] + len(char.encode("utf-8", "surrogatepass")))
    return starts


def tei_tokens(text: str, tokenized: Tokenized) -> list[dict[str, Any]]:
    """One text's tokens as TEI's SimpleToken list."""
    at = byte_offsets(text)
    out = []
    for token_id, token, span, special in zip(
        tokenized.ids, tokenized.tokens, tokenized.offsets, tokenized.special, strict=True
    ):
        if span is None:  # an added special token, or a tokenizer that knows no offsets
            out.append({"id": token_id, "text": token, "special": special, "start": None,
                        "stop": None})  # fmt: skip
        else:
            start, end = span
            out.append({"id": token_id, "text": text[start:end], "special": special,
                        "start": at[start], "stop": at[end]})  # fmt: skip
    return out


def tei_error_type(status: int) -> TEIErrorType:
    """Our status as TEI's ErrorType (TEI answers Unhealthy 503, Overloaded 429, Backend for
    model faults; what a request got wrong is Validation)."""
    if status == 503:
        return "Unhealthy"
    if status == 429:
        return "Overloaded"
    if status >= 500:
        return "Backend"
    return "Validation"


def tei_error_body(status: int, message: str) -> dict[str, Any]:
    return {"error": message, "error_type": tei_error_type(status)}
