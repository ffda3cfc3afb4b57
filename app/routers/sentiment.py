from __future__ import annotations

from fastapi import APIRouter, Request

from app.responses import JSONResponse
from app.routers.common import TASK_ROUTE_OPTIONS, serve_texts
from app.schemas.sentiment import SentimentRequest, SentimentResponse
from app.spec import TaskName

router = APIRouter(tags=["tasks"])


@router.post("/v1/sentiment", response_model=SentimentResponse, **TASK_ROUTE_OPTIONS)
async def sentiment(request: Request, body: SentimentRequest) -> JSONResponse:
    return await serve_texts(request, TaskName.SENTIMENT, body.inputs, body.model, None)
