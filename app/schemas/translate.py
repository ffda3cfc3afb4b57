from __future__ import annotations

from pydantic import Field

from app.schemas.common import TaskResponse, TextTaskRequest
from app.tasks.generation import TranslateParams, Translation


class TranslateRequest(TextTaskRequest):
    source_lang: str | None = Field(
        default=None, min_length=2, max_length=16, description="Omit to use any model for target."
    )
    target_lang: str = Field(min_length=2, max_length=16)
    max_new_tokens: int = Field(default=256, ge=1, le=1024)

    def task_params(self) -> TranslateParams:
        return TranslateParams(
            target_lang=self.target_lang,
            source_lang=self.source_lang,
            max_new_tokens=self.max_new_tokens,
        )


class TranslateResponse(TaskResponse):
    results: list[Translation]
