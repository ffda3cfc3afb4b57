from __future__ import annotations

from fastapi import APIRouter, Request

from app.responses import JSONResponse
from app.routers.common import TASK_ROUTE_OPTIONS, serve_texts
from app.schemas.embed import EmbedRequest, EmbedResponse
from app.spec import TaskName
from app.tasks.embed import EmbedParams

router = APIRouter(tags=["tasks"])


@router.post("/v1/embed", response_model=EmbedResponse, **TASK_ROUTE_OPTIONS)
async def embed(request: Request, body: EmbedRequest) -> JSONResponse:
    params = EmbedParams(normalize=body.normalize)
    return await serve_texts(request, TaskName.EMBED, body.inputs, body.model, params)
