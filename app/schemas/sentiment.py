from __future__ import annotations

from pydantic import Field

from app.schemas.common import TaskResponse, TextTaskRequest
from app.tasks.classification import SentimentParams, SentimentResult


class SentimentRequest(TextTaskRequest):
    top_k: int = Field(
        default=1,
        ge=1,
        description=(
            "Labels per input, best first, with their softmax scores; above 1 each result is a "
            "list (at most the model's labels, GET /v1/models)."
        ),
    )

    def task_params(self) -> SentimentParams:
        return SentimentParams(top_k=self.top_k)


class SentimentResponse(TaskResponse):
    results: list[SentimentResult]
