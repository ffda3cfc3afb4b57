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


async def test_a_grpc_call_is_a_server_span_under_the_callers_trace(
    tiny_models: dict[str, Path], write_catalog: Callable[[list[dict[str, Any]]], Path]
) -> None:
    import grpc

    from app.protocols.grpc_v2 import inference_pb2 as pb
    from app.protocols.grpc_v2.inference_pb2_grpc import GRPCInferenceServiceStub
    from tests.api.test_grpc import free_port, texts_tensor

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    model = {"name": "traced-grpc", "task": "sentiment", "backend": "fake",
             "source": str(tiny_models["sentiment"])}  # fmt: skip
    port = free_port()
    app = create_app(settings_for(write_catalog([model]), grpc_port=port), tracer_provider=provider)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = f"00-{trace_id}-00f067aa0ba902b7-01"
    async with LifespanManager(app), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        exporter.clear()
        request = pb.ModelInferRequest(
            model_name="traced-grpc", inputs=[texts_tensor("TEXT", ["x"])]
        )
        stub = GRPCInferenceServiceStub(channel)
        await stub.ModelInfer(request, metadata=(("traceparent", parent),))
    spans = list(exporter.get_finished_spans())
    (call,) = [s for s in spans if s.name == "inference.GRPCInferenceService/ModelInfer"]
    assert f"{call.context.trace_id:032x}" == trace_id  # joined the caller's trace
    assert call.attributes is not None
    assert call.attributes["rpc.system"] == "grpc"
    children = sorted(
        s.name for s in spans if s.parent and s.parent.span_id == call.context.span_id
    )
    assert children == STAGES
