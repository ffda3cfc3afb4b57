from __future__ import annotations

from pydantic import BaseModel, Field

from app.schemas.common import TaskRequest, TaskResponse, TextInputs


class SummarizeRequest(TaskRequest):
    inputs: TextInputs
    min_length: int = Field(default=0, ge=0, le=1024, description="Fewest summary tokens.")
    max_length: int = Field(default=128, ge=1, le=1024, description="Most summary tokens.")


class SummaryOut(BaseModel):
    summary_text: str


class SummarizeResponse(TaskResponse):
    results: list[SummaryOut]
