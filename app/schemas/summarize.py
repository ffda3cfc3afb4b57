from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from app.schemas.common import TaskResponse, TextTaskRequest
from app.tasks.generation import SummarizeParams, Summary


class SummarizeRequest(TextTaskRequest):
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


class SummarizeResponse(TaskResponse):
    results: list[Summary]
