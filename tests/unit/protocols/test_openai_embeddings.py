from __future__ import annotations

import base64

import numpy as np
import pytest
from pydantic import ValidationError

from app.protocols.openai_embeddings import (
    EmbeddingsRequest,
    embeddings_answer,
    encode_base64,
    openai_error_body,
)


@pytest.mark.parametrize(
    ("value", "items"),
    [
        ("one", ["one"]),
        (["a", "b"], ["a", "b"]),
        ([1, 2, 3], [[1, 2, 3]]),
        ([[1, 2], [3]], [[1, 2], [3]]),
    ],
)
def test_every_input_form_becomes_a_list(value, items) -> None:
    assert EmbeddingsRequest(model="m", input=value).items() == items


@pytest.mark.parametrize("value", ["", [], [[]], [-1], ["a", 1], {"text": "a"}])
def test_bad_inputs_are_refused(value) -> None:
    with pytest.raises(ValidationError):
        EmbeddingsRequest(model="m", input=value)


def test_base64_is_little_endian_float32_as_the_client_decodes_it() -> None:
    vector = [0.1, -0.2, 1 / 3, 12345.678]
    decoded = np.frombuffer(base64.b64decode(encode_base64(vector)), dtype="float32")
    assert decoded.tolist() == np.asarray(vector, dtype=np.float32).tolist()


def test_answer_shape() -> None:
    answer = embeddings_answer("m", [[1.0, 0.0], [0.0, 1.0]], "float", 7)
    assert answer == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [1.0, 0.0]},
            {"object": "embedding", "index": 1, "embedding": [0.0, 1.0]},
        ],
        "model": "m",
        "usage": {"prompt_tokens": 7, "total_tokens": 7},
    }
    assert isinstance(embeddings_answer("m", [[1.0]], "base64", 1)["data"][0]["embedding"], str)


@pytest.mark.parametrize(
    ("status", "message", "kind", "param"),
    [
        (404, "no model named 'x'", "invalid_request_error", None),
        (422, "dimensions: must be at least 1", "invalid_request_error", "dimensions"),
        (422, "input.0: too short", "invalid_request_error", "input"),
        (422, "input[2]: too short", "invalid_request_error", "input"),
        (422, "no model serves this: dimensions too", "invalid_request_error", None),
        (401, "missing API key", "authentication_error", None),
        (429, "queue full", "rate_limit_error", None),
        (503, "not ready", "server_error", None),
    ],
)
def test_error_body_is_openai_shaped(status, message, kind, param) -> None:
    body = openai_error_body(status, "some_code", message)
    assert body == {"error": {"message": message, "type": kind, "param": param,
                              "code": "some_code"}}  # fmt: skip
