"""The error-shape middleware on a bare Starlette app: every surface's envelope, by path."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.errors import error_body
from app.protocols.errors import ProtocolErrorMiddleware


async def fail(request: Request) -> Response:
    kind = request.query_params.get("kind", "invalid_input")
    status = int(request.query_params.get("status", "422"))
    if kind == "plain":
        return Response("not ours", status_code=status)
    if kind == "ok":
        return JSONResponse({"error": {"type": "x", "message": "y"}})  # 200: left alone
    return JSONResponse(error_body(kind, f"input: it was {kind}"), status_code=status,
                        headers={"retry-after": "1"})  # fmt: skip


paths = ["/v1/embeddings", "/hf/models/m", "/v2", "/v2/models/m/infer", "/v1/embed", "/v2x"]
app = ProtocolErrorMiddleware(Starlette(routes=[Route(p, fail) for p in paths]))


@pytest.fixture
async def client():
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


async def test_openai_shape_and_retry_hint(client) -> None:
    response = await client.get("/v1/embeddings", params={"kind": "inference_failed",
                                                          "status": 500})  # fmt: skip
    assert response.status_code == 500
    assert response.json() == {"error": {"message": "input: it was inference_failed",
        "type": "server_error", "param": "input", "code": "inference_failed"}}  # fmt: skip
    assert response.headers["x-should-retry"] == "false"
    assert response.headers["retry-after"] == "1"
    busy = await client.get("/v1/embeddings", params={"kind": "queue_full", "status": 429})
    assert busy.json()["error"]["type"] == "rate_limit_error"
    assert "x-should-retry" not in busy.headers  # the client's own rule: retry 429
    for kind, status in (("not_ready", 503), ("deadline_exceeded", 504)):
        retryable = await client.get("/v1/embeddings", params={"kind": kind, "status": status})
        assert retryable.json()["error"]["type"] == "server_error"
        assert "x-should-retry" not in retryable.headers  # the client's own rule: retry 5xx


@pytest.mark.parametrize("path", ["/hf/models/m", "/v2", "/v2/models/m/infer"])
async def test_plain_error_string(client, path: str) -> None:
    response = await client.get(path, params={"status": 404, "kind": "model_not_found"})
    assert response.status_code == 404
    assert response.json() == {"error": "input: it was model_not_found"}
    assert int(response.headers["content-length"]) == len(response.content)


@pytest.mark.parametrize("path", ["/v1/embed", "/v2x"])
async def test_native_routes_keep_the_native_shape(client, path: str) -> None:
    response = await client.get(path)
    assert response.json() == error_body("invalid_input", "input: it was invalid_input")


async def test_other_bodies_pass_untouched(client) -> None:
    assert (await client.get("/v2", params={"kind": "plain"})).text == "not ours"
    ok = await client.get("/v2", params={"kind": "ok"})
    assert ok.status_code == 200
    assert ok.json() == {"error": {"type": "x", "message": "y"}}
