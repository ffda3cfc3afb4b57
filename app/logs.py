"""Logging: the request id of the request being served, and text or JSON lines.

The request id lives in a context variable set by the request-id middleware; a filter copies
it (and the model, route, status and duration a log call passes as `extra`) onto every
record, so each line about a request names it. Work that runs on other threads (the model's
own thread) passes the id explicitly as `extra={"request_id": ...}`.

`logging_config()` is the one dict both `nlp-serve serve` and every uvicorn worker apply, so
the service's and uvicorn's own lines share the format in each process.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
# Fields a log call may pass in `extra`; JSON lines carry them when set.
REQUEST_FIELDS = ("request_id", "model", "route", "method", "status", "duration_ms")
LogFormat = Literal["text", "json"]


class RequestContextFilter(logging.Filter):
    """Give every record the current request id, unless the call passed its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the request fields, traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in REQUEST_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


# Control characters (C0, DEL, C1) and Unicode's line and paragraph separators, written as
# escapes: a request's path or header, logged as text, can never start a line of its own.
_CONTROLS = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)
}


def escape_controls(text: str) -> str:
    return text.translate(_CONTROLS)


class TextFormatter(logging.Formatter):
    """The classic line, with `[request id]` after the logger when there is one. The line
    itself never holds a raw control character (a traceback follows on lines of its own)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(request)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        record.request = f" [{request_id}]" if request_id else ""
        return super().format(record)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return escape_controls(super().formatMessage(record))


def route_library_logs() -> None:
    """transformers logs through a handler of its own, in its own format; send its records
    to ours (the root logger's handler) so they are formatted like every other line. Its
    progress bars (transformers 5 draws one per model load) are terminal output, not log
    lines: off."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_default_handler()
    transformers_logging.enable_propagation()
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


def logging_config(level: str, log_format: LogFormat) -> dict[str, Any]:
    """A logging.config.dictConfig dict for the service and uvicorn, in any process."""
    formatter = "app.logs.JSONFormatter" if log_format == "json" else "app.logs.TextFormatter"
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "default",
        "filters": ["request"],
        "stream": "ext://sys.stderr",
    }
    logger = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request": {"()": "app.logs.RequestContextFilter"}},
        "formatters": {"default": {"()": formatter}},
        "handlers": {"default": handler},
        "loggers": {"app": logger, "uvicorn": logger, "uvicorn.error": {"level": level.upper()}},
        "root": {"handlers": ["default"], "level": "WARNING"},
    }
