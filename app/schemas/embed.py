from __future__ import annotations

from pydantic import Field

from app.schemas.common import TaskResponse, TextTaskRequest
from app.tasks.embed import EmbedParams


class EmbedRequest(TextTaskRequest):
    normalize: bool | None = Field(
        default=None, description="L2-normalise; omit for the model's own default."
    )

    def task_params(self) -> EmbedParams:
        return EmbedParams(normalize=self.normalize)


class EmbedResponse(TaskResponse):
    results: list[list[float]]
