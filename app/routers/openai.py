"""OpenAI's APIs: embeddings on our embed models (POST /v1/embeddings), completions and chat
completions on our generate models (POST /v1/completions, POST /v1/chat/completions; the
serving side is app/routers/openai_generate.py)."""

from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from app.protocols.openai_completions import (
    ChatCompletionResponse,
    ChatCompletionsRequest,
    CompletionsRequest,
    CompletionsResponse,
)
from app.protocols.openai_embeddings import (
    EmbeddingsRequest,
    EmbeddingsResponse,
    embeddings_answer,
)
from app.responses import JSONResponse
from app.routers import openai_generate
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


STREAM_DOC = {
    "description": (
        "With stream: true, text/event-stream in OpenAI's chunk format: `data: {chunk}` "
        "events, then `data: [DONE]`; an error after the stream started comes as "
        '`data: {"error": {message, type, param, code}}` and ends it.'
    ),
    "content": {"text/event-stream": {}},
}
GENERATE_RESPONSES: dict[int | str, dict[str, Any]] = {**ERRORS, 200: STREAM_DOC}


@router.post(
    "/v1/completions",
    response_model=CompletionsResponse,
    responses=GENERATE_RESPONSES,
    response_class=JSONResponse,
    summary="Complete text prompts (OpenAI-compatible), whole or streamed",
)
async def create_completion(request: Request, body: CompletionsRequest) -> Response:
    """Drop-in for OpenAI's `client.completions.create`: `model` is a catalog generate model.
    Extensions: `top_k`, `repetition_penalty`, `ignore_eos` (vLLM's names)."""
    return await openai_generate.complete(request, body)


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletionResponse,
    responses=GENERATE_RESPONSES,
    response_class=JSONResponse,
    summary="Answer chat messages (OpenAI-compatible), whole or streamed",
)
async def create_chat_completion(request: Request, body: ChatCompletionsRequest) -> Response:
    """Drop-in for OpenAI's `client.chat.completions.create`: `model` is a catalog generate
    model with a chat template (its tokenizer's, or options.chat_template). Extensions:
    `top_k`, `repetition_penalty`, `ignore_eos` (vLLM's names)."""
    return await openai_generate.chat(request, body)
