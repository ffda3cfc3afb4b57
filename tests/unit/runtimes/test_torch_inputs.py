"""Which inputs TorchBackend passes a model: the names its forward() really takes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from app.runtimes.torch import accepted_inputs


def forward(input_ids: Any, attention_mask: Any = None, **kwargs: Any) -> Any:
    outputs = (input_ids, attention_mask)  # a local: never an input name
    return outputs


def decorated(function: Callable[..., Any]) -> Callable[..., Any]:
    """As transformers 5 wraps forward(): a wrapper whose own code takes *args, **kwargs."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    return wrapper


def test_accepted_inputs_are_the_signatures_not_the_code_objects() -> None:
    assert {"input_ids", "attention_mask"} <= accepted_inputs(forward)
    assert "outputs" not in accepted_inputs(forward)


def test_a_wrapped_forward_still_takes_its_inputs() -> None:
    accepted = accepted_inputs(decorated(decorated(forward)))
    assert {"input_ids", "attention_mask"} <= accepted
    assert "token_type_ids" not in accepted
