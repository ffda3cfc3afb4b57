"""Pieces shared by every task's request and response models."""

from __future__ import annotations

import re
from abc import abstractmethod
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from app.core import Answer, CallContext, InferenceCore
from app.settings import MAX_LIST_ITEMS

# Characters that show nothing: whitespace, control (Cc) and format (Cf) characters such as
# zero-width spaces, direction marks, the BOM and tag characters.
_VISIBLE = re.compile(
    "[^\\s\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\ufeff\ufff9-\ufffb\U000e0000-\U000e007f]"
)
TOO_MANY_ITEMS = "too_many_items"  # the validation error the handler answers with 413


_ASCII_DIGITS = re.compile(r"[0-9]{1,9}")


def header_int(value: str) -> int | None:
    """A header's whole number: 1 to 9 ASCII digits, else None. str.isdigit() would also take
    "²" and "١٢٣", which int() then rejects or reads."""
    return int(value) if _ASCII_DIGITS.fullmatch(value) else None


def check_utf8(text: str) -> str:
    """Text a tokenizer can read: no unpaired surrogates (empty is allowed)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"text holds an unpaired surrogate (U+{ord(text[exc.start]):04X}) at character "
            f"{exc.start}; send valid Unicode (UTF-8) text"
        ) from None
    return text


def check_text(text: str) -> str:
    """Text a model can read: encodable as UTF-8 and with something visible in it."""
    check_utf8(text)
    if _VISIBLE.search(text) is None:
        raise ValueError(
            "text must not be empty or only whitespace, control or zero-width characters"
        )
    return text


def bounded_list(value: Any) -> Any:
    """Reject absurdly long lists before any item is validated (each costs event-loop time)."""
    if isinstance(value, list) and len(value) > MAX_LIST_ITEMS:
        raise PydanticCustomError(
            TOO_MANY_ITEMS,
            "{count} items; no list may hold more than {limit}",
            {"count": len(value), "limit": MAX_LIST_ITEMS},
        )
    return value


Text = Annotated[str, AfterValidator(check_text)]
TextList = Annotated[list[Text], BeforeValidator(bounded_list), Field(min_length=1)]
TextInputs = Text | TextList


def as_list(inputs: Any) -> list[Any]:
    return inputs if isinstance(inputs, list) else [inputs]


class TaskOptions(BaseModel):
    """A task's options besides its inputs: a native route's fields, and what the other
    surfaces validate their parameters with (app/schemas/validation.py parse_options)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    def task_params(self) -> Any:
        """What the task needs besides the items; shared by every item of the request."""
        return None


class TaskRequest(TaskOptions):
    """A native task request: its options, the model, and the inputs."""

    model: str | None = Field(
        default=None, description="Catalog model name; omit for the task's default model."
    )
    inputs: Any

    def task_items(self) -> list[Any]:
        """One item per input, in order: what the task encodes."""
        return as_list(self.inputs)

    @abstractmethod
    async def serve(self, core: InferenceCore, call: CallContext) -> Answer[Any]:
        """The core's method for this task, with this request's inputs and options."""


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
