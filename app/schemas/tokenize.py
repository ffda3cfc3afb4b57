"""POST /v1/tokenize and /v1/detokenize: a served model's tokenizer, no model run."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field, StrictInt

from app.core import Answer, CallContext, InferenceCore
from app.schemas.common import TaskRequest, TaskResponse, TextInputs, as_list, bounded_list
from app.tasks.tokens import DetokenizeParams, Tokenized, TokenizeParams

# One text's token ids. Any whole number passes here, so that ids outside the model's
# vocabulary (negative ones too) are answered by name; NLP_SERVE_MAX_TOKENS_PER_REQUEST caps
# the ids of a whole request, the body limit what arrives at all.
TokenIdList = list[StrictInt]
TokenIdLists = Annotated[list[TokenIdList], BeforeValidator(bounded_list), Field(min_length=1)]

MODEL_FIELD = Field(
    default=None,
    description=(
        "Catalog name of the model whose tokenizer to use (any served model); omit for the "
        "default embed model."
    ),
)


class TokenizeRequest(TaskRequest):
    model: str | None = MODEL_FIELD
    inputs: TextInputs
    add_special_tokens: bool = Field(
        default=True,
        description="Add the tokens the model's tokenizer puts around a text ([CLS], [SEP]).",
    )

    def task_params(self) -> TokenizeParams:
        return TokenizeParams(add_special_tokens=self.add_special_tokens)

    async def serve(self, core: InferenceCore, call: CallContext) -> Answer[Tokenized]:
        return await core.tokenize(
            as_list(self.inputs), self.task_params(), model=self.model, call=call
        )


class TokenizeResponse(TaskResponse):
    results: list[Tokenized] = Field(
        description=(
            "Per input, its whole tokenization (never truncated): ids, token strings, character "
            "offsets ([start, end), null for added special tokens and for tokenizers that "
            "cannot tell), which tokens are special, model_tokens (what the model reads of the "
            "text: special tokens added, cut at max_length) and the model's max_length."
        )
    )


class DetokenizeRequest(TaskRequest):
    model: str | None = MODEL_FIELD
    inputs: TokenIdLists = Field(
        description=(
            "Lists of token ids of the model's own tokenizer, one text each. An id outside its "
            "vocabulary answers 422 naming it."
        )
    )
    skip_special_tokens: bool = Field(
        default=True, description="Leave special tokens ([CLS], [PAD]) out of the text."
    )

    def task_params(self) -> DetokenizeParams:
        return DetokenizeParams(skip_special_tokens=self.skip_special_tokens)

    async def serve(self, core: InferenceCore, call: CallContext) -> Answer[str]:
        return await core.detokenize(self.inputs, self.task_params(), model=self.model, call=call)


class DetokenizeResponse(TaskResponse):
    results: list[str] = Field(description="One text per id list, in order.")
