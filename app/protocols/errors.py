"""Each surface's error shape, from the one error table (app/errors.py).

The table decides status and type; the surface a path belongs to decides the body its clients
parse: our native ``{"error": {"type", "message"[, "request_id"]}}``, OpenAI's
``{"error": {"message", "type", "param", "code"}}``, and ``{"error": "..."}`` for the Hugging
Face Inference API and the Open Inference Protocol v2, and Text Embeddings Inference's
``{"error", "error_type"}`` on its own paths, and on the rerank routes Cohere's
``{"message"}`` (/v2/rerank) or Cohere's and Jina's at once, ``{"message", "detail"}``
(/v1/rerank). Every producer of an HTTP error (the
exception handlers, the key check, the body limit, the read deadline, the HTTP protocol
itself) builds its body here, once, so auth, limits, deadlines, validation and unknown routes
fail the same way on every surface. The gRPC surface maps the same table to status codes
(app/grpc_server.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from app.errors import error_body
from app.protocols.openai_completions import CHAT_FIELDS, COMPLETIONS_FIELDS
from app.protocols.openai_embeddings import REQUEST_FIELDS as EMBEDDINGS_FIELDS
from app.protocols.openai_embeddings import openai_error_body
from app.protocols.rerank import cohere_error_body, jina_cohere_error_body
from app.protocols.tei import tei_error_body

Shaper = Callable[[int, str, str, str | None], dict[str, Any]]
Header = tuple[bytes, bytes]

# Native error types that come out the same for any retry: the OpenAI client retries every
# 5xx unless told not to, which would send a poison input three times.
NOT_RETRYABLE = frozenset({"inference_failed"})
# OpenAI's routes, and the request fields an error's `param` may name on each.
OPENAI_FIELDS = {
    "/v1/embeddings": EMBEDDINGS_FIELDS,
    "/v1/completions": COMPLETIONS_FIELDS,
    "/v1/chat/completions": CHAT_FIELDS,
}
OPENAI_PATHS = frozenset(OPENAI_FIELDS)
PLAIN_PREFIXES = ("/hf/", "/v2/")
# Text Embeddings Inference's routes (app/routers/tei.py), by exact path.
TEI_PATHS = frozenset({"/tokenize", "/decode", "/rerank", "/embed", "/embed_sparse"})
# Rerank in Cohere's shape (/v2/rerank, under the v2 prefix all the same) and in Cohere's and
# Jina's at once (/v1/rerank: {"message", "detail"}, the same text), app/protocols/rerank.py.
COHERE_PATHS = frozenset({"/v2/rerank"})
JINA_COHERE_PATHS = frozenset({"/v1/rerank"})


def native(status: int, kind: str, message: str, request_id: str | None) -> dict[str, Any]:
    return error_body(kind, message, request_id)


def plain(status: int, kind: str, message: str, request_id: str | None) -> dict[str, Any]:
    """The Hugging Face Inference API's and the Open Inference Protocol's error body."""
    return {"error": message}


def openai_shaper(fields: frozenset[str]) -> Shaper:
    """OpenAI's envelope for one route: `param` names one of its request's fields."""

    def openai(status: int, kind: str, message: str, request_id: str | None) -> dict[str, Any]:
        return openai_error_body(status, kind, message, fields)

    return openai


OPENAI_SHAPERS = {path: openai_shaper(fields) for path, fields in OPENAI_FIELDS.items()}


def tei(status: int, kind: str, message: str, request_id: str | None) -> dict[str, Any]:
    return tei_error_body(status, message)


def cohere(status: int, kind: str, message: str, request_id: str | None) -> dict[str, Any]:
    return cohere_error_body(message)


def jina_cohere(status: int, kind: str, message: str, request_id: str | None) -> dict[str, Any]:
    return jina_cohere_error_body(message)


def shaper_for(path: str) -> Shaper:
    """The error shape of the surface `path` belongs to."""
    if path in OPENAI_SHAPERS:
        return OPENAI_SHAPERS[path]
    if path in COHERE_PATHS:
        return cohere
    if path in JINA_COHERE_PATHS:
        return jina_cohere
    if path in TEI_PATHS:
        return tei
    if path == "/v2" or path.startswith(PLAIN_PREFIXES):
        return plain
    return native


def error_answer(
    path: str, status: int, kind: str, message: str, request_id: str | None = None
) -> tuple[bytes, list[Header]]:
    """The body of an error on `path`, and headers its surface adds (content type included)."""
    shaper = shaper_for(path)
    headers: list[Header] = [(b"content-type", b"application/json")]
    if path in OPENAI_PATHS and kind in NOT_RETRYABLE:
        headers.append((b"x-should-retry", b"false"))
    return orjson.dumps(shaper(status, kind, message, request_id)), headers
