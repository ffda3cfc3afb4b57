from __future__ import annotations

from pydantic import Field

from app.core import Answer, CallContext, InferenceCore
from app.schemas.common import TaskOptions, TaskResponse, TextTaskRequest, as_list
from app.tasks.classification import SentimentParams, SentimentResult


class SentimentOptions(TaskOptions):
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


class SentimentRequest(SentimentOptions, TextTaskRequest):
    async def serve(self, core: InferenceCore, call: CallContext) -> Answer[SentimentResult]:
        return await core.sentiment(
            as_list(self.inputs), self.task_params(), model=self.model, call=call
        )


class SentimentResponse(TaskResponse):
    results: list[SentimentResult]
