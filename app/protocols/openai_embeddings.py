"""OpenAI's embeddings API (`POST /v1/embeddings`): the request, the answer, the error shape.

Pure protocol code, no model logic. The official client sends ``encoding_format: "base64"``
when its caller sets nothing and decodes the base64 as little-endian float32, so a base64
embedding is the float32 rounding of the very vector /v1/embed returns.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from app.schemas.common import Text, TextList, bounded_list

# Lists are capped before their items are validated, like every list the service takes.
TokenIds = Annotated[
    list[Annotated[int, Field(ge=0)]], BeforeValidator(bounded_list), Field(min_length=1)
]


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(min_length=1, description="Catalog name of an embed model.")
    input: (
        Text
        | TextList
        | TokenIds
        | Annotated[list[TokenIds], BeforeValidator(bounded_list), Field(min_length=1)]
    ) = Field(
        description=(
            "A text, a list of texts, one list of token ids or a list of them. Token ids are "
            "the model's own tokenizer's ids, sent to the model as they are (no special tokens "
            "added), not an OpenAI (tiktoken) encoding."
        )
    )
    encoding_format: Literal["float", "base64"] = Field(
        default="float",
        description="base64: the little-endian float32 bytes of each vector, base64-encoded.",
    )
    dimensions: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Truncate each vector to this many dimensions and L2-normalise it again; only for "
            "models whose catalog entry lists the size in options.matryoshka_dimensions."
        ),
    )
    user: str | None = Field(default=None, description="Accepted and ignored.")
    # Extensions (not OpenAI's): the model's prompts and how long inputs are cut.
    prompt_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description=(
            "Extension: a prompt of the model's put before each text (GET /v1/models lists "
            "`prompts`); omit for its default prompt, if any."
        ),
    )
    input_type: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description=(
            'Extension, as Cohere and Voyage name it ("query", "document"): the prompt the '
            "model's catalog entry maps it to (options.input_types), else its prompt of that "
            "name. Not with prompt_name."
        ),
    )
    truncate: bool = Field(
        default=True,
        description=(
            "Extension: cut inputs longer than the model's max_length (X-Truncated-Inputs "
            "lists them); false refuses them (413)."
        ),
    )
    truncation_direction: Literal["left", "right"] | None = Field(
        default=None, description="Extension: which end of a long input is cut."
    )

    def items(self) -> list[str] | list[list[int]]:
        """The inputs as a list: texts or token id lists."""
        value = self.input
        if isinstance(value, str):
            return [value]
        if value and isinstance(value[0], int):
            return [value]
        return value  # type: ignore[return-value]


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


def encode_base64(vector: Sequence[float]) -> str:
    """Little-endian float32 bytes, base64: what the client decodes with frombuffer(float32)."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def embeddings_answer(
    model: str,
    vectors: Sequence[Sequence[float]],
    encoding_format: str,
    prompt_tokens: int,
) -> dict[str, Any]:
    data = [
        {
            "object": "embedding",
            "index": index,
            "embedding": encode_base64(vector) if encoding_format == "base64" else list(vector),
        }
        for index, vector in enumerate(vectors)
    ]
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


# Our error type -> OpenAI's error "type". The HTTP status is what the client acts on (it
# raises NotFoundError for 404, RateLimitError for 429 ...); "code" keeps our own type.
def openai_error_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


REQUEST_FIELDS = frozenset(EmbeddingsRequest.model_fields)


def openai_error_body(
    status: int, code: str, message: str, fields: frozenset[str] = REQUEST_FIELDS
) -> dict[str, Any]:
    """OpenAI's error envelope; `param` names the request field when the message starts with
    one of `fields` (validation messages read "dimensions: ..." or "input[2]: ...")."""
    head = message.split(":", 1)[0] if ":" in message else ""
    field_name = head.split(".", 1)[0].split("[", 1)[0]
    return {
        "error": {
            "message": message,
            "type": openai_error_type(status),
            "param": field_name if field_name in fields else None,
            "code": code,
        }
    }
