"""A real server (`nlp-serve serve` on 127.0.0.1) as a network sees it: trickled bodies,
probes on a full server, keys before the body, refusing anonymous exposure, forged log lines."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.common import RunningServer, serve
from tests.integration.test_operations_server import fake

pytestmark = pytest.mark.integration

KEY = "exposure-key"
READ_TIMEOUT_S = 2.0
MAX_CONCURRENCY = 4


@pytest.fixture(scope="module")
def guarded(tiny_models: dict[str, Path]) -> Iterator[RunningServer]:
    settings = {
        "NLP_SERVE_API_KEYS": json.dumps([KEY]),
        "NLP_SERVE_REQUEST_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT_S),
        "NLP_SERVE_HEADER_TIMEOUT_SECONDS": "1",
        "NLP_SERVE_MAX_CONCURRENCY": str(MAX_CONCURRENCY),
        "NLP_SERVE_ACCESS_LOG": "true",
        "NLP_SERVE_LOG_LEVEL": "info",
    }
    with serve([fake(tiny_models, "words", "sentiment", "sentiment")], settings) as server:
        yield server
    assert server.exit_code == 0, server.output


def address(server: RunningServer) -> tuple[str, int]:
    host, port = server.base.removeprefix("http://").split(":")
    return host, int(port)


def trickler(server: RunningServer, body_bytes: int = 1000, key: str | None = KEY) -> socket.socket:
    """A connection that sent complete headers announcing a body, and one byte of it."""
    conn = socket.create_connection(address(server), timeout=30)
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    conn.sendall(
        f"POST /v1/sentiment HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n"
        f"Content-Length: {body_bytes}\r\n\r\n{{".encode()
    )
    return conn


def read_response(conn: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def keyed(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=server.base, headers={"authorization": f"Bearer {KEY}"})


def test_a_trickled_body_is_answered_408_in_the_error_format(guarded: RunningServer) -> None:
    with trickler(guarded) as conn:
        started = time.monotonic()
        status, headers, body = read_response(conn)
        waited = time.monotonic() - started
        assert conn.recv(1) == b""  # and the connection is closed
    assert status == 408
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["type"] == "request_timeout"
    assert "NLP_SERVE_REQUEST_READ_TIMEOUT_SECONDS" in error["message"]
    assert READ_TIMEOUT_S / 2 < waited < READ_TIMEOUT_S + 10  # generous: not the header timeout
    # counted as the 408 it was, not as a bad body or a server error (the app's read of the
    # body ended in a disconnect once the 408 was sent)
    time.sleep(0.2)
    text = httpx.get(f"{guarded.base}/metrics").text
    counts = {
        line.split('status="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("nlp_serve_requests_total{") and 'route="/v1/sentiment"' in line
    }
    assert counts.get("408", 0) >= 1, counts
    assert not {"400", "499", "500"} & set(counts), counts


def test_probes_answer_while_every_slot_is_taken_and_the_slots_come_back(
    guarded: RunningServer,
) -> None:
    conns = [trickler(guarded) for _ in range(MAX_CONCURRENCY)]
    try:
        time.sleep(0.3)  # all four are in the app, reading their bodies
        with keyed(guarded) as client:
            busy = client.post("/v1/sentiment", json={"inputs": "fine"})
            assert busy.status_code == 503
            assert busy.headers["retry-after"] == "1"
            assert busy.json()["error"]["type"] == "server_busy"
            for probe in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"):
                response = client.get(probe, timeout=1.0)  # generous for a probe
                assert response.status_code == 200, (probe, response.text)
        statuses = [read_response(conn)[0] for conn in conns]
    finally:
        for conn in conns:
            conn.close()
    assert statuses == [408] * MAX_CONCURRENCY
    with keyed(guarded) as client:  # every slot freed
        assert client.post("/v1/sentiment", json={"inputs": "fine"}).status_code == 200


def test_bytes_that_are_not_http_get_the_error_format(guarded: RunningServer) -> None:
    with socket.create_connection(address(guarded), timeout=10) as conn:
        conn.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        status, headers, body = read_response(conn)
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["type"] == "invalid_http_request"


def test_no_key_means_401_before_the_body_is_read(guarded: RunningServer) -> None:
    with httpx.Client(base_url=guarded.base) as client:
        bad = client.post(
            "/v1/embed", content=b"{bad", headers={"content-type": "application/json"}
        )
    assert bad.status_code == 401
    assert bad.json()["error"]["type"] == "unauthorized"
    # A keyless request announcing a megabyte it never sends is answered at once, from its
    # headers: nothing waits for (or parses) the body.
    with trickler(guarded, body_bytes=1_000_000, key=None) as conn:
        conn.settimeout(READ_TIMEOUT_S / 2)  # well before the read deadline would answer
        status, _, body = read_response(conn)
    assert status == 401
    assert "Bearer" in json.loads(body)["error"]["message"]


def test_a_forged_log_line_stays_on_its_own_line(tiny_models: dict[str, Path]) -> None:
    """A percent-encoded CR LF in the path reaches the text log escaped, read once the
    server has stopped so every line is there."""
    settings = {"NLP_SERVE_ACCESS_LOG": "true", "NLP_SERVE_LOG_LEVEL": "info"}
    models = [fake(tiny_models, "words", "sentiment", "sentiment")]
    with serve(models, settings) as server, httpx.Client(base_url=server.base) as client:
        client.get("/v1/x%0D%0A2026-01-01 00:00:00,000 INFO app: FORGED%1B[31m")
    assert "FORGED" in server.output
    assert not any(line.startswith("2026-01-01") for line in server.output.splitlines())
    assert "\x1b" not in server.output


def test_anonymous_on_a_network_address_refuses_to_start(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("models: []\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NLP_SERVE_")}
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--models", str(catalog),
         "--host", "0.0.0.0", "--port", "1"],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "NLP_SERVE_ALLOW_ANONYMOUS=true" in done.stderr
    assert "NLP_SERVE_API_KEYS" in done.stderr
