"""Text Embeddings Inference's `POST /embed` and `POST /embed_sparse`: the requests and the
answers (its error shape is in app/protocols/tei.py).

No model logic. Read from TEI's router (router/src/http/types.rs EmbedRequest,
EmbedSparseRequest, SparseValue; server.rs embed, embed_sparse):

- ``/embed`` ``{"inputs", "truncate"?, "truncation_direction": "Right", "prompt_name"?,
  "normalize": true, "dimensions"?}`` answers ``[[float, ...], ...]``, one vector per input
  (a lone input too).
- ``/embed_sparse`` ``{"inputs", "truncate"?, "truncation_direction", "prompt_name"?}``
  answers ``[[{"index", "value"}, ...], ...]``: each input's non-zero weights, by index.
- ``inputs`` is a text, a list of texts, or token ids (one list, or a list of them; TEI
  also takes a mix). Here token ids go to /embed only.
- ``truncate`` unset is TEI's default, true (its --auto-truncate); false refuses an input
  over the model's max_length (TEI: 413 Validation, "must have less than N tokens"; here 413
  naming the input's token count). ``truncation_direction`` is "Left" or "Right" (either case).

TEI serves one model; here /embed uses the catalog's default embed model and /embed_sparse
its default embed-sparse model, unless `model` (an extension) names another.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from app.protocols.openai_embeddings import TokenIds
from app.schemas.common import Text, TextList, bounded_list
from app.schemas.embed import MAX_PROMPT_NAME_CHARS
from app.tasks.base import TruncationSide
from app.tasks.embed import EmbedParams
from app.tasks.embed import TokenIds as IdsInput
from app.tasks.sparse import SparseEmbedParams

Direction = Literal["Right", "Left", "right", "left"]


class TEIEncoderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    truncate: bool | None = Field(
        default=None,
        description=(
            "Cut inputs over the model's max_length (unset: true, TEI's --auto-truncate); "
            "false refuses them (413). X-Truncated-Inputs lists the inputs cut."
        ),
    )
    truncation_direction: Direction = "Right"
    prompt_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_PROMPT_NAME_CHARS,
        description="A prompt of the model's (sentence-transformers `prompts`), put first.",
    )
    model: str | None = Field(
        default=None,
        min_length=1,
        description="Extension (TEI serves one model): a catalog model, else the default.",
    )

    @property
    def direction(self) -> TruncationSide:
        return "left" if self.truncation_direction.lower() == "left" else "right"


class TEIEmbedRequest(TEIEncoderRequest):
    inputs: (
        Text
        | TextList
        | TokenIds
        | Annotated[list[TokenIds], BeforeValidator(bounded_list), Field(min_length=1)]
    ) = Field(description="A text, a list of texts, token ids, or a list of token id lists.")
    normalize: bool = True
    dimensions: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Truncate each vector to this size (and normalise it again); only sizes the "
            "model's catalog entry lists in options.matryoshka_dimensions."
        ),
    )

    def items(self) -> list[str | IdsInput]:
        """The inputs as a list: texts, and token id lists as the embed task takes them."""
        value: Any = self.inputs
        if isinstance(value, str):
            return [value]
        if value and isinstance(value[0], int):
            return [IdsInput(tuple(value))]
        return [x if isinstance(x, str) else IdsInput(tuple(x)) for x in value]

    def task_params(self) -> EmbedParams:
        return EmbedParams(
            normalize=self.normalize,
            dimensions=self.dimensions,
            prompt_name=self.prompt_name,
            truncate=self.truncate is not False,
            truncation_direction=self.direction,
        )


class TEIEmbedSparseRequest(TEIEncoderRequest):
    inputs: Text | TextList = Field(description="A text or a list of texts.")

    def task_params(self) -> SparseEmbedParams:
        # TEI answers every non-zero weight: no pruning but the catalog entry's own
        return SparseEmbedParams(
            prompt_name=self.prompt_name,
            truncate=self.truncate is not False,
            truncation_direction=self.direction,
        )


class TEISparseValue(BaseModel):
    index: int
    value: float
