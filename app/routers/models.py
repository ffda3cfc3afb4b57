"""GET /v1/models: one body for two readers, our own `models` and OpenAI's list; and
GET /v1/models/{name}, one model in both shapes (the openai SDK's `models.retrieve`)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request

from app.errors import ModelNotFound
from app.responses import JSONResponse
from app.routers.common import registry_of

router = APIRouter(tags=["operations"])

# OpenAI's `created` (a Unix time) for every model: when this process started serving.
STARTED = int(time.time())
OWNER = "nlp-serve"


def openai_model(model: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's model object for one of ours."""
    return {"id": model["name"], "object": "model", "created": STARTED, "owned_by": OWNER}


@router.get("/v1/models")
async def list_models(request: Request) -> JSONResponse:
    """Every catalog model: task, backend, device, status, method, batching, queue depth
    (`models`); and the same names in OpenAI's list shape (`object`, `data`), so the openai
    SDK's `client.models.list()` reads the same answer."""
    models = registry_of(request).describe()
    return JSONResponse(
        {"models": models, "object": "list", "data": [openai_model(m) for m in models]}
    )


@router.get("/v1/models/{name}")
async def get_model(request: Request, name: str) -> JSONResponse:
    """One model: what `models` lists for it, with OpenAI's `id`, `object`, `created` and
    `owned_by` (the SDK's `client.models.retrieve`)."""
    models = registry_of(request).describe()
    for model in models:
        if model["name"] == name:
            return JSONResponse({**model, **openai_model(model)})
    names = sorted(m["name"] for m in models)
    raise ModelNotFound(f"no model named {name!r}; available: {names} (GET /v1/models)")
