"""OpenAI's embeddings API on our embed models: POST /v1/embeddings."""

from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, Request
from pydantic import BaseModel

from app.protocols.openai_embeddings import (
    EmbeddingsRequest,
    EmbeddingsResponse,
    embeddings_answer,
)
from app.responses import JSONResponse
from app.routers.common import answer_headers, core_of, serving
from app.tasks.embed import CountedEmbedding, EmbedParams, TokenIds

router = APIRouter(tags=["openai"])


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": OpenAIError} for code in (401, 404, 413, 422, 429, 500, 503, 504)
}


@router.post(
    "/v1/embeddings",
    response_model=EmbeddingsResponse,
    responses=ERRORS,
    response_class=JSONResponse,
    summary="Create embeddings (OpenAI-compatible)",
)
async def create_embeddings(request: Request, body: EmbeddingsRequest) -> JSONResponse:
    """Drop-in for OpenAI's `client.embeddings.create`: `model` is a catalog embed model;
    base64 vectors are the little-endian float32 bytes of what /v1/embed returns."""
    items = [x if isinstance(x, str) else TokenIds(tuple(x)) for x in body.items()]
    params = EmbedParams(
        dimensions=body.dimensions,
        count_tokens=True,
        prompt_name=body.prompt_name,
        input_type=body.input_type,
        truncate=body.truncate,
        truncation_direction=body.truncation_direction,
    )
    core = core_of(request)
    answer = await serving(
        request, lambda core, call: core.embed(items, params, model=body.model, call=call), core
    )
    results = cast(list[CountedEmbedding], answer.results)
    return JSONResponse(
        embeddings_answer(
            answer.model,
            [r.embedding for r in results],
            body.encoding_format,
            sum(r.tokens for r in results),
        ),
        headers=answer_headers(core, answer),
    )
