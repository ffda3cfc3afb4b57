"""Health, readiness, model listing, metrics and API keys."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from app.main import create_app
from tests.api.test_errors import assert_error
from tests.conftest import serve_in_process, settings_for, tiny_catalog


async def test_healthz_and_readyz(fake_client: httpx.AsyncClient) -> None:
    assert (await fake_client.get("/healthz")).json() == {"status": "ok"}
    ready = await fake_client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


async def test_readyz_is_503_before_models_load(
    tiny_models: dict[str, Path], write_catalog: Callable[[list[dict[str, Any]]], Path]
) -> None:
    app = create_app(settings_for(write_catalog(tiny_catalog(tiny_models, "fake"))))
    transport = httpx.ASGITransport(app=app)  # no lifespan: nothing loaded yet
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/readyz")
        assert_error(response, 503, "not_ready", "tiny-sentiment")
        assert response.headers["retry-after"] == "1"  # every 503 says when to come back
        assert (await client.get("/healthz")).status_code == 200
        response = await client.post("/v1/sentiment", json={"inputs": "x"})
        assert_error(response, 503, "not_ready", "retry")
        assert response.headers["retry-after"] == "1"
        v2 = await client.get("/v2/health/ready")
        assert (v2.status_code, v2.headers["retry-after"]) == (503, "1")


async def test_models_lists_every_model_with_its_facts(fake_client: httpx.AsyncClient) -> None:
    models = {m["name"]: m for m in (await fake_client.get("/v1/models")).json()["models"]}
    assert {"tiny-sentiment", "tiny-topics", "tiny-nli", "tiny-qa", "tiny-ner"} <= set(models)
    for info in models.values():
        assert info["status"] == "ready"
        assert info["backend"] == "fake"
        assert info["device"] == "cpu"
        assert set(info["batching"]) == {"max_batch_size", "max_batch_tokens", "max_wait_ms",
                                          "max_queue", "min_fill"}  # fmt: skip
        assert info["queue_depth"] == 0
    assert models["tiny-nli"]["method"] == "zero-shot NLI"
    assert models["tiny-topics"]["labels"] == ["business", "science", "sports", "world"]
    assert models["tiny-topics"]["default"] is True
    assert models["tiny-nli"]["default"] is False
    assert models["tiny-translate"]["languages"] == ["en-de", "en-fr"]


async def test_metrics_exposes_request_and_stage_metrics(fake_client: httpx.AsyncClient) -> None:
    await fake_client.post("/v1/sentiment", json={"inputs": "count me"})
    await fake_client.get("/healthz")
    text = (await fake_client.get("/metrics")).text
    assert (
        'nlp_serve_requests_total{model="tiny-sentiment",protocol="http",route="/v1/sentiment",status="200"}'
        in text
    )
    assert (
        'nlp_serve_inference_duration_seconds_bucket{le="0.0005",model="tiny-sentiment",stage="forward"}'
        in text
    )
    assert 'nlp_serve_model_loaded{backend="fake",device="cpu",model="tiny-ner"} 1.0' in text
    assert 'route="/healthz"' not in text


async def test_api_keys_guard_v1_routes_only(
    tiny_models: dict[str, Path], write_catalog: Callable[[list[dict[str, Any]]], Path]
) -> None:
    catalog = write_catalog(tiny_catalog(tiny_models, "fake")[:1])
    async with serve_in_process(settings_for(catalog, api_keys=["s3cret"])) as client:
        body = {"inputs": "x"}
        assert_error(await client.post("/v1/sentiment", json=body), 401, "unauthorized", "Bearer")
        wrong = await client.post("/v1/sentiment", json=body, headers={"x-api-key": "nope"})
        assert_error(wrong, 401, "unauthorized", "not recognised")
        bearer = {"authorization": "Bearer s3cret"}
        assert (await client.post("/v1/sentiment", json=body, headers=bearer)).status_code == 200
        keyed = await client.get("/v1/models", headers={"x-api-key": "s3cret"})
        assert keyed.status_code == 200
        assert (await client.get("/v1/models")).status_code == 401
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200


def server_timing(response: httpx.Response) -> dict[str, float]:
    """Server-Timing entries as {name: dur in ms}."""
    entries = {}
    for entry in response.headers["server-timing"].split(","):
        name, _, param = entry.strip().partition(";")
        key, _, value = param.partition("=")
        assert key == "dur", entry
        entries[name] = float(value)
    return entries


async def test_task_answers_say_where_their_time_went(fake_client: httpx.AsyncClient) -> None:
    response = await fake_client.post("/v1/sentiment", json={"inputs": ["one", "two words"]})
    assert response.status_code == 200
    times = server_timing(response)
    assert list(times) == ["tokenize", "queue", "forward", "postprocess"]
    assert all(ms >= 0 for ms in times.values())
    assert times["forward"] > 0
    failed = await fake_client.post("/v1/sentiment", json={"inputs": "x", "model": "nope"})
    assert failed.status_code == 404
    assert "server-timing" not in failed.headers
    assert "server-timing" not in (await fake_client.get("/v1/models")).headers


async def test_server_timing_can_be_turned_off(
    tiny_models: dict[str, Path], write_catalog: Callable[[list[dict[str, Any]]], Path]
) -> None:
    catalog = write_catalog(tiny_catalog(tiny_models, "fake"))
    async with serve_in_process(settings_for(catalog, server_timing=False)) as client:
        response = await client.post("/v1/sentiment", json={"inputs": "quiet"})
        assert response.status_code == 200
        assert "server-timing" not in response.headers


async def test_start_up_objects_are_frozen_out_of_gc_while_serving(
    tiny_models: dict[str, Path], write_catalog: Callable[[list[dict[str, Any]]], Path]
) -> None:
    catalog = write_catalog(tiny_catalog(tiny_models, "fake"))
    gc.unfreeze()  # other apps of this test session may have frozen theirs
    async with serve_in_process(settings_for(catalog, gc_freeze=False)):
        assert gc.get_freeze_count() == 0
    async with serve_in_process(settings_for(catalog)):
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0  # shutdown hands them back


async def test_each_model_is_loaded_warmed_and_run_on_one_thread(
    tiny_models: dict[str, Path], write_catalog: Callable[[list[dict[str, Any]]], Path]
) -> None:
    """One OpenMP team per model: a second thread that ran it would leave another behind."""
    catalog = write_catalog(tiny_catalog(tiny_models, "fake"))
    app = create_app(settings_for(catalog))
    async with LifespanManager(app, startup_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for _ in range(3):
                assert (await client.post("/v1/sentiment", json={"inputs": "x"})).status_code == 200
        backend = app.state.registry.handle("tiny-sentiment").model.backend
        assert len(backend.calls) >= 4  # the warm-up and the three requests
        assert len(backend.threads) == 1
        assert threading.get_ident() not in backend.threads  # not the event loop's


async def test_replica_setting_labels_every_series(
    tiny_models: dict[str, Path], write_catalog: Callable[[list[dict[str, Any]]], Path]
) -> None:
    catalog = write_catalog(tiny_catalog(tiny_models, "fake")[:1])
    async with serve_in_process(settings_for(catalog, replica="r7")) as client:
        await client.post("/v1/sentiment", json={"inputs": "label me"})
        text = (await client.get("/metrics")).text
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert samples
    assert all('replica="r7"' in line for line in samples), [
        line for line in samples if 'replica="r7"' not in line
    ][:3]
    assert (
        'model="tiny-sentiment",protocol="http",replica="r7",route="/v1/sentiment",status="200"'
        in text
    )
