"""Each surface's error shape, from the one table: chosen by the surface a path belongs to,
built once where the error is answered (no body is parsed back)."""

from __future__ import annotations

import orjson
import pytest

from app.errors import error_body
from app.protocols.errors import error_answer


def answer(path: str, status: int, kind: str, request_id: str | None = None):
    body, headers = error_answer(path, status, kind, f"input: it was {kind}", request_id)
    return orjson.loads(body), dict(headers)


def test_openai_shape_and_retry_hint() -> None:
    body, headers = answer("/v1/embeddings", 500, "inference_failed", "r1")
    assert body == {"error": {"message": "input: it was inference_failed",
        "type": "server_error", "param": "input", "code": "inference_failed"}}  # fmt: skip
    assert headers[b"x-should-retry"] == b"false"
    busy, headers = answer("/v1/embeddings", 429, "queue_full")
    assert busy["error"]["type"] == "rate_limit_error"
    assert b"x-should-retry" not in headers  # the client's own rule: retry 429
    for kind, status in (("not_ready", 503), ("deadline_exceeded", 504)):
        retryable, headers = answer("/v1/embeddings", status, kind)
        assert retryable["error"]["type"] == "server_error"
        assert b"x-should-retry" not in headers  # the client's own rule: retry 5xx
    assert answer("/v1/embeddings", 401, "unauthorized")[0]["error"]["type"] == (
        "authentication_error"
    )


@pytest.mark.parametrize("path", ["/hf/models/m", "/hf/tasks/x", "/v2", "/v2/models/m/infer"])
def test_plain_error_string(path: str) -> None:
    body, headers = answer(path, 404, "model_not_found", "r1")
    assert body == {"error": "input: it was model_not_found"}
    assert headers[b"content-type"] == b"application/json"


@pytest.mark.parametrize("path", ["/v1/embed", "/v2x", "/hf", "/", ""])
def test_native_routes_keep_the_native_shape(path: str) -> None:
    assert answer(path, 422, "invalid_input")[0] == error_body(
        "invalid_input", "input: it was invalid_input"
    )
    assert answer(path, 500, "internal_error", "r1")[0]["error"]["request_id"] == "r1"


@pytest.mark.parametrize(
    ("status", "kind", "error_type"),
    [(422, "invalid_input", "Validation"), (413, "payload_too_large", "Validation"),
     (404, "task_not_served", "Validation"), (429, "queue_full", "Overloaded"),
     (503, "not_ready", "Unhealthy"), (500, "inference_failed", "Backend"),
     (504, "deadline_exceeded", "Backend")],
)  # fmt: skip
@pytest.mark.parametrize("path", ["/tokenize", "/decode"])
def test_text_embeddings_inference_paths(
    path: str, status: int, kind: str, error_type: str
) -> None:
    body, headers = answer(path, status, kind, "r1")
    assert body == {"error": f"input: it was {kind}", "error_type": error_type}
    assert headers[b"content-type"] == b"application/json"


@pytest.mark.parametrize("path", ["/tokenize/x", "/v1/tokenize", "/decoder", "/v1/detokenize"])
def test_only_the_exact_tei_paths_take_its_shape(path: str) -> None:
    assert answer(path, 422, "invalid_input")[0] == error_body(
        "invalid_input", "input: it was invalid_input"
    )
