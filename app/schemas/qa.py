from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.common import TaskRequest, TaskResponse, Text


class QAInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: Text
    context: Text


class QARequest(TaskRequest):
    inputs: QAInput | Annotated[list[QAInput], Field(min_length=1)]
    top_k: int = Field(
        default=1, ge=1, le=20, description="Answers per input; above 1 each result is a list."
    )
    max_answer_len: int = Field(default=15, ge=1, le=512, description="Longest answer in tokens.")


class QAAnswer(BaseModel):
    answer: str
    score: float
    start: int = Field(description="Character offset of the answer in the context.")
    end: int = Field(description="Character offset just past the answer: context[start:end].")


class QAResponse(TaskResponse):
    results: list[QAAnswer | list[QAAnswer]]
