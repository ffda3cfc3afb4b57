"""OpenTelemetry: a span per request with tokenize/queue/forward/postprocess children, and one
batch span per forward pass linked to every request it served (SDK in-memory exporter)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.main import create_app
from app.settings import Settings
from tests.conftest import settings_for

STAGES = ["forward", "postprocess", "queue", "tokenize"]


async def traced_requests(
    tiny_models: dict[str, Path], write_catalog: Callable[[list[dict[str, Any]]], Path]
) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    model = {"name": "traced", "task": "sentiment", "source": str(tiny_models["sentiment"]),
             "backend": "fake", "backend_options": {"delay_ms": 50},
             "batching": {"max_batch_size": 8, "max_wait_ms": 20}}  # fmt: skip
    settings: Settings = settings_for(write_catalog([model]))
    app = create_app(settings, tracer_provider=provider)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await client.post("/v1/sentiment", json={"inputs": "first, alone"})
            exporter.clear()  # the warm-up and the first request are not the test
            # The first occupies the model; the next three queue and share one batch.
            responses = await asyncio.gather(
                *(client.post("/v1/sentiment", json={"inputs": f"text {i}"}) for i in range(4))
            )
    assert all(r.status_code == 200 for r in responses)
    return list(exporter.get_finished_spans())


async def test_each_request_has_its_stage_spans_and_batches_link_them(
    tiny_models: dict[str, Path], write_catalog: Callable[[list[dict[str, Any]]], Path]
) -> None:
    spans = await traced_requests(tiny_models, write_catalog)
    requests = [s for s in spans if s.parent is None and s.name != "batch"]
    batches = [s for s in spans if s.name == "batch"]
    assert len(requests) == 4
    assert 1 <= len(batches) < 4  # requests shared forward passes
    by_parent: dict[int, list[ReadableSpan]] = {}
    for span in spans:
        if span.parent is not None:
            by_parent.setdefault(span.parent.span_id, []).append(span)
    batch_ids = {b.context.span_id for b in batches}
    linked_requests = {link.context.span_id for b in batches for link in b.links}
    for request in requests:
        children = by_parent.get(request.context.span_id, [])
        assert sorted(c.name for c in children) == STAGES
        assert request.context.span_id in linked_requests  # its batch links to it
        (forward,) = [c for c in children if c.name == "forward"]
        assert {link.context.span_id for link in forward.links} <= batch_ids
        assert forward.links
        for child in children:
            assert child.start_time is not None
            assert child.end_time is not None
            assert child.end_time >= child.start_time
    assert max(len(b.links) for b in batches) > 1  # one forward pass served several requests
    assert all(b.attributes and b.attributes["nlp_serve.model"] == "traced" for b in batches)
