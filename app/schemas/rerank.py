"""What every rerank surface takes (Cohere and Jina on /v1/rerank and /v2/rerank, Text
Embeddings Inference on /rerank): the query, the documents, and the typed params of the core's
rerank call. The wire formats themselves are in app/protocols/ (rerank.py, tei_rerank.py)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from app.schemas.common import Text, bounded_list
from app.settings import MAX_LIST_ITEMS
from app.tasks.rerank import RankedDocument, RerankParams, TruncationDirection

# Far above any model's window: a cut past it cuts nothing. Bounded so that the number stays
# a number, never a way around the character and token limits.
MAX_DOC_TOKENS = 1_000_000


class RerankDocumentObject(BaseModel):
    """A document as an object: its text, and (Cohere v1) other string fields, which are
    given back with it when the answer returns documents; only `text` is ranked."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, str] = Field(init=False)

    text: Text


RerankDocument = Text | RerankDocumentObject
RerankDocuments = Annotated[
    list[RerankDocument], BeforeValidator(bounded_list), Field(min_length=1)
]


def document_text(document: RerankDocument) -> str:
    return document if isinstance(document, str) else document.text


def document_answer(document: RerankDocument) -> dict[str, Any]:
    """A document as an answer gives it back: {"text": ...} and the object's other fields."""
    if isinstance(document, str):
        return {"text": document}
    return document.model_dump()


class RerankOptions(BaseModel):
    """The options every rerank surface shares, as the core's typed params."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    top_n: int | None = Field(
        default=None,
        ge=1,
        le=MAX_LIST_ITEMS,
        description="Results to return, best first; omit for every document.",
    )
    max_tokens_per_doc: int | None = Field(
        default=None,
        ge=1,
        le=MAX_DOC_TOKENS,
        description=(
            "Cut each document to this many tokens (its start) before scoring; omit to score "
            "the whole document (a long one in overlapping windows, the best window counting)."
        ),
    )

    def rerank_params(
        self,
        *,
        raw_scores: bool = False,
        fit_window: bool = False,
        truncation_direction: TruncationDirection = "right",
        max_windows: int | None = None,
    ) -> RerankParams:
        return RerankParams(
            top_n=self.top_n,
            raw_scores=raw_scores,
            max_doc_tokens=self.max_tokens_per_doc,
            fit_window=fit_window,
            truncation_direction=truncation_direction,
            max_windows=max_windows,
        )


class DocumentFacts(BaseModel):
    """How a document was read, in each result: the answer's metadata per document."""

    windows: int = Field(
        description=(
            "Windows of the model's length the document was scored in (more than 1: it was "
            "longer than one window; its best window's score counts)."
        )
    )
    truncated: bool = Field(
        description=(
            "The document was cut as the request asked (max_tokens_per_doc, max_chunks_per_doc, "
            "truncate); never cut otherwise."
        )
    )


def document_facts(ranked: RankedDocument) -> dict[str, Any]:
    return {"windows": ranked.windows, "truncated": ranked.truncated}


QueryText = Annotated[Text, Field(description="The search query.")]
