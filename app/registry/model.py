"""A served model: one task + one backend + one tokenizer, described by one ModelSpec."""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

from app import metrics
from app.errors import CatalogError, InvalidInput, ModelLoadError
from app.registry.sources import resolve_source
from app.runtimes import BACKENDS
from app.runtimes.base import Backend, ModelOutputs
from app.settings import Settings
from app.spec import BatchingSpec, ModelSpec
from app.tasks import task_class
from app.tasks.base import Encoded, Task, collate

logger = logging.getLogger(__name__)


class ModelStatus(StrEnum):
    PENDING = "pending"
    LOADING = "loading"
    WARMING = "warming"
    READY = "ready"
    FAILED = "failed"


class BatchSizeMismatch(RuntimeError):
    """A batch gave a different number of results than it took items: a bug, never hidden."""


class ServedModel:
    def __init__(self, spec: ModelSpec, task: Task[Any, Any, Any], backend: Backend) -> None:
        self.spec = spec
        self.name = spec.name
        self.task = task
        self.backend = backend
        self.pad_token_id = int(task.tokenizer.pad_token_id or 0)
        # Bound once: a labels() lookup per request is a lock and a dict walk on the hot path.
        self._tokenize_seconds = metrics.STAGE_SECONDS.labels(self.name, "tokenize")
        self._forward_seconds = metrics.STAGE_SECONDS.labels(self.name, "forward")
        self._postprocess_seconds = metrics.STAGE_SECONDS.labels(self.name, "postprocess")

    @property
    def batching(self) -> BatchingSpec:
        return self.spec.batching

    def batch_key(self, params: Any) -> Hashable:
        return self.task.batch_key(params)

    def encode(self, item: Any, params: Any) -> Encoded:
        started = time.perf_counter()
        encoded = self.task.encode(item, params)
        if not encoded.rows:
            raise InvalidInput(f"model {self.name!r} produced no tokens for an input; send text")
        self._tokenize_seconds.observe(time.perf_counter() - started)
        return encoded

    def forward_batch(self, encoded: Sequence[Encoded], params: Any) -> ModelOutputs:
        """Collate every item's rows into one padded batch and run it (items share params)."""
        rows = [row for item in encoded for row in item.rows]
        started = time.perf_counter()
        outputs = self.task.execute(self.backend, collate(rows, self.pad_token_id), params)
        self._forward_seconds.observe(time.perf_counter() - started)
        produced = {len(value) for value in outputs.values()}
        if produced != {len(rows)}:
            raise BatchSizeMismatch(
                f"model {self.name!r} returned {sorted(produced)} rows for a batch of {len(rows)}"
            )
        return outputs

    @staticmethod
    def split_outputs(encoded: Sequence[Encoded], outputs: ModelOutputs) -> list[ModelOutputs]:
        """Each item's own rows of the batch outputs, in order."""
        slices, offset = [], 0
        for item in encoded:
            count = len(item.rows)
            slices.append({key: value[offset : offset + count] for key, value in outputs.items()})
            offset += count
        return slices

    def decode(self, encoded: Encoded, outputs: ModelOutputs, params: Any) -> Any:
        started = time.perf_counter()
        result = self.task.decode(encoded, outputs, params)
        self._postprocess_seconds.observe(time.perf_counter() - started)
        return result

    def run_batch(self, encoded: Sequence[Encoded], params: Sequence[Any]) -> list[Any]:
        """Forward and decode in one go (warm-up, and retrying items one at a time)."""
        outputs = self.forward_batch(encoded, params[0])
        slices = self.split_outputs(encoded, outputs)
        return [self.decode(e, o, p) for e, o, p in zip(encoded, slices, params, strict=True)]

    def warm_up(self) -> None:
        item, params = self.task.warmup_request()
        self.run_batch([self.encode(item, params)], [params])

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.spec.task.value,
            "backend": self.backend.name,
            "device": self.backend.device,
            "precision": self.backend.precision,
            "max_length": self.task.max_length,
            **self.task.describe(),
        }

    def close(self) -> None:
        self.backend.close()


def check_backend(spec: ModelSpec, index: int) -> type[Backend]:
    backend_cls = BACKENDS.get(spec.backend)
    if backend_cls is None:
        raise CatalogError(
            f"models[{index}] (name {spec.name!r}) field 'backend': unknown backend "
            f"{spec.backend!r}; choose one of {sorted(BACKENDS)}"
        )
    return backend_cls


def load_model(spec: ModelSpec, settings: Settings, index: int = 0) -> ServedModel:
    """Resolve the source, load tokenizer and backend, and put the task in front (blocking)."""
    from transformers import AutoTokenizer

    backend_cls = check_backend(spec, index)
    task_cls = task_class(spec)
    model_dir: Path = resolve_source(spec, settings)
    try:
        tokenizer = AutoTokenizer.from_pretrained(  # type: ignore[no-untyped-call]
            str(model_dir), use_fast=True
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
    backend = backend_cls(model_dir, task_cls.head, spec, settings)
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
