"""The rerank APIs of Cohere and Jina (`POST /v1/rerank`, `POST /v2/rerank`): the request, the
answer, the error shape.

Pure protocol code, no model logic. Read from the clients that call them:

- cohere 7.3.1, `ClientV2.rerank` (v2/raw_client.py): POST v2/rerank with `model`, `query`,
  `documents` (strings), and only when set `top_n`, `max_tokens_per_doc`, `relevant_spans`,
  `priority`; it parses `{"id"?, "results": [{"index", "relevance_score"}], "meta"?}` and
  raises one typed error per status (400 BadRequestError, 401 UnauthorizedError, 404
  NotFoundError, 422 UnprocessableEntityError, 429 TooManyRequestsError, 500
  InternalServerError, 503 ServiceUnavailableError, 504 GatewayTimeoutError, ...) holding the
  JSON body, which Cohere's API writes as `{"message": "..."}` (core/api_error.py takes any
  JSON; a body that is not JSON becomes a bare ApiError).
- cohere 7.3.1, `Client.rerank` (raw_base_client.py): POST v1/rerank with `documents` as
  strings or objects (a `text` and other string fields), `rank_fields`, `return_documents`,
  `max_chunks_per_doc`; results may carry `document`.
- Jina's rerank API (POST /v1/rerank): `model`, `query`, `documents` (strings or
  `{"text": ...}`), `top_n`, `return_documents` (default true); the answer has `model`,
  `usage.total_tokens` and each result's `document: {"text"}`; errors come as FastAPI's
  `{"detail": "..."}`, which clients built for it read.

So one request schema serves both paths; `return_documents` defaults to Jina's true on
/v1/rerank and to false on /v2/rerank (Cohere v2 returns no documents), and the error body is
`{"message"}` on /v2/rerank and `{"message", "detail"}` (the same text) on /v1/rerank. A field
the clients may send that is not served here (`rank_fields` other than text, `relevant_spans`
enabled, a `priority` other than 0) answers 422 naming it; any other unknown field answers 422
naming it too.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.errors import InvalidInput
from app.schemas.common import Text
from app.schemas.rerank import (
    DocumentFacts,
    RerankDocument,
    RerankDocuments,
    RerankOptions,
    document_answer,
    document_facts,
    document_text,
)
from app.tasks.rerank import RankedDocument, RerankParams

# Each result's windows of a long document are one model row each: bounded like them.
MAX_CHUNKS_PER_DOC = 4096


class RelevantSpans(BaseModel):
    """Cohere v2's `relevant_spans`: only `mode: disabled` is served (no spans are found)."""

    model_config = ConfigDict(extra="allow")

    mode: Literal["enabled", "disabled"]


class RerankRequest(RerankOptions):
    model: str | None = Field(
        default=None,
        min_length=1,
        description="Catalog name of a rerank model; omit for the catalog's default.",
    )
    query: Text = Field(description="The search query.")
    documents: RerankDocuments = Field(
        description=(
            'Texts, or objects with a "text" (other string fields are given back with it); '
            "each one is scored against the query on its own."
        )
    )
    return_documents: bool | None = Field(
        default=None,
        description=(
            "Give each result's document back. Omitted: true on /v1/rerank (Jina's default), "
            "false on /v2/rerank (Cohere v2 returns none)."
        ),
    )
    rank_fields: list[str] | None = Field(
        default=None,
        description='Cohere v1: documents are ranked on their "text" only; other fields: 422.',
    )
    max_chunks_per_doc: int | None = Field(
        default=None,
        ge=1,
        le=MAX_CHUNKS_PER_DOC,
        description=(
            "Cohere v1: score at most this many windows of a long document (the rest is not "
            "read, and its result says truncated)."
        ),
    )
    relevant_spans: RelevantSpans | None = Field(
        default=None, description='Cohere v2: only {"mode": "disabled"}; enabled answers 422.'
    )
    priority: int | None = Field(
        default=None,
        description=(
            "Cohere v2: every request is served first come, first served, as Cohere's default "
            "priority 0; any other value answers 422."
        ),
    )

    def check_served(self) -> None:
        """Refuse, by name, what the clients may ask for that is not served here."""
        if self.rank_fields is not None and self.rank_fields != ["text"]:
            raise InvalidInput(
                f"rank_fields {self.rank_fields} is not served: documents are ranked on their "
                '"text"; put what should count into it (e.g. "title: ...\\nbody: ...") and '
                'send rank_fields ["text"] or none'
            )
        if self.relevant_spans is not None and self.relevant_spans.mode == "enabled":
            raise InvalidInput(
                "relevant_spans is not served: these models score whole documents; omit it or "
                'send {"mode": "disabled"}'
            )
        if self.priority not in (None, 0):
            raise InvalidInput(
                f"priority {self.priority} is not served: every request is served first come, "
                "first served, as priority 0; omit it or send 0"
            )

    def texts(self) -> list[str]:
        return [document_text(document) for document in self.documents]

    def task_params(self) -> RerankParams:
        return self.rerank_params(max_windows=self.max_chunks_per_doc)


class RerankResultDocument(BaseModel):
    model_config = ConfigDict(extra="allow")

    text: str


class RerankResult(DocumentFacts):
    index: int = Field(description="The document's position in the request's documents.")
    relevance_score: float = Field(
        description="0 to 1 (higher: more relevant); the best window's for a long document."
    )
    document: RerankResultDocument | None = Field(
        default=None, description="The document as sent, when return_documents."
    )


class RerankUsage(BaseModel):
    total_tokens: int = Field(description="Tokens the model read (query and windows included).")


class RerankApiVersion(BaseModel):
    version: str


class RerankTokens(BaseModel):
    input_tokens: int


class RerankMeta(BaseModel):
    api_version: RerankApiVersion
    tokens: RerankTokens


class RerankResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    id: str = Field(description="The request's id (X-Request-Id).")
    model: str = Field(description="The catalog model that served the request.")
    results: list[RerankResult] = Field(description="Best first, at most top_n.")
    usage: RerankUsage
    meta: RerankMeta


def rerank_answer(
    *,
    request_id: str,
    model: str,
    ranked: list[RankedDocument],
    documents: list[RerankDocument],
    return_documents: bool,
    tokens: int,
    version: str,
) -> dict[str, Any]:
    """The answer both clients parse (extra fields are allowed by both)."""
    results = []
    for doc in ranked:
        result: dict[str, Any] = {"index": doc.index, "relevance_score": doc.score}
        if return_documents:
            result["document"] = document_answer(documents[doc.index])
        results.append({**result, **document_facts(doc)})
    return {
        "id": request_id,
        "model": model,
        "results": results,
        "usage": {"total_tokens": tokens},
        "meta": {"api_version": {"version": version}, "tokens": {"input_tokens": tokens}},
    }


class CohereError(BaseModel):
    message: str


class JinaCohereError(BaseModel):
    message: str
    detail: str = Field(description="The same text, where Jina's clients read it.")


def cohere_error_body(message: str) -> dict[str, Any]:
    """Cohere's error body (/v2/rerank)."""
    return {"message": message}


def jina_cohere_error_body(message: str) -> dict[str, Any]:
    """/v1/rerank's error body: Cohere's `message` and Jina's `detail`, the same text."""
    return {"message": message, "detail": message}
