"""The Registry: loads catalog models (pending -> loading -> warming -> ready) and looks them up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from app import metrics
from app.batching.base import Scheduler
from app.errors import InvalidInput, ModelLoadError, ModelNotFound, NotReady, TaskNotServed
from app.registry.model import ModelStatus, ServedModel, check_backend, load_model
from app.settings import Settings
from app.spec import Catalog, ModelSpec, TaskName

logger = logging.getLogger(__name__)

# A scheduler runs the model on the model's own thread, the one that loaded and warmed it.
SchedulerFactory = Callable[[ServedModel, ThreadPoolExecutor], Scheduler]


@dataclass
class _Entry:
    spec: ModelSpec
    status: ModelStatus = ModelStatus.PENDING
    model: ServedModel | None = None
    scheduler: Scheduler | None = None
    thread: ThreadPoolExecutor | None = None
    error: str | None = None


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
        entry.model = model
        entry.scheduler = self._scheduler_factory(model, entry.thread)
        entry.status = ModelStatus.READY
        metrics.MODEL_LOADED.labels(spec.name, model.backend.name, model.backend.device).set(1)

    async def close(self) -> None:
        self.draining = True
        for entry in self._entries.values():
            if entry.scheduler is not None:
                await entry.scheduler.close()
            if entry.model is not None:
                metrics.MODEL_LOADED.labels(
                    entry.spec.name, entry.model.backend.name, entry.model.backend.device
                ).set(0)
                entry.model.close()
            if entry.thread is not None:
                entry.thread.shutdown(wait=True, cancel_futures=True)
            entry.model, entry.scheduler, entry.thread = None, None, None
            entry.status = ModelStatus.PENDING

    def _ready_entry(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            raise ModelNotFound(
                f"no model named {name!r}; available: {sorted(self._entries)} (GET /v1/models)"
            )
        if entry.status is not ModelStatus.READY or entry.model is None:
            raise NotReady(f"model {name!r} is {entry.status.value}, not ready; retry shortly")
        return entry

    def get(self, name: str) -> ServedModel:
        model = self._ready_entry(name).model
        assert model is not None
        return model

    def scheduler(self, name: str) -> Scheduler:
        scheduler = self._ready_entry(name).scheduler
        assert scheduler is not None
        return scheduler

    def names_for(self, task: TaskName) -> list[str]:
        """Models serving the task, the catalog's default first."""
        default = self.catalog.default_for(task)
        names = [s.name for s in self.catalog.models if s.task is task]
        if default is not None:
            names.remove(default.name)
            names.insert(0, default.name)
        return names

    def for_task(self, task: TaskName, name: str | None = None) -> ServedModel:
        if name is not None:
            model = self.get(name)
            if model.spec.task is not task:
                raise InvalidInput(
                    f"model {name!r} serves {model.spec.task.value!r}, not {task.value!r}; "
                    f"models for {task.value!r}: {self.names_for(task)}"
                )
            return model
        names = self.names_for(task)
        if not names:
            raise TaskNotServed(
                f"no model in this catalog serves {task.value!r}: it needs fine-tuned weights. "
                "Serve models/hub.yaml (fetch it where the hub is reachable with `nlp-serve "
                "pull --models models/hub.yaml`) or add a model to your catalog "
                "(docs/configuration.md)"
            )
        return self.get(names[0])

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
            info["queue_depth"] = entry.scheduler.queue_depth() if entry.scheduler else 0
            if entry.error:
                info["error"] = entry.error
            out.append(info)
        return out
