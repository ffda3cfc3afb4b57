"""Text Embeddings Inference's `POST /rerank`: the request and the answer (its error shape is
in app/protocols/tei.py).

No model logic. TEI (router/src/http/types.rs) takes `{"query", "texts", "raw_scores": false,
"return_text": false, "truncate": false, "truncation_direction": "Right"}` and answers every
text as `{"index", "score", "text"?}`, best first. Here, as there, `truncate: true` cuts each
text to what fits the model's window with the query (the text's start kept, or its end with
truncation_direction Left); the query is never cut. Without it TEI refuses a text past the
window, while here a long text is scored in overlapping windows, its best window counting
(each result says how many, `windows`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.common import Text, TextList
from app.schemas.rerank import DocumentFacts, document_facts
from app.tasks.rerank import RankedDocument, RerankParams, TruncationDirection


class TEIRerankRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    query: Text
    texts: TextList
    raw_scores: bool = Field(
        default=False, description="The model's logit (the semantic method: the cosine)."
    )
    return_text: bool = False
    truncate: bool | None = Field(
        default=False,
        description=(
            "Cut each text to what fits the model's window with the query. Otherwise a long "
            "text is scored in overlapping windows, the best counting."
        ),
    )
    truncation_direction: Literal["Right", "Left", "right", "left"] = "Right"
    model: str | None = Field(
        default=None,
        min_length=1,
        description="Extension (TEI serves one model): a catalog rerank model, else the default.",
    )

    @property
    def direction(self) -> TruncationDirection:
        return "left" if self.truncation_direction.lower() == "left" else "right"

    def task_params(self) -> RerankParams:
        return RerankParams(
            raw_scores=self.raw_scores,
            fit_window=bool(self.truncate),
            truncation_direction=self.direction,
        )


class TEIRank(DocumentFacts):
    index: int
    score: float
    text: str | None = Field(default=None, description="The text, when return_text.")


def tei_ranks(
    ranked: list[RankedDocument], texts: list[str], return_text: bool
) -> list[dict[str, Any]]:
    """TEI's answer: every text best first."""
    out = []
    for doc in ranked:
        rank: dict[str, Any] = {"index": doc.index, "score": doc.score}
        if return_text:
            rank["text"] = texts[doc.index]
        out.append({**rank, **document_facts(doc)})
    return out
