"""Pieces shared by every task's request and response models."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("text must not be empty or only whitespace")
    return text


Text = Annotated[str, AfterValidator(_not_blank)]
TextInputs = Text | Annotated[list[Text], Field(min_length=1)]


def as_list(inputs: Any) -> list[Any]:
    return inputs if isinstance(inputs, list) else [inputs]


class TaskRequest(BaseModel):
    """A task request: it knows its items (one per input) and its task parameters."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str | None = Field(
        default=None, description="Catalog model name; omit for the task's default model."
    )
    inputs: Any

    def task_items(self) -> list[Any]:
        """One item per input, in order: what the task encodes."""
        return as_list(self.inputs)

    def task_params(self) -> Any:
        """What the task needs besides the items; shared by every item of the request."""
        return None

    def texts(self) -> Iterable[str]:
        """Every text the request carries, for the size limits."""
        return self.task_items()


class TextTaskRequest(TaskRequest):
    inputs: TextInputs


class TaskResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: str = Field(description="The catalog model that served the request.")


class ErrorDetail(BaseModel):
    type: str = Field(description="snake_case error type, e.g. invalid_input.")
    message: str = Field(description="What was wrong and how to fix it.")


class ErrorResponse(BaseModel):
    error: ErrorDetail
