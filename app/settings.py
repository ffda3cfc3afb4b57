"""Service settings, read from the environment (prefix ``NLP_SERVE_``) or a ``.env`` file.

Every field is documented in docs/configuration.md; keep the two in step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NLP_SERVE_", env_file=".env", extra="ignore", protected_namespaces=()
    )

    models: Path = Field(
        default=Path("models/offline.yaml"),
        description="Path of the YAML model catalog to load at start-up.",
    )
    host: str = Field(default="0.0.0.0", description="Address `nlp-serve serve` binds to.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `nlp-serve serve` binds to.")
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
    api_keys: list[str] = Field(
        default_factory=list,
        description=(
            "Accepted API keys (JSON list in the environment). Empty disables authentication. "
            "Clients send `Authorization: Bearer <key>` or `X-API-Key: <key>`."
        ),
    )
    max_items_per_request: int = Field(
        default=64, ge=1, description="Most inputs one request may carry; more answers 413."
    )
    max_input_chars: int = Field(
        default=50_000, ge=1, description="Longest single text (in characters); longer answers 413."
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
        default=1, ge=1, description="Threads that decode model outputs into answers (all models)."
    )
    onnx_cache_dir: Path = Field(
        default=Path(".cache/onnx"),
        description="Where `export: true` catalog entries keep their ONNX exports.",
    )
    openvino_cache_dir: Path = Field(
        default=Path(".cache/openvino"),
        description="Where `backend: openvino` entries with `export: true` keep their IR.",
    )
    ort_allow_spinning: bool = Field(
        default=False,
        description=(
            "Let ONNX Runtime's intra-op threads spin between runs. Lower latency on an idle, "
            "dedicated machine; off measured ~10% more throughput under load on 2 cores."
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
