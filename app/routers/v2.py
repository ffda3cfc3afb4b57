"""Open Inference Protocol v2 (KServe / Triton HTTP): server and model metadata, health, infer.

Infer takes JSON tensors or the binary tensor extension, with any content type (tritonclient
sends none, or application/octet-stream). Errors are {"error": "..."}.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from app import __version__
from app.errors import NotReady
from app.protocols.v2_codec import HEADER_LENGTH, encode_infer_response, parse_infer_request
from app.protocols.v2_tasks import (
    VERSION,
    check_version,
    output_tensors,
    served_metadata,
)
from app.protocols.v2_tasks import infer as infer_task
from app.responses import JSONResponse
from app.routers.common import core_of, registry_of, serving, timing_headers

router = APIRouter(tags=["open inference protocol v2"])
models_router = APIRouter(tags=["open inference protocol v2"])


class V2Error(BaseModel):
    error: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": V2Error} for code in (401, 404, 413, 422, 429, 500, 503, 504)
}
INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "example": {
                    "inputs": [
                        {
                            "name": "TEXT",
                            "shape": [1],
                            "datatype": "BYTES",
                            "data": ["I love this!"],
                        }
                    ]
                }
            },
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "JSON header of Inference-Header-Content-Length bytes, then "
                "the binary tensors it announces",
            },
        },
    }
}


@router.get("/v2")
async def server_metadata() -> JSONResponse:
    return JSONResponse(
        {"name": "nlp-serve", "version": __version__, "extensions": ["binary_tensor_data"]}
    )


@router.get("/v2/health/live")
async def live() -> JSONResponse:
    return JSONResponse({"live": True})


@router.get("/v2/health/ready", responses=ERRORS)
async def ready(request: Request) -> JSONResponse:
    registry = registry_of(request)
    if not registry.ready:
        state = "draining" if registry.draining else "loading"
        raise NotReady(f"the server is {state}; retry shortly")
    return JSONResponse({"ready": True})


def _metadata(request: Request, name: str, version: str | None) -> dict[str, Any]:
    return served_metadata(core_of(request), name, version)


@models_router.get("/v2/models/{name}", responses=ERRORS)
async def model_metadata_route(request: Request, name: str) -> JSONResponse:
    return JSONResponse(_metadata(request, name, None))


@models_router.get("/v2/models/{name}/versions/{version}", responses=ERRORS)
async def model_version_metadata(request: Request, name: str, version: str) -> JSONResponse:
    return JSONResponse(_metadata(request, name, version))


async def _ready(request: Request, name: str, version: str | None) -> JSONResponse:
    registry_of(request).handle(name)  # 404 unknown, 503 not ready
    check_version(name, version)
    return JSONResponse({"name": name, "ready": True})


@models_router.get("/v2/models/{name}/ready", responses=ERRORS)
async def model_ready(request: Request, name: str) -> JSONResponse:
    return await _ready(request, name, None)


@models_router.get("/v2/models/{name}/versions/{version}/ready", responses=ERRORS)
async def model_version_ready(request: Request, name: str, version: str) -> JSONResponse:
    return await _ready(request, name, version)


async def _infer(request: Request, name: str, version: str | None) -> Response:
    core = core_of(request)
    task = core.handle(name).model.spec.task
    check_version(name, version)
    parsed = parse_infer_request(await request.body(), request.headers.get(HEADER_LENGTH))
    answer = await serving(request, lambda core, call: infer_task(core, task, parsed, name, call))
    tensors = output_tensors(task, answer.results)
    body, headers = encode_infer_response(name, VERSION, parsed, tensors)
    return Response(body, headers={**headers, **timing_headers(core, answer.times)})


@models_router.post("/v2/models/{name}/infer", responses=ERRORS, openapi_extra=INFER_BODY)
async def infer(request: Request, name: str) -> Response:
    return await _infer(request, name, None)


@models_router.post(
    "/v2/models/{name}/versions/{version}/infer", responses=ERRORS, openapi_extra=INFER_BODY
)
async def infer_version(request: Request, name: str, version: str) -> Response:
    return await _infer(request, name, version)
