"""Every task route's real answers match the OpenAPI schema it publishes.

The response models name the tasks' own result types, so the schema is generated from what
the routes return; this checks it end to end, for every route in TASK_ROUTES.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from app.routers.tasks import TASK_ROUTES

REQUESTS: dict[str, list[dict[str, Any]]] = {
    "/v1/classify": [
        {"inputs": ["a match report", "a budget"], "model": "tiny-topics"},
        {"inputs": "a match report", "candidate_labels": ["sports", "money"], "top_k": 1},
        {"inputs": "x", "candidate_labels": ["a", "b"], "multi_label": True},
    ],
    "/v1/sentiment": [{"inputs": ["good", "bad"]}, {"inputs": ["good", "bad"], "top_k": 2}],
    "/v1/qa": [
        {"inputs": {"question": "Who?", "context": "Ada wrote it. Then she left."}},
        {"inputs": [{"question": "Who?", "context": "Ada wrote it."}], "top_k": 3},
        {"inputs": {"question": "Who?", "context": "Ada wrote it."}, "model": "tiny-qa-null"},
    ],
    "/v1/translate": [{"inputs": "hello there", "target_lang": "de"}],
    "/v1/summarize": [{"inputs": "A long text. With two sentences.", "max_length": 8}],
    "/v1/ner": [{"inputs": ["Ada Lovelace lived in London.", "nothing here"]}],
    "/v1/embed": [{"inputs": ["one", "two"]}, {"inputs": "one", "normalize": False}],
    "/v1/fill-mask": [
        {"inputs": ["Paris is the [MASK] of France.", "a [MASK]"]},
        {"inputs": "a [MASK] day", "top_k": 2, "targets": ["good", "bad", "##ing"]},
    ],
}


def test_every_task_route_has_contract_cases() -> None:
    assert set(REQUESTS) == {route.path for route in TASK_ROUTES}


@pytest.mark.parametrize(
    ("path", "body"), [(path, body) for path, bodies in REQUESTS.items() for body in bodies]
)
async def test_answers_match_the_published_schema(
    fake_client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    spec = (await fake_client.get("/openapi.json")).json()
    published = spec["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]
    validator = Draft202012Validator({**published["schema"], "components": spec["components"]})
    response = await fake_client.post(path, json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(answer)]
    assert not errors, errors
    inputs = body["inputs"]
    assert len(answer["results"]) == (len(inputs) if isinstance(inputs, list) else 1)


async def test_the_schema_would_catch_a_wrong_shape(fake_client: httpx.AsyncClient) -> None:
    spec = (await fake_client.get("/openapi.json")).json()
    published = spec["paths"]["/v1/qa"]["post"]["responses"]["200"]["content"]["application/json"]
    validator = Draft202012Validator({**published["schema"], "components": spec["components"]})
    assert not validator.is_valid({"model": "m", "results": [{"answer": "a", "score": 0.5}]})
    assert not validator.is_valid({"model": "m", "results": [[{"label": "x", "score": 1.0}]]})
