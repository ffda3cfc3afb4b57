"""Loading a served model (app/pipeline.py): resolve its source, load its tokenizer, choose and
load its backend, put the task in front."""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any

from app.errors import CatalogError, ModelLoadError
from app.pipeline import GenerativeModel, ServedModel
from app.registry.sources import resolve_source
from app.registry.trust import check_model_dir
from app.runtimes import BACKENDS, TEST_BACKENDS, backend_class
from app.settings import Settings
from app.spec import AUTO, ModelSpec
from app.tasks import task_class
from app.tasks.causal import GenerateTask

logger = logging.getLogger(__name__)


class ModelStatus(StrEnum):
    PENDING = "pending"
    LOADING = "loading"
    WARMING = "warming"
    READY = "ready"
    FAILED = "failed"


def check_backend(spec: ModelSpec, index: int) -> None:
    if spec.backend != AUTO and spec.backend not in BACKENDS | TEST_BACKENDS:
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
    backend = backend_class(spec.backend)(model_dir, task_cls.head, spec, settings)
    task = task_cls(spec, model_dir, tokenizer, backend.config)
    logger.info(
        "loaded model %s (%s) from %s on %s/%s",
        spec.name,
        spec.task.value,
        model_dir,
        backend.name,
        backend.device,
    )
    if isinstance(task, GenerateTask):
        return GenerativeModel(spec, task, backend)
    return ServedModel(spec, task, backend)
