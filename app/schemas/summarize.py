from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from app.core import Answer, CallContext, InferenceCore
from app.schemas.common import TaskOptions, TaskResponse, TextTaskRequest, as_list
from app.tasks.generation import SummarizeParams, Summary


class SummarizeOptions(TaskOptions):
    min_length: int = Field(default=0, ge=0, le=1024, description="Fewest summary tokens.")
    max_length: int = Field(default=128, ge=1, le=1024, description="Most summary tokens.")

    @model_validator(mode="after")
    def _min_not_above_max(self) -> Self:
        if self.min_length > self.max_length:
            raise ValueError(
                f"min_length ({self.min_length}) is larger than max_length ({self.max_length}); "
                "make min_length <= max_length"
            )
        return self

    def task_params(self) -> SummarizeParams:
        return SummarizeParams(min_length=self.min_length, max_length=self.max_length)


class SummarizeRequest(SummarizeOptions, TextTaskRequest):
    async def serve(self, core: InferenceCore, call: CallContext) -> Answer[Summary]:
        return await core.summarize(
            as_list(self.inputs), self.task_params(), model=self.model, call=call
        )


class SummarizeResponse(TaskResponse):
    results: list[Summary]
