from __future__ import annotations

from app.core import Answer, CallContext, InferenceCore
from app.schemas.common import TaskResponse, TextTaskRequest, as_list
from app.tasks.ner import Entity


class NERRequest(TextTaskRequest):
    async def serve(self, core: InferenceCore, call: CallContext) -> Answer[list[Entity]]:
        return await core.ner(as_list(self.inputs), model=self.model, call=call)


class NERResponse(TaskResponse):
    results: list[list[Entity]]
