"""A served model: one task + one backend + one tokenizer, described by one ModelSpec."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

from app import metrics
from app.batching.base import Timed
from app.errors import CatalogError, InvalidInput, ModelLoadError
from app.registry.sources import resolve_source
from app.registry.trust import check_model_dir
from app.runtimes import BACKENDS
from app.runtimes.base import Backend, ModelOutputs
from app.settings import Settings
from app.spec import AUTO, BatchingSpec, ModelSpec
from app.tasks import task_class
from app.tasks.base import Encoded, Row, Task, all_finite, collate

logger = logging.getLogger(__name__)


class ModelStatus(StrEnum):
    PENDING = "pending"
    LOADING = "loading"
    WARMING = "warming"
    READY = "ready"
    FAILED = "failed"


class BatchSizeMismatch(RuntimeError):
    """A batch gave a different number of results than it took items: a bug, never hidden."""


class NonFiniteResult(RuntimeError):
    """A score came out NaN or infinite: a model fault, never sent as null."""


class ServedModel:
    def __init__(self, spec: ModelSpec, task: Task[Any, Any, Any], backend: Backend) -> None:
        self.spec = spec
        self.name = spec.name
        self.task = task
        self.backend = backend
        self.pad_token_id = int(task.tokenizer.pad_token_id or 0)
        self.decision: dict[str, Any] | None = None  # how `auto` chose the engine, if it did
        # Bound once: a labels() lookup per request is a lock and a dict walk on the hot path.
        self._tokenize_seconds = metrics.STAGE_SECONDS.labels(self.name, "tokenize")
        self._forward_seconds = metrics.STAGE_SECONDS.labels(self.name, "forward")
        self._postprocess_seconds = metrics.STAGE_SECONDS.labels(self.name, "postprocess")

    @property
    def batching(self) -> BatchingSpec:
        return self.spec.batching

    def batch_key(self, params: Any) -> Hashable:
        return self.task.batch_key(params)

    # Each stage is timed here and only here: the one measurement goes to the Prometheus
    # histogram and back to the caller (the batcher), which reports it in Server-Timing.

    def encode(self, item: Any, params: Any) -> Encoded:
        """Tokenize one item; its tokenize_s says how long that took."""
        started = time.perf_counter()
        encoded = self.task.encode(item, params)
        if not encoded.rows:
            raise InvalidInput(f"model {self.name!r} produced no tokens for an input; send text")
        encoded.tokenize_s = time.perf_counter() - started
        self._tokenize_seconds.observe(encoded.tokenize_s)
        return encoded

    def item_chars(self, item: Any) -> int:
        return self.task.item_chars(item)

    def forward_rows(
        self, rows: Sequence[Row], params: Any, deadline: float | None = None
    ) -> Timed[ModelOutputs]:
        """Collate rows into one padded batch and run it (their items share params)."""
        started = time.perf_counter()
        inputs = collate(rows, self.pad_token_id)
        outputs = self.task.execute(self.backend, inputs, params, deadline)
        seconds = time.perf_counter() - started
        self._forward_seconds.observe(seconds)
        produced = {len(value) for value in outputs.values()}
        if produced != {len(rows)}:
            raise BatchSizeMismatch(
                f"model {self.name!r} returned {sorted(produced)} rows for a batch of {len(rows)}"
            )
        return Timed(outputs, seconds)

    def decode(self, encoded: Encoded, outputs: ModelOutputs, params: Any) -> Timed[Any]:
        """One item's answer from its own rows of the outputs."""
        started = time.perf_counter()
        result = self.task.decode(encoded, outputs, params)
        if not all_finite(result):
            raise NonFiniteResult(f"model {self.name!r} produced a NaN or infinite score")
        seconds = time.perf_counter() - started
        self._postprocess_seconds.observe(seconds)
        return Timed(result, seconds)

    def warm_up(self) -> None:
        """One request through every stage, so the first real one pays no first-call costs."""
        item, params = self.task.warmup_request()
        encoded = self.encode(item, params)
        self.decode(encoded, self.forward_rows(encoded.rows, params).value, params)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.spec.task.value,
            "backend": self.backend.name,
            "device": self.backend.device,
            "precision": self.backend.precision,
            "max_length": self.task.max_length,
            **self.task.describe(),
            **({"auto": self.decision} if self.decision is not None else {}),
        }

    def close(self) -> None:
        self.backend.close()


def check_backend(spec: ModelSpec, index: int) -> None:
    if spec.backend != AUTO and spec.backend not in BACKENDS:
        raise CatalogError(
            f"models[{index}] (name {spec.name!r}) field 'backend': unknown backend "
            f"{spec.backend!r}; choose one of {sorted([*BACKENDS, AUTO])}"
        )


def load_model(
    spec: ModelSpec,
    settings: Settings,
    index: int = 0,
    admit: Callable[[Path], None] | None = None,
    hub_only: bool = False,
) -> ServedModel:
    """Resolve the source, load the tokenizer, choose the engine where the entry says `auto`,
    and load the backend with the task in front (blocking). `admit` sees the folder before
    anything reads it (the admin API's memory check); hub_only: see resolve_source."""
    check_backend(spec, index)
    task_cls = task_class(spec)
    model_dir: Path = resolve_source(spec, settings, hub_only=hub_only)
    check_model_dir(spec, model_dir)  # before any library reads the folder
    if admit is not None:
        admit(model_dir)
    tokenizer = load_tokenizer(spec, model_dir)
    if spec.backend == AUTO or spec.precision == AUTO:
        from app.registry.auto import load_auto

        return load_auto(spec, model_dir, task_cls.head, tokenizer, settings)
    return build_model(spec, model_dir, tokenizer, settings)


def load_tokenizer(spec: ModelSpec, model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    task_cls = task_class(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            str(model_dir), use_fast=True, trust_remote_code=spec.trust_remote_code
        )
    except Exception as exc:
        raise ModelLoadError(
            f"model {spec.name!r}: no usable tokenizer in {model_dir}: {type(exc).__name__}: {exc}"
        ) from None
    if task_cls.needs_offsets and not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(
            f"model {spec.name!r}: task {spec.task.value!r} needs a fast (Rust) tokenizer for "
            f"character offsets; {model_dir} has only a slow one. Save tokenizer.json with it."
        )
    return tokenizer


def build_model(
    spec: ModelSpec, model_dir: Path, tokenizer: Any, settings: Settings
) -> ServedModel:
    """The served model for a concrete entry (a named backend and precision)."""
    task_cls = task_class(spec)
    backend = BACKENDS[spec.backend](model_dir, task_cls.head, spec, settings)
    task = task_cls(spec, model_dir, tokenizer, backend.config)
    logger.info(
        "loaded model %s (%s) from %s on %s/%s",
        spec.name,
        spec.task.value,
        model_dir,
        backend.name,
        backend.device,
    )
    return ServedModel(spec, task, backend)
