from __future__ import annotations

from pydantic import Field

from app.core import Answer, CallContext, InferenceCore
from app.schemas.common import TaskResponse, TextTaskRequest, as_list
from app.schemas.embed import EncoderOptions
from app.tasks.sparse import SparseEmbedParams, SparseValue, SparseVector, TokenValue

MAX_TOP_K = 1_000_000


class SparseEmbedOptions(EncoderOptions):
    """SPLADE vectors: each input's vocabulary weights, kept as {index, value} sorted by index
    (the vocabulary id), with its token too when return_tokens is set."""

    top_k: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TOP_K,
        description=(
            "Keep at most this many of the largest weights per input; omit for the catalog "
            "entry's default (unset: all)."
        ),
    )
    threshold: float | None = Field(
        default=None,
        ge=0,
        description="Keep only weights above this; omit for the catalog's default (0).",
    )
    return_tokens: bool = Field(
        default=False, description="Add each kept id's vocabulary entry as `token`."
    )

    def task_params(self) -> SparseEmbedParams:
        return SparseEmbedParams(
            top_k=self.top_k,
            threshold=self.threshold,
            return_tokens=self.return_tokens,
            **self.encoder_fields(),
        )


class SparseEmbedRequest(SparseEmbedOptions, TextTaskRequest):
    __doc__ = SparseEmbedOptions.__doc__

    async def serve(self, core: InferenceCore, call: CallContext) -> Answer[SparseVector]:
        return await core.embed_sparse(
            as_list(self.inputs), self.task_params(), model=self.model, call=call
        )


class SparseEmbedResponse(TaskResponse):
    results: list[list[TokenValue] | list[SparseValue]] = Field(
        description=(
            "Each input's kept weights sorted by index: {index, value}, or {index, value, "
            "token} with return_tokens."
        )
    )
