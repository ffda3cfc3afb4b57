"""Who may bind where (app/server.py), and what a log line may hold (app/logs.py)."""

from __future__ import annotations

import logging

import pytest

from app.auth import AnonymousExposureError, check_exposure, is_loopback
from app.logs import TextFormatter, escape_controls
from app.settings import Settings


def settings(**fields: object) -> Settings:
    return Settings(_env_file=None, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost"])
def test_loopback_needs_no_key(host: str) -> None:
    assert is_loopback(host)
    check_exposure(settings(host=host))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.7", "my-host.internal"])
def test_a_network_address_needs_keys_or_an_explicit_yes(host: str) -> None:
    with pytest.raises(AnonymousExposureError, match="NLP_SERVE_ALLOW_ANONYMOUS=true"):
        check_exposure(settings(host=host))
    check_exposure(settings(host=host, api_keys=["k"]))
    check_exposure(settings(host=host, allow_anonymous=True))


def test_the_default_binds_this_machine_only() -> None:
    assert settings().host == "127.0.0.1"


def test_control_characters_never_reach_a_text_line() -> None:
    forged = "GET /v1/x\r\n2026-01-01 INFO app: forged\x1b[31m\u2028\x85"
    assert escape_controls(forged) == (
        "GET /v1/x\\x0d\\x0a2026-01-01 INFO app: forged\\x1b[31m\\u2028\\x85"
    )
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "path %s", (forged,), None)
    line = TextFormatter().format(record)
    assert "\n" not in line
    assert "\r" not in line
