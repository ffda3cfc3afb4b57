from __future__ import annotations

from app.schemas.common import TaskResponse, TextTaskRequest
from app.tasks.ner import Entity


class NERRequest(TextTaskRequest):
    pass


class NERResponse(TaskResponse):
    results: list[list[Entity]]
