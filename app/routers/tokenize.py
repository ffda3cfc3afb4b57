"""A served model's tokenizer, no model run: POST /v1/tokenize and /v1/detokenize.

Answered like the task routes ({"model", "results"}, Server-Timing's tokenize), with their
limits; the request schema knows its core method (app/schemas/tokenize.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.responses import JSONResponse
from app.routers.common import TASK_ROUTE_OPTIONS, serve_task
from app.schemas.tokenize import (
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeRequest,
    TokenizeResponse,
)

router = APIRouter(tags=["tokenizer"])


@router.post(
    "/v1/tokenize",
    response_model=TokenizeResponse,
    summary="A model's tokens for texts: ids, strings, offsets, and what the model reads",
    **TASK_ROUTE_OPTIONS,
)
async def tokenize(request: Request, body: TokenizeRequest) -> JSONResponse:
    """Any served model's tokenizer (`model`; omitted: the default embed model). Texts are
    tokenized whole; `model_tokens` says how many tokens the model reads of each (special
    tokens added, cut at `max_length`)."""
    return await serve_task(request, body)


@router.post(
    "/v1/detokenize",
    response_model=DetokenizeResponse,
    summary="A model's text for lists of token ids",
    **TASK_ROUTE_OPTIONS,
)
async def detokenize(request: Request, body: DetokenizeRequest) -> JSONResponse:
    """Each list of the model's token ids back to text; an id outside its vocabulary answers
    422 naming it. At most NLP_SERVE_MAX_TOKENS_PER_REQUEST ids per request."""
    return await serve_task(request, body)
