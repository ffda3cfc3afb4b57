from __future__ import annotations

from fastapi import APIRouter, Request

from app.responses import JSONResponse
from app.routers.common import registry_of

router = APIRouter(tags=["operations"])


@router.get("/v1/models")
async def list_models(request: Request) -> JSONResponse:
    """Every catalog model: task, backend, device, status, method, batching, queue depth."""
    return JSONResponse({"models": registry_of(request).describe()})
