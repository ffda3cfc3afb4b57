"""Optional OpenTelemetry tracing: a span per request, child spans for where its time went.

Off unless NLP_SERVE_TRACING is set or the standard variables ask for traces
(OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); the
other OTEL_* variables (service name, resource attributes, endpoint, headers, sampler) are read
by the SDK itself. FastAPI's own instrumentation makes the request span; the batcher adds
`tokenize`, `queue`, `forward` and `postprocess` under it. One forward pass serves many
requests, so each batch gets one `batch` span linked to every request it served, and each
request's `forward` span links back to it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanContext, Tracer, TracerProvider

from app.settings import Settings

TRACES_REQUESTED_BY = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)
INSTRUMENTATION = "nlp_serve"


def tracing_requested(settings: Settings) -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return settings.tracing or any(os.environ.get(name) for name in TRACES_REQUESTED_BY)


def build_tracer_provider(settings: Settings) -> TracerProvider | None:
    """An SDK provider exporting as OTEL_TRACES_EXPORTER says (otlp, the default, or
    console), or None when tracing is off."""
    if not tracing_requested(settings):
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
        SpanExporter,
    )

    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
    service = os.environ.get("OTEL_SERVICE_NAME") or "nlp-serve"
    provider = SDKTracerProvider(resource=Resource.create({"service.name": service}))
    kinds = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").lower().split(",")
    for kind in (k.strip() for k in kinds):
        exporter: SpanExporter
        if kind == "console":
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        elif kind == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()  # OTEL_EXPORTER_OTLP_* configure it
            provider.add_span_processor(BatchSpanProcessor(exporter))
        else:
            raise ValueError(
                f"OTEL_TRACES_EXPORTER={kind!r} is not supported here; use otlp, console or none"
            )
    return provider


@dataclass
class StageClock:
    """Wall-clock instants (ns since the epoch) of one item's stages, for its spans."""

    enqueued: int = 0
    batch_started: int = 0
    forward_started: int = 0
    forward_ended: int = 0
    decode_started: int = 0
    decode_ended: int = 0
    batch_span: SpanContext | None = None


def emit_batch_span(
    tracer: Tracer,
    model: str,
    started: int,
    ended: int,
    served: Sequence[SpanContext],
    rows: int,
    padded_tokens: int,
) -> SpanContext:
    """One span for one forward pass, linked to every request it served."""
    span = tracer.start_span(
        "batch",
        context=Context(),  # its own trace: it belongs to many requests equally
        start_time=started,
        links=[Link(context) for context in served if context.is_valid],
        attributes={
            "nlp_serve.model": model,
            "nlp_serve.batch.requests": len(served),
            "nlp_serve.batch.rows": rows,
            "nlp_serve.batch.padded_tokens": padded_tokens,
        },
    )
    span.end(end_time=ended)
    return span.get_span_context()


def emit_request_spans(
    tracer: Tracer,
    parent: Context,
    model: str,
    tokenize: tuple[int, int],
    clocks: Sequence[StageClock],
) -> None:
    """tokenize, queue, forward and postprocess under the request's span."""
    attributes: dict[str, str | int] = {"nlp_serve.model": model, "nlp_serve.items": len(clocks)}
    first_enqueued = min(c.enqueued for c in clocks)
    stages: list[tuple[str, int, int, list[Link]]] = [
        ("tokenize", *tokenize, []),
        ("queue", first_enqueued, max(c.batch_started for c in clocks), []),
        (
            "forward",
            min(c.forward_started for c in clocks),
            max(c.forward_ended for c in clocks),
            [Link(c.batch_span) for c in clocks if c.batch_span is not None],
        ),
        (
            "postprocess",
            min(c.decode_started for c in clocks),
            max(c.decode_ended for c in clocks),
            [],
        ),
    ]
    for name, start, end, links in stages:
        span = tracer.start_span(
            name, context=parent, start_time=start, links=links, attributes=attributes
        )
        span.end(end_time=max(start, end))


def current_span_context(context: Context) -> SpanContext:
    return trace.get_current_span(context).get_span_context()
