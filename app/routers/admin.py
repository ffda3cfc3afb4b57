"""The admin API: load, replace and unload models at run time.

Mounted only when NLP_SERVE_ADMIN_API_KEYS is set (otherwise its paths answer 404) and
guarded by those keys alone. A body is one catalog entry, validated exactly like an entry of
the catalog file; the Registry makes the change (docs/scaling.md, "Models at run time").
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request

from app.errors import CatalogError, InvalidInput
from app.registry.catalog import parse_entry
from app.responses import JSONResponse
from app.routers.common import registry_of
from app.schemas.common import ErrorResponse
from app.spec import ModelSpec

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    responses={code: {"model": ErrorResponse} for code in (401, 404, 409, 422, 500, 503)},
)

ENTRY = Body(
    description="One catalog entry, as under `models:` in a catalog file (docs/configuration.md)",
    examples=[{"name": "sentiment-v2", "task": "sentiment", "source": "/models/sentiment-v2"}],
)


def _spec_of(entry: dict[str, Any]) -> ModelSpec:
    try:
        return parse_entry(entry)
    except CatalogError as exc:
        raise InvalidInput(str(exc)) from None


def _described(request: Request, name: str) -> dict[str, Any]:
    return next(m for m in registry_of(request).describe() if m["name"] == name)


@router.post("/models", status_code=201)
async def load_model(request: Request, entry: dict[str, Any] = ENTRY) -> JSONResponse:
    """Load and warm a new model, then serve it (409 if the name is taken)."""
    spec = _spec_of(entry)
    await registry_of(request).add(spec)
    return JSONResponse({"model": _described(request, spec.name)}, status_code=201)


@router.put("/models/{name}")
async def replace_model(request: Request, name: str, entry: dict[str, Any] = ENTRY) -> JSONResponse:
    """Load and warm the new version while the old one serves, then swap them (no request
    fails in between); the old version finishes its queued work and is closed."""
    entry = {**entry, "name": entry.get("name", name)}
    if entry["name"] != name:
        raise InvalidInput(
            f"the entry is named {entry['name']!r} but the path names {name!r}; replacing keeps "
            "the name (load the new name with POST /admin/models instead)"
        )
    spec = _spec_of(entry)
    await registry_of(request).replace(spec)
    return JSONResponse({"model": _described(request, name)})


@router.delete("/models/{name}")
async def unload_model(request: Request, name: str) -> JSONResponse:
    """Stop serving the model at once (new requests 404); its queued and running work
    finishes before it is closed."""
    await registry_of(request).remove(name)
    return JSONResponse({"model": name, "status": "unloaded"})
