from __future__ import annotations

from fastapi import APIRouter, Request

from app.registry.spec import TaskName
from app.responses import JSONResponse
from app.routers.common import TASK_ROUTE_OPTIONS, answer, as_list, check_limits, registry_of, run
from app.schemas.summarize import SummarizeRequest, SummarizeResponse
from app.tasks.generation import SummarizeParams, SummarizeTask

router = APIRouter(tags=["tasks"])


@router.post("/v1/summarize", response_model=SummarizeResponse, **TASK_ROUTE_OPTIONS)
async def summarize(request: Request, body: SummarizeRequest) -> JSONResponse:
    texts = as_list(body.inputs)
    check_limits(request, len(texts), texts)
    model = registry_of(request).for_task(TaskName.SUMMARIZE, body.model)
    params = SummarizeParams(min_length=body.min_length, max_length=body.max_length)
    assert isinstance(model.task, SummarizeTask)
    model.task.check(params)
    return answer(model, await run(request, model, texts, params))
