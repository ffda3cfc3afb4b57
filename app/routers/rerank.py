"""Rerank in Jina's and Cohere's shapes: POST /v1/rerank (Jina, Cohere's v1 `Client`) and POST
/v2/rerank (Cohere's `ClientV2`), on the catalog's rerank models (app/protocols/rerank.py).

/v2/rerank shares its prefix with the Open Inference Protocol, but answers errors in Cohere's
shape (app/protocols/errors.py), behind the same keys as every route."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request

from app.logs import REQUEST_ID
from app.protocols.rerank import (
    CohereError,
    JinaCohereError,
    RerankRequest,
    RerankResponse,
    rerank_answer,
)
from app.responses import JSONResponse
from app.routers.common import core_of, serving, timing_headers

router = APIRouter(tags=["rerank"])

CODES = (401, 404, 413, 422, 429, 500, 503, 504)
V1_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": JinaCohereError} for code in CODES}
V2_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": CohereError} for code in CODES}


async def rerank(
    request: Request, body: RerankRequest, version: str, return_documents: bool
) -> JSONResponse:
    body.check_served()
    texts, params = body.texts(), body.task_params()
    core = core_of(request)
    answer = await serving(
        request,
        lambda core, call: core.rerank(body.query, texts, params, model=body.model, call=call),
        core,
    )
    shaped = rerank_answer(
        request_id=REQUEST_ID.get() or str(uuid.uuid4()),
        model=answer.model,
        ranked=answer.results,
        documents=body.documents,
        return_documents=return_documents if body.return_documents is None
        else body.return_documents,
        tokens=answer.tokens,
        version=version,
    )  # fmt: skip
    return JSONResponse(shaped, headers=timing_headers(core, answer.times))


@router.post(
    "/v1/rerank",
    response_model=RerankResponse,
    responses=V1_ERRORS,
    response_class=JSONResponse,
    summary="Rerank documents by relevance to a query (Jina, Cohere v1)",
)
async def rerank_v1(request: Request, body: RerankRequest) -> JSONResponse:
    """Jina's and Cohere v1's rerank: each document scored against the query by a rerank model,
    best first; documents are given back unless `return_documents: false`."""
    return await rerank(request, body, "1", return_documents=True)


@router.post(
    "/v2/rerank",
    response_model=RerankResponse,
    responses=V2_ERRORS,
    response_class=JSONResponse,
    summary="Rerank documents by relevance to a query (Cohere v2)",
)
async def rerank_v2(request: Request, body: RerankRequest) -> JSONResponse:
    """Cohere v2's rerank (`ClientV2.rerank`): each document scored against the query by a
    rerank model, best first; documents are not given back unless `return_documents`."""
    return await rerank(request, body, "2", return_documents=False)
