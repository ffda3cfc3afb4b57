"""The admin API: load, replace and unload models at run time, under concurrent load.

In-process with the deterministic fake backend (its `delay_ms` keeps work queued and running
while the serving set changes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.main import create_app
from tests.api.test_errors import assert_error
from tests.conftest import serve_in_process, settings_for

ADMIN = {"Authorization": "Bearer admin-key"}


def entry(
    models: dict[str, Path], name: str, task: str = "sentiment", **extra: Any
) -> dict[str, Any]:
    source = {"sentiment": "sentiment", "classify": "topics"}[task]
    return {"name": name, "task": task, "source": str(models[source]), "backend": "fake",
            "device": "cpu", **extra}  # fmt: skip


@pytest.fixture
async def admin_client(
    tiny_models: dict[str, Path], write_catalog: Callable[[list[dict[str, Any]]], Path]
) -> AsyncIterator[httpx.AsyncClient]:
    """A fresh service per test (the tests change its serving set)."""
    catalog = write_catalog(
        [
            entry(tiny_models, "s1", backend_options={"delay_ms": 20}),
            entry(tiny_models, "topics", "classify", default=True),
        ]
    )
    settings = settings_for(catalog, admin_api_keys=["admin-key"], api_keys=["user-key"],
                            admin_source_roots=[tiny_models["sentiment"].parent])  # fmt: skip
    async with serve_in_process(settings) as client:
        client.headers["X-API-Key"] = "user-key"
        yield client


async def names(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in (await client.get("/v1/models")).json()["models"]}


async def sentiment(client: httpx.AsyncClient, model: str | None, text: str) -> httpx.Response:
    body: dict[str, Any] = {"inputs": text}
    if model is not None:
        body["model"] = model
    return await client.post("/v1/sentiment", json=body)


async def test_admin_routes_do_not_exist_without_admin_keys(
    fake_client: httpx.AsyncClient,
) -> None:
    response = await fake_client.post("/admin/models", json={"name": "x"})
    assert_error(response, 404, "not_found", "/admin/models")
    assert_error(await fake_client.delete("/admin/models/tiny-ner"), 404, "not_found")
    assert "/admin/models" not in (await fake_client.get("/openapi.json")).json()["paths"]


async def test_admin_routes_take_only_admin_keys(
    admin_client: httpx.AsyncClient, tiny_models: dict[str, Path]
) -> None:
    body = entry(tiny_models, "s2")
    # the client's own header is a /v1 key: not an admin key
    assert_error(await admin_client.post("/admin/models", json=body), 401, "unauthorized",
                 "admin API key not recognised")  # fmt: skip
    user_key = admin_client.headers.pop("X-API-Key")
    response = await admin_client.post("/admin/models", json=body)
    admin_client.headers["X-API-Key"] = user_key
    assert_error(response, 401, "unauthorized", "missing admin API key")
    assert "s2" not in await names(admin_client)
    # and an admin key does not open the /v1 routes
    response = await admin_client.get("/v1/models", headers={"X-API-Key": "admin-key"})
    assert_error(response, 401, "unauthorized")


async def test_load_serves_a_new_model_and_its_default_follows(
    admin_client: httpx.AsyncClient, tiny_models: dict[str, Path]
) -> None:
    assert (await sentiment(admin_client, None, "hello")).json()["model"] == "s1"
    response = await admin_client.post(
        "/admin/models", json=entry(tiny_models, "s2", default=True), headers=ADMIN
    )
    assert response.status_code == 201, response.text
    assert response.json()["model"]["status"] == "ready"
    assert response.json()["model"]["default"] is True
    models = await names(admin_client)
    assert models["s2"]["status"] == "ready"
    assert models["s1"]["default"] is False
    answered = await sentiment(admin_client, None, "hello")  # the new default serves
    assert answered.status_code == 200
    assert answered.json()["model"] == "s2"
    metrics = (await admin_client.get("/metrics")).text
    assert 'nlp_serve_model_loaded{backend="fake",device="cpu",model="s2"} 1.0' in metrics
    assert 'nlp_serve_queue_capacity{model="s2"} 1024.0' in metrics
    assert (await admin_client.get("/readyz")).status_code == 200

    unloaded = await admin_client.delete("/admin/models/s2", headers=ADMIN)
    assert unloaded.json() == {"model": "s2", "status": "unloaded"}
    assert (await sentiment(admin_client, None, "hello")).json()["model"] == "s1"
    assert (await names(admin_client))["s1"]["default"] is True
    metrics = (await admin_client.get("/metrics")).text
    assert 'model="s2"' not in metrics  # an unloaded model leaves no series behind
    assert 'model="s1"' in metrics


@pytest.mark.parametrize(
    ("change", "status", "kind", "words"),
    [
        ({"batching": {"max_batch_size": 0}}, 422, "invalid_input",
         ["field 'batching.max_batch_size'", "greater than or equal to 1"]),
        ({"backend": "tensorflow"}, 422, "invalid_input", ["unknown backend 'tensorflow'"]),
        ({"task": "summarise"}, 422, "invalid_input", ["field 'task'"]),
        ({"options": {"null_answer": True}}, 422, "invalid_input", ["null_answer"]),
        ({"nonsense": 1}, 422, "invalid_input", ["field 'nonsense'"]),
        ({"generation": {"custom_generate": "/srv/code"}}, 422, "invalid_input",
         ["custom_generate", "generation takes"]),
        ({"name": "topics"}, 409, "conflict", ["already served", "PUT /admin/models/topics"]),
        ({"default": True, "task": "classify"}, 422, "invalid_input",
         ["catalog would become invalid", "several defaults"]),
        # only sources the operator allows, and the answer never says what exists outside them
        ({"source": "/nonexistent/model-dir"}, 422, "invalid_input",
         ["'/nonexistent/model-dir'", "not under an allowed root", "NLP_SERVE_ADMIN_SOURCE_ROOTS"]),
        ({"source": "/etc"}, 422, "invalid_input", ["'/etc'", "not under an allowed root"]),
        ({"source": "relative/../dir"}, 422, "invalid_input", ["give an absolute path"]),
        ({"source": "python:os"}, 422, "invalid_input", ["NLP_SERVE_ADMIN_PYTHON_MODULES"]),
        ({"source": "some-org/some-model"}, 422, "invalid_input",
         ["not an allowed hub id", "NLP_SERVE_ADMIN_HUB_PATTERNS"]),
        # the fake backend raises on the warm-up request: a server-side fault, text kept back
        ({"backend_options": {"fail_token": "request"}}, 500, "model_load_crashed",
         ["RuntimeError", "server log"]),
    ],
)  # fmt: skip
async def test_a_failed_load_changes_nothing_and_says_why(
    admin_client: httpx.AsyncClient,
    tiny_models: dict[str, Path],
    change: dict[str, Any],
    status: int,
    kind: str,
    words: list[str],
) -> None:
    before = await names(admin_client)
    body = {**entry(tiny_models, "s3"), **change}
    if "topics" in body["source"] or change.get("task") == "classify":
        body["source"] = str(tiny_models["topics"])
    message = assert_error(
        await admin_client.post("/admin/models", json=body, headers=ADMIN), status, kind, *words
    )
    assert "fail_token" not in message  # never the backend's own exception text
    assert await names(admin_client) == before
    assert (await admin_client.get("/readyz")).status_code == 200
    assert (await sentiment(admin_client, "s1", "still served")).status_code == 200


async def test_a_body_that_is_not_an_object_is_refused(admin_client: httpx.AsyncClient) -> None:
    response = await admin_client.post("/admin/models", json=["s3"], headers=ADMIN)
    assert_error(response, 422, "invalid_input", "JSON object")


async def test_unload_finishes_queued_and_running_work_then_404s(
    admin_client: httpx.AsyncClient, tiny_models: dict[str, Path]
) -> None:
    # s1 sleeps 20 ms per batch of at most 32: 200 requests keep it busy for ~7 batches
    inflight = [
        asyncio.ensure_future(sentiment(admin_client, "s1", f"text {i}")) for i in range(200)
    ]
    await asyncio.sleep(0.02)  # they are queued and running now
    assert (await names(admin_client))["s1"]["queue_depth"] > 0
    unload = asyncio.ensure_future(admin_client.delete("/admin/models/s1", headers=ADMIN))
    for _ in range(1000):  # the unload takes s1 out of the serving set at once
        if "s1" not in await names(admin_client):
            break
        await asyncio.sleep(0)
    late = await sentiment(admin_client, "s1", "too late")
    assert_error(late, 404, "model_not_found", "s1")
    assert not unload.done()  # it waits for the work it took
    answers = await asyncio.gather(*inflight)
    assert [a.status_code for a in answers] == [200] * 200
    assert (await unload).status_code == 200
    assert (await admin_client.get("/readyz")).status_code == 200
    assert_error(await admin_client.delete("/admin/models/s1", headers=ADMIN), 404,
                 "model_not_found")  # fmt: skip
    # the last model cannot go
    message = assert_error(
        await admin_client.delete("/admin/models/topics", headers=ADMIN), 409, "conflict"
    )
    assert "last model" in message
    assert (await admin_client.post("/v1/classify", json={"inputs": "x"})).status_code == 200


async def test_replace_under_load_fails_no_request(
    admin_client: httpx.AsyncClient, tiny_models: dict[str, Path]
) -> None:
    statuses: list[int] = []
    served_by: set[str] = set()
    stop = asyncio.Event()

    async def client_loop(index: int) -> None:
        n = 0
        while not stop.is_set():
            model = "s1" if index % 2 else None  # by name, and through the default
            response = await sentiment(admin_client, model, f"client {index} request {n}")
            statuses.append(response.status_code)
            served_by.add(response.json().get("model", "?"))
            n += 1

    clients = [asyncio.ensure_future(client_loop(i)) for i in range(8)]
    try:
        await asyncio.sleep(0.2)
        # to a version batching 4 at a time, and back (32): each swap under load
        for size, delay in ((4, 5), (32, 20)):
            new_version = entry(tiny_models, "s1", batching={"max_batch_size": size},
                                backend_options={"delay_ms": delay})  # fmt: skip
            response = await admin_client.put("/admin/models/s1", json=new_version, headers=ADMIN)
            assert response.status_code == 200, response.text
            assert response.json()["model"]["batching"]["max_batch_size"] == size
            assert (await names(admin_client))["s1"]["batching"]["max_batch_size"] == size
            assert (await admin_client.get("/readyz")).status_code == 200
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.gather(*clients)
    assert len(statuses) > 50
    assert set(statuses) == {200}, sorted(set(statuses))
    assert served_by == {"s1"}
    metrics = (await admin_client.get("/metrics")).text
    assert 'nlp_serve_model_loaded{backend="fake",device="cpu",model="s1"} 1.0' in metrics


async def test_a_failed_replace_keeps_the_old_version_serving(
    admin_client: httpx.AsyncClient, tiny_models: dict[str, Path]
) -> None:
    before = await names(admin_client)
    broken = {**entry(tiny_models, "s1"), "source": f"{tiny_models['sentiment'].parent}/v2"}
    assert_error(await admin_client.put("/admin/models/s1", json=broken, headers=ADMIN), 422,
                 "model_load_failed", "/v2' does not exist")  # fmt: skip
    other_task = entry(tiny_models, "s1", "classify")
    assert_error(await admin_client.put("/admin/models/s1", json=other_task, headers=ADMIN), 409,
                 "conflict", "same task")  # fmt: skip
    renamed = entry(tiny_models, "s9")
    assert_error(await admin_client.put("/admin/models/s1", json=renamed, headers=ADMIN), 422,
                 "invalid_input", "path names 's1'")  # fmt: skip
    missing = entry(tiny_models, "nope")
    assert_error(await admin_client.put("/admin/models/nope", json=missing, headers=ADMIN), 404,
                 "model_not_found")  # fmt: skip
    assert (await sentiment(admin_client, "s1", "old version")).status_code == 200
    assert await names(admin_client) == before


async def test_sources_escape_no_root_and_missing_ones_name_only_what_was_sent(
    admin_client: httpx.AsyncClient, tiny_models: dict[str, Path]
) -> None:
    root = tiny_models["sentiment"].parent
    escape = {**entry(tiny_models, "s9"), "source": f"{root}/../../etc"}
    response = await admin_client.post("/admin/models", json=escape, headers=ADMIN)
    assert_error(response, 422, "invalid_input", "not under an allowed root")
    missing = {**entry(tiny_models, "s9"), "source": f"{root}/no-such-model"}
    response = await admin_client.post("/admin/models", json=missing, headers=ADMIN)
    assert_error(response, 422, "model_load_failed", "does not exist", "serving set is unchanged")
    assert str(Path.cwd()) not in response.text


async def test_draining_cancels_a_load_in_progress(
    tiny_models: dict[str, Path], write_catalog: Callable[[list[dict[str, Any]]], Path]
) -> None:
    """A slow admin load (warm-up held 30 s by the fake backend's delay) does not hold
    shutdown: closing the registry cancels it and its client hears 503 at once."""
    catalog = write_catalog([entry(tiny_models, "s1")])
    settings = settings_for(catalog, admin_api_keys=["admin-key"],
                            admin_source_roots=[tiny_models["sentiment"].parent])  # fmt: skip
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=300, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            slow = entry(tiny_models, "slow", backend_options={"delay_ms": 30_000})
            load = asyncio.create_task(client.post("/admin/models", json=slow, headers=ADMIN))
            registry = app.state.registry
            while "slow" not in registry._loading:  # noqa: ASYNC110 - no event announces a load
                await asyncio.sleep(0.02)
            started = time.monotonic()
            await registry.close()
            closed_in = time.monotonic() - started
            response = await load
    assert closed_in < 10  # generous; the load alone would take 30 s
    assert response.status_code == 503, response.text
    assert "cancelled" in response.json()["error"]["message"]
