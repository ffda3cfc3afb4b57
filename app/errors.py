"""Typed domain errors and the one table that maps them to HTTP answers.

Every error message says what was wrong and how to fix it. Routers and runtimes raise these;
app/main.py installs the handlers; nothing else decides HTTP status codes.
"""

from __future__ import annotations

from collections.abc import Mapping


class ServeError(Exception):
    """Base of every error the service reports to a client on purpose."""

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})


class InvalidInput(ServeError):
    """The request is well-formed JSON but its content cannot be served."""


class UnsupportedLanguagePair(InvalidInput):
    pass


class QueryTooLong(InvalidInput):
    """A rerank query that leaves a document no room in the model's window: the same for
    every document of the request, so it names none of them."""


class InvalidJSON(ServeError):
    """The body is not JSON at all: bad syntax, not UTF-8, or nested too deep."""


class Unauthorized(ServeError):
    pass


class ModelNotFound(ServeError):
    pass


class TaskNotServed(ServeError):
    """No model in the catalog serves the requested task."""


class PayloadTooLarge(ServeError):
    pass


class QueueFull(ServeError):
    pass


class NotReady(ServeError):
    pass


class ServerBusy(ServeError):
    """As many connections and requests in progress as NLP_SERVE_MAX_CONCURRENCY allows."""


class InvalidHTTPRequest(ServeError):
    """Bytes the HTTP parser could not read as a request (answered by the server itself)."""


class RequestTimeout(ServeError):
    """The request's body did not arrive in time (NLP_SERVE_REQUEST_READ_TIMEOUT_SECONDS)."""

    @classmethod
    def after(cls, seconds: float) -> RequestTimeout:
        return cls(
            f"the request body did not arrive within {seconds:g} s of the request "
            "(NLP_SERVE_REQUEST_READ_TIMEOUT_SECONDS); send it at once"
        )


# Set in the ASGI scope by whoever answered 408 for a body that never came (the HTTP protocol,
# or the read deadline under Ray): the app's read then ends in a disconnect, which is counted
# as the 408 it was, not as a client that left.
READ_TIMED_OUT = "nlp_serve.read_timed_out"


class DeadlineExceeded(ServeError):
    pass


class ClientClosedRequest(ServeError):
    """The client disconnected before the answer was ready; its queued work was dropped."""


class InferenceFailed(ServeError):
    """The model raised on an input that looked valid: a server-side fault."""


class Conflict(ServeError):
    """The request clashes with the serving set (admin API: a name taken, the last model)."""


class ModelLoadFailed(ServeError):
    """Admin API: the entry names something that cannot be served (missing weights, wrong
    head, no tokenizer); the serving set is unchanged."""


class ModelLoadCrashed(ServeError):
    """Admin API: loading or warming up raised unexpectedly (a server-side fault); the
    serving set is unchanged and the exception is in the server log."""


class CatalogError(Exception):
    """The model catalog is wrong; raised at start-up, never mapped to HTTP."""


class ModelLoadError(Exception):
    """A catalog model could not be loaded; raised at start-up, names the model."""


# The one table: error class -> (HTTP status, snake_case type). Lookup walks the MRO, so a
# subclass without its own row answers like its parent.
ERROR_TABLE: dict[type[ServeError], tuple[int, str]] = {
    InvalidJSON: (400, "invalid_json"),
    InvalidInput: (422, "invalid_input"),
    UnsupportedLanguagePair: (422, "unsupported_language_pair"),
    Unauthorized: (401, "unauthorized"),
    ModelNotFound: (404, "model_not_found"),
    TaskNotServed: (404, "task_not_served"),
    PayloadTooLarge: (413, "payload_too_large"),
    QueueFull: (429, "queue_full"),
    NotReady: (503, "not_ready"),
    ServerBusy: (503, "server_busy"),
    RequestTimeout: (408, "request_timeout"),
    InvalidHTTPRequest: (400, "invalid_http_request"),
    DeadlineExceeded: (504, "deadline_exceeded"),
    ClientClosedRequest: (499, "client_closed_request"),  # nginx's code: seen only in metrics
    InferenceFailed: (500, "inference_failed"),
    Conflict: (409, "conflict"),
    ModelLoadFailed: (422, "model_load_failed"),
    ModelLoadCrashed: (500, "model_load_crashed"),
}


# Every 503 says when to come back: a default for those that do not know better.
DEFAULT_RETRY_AFTER_S = 1


def status_and_type(error: ServeError) -> tuple[int, str]:
    for cls in type(error).__mro__:
        if cls in ERROR_TABLE:
            return ERROR_TABLE[cls]
    return 500, "internal_error"


def error_body(
    error_type: str, message: str, request_id: str | None = None
) -> dict[str, dict[str, str]]:
    """The contract's error body; 5xx answers carry the request id, for reports."""
    error = {"type": error_type, "message": message}
    if request_id is not None:
        error["request_id"] = request_id
    return {"error": error}
