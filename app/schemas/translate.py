from __future__ import annotations

from pydantic import Field

from app.core import Answer, CallContext, InferenceCore
from app.schemas.common import TaskOptions, TaskResponse, TextTaskRequest, as_list
from app.tasks.generation import TranslateParams, Translation


class TranslateOptions(TaskOptions):
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


class TranslateRequest(TranslateOptions, TextTaskRequest):
    async def serve(self, core: InferenceCore, call: CallContext) -> Answer[Translation]:
        return await core.translate(
            as_list(self.inputs), self.task_params(), model=self.model, call=call
        )


class TranslateResponse(TaskResponse):
    results: list[Translation]
