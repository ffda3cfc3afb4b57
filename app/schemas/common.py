"""Pieces shared by every task's request and response models."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("text must not be empty or only whitespace")
    return text


Text = Annotated[str, AfterValidator(_not_blank)]
TextInputs = Text | Annotated[list[Text], Field(min_length=1)]


class TaskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str | None = Field(
        default=None, description="Catalog model name; omit for the task's default model."
    )


class TaskResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: str = Field(description="The catalog model that served the request.")


class ErrorDetail(BaseModel):
    type: str = Field(description="snake_case error type, e.g. invalid_input.")
    message: str = Field(description="What was wrong and how to fix it.")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class LabelScore(BaseModel):
    label: str
    score: float
