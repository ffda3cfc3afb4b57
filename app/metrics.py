"""Every Prometheus metric, declared once. Labels are bounded: route templates,
catalog model names, fixed stage and reason names."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# Sub-millisecond to a minute: covers a tiny encoder on GPU up to long generation on CPU.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5,
    0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
BATCH_TOKEN_BUCKETS = (16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)

# protocol: http | grpc. A gRPC call's route is its method ("/inference.GRPCInferenceService/
# ModelInfer") and its status the HTTP status of the same error in the one table (200: OK),
# so the alerts on 5xx and 429 cover both.
REQUESTS = Counter(
    "nlp_serve_requests", "Requests answered.", ["protocol", "route", "model", "status"]
)
REQUEST_SECONDS = Histogram(
    "nlp_serve_request_duration_seconds",
    "Request latency, from first byte in (a gRPC call's start) to response start.",
    ["protocol", "route", "model", "status"],
    buckets=LATENCY_BUCKETS,
)
INFLIGHT = Gauge(
    "nlp_serve_inflight_requests",
    "Requests (HTTP and gRPC) being served now.",
    multiprocess_mode="livesum",
)
QUEUE_WAIT_SECONDS = Histogram(
    "nlp_serve_queue_wait_seconds",
    "Time an item waited in its model's queue before its batch started.",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "nlp_serve_batch_size", "Items per executed batch.", ["model"], buckets=BATCH_SIZE_BUCKETS
)
BATCH_TOKENS = Histogram(
    "nlp_serve_batch_tokens",
    "Padded tokens per executed batch (longest item x rows).",
    ["model"],
    buckets=BATCH_TOKEN_BUCKETS,
)
STAGE_SECONDS = Histogram(
    "nlp_serve_inference_duration_seconds",
    "Time per inference stage (tokenize | forward | postprocess).",
    ["model", "stage"],
    buckets=LATENCY_BUCKETS,
)
QUEUE_DEPTH = Gauge(
    "nlp_serve_queue_depth",
    "Items waiting in a model's queue (queued or being tokenized).",
    ["model"],
    multiprocess_mode="livesum",
)
QUEUE_CAPACITY = Gauge(
    "nlp_serve_queue_capacity",
    "A model's max_queue: queue_depth / queue_capacity is how full it is.",
    ["model"],
    # Summed over workers like queue_depth, so the two divide (the queue-near-full alert).
    multiprocess_mode="livesum",
)
MODEL_LOADED = Gauge(
    "nlp_serve_model_loaded",
    "1 when the model is loaded and ready.",
    ["model", "backend", "device"],
    multiprocess_mode="liveall",
)
DROP_REASONS = ("cancelled", "deadline", "overload")
ITEMS_DROPPED = Counter(
    "nlp_serve_items_dropped",
    "Items dropped before the forward pass (cancelled | deadline | overload).",
    ["model", "reason"],
)

# Generation (task generate, app/batching/continuous.py).
TOKEN_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0,
)  # fmt: skip
TIME_TO_FIRST_TOKEN = Histogram(
    "nlp_serve_time_to_first_token_seconds",
    "From a sequence's arrival to its first generated token (queueing and prefill included).",
    ["model"],
    buckets=TOKEN_LATENCY_BUCKETS,
)
INTER_TOKEN_SECONDS = Histogram(
    "nlp_serve_inter_token_seconds",
    "Between two consecutive tokens of one sequence.",
    ["model"],
    buckets=TOKEN_LATENCY_BUCKETS,
)
GENERATED_TOKENS = Counter(
    "nlp_serve_generated_tokens", "Tokens generated (rate: tokens/s).", ["model"]
)
PROMPT_TOKENS = Counter("nlp_serve_prompt_tokens", "Prompt tokens prefilled.", ["model"])
SEQUENCES_RUNNING = Gauge(
    "nlp_serve_sequences_running",
    "Sequences prefilling or decoding now.",
    ["model"],
    multiprocess_mode="livesum",
)
SEQUENCES_WAITING = Gauge(
    "nlp_serve_sequences_waiting",
    "Sequences waiting to start (room in the batch or in the KV cache budget).",
    ["model"],
    multiprocess_mode="livesum",
)
KV_CACHE_TOKENS = Gauge(
    "nlp_serve_kv_cache_tokens",
    "KV cache tokens reserved by running sequences (prompt + max_new_tokens each).",
    ["model"],
    multiprocess_mode="livesum",
)
KV_CACHE_CAPACITY = Gauge(
    "nlp_serve_kv_cache_capacity_tokens",
    "A generate model's kv_cache_tokens: kv_cache_tokens / capacity is how full it is.",
    ["model"],
    multiprocess_mode="livesum",
)
FINISH_REASONS = ("stop", "length", "cancelled", "deadline", "error")
SEQUENCES_FINISHED = Counter(
    "nlp_serve_sequences_finished",
    "Sequences ended, by why (stop | length | cancelled | deadline | error).",
    ["model", "reason"],
)


MODEL_METRICS = (
    REQUESTS, REQUEST_SECONDS, QUEUE_WAIT_SECONDS, BATCH_SIZE, BATCH_TOKENS, STAGE_SECONDS,
    QUEUE_DEPTH, QUEUE_CAPACITY, MODEL_LOADED, ITEMS_DROPPED, TIME_TO_FIRST_TOKEN,
    INTER_TOKEN_SECONDS, GENERATED_TOKENS, PROMPT_TOKENS, SEQUENCES_RUNNING, SEQUENCES_WAITING,
    KV_CACHE_TOKENS, KV_CACHE_CAPACITY, SEQUENCES_FINISHED,
)  # fmt: skip


def forget_model(name: str) -> None:
    """Remove every series labelled model=name (a model unloaded at run time): a scrape shows
    only what is served, and its label values stop holding memory."""
    for metric in MODEL_METRICS:
        names = metric._labelnames  # prometheus-client has no public accessor for these
        seen = set()
        for family in metric.collect():
            for sample in family.samples:
                if sample.labels.get("model") == name:
                    seen.add(tuple(sample.labels[label] for label in names))
        for values in seen:
            metric.remove(*values)


class GPUMemoryCollector(Collector):
    """GPU memory per CUDA device, read at scrape time; nothing on machines without CUDA."""

    def collect(self) -> Iterator[Metric]:
        # Only where a model already loaded torch: registering this collector (which calls
        # collect) or a scrape must not import torch into an ONNX Runtime / OpenVINO server.
        if "torch" not in sys.modules:
            return
        from app.runtimes.device import cuda_device_count

        count = cuda_device_count()
        if not count:
            return
        import torch

        family = GaugeMetricFamily(
            "nlp_serve_gpu_memory_bytes",
            "GPU memory per device: allocated/reserved by this process, used/total on the device.",
            labels=["device", "kind"],
        )
        for index in range(count):
            device = f"cuda:{index}"
            family.add_metric([device, "allocated"], float(torch.cuda.memory_allocated(index)))
            family.add_metric([device, "reserved"], float(torch.cuda.memory_reserved(index)))
            free, total = torch.cuda.mem_get_info(index)
            family.add_metric([device, "total"], float(total))
            family.add_metric([device, "used"], float(total - free))
        yield family


class ReplicaLabelled(Collector):
    """Every sample of another registry, with a `replica` label added: replicas scraped
    through one address (Ray Serve's proxy) keep their own series."""

    def __init__(self, source: Collector, replica: str) -> None:
        self.source = source
        self.replica = replica

    def collect(self) -> Iterator[Metric]:
        for metric in self.source.collect():
            labelled = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            labelled.samples = [
                sample._replace(labels={**sample.labels, "replica": self.replica})
                for sample in metric.samples
            ]
            yield labelled


def exposition(replica: str | None = None) -> tuple[bytes, str]:
    """The /metrics body: this process's registry, or every worker's in multiprocess mode;
    with `replica`, every series carries that label."""
    source: Collector = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        source = CollectorRegistry()
        multiprocess.MultiProcessCollector(source)  # type: ignore[no-untyped-call]
    if replica:
        source = ReplicaLabelled(source, replica)
    return generate_latest(source), CONTENT_TYPE_LATEST


REGISTRY.register(GPUMemoryCollector())
