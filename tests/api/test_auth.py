"""Keys before anything reads the request (app/auth.py): every route but the public ones,
the routes of today and any added later; the admin API on its own keys."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.protocols.errors import error_answer
from tests.conftest import serve_in_process, settings_for, tiny_catalog

KEY, ADMIN_KEY = "k-user", "k-admin"
PUBLIC = {"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"}
OPEN_UNLESS_PROTECTED = {"/metrics", "/docs", "/redoc", "/openapi.json"}


@pytest.fixture
def catalog(
    tiny_models: dict[str, Path], write_catalog: Callable[[list[dict[str, Any]]], Path]
) -> Path:
    return write_catalog(tiny_catalog(tiny_models, "fake")[:1])


def every_route(**settings: Any) -> list[tuple[str, str]]:
    """(method, path) of every operation in the app's OpenAPI schema, parameters filled in."""
    app = create_app(settings_for(settings.pop("catalog"), **settings))
    return [
        (method.upper(), re.sub(r"\{[^}]+\}", "x", path))
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    ]


async def test_every_route_but_the_public_ones_needs_a_key(catalog: Path) -> None:
    settings = {"api_keys": [KEY], "admin_api_keys": [ADMIN_KEY]}
    routes = every_route(catalog=catalog, **settings)
    assert len(routes) > 25  # the whole surface, admin included
    async with serve_in_process(settings_for(catalog, **settings)) as client:
        for method, path in routes:
            response = await client.request(method, path, content=b"{not json")
            if path in PUBLIC | OPEN_UNLESS_PROTECTED:
                assert response.status_code != 401, (method, path)
            else:
                assert response.status_code == 401, (method, path, response.text)
                shape = json.loads(error_answer(path, 401, "unauthorized", "m")[0])
                assert set(response.json()) == set(shape)  # the route's protocol's shape
                assert response.headers["www-authenticate"] == "Bearer"


async def test_a_route_added_later_is_protected_without_asking(catalog: Path) -> None:
    app = create_app(settings_for(catalog, api_keys=[KEY]))

    @app.get("/v1/added-later")
    async def added() -> dict[str, str]:
        return {"ok": "yes"}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/v1/added-later")).status_code == 401
        keyed = await client.get("/v1/added-later", headers={"x-api-key": KEY})
        assert keyed.json() == {"ok": "yes"}


async def test_no_key_is_refused_before_the_body_limit_reads_anything(catalog: Path) -> None:
    settings = settings_for(catalog, api_keys=[KEY], max_body_bytes=1024)
    async with serve_in_process(settings) as client:
        huge = b"x" * 4096
        assert (await client.post("/v1/sentiment", content=huge)).status_code == 401
        keyed = await client.post("/v1/sentiment", content=huge, headers={"x-api-key": KEY})
        assert keyed.status_code == 413


async def test_metrics_and_docs_are_public_unless_protected(catalog: Path) -> None:
    settings = settings_for(catalog, api_keys=[KEY], protect_metrics=True, protect_docs=True)
    async with serve_in_process(settings) as client:
        for path in sorted(OPEN_UNLESS_PROTECTED):
            assert (await client.get(path)).status_code == 401, path
            assert (await client.get(path, headers={"x-api-key": KEY})).status_code == 200, path
        for path in sorted(PUBLIC):
            assert (await client.get(path)).status_code == 200, path


async def test_each_key_opens_only_its_own_routes(catalog: Path) -> None:
    settings = settings_for(catalog, api_keys=[KEY], admin_api_keys=[ADMIN_KEY])
    async with serve_in_process(settings) as client:
        user = await client.post("/admin/models", json={}, headers={"x-api-key": KEY})
        assert user.status_code == 401
        admin = await client.post("/admin/models", json={}, headers={"x-api-key": ADMIN_KEY})
        assert admin.status_code == 422  # past the key, to the (empty) entry
        assert (await client.get("/v1/models", headers={"x-api-key": ADMIN_KEY})).status_code == 401


async def test_without_admin_keys_the_admin_api_is_absent(catalog: Path) -> None:
    async with serve_in_process(settings_for(catalog, api_keys=[KEY])) as client:
        user = await client.post("/admin/models", json={}, headers={"x-api-key": KEY})
        assert user.status_code == 404
