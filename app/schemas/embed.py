from __future__ import annotations

from pydantic import Field

from app.core import Answer, CallContext, InferenceCore
from app.schemas.common import TaskOptions, TaskResponse, TextTaskRequest, as_list
from app.tasks.embed import CountedEmbedding, EmbedParams


class EmbedOptions(TaskOptions):
    normalize: bool | None = Field(
        default=None, description="L2-normalise; omit for the model's own default."
    )

    def task_params(self) -> EmbedParams:
        return EmbedParams(normalize=self.normalize)


class EmbedRequest(EmbedOptions, TextTaskRequest):
    async def serve(
        self, core: InferenceCore, call: CallContext
    ) -> Answer[list[float] | CountedEmbedding]:
        return await core.embed(
            as_list(self.inputs), self.task_params(), model=self.model, call=call
        )


class EmbedResponse(TaskResponse):
    results: list[list[float]]
