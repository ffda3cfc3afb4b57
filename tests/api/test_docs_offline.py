"""/docs and /redoc work with no internet: every asset they load is served by the service."""

from __future__ import annotations

import re

import httpx
import pytest

URL = re.compile(r"""(?:src|href|url)\s*[=:(]\s*['"]?([^'")\s>]+)""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_pages_reference_no_external_url(fake_client: httpx.AsyncClient, page: str) -> None:
    response = await fake_client.get(page)
    assert response.status_code == 200
    html = response.text
    assert "//" not in re.sub(r"<!--.*?-->", "", html)  # no scheme-relative or absolute URL
    references = URL.findall(html) + re.findall(r"""url:\s*'([^']+)'""", html)
    assert references, html
    for reference in references:
        assert reference.startswith("/"), f"{page} loads {reference} from elsewhere"
        asset = await fake_client.get(reference)
        assert asset.status_code == 200, reference
        assert asset.content, reference


async def test_openapi_lists_the_protocol_surfaces(fake_client: httpx.AsyncClient) -> None:
    paths = (await fake_client.get("/openapi.json")).json()["paths"]
    for surface in ("/v1/embeddings", "/hf/models/{name}", "/hf/tasks/{task}", "/v2",
                    "/v2/health/ready", "/v2/models/{name}", "/v2/models/{name}/infer",
                    "/v2/models/{name}/versions/{version}/infer"):  # fmt: skip
        assert surface in paths, surface
    assert "/docs" not in paths
    assert "/docs-assets" not in paths
