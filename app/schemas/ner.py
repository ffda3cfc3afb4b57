from __future__ import annotations

from pydantic import BaseModel

from app.schemas.common import TaskRequest, TaskResponse, TextInputs


class NERRequest(TaskRequest):
    inputs: TextInputs


class EntityOut(BaseModel):
    entity_group: str
    score: float
    word: str
    start: int
    end: int


class NERResponse(TaskResponse):
    results: list[list[EntityOut]]
