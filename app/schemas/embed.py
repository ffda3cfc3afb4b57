from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from app.core import Answer, CallContext, InferenceCore
from app.schemas.common import TaskOptions, TaskResponse, TextTaskRequest, as_list
from app.tasks.embed import CountedEmbedding, EmbedParams

MAX_PROMPT_NAME_CHARS = 64
TRUNCATED_HEADER = "X-Truncated-Inputs"


class EncoderOptions(TaskOptions):
    """What every encoder route (embed, embed-sparse) takes besides its own fields: the
    model's prompt to put before each input, and how long inputs are cut."""

    prompt_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_PROMPT_NAME_CHARS,
        description=(
            "A prompt of the model's, put before each input (GET /v1/models lists `prompts`); "
            "omit for the model's default prompt, if it has one. An unknown name answers 422 "
            "listing the model's prompts."
        ),
    )
    truncate: bool = Field(
        default=True,
        description=(
            "Cut inputs longer than the model's max_length (the response's "
            f"{TRUNCATED_HEADER} header lists them); false refuses such an input (413) with "
            "its token count and the limit."
        ),
    )
    truncation_direction: Literal["left", "right"] | None = Field(
        default=None,
        description="Which end of a long input is cut; omit for the tokenizer's own (right).",
    )

    def encoder_fields(self) -> dict[str, Any]:
        return {
            "prompt_name": self.prompt_name,
            "truncate": self.truncate,
            "truncation_direction": self.truncation_direction,
        }


class EmbedOptions(EncoderOptions):
    normalize: bool | None = Field(
        default=None, description="L2-normalise; omit for the model's own default."
    )

    def task_params(self) -> EmbedParams:
        return EmbedParams(normalize=self.normalize, **self.encoder_fields())


class EmbedRequest(EmbedOptions, TextTaskRequest):
    async def serve(
        self, core: InferenceCore, call: CallContext
    ) -> Answer[list[float] | CountedEmbedding]:
        return await core.embed(
            as_list(self.inputs), self.task_params(), model=self.model, call=call
        )


class EmbedResponse(TaskResponse):
    results: list[list[float]]
