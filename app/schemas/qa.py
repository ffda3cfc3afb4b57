from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from app.core import Answer, CallContext, InferenceCore
from app.schemas.common import TaskOptions, TaskRequest, TaskResponse, Text, bounded_list
from app.tasks.qa import QAItem, QAParams, QAResult


class QAInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: Text
    context: Text


class QAOptions(TaskOptions):
    top_k: int = Field(
        default=1, ge=1, le=20, description="Answers per input; above 1 each result is a list."
    )
    max_answer_len: int = Field(default=15, ge=1, le=512, description="Longest answer in tokens.")

    def task_params(self) -> QAParams:
        return QAParams(top_k=self.top_k, max_answer_len=self.max_answer_len)


class QARequest(QAOptions, TaskRequest):
    inputs: QAInput | Annotated[list[QAInput], BeforeValidator(bounded_list), Field(min_length=1)]

    def task_items(self) -> list[QAItem]:
        pairs = self.inputs if isinstance(self.inputs, list) else [self.inputs]
        return [QAItem(p.question, p.context) for p in pairs]

    async def serve(self, core: InferenceCore, call: CallContext) -> Answer[QAResult]:
        return await core.qa(self.task_items(), self.task_params(), model=self.model, call=call)


class QAResponse(TaskResponse):
    results: list[QAResult]
