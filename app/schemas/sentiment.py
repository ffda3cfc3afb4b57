from __future__ import annotations

from app.schemas.common import LabelScore, TaskRequest, TaskResponse, TextInputs


class SentimentRequest(TaskRequest):
    inputs: TextInputs


class SentimentResponse(TaskResponse):
    results: list[LabelScore]
