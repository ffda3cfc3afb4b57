"""Hugging Face Text Embeddings Inference's routes, in its request and answer shapes
(app/protocols/tei.py); errors on these paths are TEI's {"error", "error_type"}.

TEI serves one model and its requests name none: these routes use the catalog's default embed
model (GET /v1/models marks it "default"); /rerank its default rerank model
(app/protocols/tei_rerank.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from app.protocols.tei import (
    TEIDecodeRequest,
    TEIError,
    TEIToken,
    TEITokenizeRequest,
    tei_tokens,
)
from app.protocols.tei_embed import TEIEmbedRequest, TEIEmbedSparseRequest, TEISparseValue
from app.protocols.tei_rerank import TEIRank, TEIRerankRequest, tei_ranks
from app.responses import JSONResponse
from app.routers.common import answer_headers, core_of, serving, timing_headers
from app.schemas.common import as_list
from app.tasks.tokens import DetokenizeParams, TokenizeParams

router = APIRouter(tags=["text-embeddings-inference"])

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": TEIError} for code in (401, 404, 413, 422, 429, 500, 503, 504)
}


@router.post(
    "/tokenize",
    response_model=list[list[TEIToken]],
    responses=ERRORS,
    response_class=JSONResponse,
    summary="Tokenize inputs (Text Embeddings Inference)",
)
async def tei_tokenize(request: Request, body: TEITokenizeRequest) -> JSONResponse:
    """The default embed model's tokens for each input, untruncated, its prompt first as TEI
    does (`prompt_name`, else the model's default prompt): `text` is the prompted text's own
    characters, `start`/`stop` UTF-8 byte offsets into it, null for the special tokens the
    tokenizer adds."""
    core = core_of(request)
    texts = core.prompted(as_list(body.inputs), body.prompt_name)
    params = TokenizeParams(add_special_tokens=body.add_special_tokens)
    answer = await serving(
        request, lambda core, call: core.tokenize(texts, params, call=call), core
    )
    shaped = [tei_tokens(text, tokens) for text, tokens in zip(texts, answer.results, strict=True)]
    return JSONResponse(shaped, headers=timing_headers(core, answer.times))


@router.post(
    "/decode",
    response_model=list[str],
    responses=ERRORS,
    response_class=JSONResponse,
    summary="Decode input ids (Text Embeddings Inference)",
)
async def tei_decode(request: Request, body: TEIDecodeRequest) -> JSONResponse:
    """The default embed model's text for each list of ids (one list, or a list of them)."""
    params = DetokenizeParams(skip_special_tokens=body.skip_special_tokens, clean_up_spaces=False)
    ids = body.id_lists()
    core = core_of(request)
    answer = await serving(
        request, lambda core, call: core.detokenize(ids, params, call=call), core
    )
    return JSONResponse(answer.results, headers=timing_headers(core, answer.times))


# -- rerank (issue 25 item 1) ----------------------------------------------------------------


@router.post(
    "/rerank",
    response_model=list[TEIRank],
    responses=ERRORS,
    response_class=JSONResponse,
    summary="Rerank texts by relevance to a query (Text Embeddings Inference)",
)
async def tei_rerank(request: Request, body: TEIRerankRequest) -> JSONResponse:
    """The catalog's default rerank model (or `model`, an extension) scores every text against
    the query, best first. A text longer than the model's window is scored in windows, the best
    counting, unless `truncate` cuts it to one (the query is never cut)."""
    params = body.task_params()
    core = core_of(request)
    answer = await serving(
        request,
        lambda core, call: core.rerank(body.query, body.texts, params, model=body.model, call=call),
        core,
    )
    shaped = tei_ranks(answer.results, body.texts, body.return_text)
    return JSONResponse(shaped, headers=timing_headers(core, answer.times))


# -- embed, embed_sparse (issue 25 items 3 and 4) --------------------------------------------


@router.post(
    "/embed",
    response_model=list[list[float]],
    responses=ERRORS,
    response_class=JSONResponse,
    summary="Embed inputs (Text Embeddings Inference)",
)
async def tei_embed(request: Request, body: TEIEmbedRequest) -> JSONResponse:
    """The catalog's default embed model (or `model`, an extension): one vector per input,
    normalised unless `normalize` is false; X-Truncated-Inputs names the inputs cut."""
    items, params = body.items(), body.task_params()
    core = core_of(request)
    answer = await serving(
        request, lambda core, call: core.embed(items, params, model=body.model, call=call), core
    )
    return JSONResponse(answer.results, headers=answer_headers(core, answer))


@router.post(
    "/embed_sparse",
    response_model=list[list[TEISparseValue]],
    responses=ERRORS,
    response_class=JSONResponse,
    summary="Sparse (SPLADE) embeddings of inputs (Text Embeddings Inference)",
)
async def tei_embed_sparse(request: Request, body: TEIEmbedSparseRequest) -> JSONResponse:
    """The catalog's default embed-sparse model (or `model`): each input's weights as
    {index, value}, sorted by index (the catalog entry's top_k and threshold prune them)."""
    texts, params = as_list(body.inputs), body.task_params()
    core = core_of(request)
    answer = await serving(
        request,
        lambda core, call: core.embed_sparse(texts, params, model=body.model, call=call),
        core,
    )
    return JSONResponse(answer.results, headers=answer_headers(core, answer))
