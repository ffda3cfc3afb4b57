from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field, field_validator

from app.core import Answer, CallContext, InferenceCore
from app.schemas.common import (
    TaskOptions,
    TaskResponse,
    Text,
    TextTaskRequest,
    as_list,
    bounded_list,
)
from app.tasks.fill_mask import DEFAULT_TOP_K, FillMaskParams, MaskFill

MAX_TARGETS = 64
MAX_TARGET_CHARS = 64
MAX_TOP_K = 100
Target = Annotated[Text, Field(max_length=MAX_TARGET_CHARS)]


class FillMaskOptions(TaskOptions):
    """Each input holds the model's mask token exactly once ([MASK] for BERT, <mask> for
    RoBERTa: GET /v1/models names it); an input without it answers 422."""

    top_k: int = Field(
        default=DEFAULT_TOP_K, ge=1, le=MAX_TOP_K, description="How many tokens per input."
    )
    targets: (
        Annotated[
            list[Target],
            BeforeValidator(bounded_list),
            Field(min_length=1, max_length=MAX_TARGETS),
        ]
        | None
    ) = Field(
        default=None,
        description=(
            f"Score only these tokens (at most {MAX_TARGETS}, distinct, each one token of the "
            "model's vocabulary); scores stay probabilities over the whole vocabulary."
        ),
    )

    @field_validator("targets")
    @classmethod
    def _distinct(cls, targets: list[str] | None) -> list[str] | None:
        if targets is None:
            return None
        repeated = sorted({t for t in targets if targets.count(t) > 1})
        if repeated:
            raise ValueError(f"targets {repeated} appear more than once; send each target once")
        return targets

    def task_params(self) -> FillMaskParams:
        return FillMaskParams(
            top_k=self.top_k, targets=tuple(self.targets) if self.targets else None
        )


class FillMaskRequest(FillMaskOptions, TextTaskRequest):
    __doc__ = FillMaskOptions.__doc__

    async def serve(self, core: InferenceCore, call: CallContext) -> Answer[list[MaskFill]]:
        return await core.fill_mask(
            as_list(self.inputs), self.task_params(), model=self.model, call=call
        )


class FillMaskResponse(TaskResponse):
    results: list[list[MaskFill]]
