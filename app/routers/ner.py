from __future__ import annotations

from fastapi import APIRouter, Request

from app.responses import JSONResponse
from app.routers.common import TASK_ROUTE_OPTIONS, serve_texts
from app.schemas.ner import NERRequest, NERResponse
from app.spec import TaskName

router = APIRouter(tags=["tasks"])


@router.post("/v1/ner", response_model=NERResponse, **TASK_ROUTE_OPTIONS)
async def ner(request: Request, body: NERRequest) -> JSONResponse:
    return await serve_texts(request, TaskName.NER, body.inputs, body.model, None)
