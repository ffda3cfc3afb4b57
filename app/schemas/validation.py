"""Pydantic's validation errors as the contract's errors: a field path and what was wrong.

Used for request bodies (the native routes) and for a surface's parameters validated with a
task's options model (the Hugging Face API, the Open Inference Protocol), so a bad value reads
the same on every surface.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from app.errors import InvalidInput, InvalidJSON, PayloadTooLarge, ServeError
from app.schemas.common import TOO_MANY_ITEMS

INVALID_JSON_MESSAGE = (
    "request body is not valid JSON: send UTF-8 encoded JSON (at most a few hundred levels "
    'deep) like {"inputs": "..."} with Content-Type: application/json'
)
BODY_SHAPE_MESSAGE = (
    'request body must be a JSON object like {"inputs": "..."}, sent with '
    "Content-Type: application/json"
)

# Union branches and validators show up in pydantic's error locations
# ("function-after[check_text(), str]", "QAInput"): a client only needs the field path.
_TYPE_NAMES = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})
_FIELD = re.compile(r"[a-z_][a-z0-9_]*")
MAX_PROBLEMS_SHOWN = 3


def field_path(loc: Sequence[int | str], under: str = "") -> str:
    """('body', 'inputs', 'function-after[...]', 1) -> 'inputs[1]'; `under` names what the
    location is inside of (('top_k',) under "parameters" -> 'parameters.top_k')."""
    path = under
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _FIELD.fullmatch(part) and part not in _TYPE_NAMES:
            path += f".{part}" if path else part
    return path or "body"


def body_is_not_an_object(errors: Sequence[Any]) -> bool:
    return any(
        field_path(err.get("loc", ())) == "body" and str(err.get("type", "")).endswith("_type")
        for err in errors
    )


def validation_problems(errors: Sequence[Any], under: str = "") -> str:
    """Readable `field: problem` lines, the first few only.

    A union (a text or a list of texts) reports a type mismatch for each branch it did not
    take; those are noise when another branch got further, so they are dropped then.
    """
    mismatches = [e for e in errors if str(e.get("type", "")).endswith("_type")]
    relevant = [e for e in errors if e not in mismatches] or mismatches
    by_field: dict[str, list[str]] = {}
    for err in relevant:
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        messages = by_field.setdefault(field_path(err.get("loc", ()), under), [])
        if message not in messages:
            messages.append(message)
    problems = [f"{field}: {' or '.join(msgs)}" for field, msgs in by_field.items()]
    shown = "; ".join(problems[:MAX_PROBLEMS_SHOWN])
    hidden = len(problems) - MAX_PROBLEMS_SHOWN
    return shown + (f"; and {hidden} more" if hidden > 0 else "")


def request_error(errors: Sequence[Any]) -> ServeError:
    """The error a request body's validation errors answer."""
    kinds = {str(err.get("type", "")) for err in errors}
    if "json_invalid" in kinds:
        return InvalidJSON(INVALID_JSON_MESSAGE)
    if body_is_not_an_object(errors):
        return InvalidInput(BODY_SHAPE_MESSAGE)
    if TOO_MANY_ITEMS in kinds:
        too_many = [e for e in errors if e.get("type") == TOO_MANY_ITEMS]
        return PayloadTooLarge(validation_problems(too_many) + "; split the request")
    return InvalidInput(validation_problems(errors) + " (see /docs for the schema)")


OptionsT = TypeVar("OptionsT", bound=BaseModel)


def _raise_for(errors: Sequence[Any], where: str) -> NoReturn:
    problems = validation_problems(errors, where)
    if any(err.get("type") == TOO_MANY_ITEMS for err in errors):
        raise PayloadTooLarge(f"{problems}; split the request")
    raise InvalidInput(problems)


def parse_options(kind: type[OptionsT], values: Mapping[str, Any], where: str) -> OptionsT:
    """A task's options from a surface's parameters; errors name the field under `where`
    (e.g. "parameters.top_k: ...")."""
    try:
        return kind.model_validate(values)
    except ValidationError as exc:
        _raise_for(exc.errors(), where)


@functools.cache
def _adapter(kind: Any) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def parse_as(kind: Any, value: Any, where: str) -> Any:
    """`value` validated as the type `kind` (e.g. TextInputs); errors named under `where`."""
    try:
        return _adapter(kind).validate_python(value)
    except ValidationError as exc:
        _raise_for(exc.errors(), where)
