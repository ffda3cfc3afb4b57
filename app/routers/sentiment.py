from __future__ import annotations

from fastapi import APIRouter, Request

from app.registry.spec import TaskName
from app.responses import JSONResponse
from app.routers.common import TASK_ROUTE_OPTIONS, answer, as_list, check_limits, registry_of, run
from app.schemas.sentiment import SentimentRequest, SentimentResponse

router = APIRouter(tags=["tasks"])


@router.post("/v1/sentiment", response_model=SentimentResponse, **TASK_ROUTE_OPTIONS)
async def sentiment(request: Request, body: SentimentRequest) -> JSONResponse:
    texts = as_list(body.inputs)
    check_limits(request, len(texts), texts)
    model = registry_of(request).for_task(TaskName.SENTIMENT, body.model)
    return answer(model, await run(request, model, texts, None))
