"""schemathesis fuzzes every operation of /openapi.json on the real server: no 5xx, ever.

Bounded: a fixed number of generated requests per operation (derandomized, so a run is
repeatable), no per-example deadline; the whole module takes well under a minute here.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from app.main import create_app
from app.settings import Settings

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 40
# Every operation the app publishes, known at collection time (one test id each).
OPERATIONS = sorted(
    (method.upper(), path)
    for path, methods in create_app(Settings(_env_file=None)).openapi()["paths"].items()  # type: ignore[call-arg]
    for method in methods
)


@pytest.fixture(scope="module")
def api_schema(hostile_server: str) -> schemathesis.schemas.BaseSchema:
    return schemathesis.openapi.from_url(f"{hostile_server}/openapi.json")


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_operation_answers_a_server_error(
    api_schema: schemathesis.schemas.BaseSchema, hostile_server: str, method: str, path: str
) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def fuzz(case: schemathesis.Case[Any]) -> None:
        response = case.call(base_url=hostile_server, timeout=30)
        assert response.status_code < 500, f"{case.as_curl_command()}\n-> {response.text}"

    fuzz()
