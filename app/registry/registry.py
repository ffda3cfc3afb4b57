"""The Registry: loads catalog models (pending -> loading -> warming -> ready) and resolves a
request (task, model name or None, params) to the one handle that serves it.

At run time (the admin API) it loads, unloads and replaces models. The serving set changes
only in one step with no await in it, after the new model is loaded and warmed; a retired
handle finishes what it already took and sends later submits to its successor (a replace) or
answers 404 (an unload), so no request fails in between.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from app import metrics
from app.batching.base import Scheduler, Served
from app.batching.continuous import ContinuousBatcher, Generation
from app.errors import (
    CatalogError,
    Conflict,
    InvalidInput,
    ModelLoadCrashed,
    ModelLoadError,
    ModelLoadFailed,
    ModelNotFound,
    NotReady,
    ServeError,
    TaskNotServed,
)
from app.pipeline import ServedModel
from app.registry.admission import SourceKind, admit_source, check_fits
from app.registry.model import ModelStatus, check_backend, load_model
from app.settings import Settings
from app.spec import Catalog, ModelSpec, TaskName
from app.tasks.causal import GenerateParams, Prompt

logger = logging.getLogger(__name__)

# A scheduler runs the model on the model's own thread, the one that loaded and warmed it.
SchedulerFactory = Callable[[ServedModel, ThreadPoolExecutor], Scheduler]


class _LoadCrashed(ModelLoadError):
    """Loading or warming raised something other than a ModelLoadError (its __cause__)."""


@dataclass(eq=False)
class ModelHandle:
    """A ready model and the scheduler in front of it: what a request is served by.

    Retired (unloaded or replaced) once the registry no longer hands it out. A request that
    resolved it just before goes to its successor (the new version) or, after an unload,
    answers 404 like any later request.
    """

    model: ServedModel
    scheduler: Scheduler
    retired: bool = False
    successor: ModelHandle | None = None

    @property
    def name(self) -> str:
        return self.model.name

    def current(self) -> ModelHandle:
        """This handle, or the version that replaced it (404 once unloaded)."""
        handle = self
        while handle.retired:
            if handle.successor is None:
                raise ModelNotFound(
                    f"model {self.name!r} was unloaded; GET /v1/models lists the models served"
                )
            handle = handle.successor
        return handle

    async def submit(
        self, items: Sequence[Any], params: Any, deadline: float | None = None
    ) -> Served:
        # No await before the scheduler counts this submit: a drain that starts after this
        # line waits for it.
        return await self.current().scheduler.submit(items, params, deadline)

    async def generation(
        self, prompts: Sequence[Prompt], params: GenerateParams, deadline: float
    ) -> Generation:
        """A causal LM's sequences, started (tokenized, queued) and streaming."""
        scheduler = self.current().scheduler
        if not isinstance(scheduler, ContinuousBatcher):  # pragma: no cover - resolve() checks
            raise TaskNotServed(f"model {self.name!r} does not generate text")
        return await scheduler.start(prompts, params, deadline)


@dataclass
class _Entry:
    spec: ModelSpec
    admitted: SourceKind | None = None  # an admin API entry: how its source was admitted
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
        self._loading: dict[str, _Entry] = {}  # admin loads in progress (not serving yet)
        self._admin = asyncio.Lock()  # one change of the serving set at a time
        self._admin_load: asyncio.Task[_Entry] | None = None  # what draining cancels
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
            load = functools.partial(load_model, spec, self.settings, index)
            if entry.admitted is not None:  # the admin API: fits in memory, hub ids stay hub ids
                load = functools.partial(
                    load,
                    admit=functools.partial(check_fits, spec, settings=self.settings),
                    hub_only=entry.admitted is SourceKind.HUB,
                )
            model = await loop.run_in_executor(entry.thread, load)
            entry.status = ModelStatus.WARMING
            if self.settings.warmup:
                await loop.run_in_executor(entry.thread, model.warm_up)
        except ModelLoadError as exc:
            entry.status, entry.error = ModelStatus.FAILED, str(exc)
            raise
        except Exception as exc:
            entry.status, entry.error = ModelStatus.FAILED, str(exc)
            raise _LoadCrashed(
                f"model {spec.name!r} failed to load or warm up: {type(exc).__name__}: {exc}"
            ) from exc
        entry.handle = ModelHandle(model, self._scheduler_factory(model, entry.thread))
        entry.status = ModelStatus.READY
        metrics.MODEL_LOADED.labels(spec.name, model.backend.name, model.backend.device).set(1)

    async def close(self) -> None:
        """Stop: an admin load in progress is cancelled (its client gets 503), not waited
        for, so shutdown keeps to its grace period; then every model is closed."""
        self.draining = True
        if self._admin_load is not None:
            self._admin_load.cancel()
        async with self._admin:
            await self._close_all()

    async def _close_all(self) -> None:
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

    # -- the serving set at run time (admin API) -----------------------------------------

    def _refuse_model_code(self, spec: ModelSpec) -> None:
        """Run-time entries come from an admin key, not from whoever deploys: code that ships
        with a model runs only where the server's settings allow it."""
        opted = [f for f in ("trust_remote_code", "allow_pickle") if getattr(spec, f)]
        if opted and not self.settings.admin_allow_model_code:
            raise InvalidInput(
                f"model {spec.name!r}: {' and '.join(opted)} would run code that came with the "
                "model inside the server, which this server does not allow at run time; put "
                "the entry in the catalog file, or start the server with "
                "NLP_SERVE_ADMIN_ALLOW_MODEL_CODE=true"
            )

    async def add(self, spec: ModelSpec) -> None:
        """Load and warm a new model, then serve it; a failure changes nothing."""
        self._refuse_model_code(spec)
        admitted = admit_source(spec, self.settings)
        spec = admitted.spec
        async with self._admin:
            self._refuse_while_draining()
            if spec.name in self._entries:
                raise Conflict(
                    f"a model named {spec.name!r} is already served; replace it with "
                    f"PUT /admin/models/{spec.name} or choose another name"
                )
            catalog = self._catalog_of([*self.catalog.models, spec])
            entry = await self._cancellable_load(spec, admitted.kind)
            self._entries[spec.name] = entry
            self.catalog = catalog
        logger.info("model %s loaded at run time", spec.name)

    async def replace(self, spec: ModelSpec) -> None:
        """Load and warm the new version while the old one serves; then swap them in one
        step, and let the old one finish what it took before it is closed."""
        self._refuse_model_code(spec)
        admitted = admit_source(spec, self.settings)
        spec = admitted.spec
        async with self._admin:
            self._refuse_while_draining()
            old = self._serving(spec.name)
            if spec.task is not old.spec.task:
                raise Conflict(
                    f"model {spec.name!r} serves {old.spec.task.value!r}; a replacement must "
                    f"serve the same task, not {spec.task.value!r}. To change the task, "
                    "unload it and load the new entry"
                )
            catalog = self._catalog_of(
                [spec if m.name == spec.name else m for m in self.catalog.models]
            )
            new = await self._cancellable_load(spec, admitted.kind)
            assert old.handle is not None
            assert new.handle is not None
            self._entries[spec.name] = new  # from here on, requests resolve the new version
            self.catalog = catalog
            old.handle.successor = new.handle
            old.handle.retired = True
            await self._retire(old, successor=new.handle)
        logger.info("model %s replaced at run time", spec.name)

    async def remove(self, name: str) -> None:
        """Stop serving a model at once (new requests 404), finish its queued and running
        work, then close it."""
        async with self._admin:
            self._refuse_while_draining()
            entry = self._serving(name)
            if len(self._entries) == 1:
                raise Conflict(
                    f"model {name!r} is the last model served; load another one first, or "
                    "stop the service"
                )
            catalog = self._catalog_of([m for m in self.catalog.models if m.name != name])
            del self._entries[name]
            self.catalog = catalog
            assert entry.handle is not None
            entry.handle.retired = True
            await self._retire(entry, successor=None)
        logger.info("model %s unloaded at run time", name)

    def _refuse_while_draining(self) -> None:
        if self.draining:
            raise NotReady("the service is shutting down; change models on another replica")

    def _serving(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            raise self._not_found(name)
        return entry

    def _not_found(self, name: str) -> ModelNotFound:
        return ModelNotFound(
            f"no model named {name!r}; available: {sorted(self._entries)} (GET /v1/models)"
        )

    def _catalog_of(self, specs: list[ModelSpec]) -> Catalog:
        """The catalog the serving set would become: checked like a catalog file."""
        try:
            return Catalog(models=specs)
        except ValidationError as exc:
            problems = "; ".join(
                str(err["msg"]).removeprefix("Value error, ") for err in exc.errors()
            )
            raise InvalidInput(f"the catalog would become invalid: {problems}") from None

    async def _cancellable_load(self, spec: ModelSpec, admitted: SourceKind) -> _Entry:
        """_load_at_run_time as a task of its own, which close() cancels when the service
        stops: the load's thread finishes on its own, nobody waits for it."""
        load = asyncio.ensure_future(self._load_at_run_time(spec, admitted))
        self._admin_load = load
        try:
            return await load
        except asyncio.CancelledError:
            if not load.cancelled():  # the request itself was cancelled: so is its load
                load.cancel()
                raise
            raise NotReady(
                f"model {spec.name!r}: the service is shutting down, so its load was "
                "cancelled; load it on another replica"
            ) from None
        finally:
            self._admin_load = None

    async def _load_at_run_time(self, spec: ModelSpec, admitted: SourceKind) -> _Entry:
        """A loaded, warmed entry with its scheduler, or a typed error (nothing left over)."""
        entry = _Entry(spec, admitted)
        self._loading[spec.name] = entry
        try:
            await self._load(entry, len(self._entries))
        except asyncio.CancelledError:
            self._discard(entry)
            raise
        except (ModelLoadError, CatalogError) as exc:
            self._discard(entry)
            cause = exc.__cause__
            if isinstance(exc, _LoadCrashed) and cause is not None:
                # an unexpected exception: its text stays in the log, the client gets its type
                logger.error("model %s failed to load or warm up", spec.name, exc_info=cause)
                raise ModelLoadCrashed(
                    f"model {spec.name!r} failed to load or warm up ({type(cause).__name__}); "
                    "the serving set is unchanged and the traceback is in the server log"
                ) from None
            raise ModelLoadFailed(
                f"{exc}; the serving set is unchanged. Fix the entry and send it again"
            ) from None
        finally:
            self._loading.pop(spec.name, None)
        return entry

    def _discard(self, entry: _Entry) -> None:
        if entry.thread is not None:
            entry.thread.shutdown(wait=False, cancel_futures=True)
        entry.thread = None

    async def _retire(self, entry: _Entry, successor: ModelHandle | None) -> None:
        """Finish what a retired handle took, then close its model and thread."""
        handle = entry.handle
        assert handle is not None
        await handle.scheduler.drain()
        model, name = handle.model, entry.spec.name
        labels = (name, model.backend.name, model.backend.device)
        if successor is None:
            metrics.forget_model(name)  # unloaded: its series go, not linger at their last value
        else:
            new = successor.model
            if labels != (name, new.backend.name, new.backend.device):
                metrics.MODEL_LOADED.labels(*labels).set(0)
            # the old batcher zeroed the model's depth gauge on closing; the new one owns it
            metrics.QUEUE_DEPTH.labels(name).set(successor.scheduler.queue_depth())
        model.close()
        if entry.thread is not None:
            entry.thread.shutdown(wait=True, cancel_futures=True)
        entry.handle, entry.thread = None, None

    def handle(self, name: str) -> ModelHandle:
        entry = self._serving(name)
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
        """Every served model, then admin loads in progress (not yet serving)."""
        out = []
        loading = [e for name, e in self._loading.items() if name not in self._entries]
        for entry in [*self._entries.values(), *loading]:
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
