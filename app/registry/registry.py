"""The Registry: loads catalog models (pending -> loading -> warming -> ready) and resolves a
request (task, model name or None, params) to the one handle that serves it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from app import metrics
from app.batching.base import Scheduler, Served
from app.errors import (
    InvalidInput,
    ModelLoadError,
    ModelNotFound,
    NotReady,
    ServeError,
    TaskNotServed,
)
from app.registry.model import ModelStatus, ServedModel, check_backend, load_model
from app.settings import Settings
from app.spec import Catalog, ModelSpec, TaskName

logger = logging.getLogger(__name__)

# A scheduler runs the model on the model's own thread, the one that loaded and warmed it.
SchedulerFactory = Callable[[ServedModel, ThreadPoolExecutor], Scheduler]


@dataclass(frozen=True)
class ModelHandle:
    """A ready model and the scheduler in front of it: what a request is served by."""

    model: ServedModel
    scheduler: Scheduler

    @property
    def name(self) -> str:
        return self.model.name

    async def submit(
        self, items: Sequence[Any], params: Any, deadline: float | None = None
    ) -> Served:
        return await self.scheduler.submit(items, params, deadline)


@dataclass
class _Entry:
    spec: ModelSpec
    status: ModelStatus = ModelStatus.PENDING
    handle: ModelHandle | None = None
    thread: ThreadPoolExecutor | None = None
    error: str | None = None

    @property
    def model(self) -> ServedModel | None:
        return self.handle.model if self.handle else None


class Registry:
    def __init__(
        self, catalog: Catalog, settings: Settings, scheduler_factory: SchedulerFactory
    ) -> None:
        for index, spec in enumerate(catalog.models):
            check_backend(spec, index)  # fail on a typo before loading anything
        self.catalog = catalog
        self.settings = settings
        self._scheduler_factory = scheduler_factory
        self._entries = {spec.name: _Entry(spec) for spec in catalog.models}
        self.draining = False

    @property
    def ready(self) -> bool:
        return not self.draining and all(
            e.status is ModelStatus.READY for e in self._entries.values()
        )

    async def load_all(self) -> None:
        for index, entry in enumerate(self._entries.values()):
            await self._load(entry, index)

    async def _load(self, entry: _Entry, index: int) -> None:
        """Load, warm up and serve the model from one thread of its own.

        PyTorch gives each thread that runs parallel work its own OpenMP team. Loading or
        warming on another thread would leave a second team behind, more OpenMP threads than
        cores, and libgomp then stops its workers spinning between operators: a single-item
        forward pass measured ~40% slower that way.
        """
        spec = entry.spec
        entry.status = ModelStatus.LOADING
        loop = asyncio.get_running_loop()
        entry.thread = ThreadPoolExecutor(1, thread_name_prefix=f"model-{spec.name}")
        try:
            model = await loop.run_in_executor(entry.thread, load_model, spec, self.settings, index)
            entry.status = ModelStatus.WARMING
            if self.settings.warmup:
                await loop.run_in_executor(entry.thread, model.warm_up)
        except ModelLoadError as exc:
            entry.status, entry.error = ModelStatus.FAILED, str(exc)
            raise
        except Exception as exc:
            entry.status, entry.error = ModelStatus.FAILED, str(exc)
            raise ModelLoadError(
                f"model {spec.name!r} failed to load or warm up: {type(exc).__name__}: {exc}"
            ) from exc
        entry.handle = ModelHandle(model, self._scheduler_factory(model, entry.thread))
        entry.status = ModelStatus.READY
        metrics.MODEL_LOADED.labels(spec.name, model.backend.name, model.backend.device).set(1)

    async def close(self) -> None:
        self.draining = True
        for entry in self._entries.values():
            if entry.handle is not None:
                model = entry.handle.model
                await entry.handle.scheduler.close()
                metrics.MODEL_LOADED.labels(
                    entry.spec.name, model.backend.name, model.backend.device
                ).set(0)
                model.close()
            if entry.thread is not None:
                entry.thread.shutdown(wait=True, cancel_futures=True)
            entry.handle, entry.thread = None, None
            entry.status = ModelStatus.PENDING

    def handle(self, name: str) -> ModelHandle:
        entry = self._entries.get(name)
        if entry is None:
            raise ModelNotFound(
                f"no model named {name!r}; available: {sorted(self._entries)} (GET /v1/models)"
            )
        if entry.status is not ModelStatus.READY or entry.handle is None:
            raise NotReady(f"model {name!r} is {entry.status.value}, not ready; retry shortly")
        return entry.handle

    def names_for(self, task: TaskName) -> list[str]:
        """Models serving the task, the catalog's default first."""
        default = self.catalog.default_for(task)
        names = [s.name for s in self.catalog.models if s.task is task]
        if default is not None:
            names.remove(default.name)
            names.insert(0, default.name)
        return names

    def resolve(self, task: TaskName, name: str | None, params: Any) -> ModelHandle:
        """The model that serves this request.

        A named model must serve the task and accept the params (each task says what it can
        serve: zero-shot vs fixed labels, the language pair). Without a name, the first of the
        task's models that accepts them, the default first; if none does, their reasons.
        """
        if name is not None:
            handle = self.handle(name)
            if handle.model.spec.task is not task:
                raise InvalidInput(
                    f"model {name!r} serves {handle.model.spec.task.value!r}, not "
                    f"{task.value!r}; models for {task.value!r}: {self.names_for(task)}"
                )
            refusal = handle.model.task.refusal(params)
            if refusal is not None:
                raise refusal
            return handle
        names = self.names_for(task)
        if not names:
            raise TaskNotServed(
                f"no model in this catalog serves {task.value!r}: it needs fine-tuned weights. "
                "Serve models/hub.yaml (fetch it where the hub is reachable with `nlp-serve "
                "pull --models models/hub.yaml`) or add a model to your catalog "
                "(docs/configuration.md)"
            )
        refusals: list[ServeError] = []
        for candidate in names:
            handle = self.handle(candidate)
            refusal = handle.model.task.refusal(params)
            if refusal is None:
                return handle
            refusals.append(refusal)
        if len(refusals) == 1:
            raise refusals[0]
        reasons = "; ".join(r.message for r in refusals)
        raise type(refusals[0])(f"no {task.value} model serves this request: {reasons}")

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for entry in self._entries.values():
            info: dict[str, Any] = {
                "name": entry.spec.name,
                "task": entry.spec.task.value,
                "status": entry.status.value,
                "default": self.catalog.default_for(entry.spec.task) is entry.spec,
                "batching": entry.spec.batching.model_dump(),
            }
            if entry.model is not None:
                info.update(entry.model.describe())
            else:
                info.update(backend=entry.spec.backend, device=entry.spec.device)
            info["queue_depth"] = entry.handle.scheduler.queue_depth() if entry.handle else 0
            if entry.error:
                info["error"] = entry.error
            out.append(info)
        return out
