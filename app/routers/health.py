"""Liveness, readiness and the Prometheus scrape endpoint (left out of request metrics)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.errors import NotReady
from app.metrics import exposition
from app.responses import JSONResponse
from app.routers.common import registry_of

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    registry = registry_of(request)
    if registry.ready:
        return JSONResponse({"status": "ready"})
    waiting = [m["name"] for m in registry.describe() if m["status"] != "ready"]
    state = "draining" if registry.draining else "loading"
    raise NotReady(f"{state}; models not ready: {waiting}")


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    body, content_type = exposition(request.app.state.settings.replica)
    return Response(body, media_type=content_type)
