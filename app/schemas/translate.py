from __future__ import annotations

from pydantic import BaseModel, Field

from app.schemas.common import TaskRequest, TaskResponse, TextInputs


class TranslateRequest(TaskRequest):
    inputs: TextInputs
    source_lang: str | None = Field(
        default=None, min_length=2, max_length=16, description="Omit to use any model for target."
    )
    target_lang: str = Field(min_length=2, max_length=16)
    max_new_tokens: int = Field(default=256, ge=1, le=1024)


class TranslationOut(BaseModel):
    translation_text: str


class TranslateResponse(TaskResponse):
    results: list[TranslationOut]
