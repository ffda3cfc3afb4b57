"""Request ids on every answer and in 5xx bodies; every status counted as it was sent."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.integration.test_real_server import metric

GENERATED = re.compile(r"[0-9a-f]{32}")


async def test_a_request_id_is_made_when_none_is_sent(fake_client: httpx.AsyncClient) -> None:
    for response in (
        await fake_client.post("/v1/sentiment", json={"inputs": "x"}),
        await fake_client.post("/v1/sentiment", json={"inputs": ""}),  # a 422
        await fake_client.get("/healthz"),
        await fake_client.get("/no/such/route"),
    ):
        assert GENERATED.fullmatch(response.headers["x-request-id"])


@pytest.mark.parametrize("offered", ["abc-123", "trace:01/span=2+x@y.z", "a" * 128])
async def test_a_well_formed_request_id_is_kept(
    fake_client: httpx.AsyncClient, offered: str
) -> None:
    response = await fake_client.post(
        "/v1/sentiment", json={"inputs": "x"}, headers={"X-Request-ID": offered}
    )
    assert response.headers["x-request-id"] == offered


@pytest.mark.parametrize("offered", ["has space", "a" * 129, 'quote"s', "", "naïve"])
async def test_a_malformed_request_id_is_replaced(
    fake_client: httpx.AsyncClient, offered: str
) -> None:
    response = await fake_client.post(
        "/v1/sentiment", json={"inputs": "x"}, headers={b"X-Request-ID": offered.encode()}
    )
    assert response.status_code == 200
    assert GENERATED.fullmatch(response.headers["x-request-id"])


async def test_5xx_bodies_carry_the_request_id(fake_client: httpx.AsyncClient) -> None:
    response = await fake_client.post(
        "/v1/sentiment",
        json={"inputs": "poison", "model": "fake-poison"},
        headers={"X-Request-ID": "report-me-42"},
    )
    assert response.status_code == 500
    assert response.json()["error"]["request_id"] == "report-me-42"
    client_error = await fake_client.post("/v1/sentiment", json={"inputs": ""})
    assert "request_id" not in client_error.json()["error"]


async def test_the_body_limit_413_is_counted_as_413(fake_client: httpx.AsyncClient) -> None:
    def count() -> float:
        return metric(
            text,
            'nlp_serve_requests_total{model="",protocol="http",route="/v1/embed",status="413"}',
        )

    text = (await fake_client.get("/metrics")).text
    before = count()
    oversized = b'{"inputs": "' + b"a" * 70_000 + b'"}'  # the fake client allows 64 KiB

    async def chunks():  # no Content-Length: the limit counts streamed bytes
        for start in range(0, len(oversized), 4096):
            yield oversized[start : start + 4096]

    assert (await fake_client.post("/v1/embed", content=oversized)).status_code == 413
    assert (await fake_client.post("/v1/embed", content=chunks())).status_code == 413
    text = (await fake_client.get("/metrics")).text
    assert count() == before + 2
    assert 'route="/v1/embed",status="400"' not in text


async def test_drop_counters_have_series_from_start_up(fake_client: httpx.AsyncClient) -> None:
    text = (await fake_client.get("/metrics")).text
    for reason in ("cancelled", "deadline", "overload"):
        assert f'nlp_serve_items_dropped_total{{model="tiny-ner",reason="{reason}"}} 0.0' in text
