from __future__ import annotations

from fastapi import APIRouter, Request

from app.responses import JSONResponse
from app.routers.common import TASK_ROUTE_OPTIONS, serve_texts
from app.schemas.summarize import SummarizeRequest, SummarizeResponse
from app.spec import TaskName
from app.tasks.generation import SummarizeParams

router = APIRouter(tags=["tasks"])


@router.post("/v1/summarize", response_model=SummarizeResponse, **TASK_ROUTE_OPTIONS)
async def summarize(request: Request, body: SummarizeRequest) -> JSONResponse:
    params = SummarizeParams(min_length=body.min_length, max_length=body.max_length)
    return await serve_texts(request, TaskName.SUMMARIZE, body.inputs, body.model, params)
