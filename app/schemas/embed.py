from __future__ import annotations

from pydantic import Field

from app.schemas.common import TaskRequest, TaskResponse, TextInputs


class EmbedRequest(TaskRequest):
    inputs: TextInputs
    normalize: bool | None = Field(
        default=None, description="L2-normalise; omit for the model's own default."
    )


class EmbedResponse(TaskResponse):
    results: list[list[float]]
