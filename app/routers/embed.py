from __future__ import annotations

from fastapi import APIRouter, Request

from app.registry.spec import TaskName
from app.responses import JSONResponse
from app.routers.common import TASK_ROUTE_OPTIONS, answer, as_list, check_limits, registry_of, run
from app.schemas.embed import EmbedRequest, EmbedResponse
from app.tasks.embed import EmbedParams

router = APIRouter(tags=["tasks"])


@router.post("/v1/embed", response_model=EmbedResponse, **TASK_ROUTE_OPTIONS)
async def embed(request: Request, body: EmbedRequest) -> JSONResponse:
    texts = as_list(body.inputs)
    check_limits(request, len(texts), texts)
    model = registry_of(request).for_task(TaskName.EMBED, body.model)
    return answer(model, await run(request, model, texts, EmbedParams(normalize=body.normalize)))
