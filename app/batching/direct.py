"""DirectScheduler: each request's own items form its batches, on the model's worker thread.

No cross-request batching: this is the baseline the dynamic batcher is measured against.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from app.errors import InferenceFailed, ServeError
from app.registry.model import ServedModel


class DirectScheduler:
    def __init__(self, model: ServedModel) -> None:
        self._model = model
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"model-{model.name}")
        self._waiting = 0

    def queue_depth(self) -> int:
        return self._waiting

    def _run(self, items: Sequence[Any], params: Any) -> list[Any]:
        encoded = [self._model.encode(item, params) for item in items]
        size = self._model.spec.batching.max_batch_size
        results: list[Any] = []
        for start in range(0, len(encoded), size):
            chunk = encoded[start : start + size]
            results.extend(self._model.run_batch(chunk, [params] * len(chunk)))
        return results

    async def submit(self, items: Sequence[Any], params: Any) -> list[Any]:
        loop = asyncio.get_running_loop()
        self._waiting += len(items)
        try:
            return await loop.run_in_executor(self._executor, self._run, items, params)
        except ServeError:
            raise
        except Exception as exc:
            raise InferenceFailed(
                f"model {self._model.name!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            self._waiting -= len(items)

    async def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
