from __future__ import annotations

from typing import Annotated

from pydantic import Field

from app.schemas.common import LabelScore, TaskRequest, TaskResponse, Text, TextInputs
from app.tasks.classification import DEFAULT_HYPOTHESIS_TEMPLATE


class ClassifyRequest(TaskRequest):
    inputs: TextInputs
    candidate_labels: Annotated[list[Text], Field(min_length=1, max_length=64)] | None = Field(
        default=None, description="Labels for zero-shot classification (NLI models)."
    )
    multi_label: bool = Field(
        default=False, description="Score labels independently (sigmoid) instead of a softmax."
    )
    top_k: int | None = Field(default=None, ge=1, description="Keep the k best labels.")
    hypothesis_template: str = Field(
        default=DEFAULT_HYPOTHESIS_TEMPLATE,
        max_length=512,
        description="Zero-shot hypothesis; {} is replaced by each candidate label.",
    )


class ClassifyResponse(TaskResponse):
    results: list[list[LabelScore]]
