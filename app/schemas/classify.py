from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field, field_validator

from app.core import Answer, CallContext, InferenceCore
from app.schemas.common import (
    TaskOptions,
    TaskResponse,
    Text,
    TextTaskRequest,
    as_list,
    bounded_list,
)
from app.spec import check_template
from app.tasks.classification import DEFAULT_HYPOTHESIS_TEMPLATE, ClassifyParams, LabelScore

MAX_LABELS = 64
MAX_LABEL_CHARS = 256
Label = Annotated[Text, Field(max_length=MAX_LABEL_CHARS)]


class ClassifyOptions(TaskOptions):
    candidate_labels: (
        Annotated[
            list[Label],
            BeforeValidator(bounded_list),
            Field(min_length=1, max_length=MAX_LABELS),
        ]
        | None
    ) = Field(
        default=None,
        description=(
            f"Labels for zero-shot classification: at most {MAX_LABELS}, distinct, "
            f"each at most {MAX_LABEL_CHARS} characters."
        ),
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

    @field_validator("candidate_labels")
    @classmethod
    def _distinct(cls, labels: list[str] | None) -> list[str] | None:
        if labels is None:
            return None
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"labels {repeated} appear more than once; send each label once")
        return labels

    def task_params(self) -> ClassifyParams:
        return ClassifyParams(
            candidate_labels=tuple(self.candidate_labels) if self.candidate_labels else None,
            multi_label=self.multi_label,
            top_k=self.top_k,
            hypothesis_template=self.hypothesis_template,
        )


class ClassifyRequest(ClassifyOptions, TextTaskRequest):
    async def serve(self, core: InferenceCore, call: CallContext) -> Answer[list[LabelScore]]:
        return await core.classify(
            as_list(self.inputs), self.task_params(), model=self.model, call=call
        )


class ClassifyResponse(TaskResponse):
    results: list[list[LabelScore]]
