from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from app.schemas.common import TaskResponse, Text, TextTaskRequest
from app.spec import check_template
from app.tasks.classification import DEFAULT_HYPOTHESIS_TEMPLATE, ClassifyParams, LabelScore


class ClassifyRequest(TextTaskRequest):
    candidate_labels: Annotated[list[Text], Field(min_length=1, max_length=64)] | None = Field(
        default=None, description="Labels for zero-shot classification (NLI models)."
    )
    multi_label: bool = Field(
        default=False, description="Score labels independently (sigmoid) instead of a softmax."
    )
    top_k: int | None = Field(default=None, ge=1, description="Keep the k best labels.")
    hypothesis_template: str | None = Field(
        default=None,
        max_length=512,
        description=(
            "Zero-shot hypothesis with exactly one {} where each candidate label goes. "
            f"Omit for the model's own: {DEFAULT_HYPOTHESIS_TEMPLATE!r} for NLI models, the "
            "catalog's template for similarity models."
        ),
    )

    @field_validator("hypothesis_template")
    @classmethod
    def _one_placeholder(cls, value: str | None) -> str | None:
        return None if value is None else check_template(value)

    def task_params(self) -> ClassifyParams:
        return ClassifyParams(
            candidate_labels=tuple(self.candidate_labels) if self.candidate_labels else None,
            multi_label=self.multi_label,
            top_k=self.top_k,
            hypothesis_template=self.hypothesis_template,
        )


class ClassifyResponse(TaskResponse):
    results: list[list[LabelScore]]
