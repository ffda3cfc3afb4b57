from __future__ import annotations

from app.schemas.common import TaskResponse, TextTaskRequest
from app.tasks.classification import LabelScore


class SentimentRequest(TextTaskRequest):
    pass


class SentimentResponse(TaskResponse):
    results: list[LabelScore]
