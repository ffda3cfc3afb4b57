"""The scheduler seam: routes submit items; a scheduler decides how they meet the model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Scheduler(Protocol):
    async def submit(
        self, items: Sequence[Any], params: Any, deadline: float | None = None
    ) -> list[Any]:
        """Run every item with the same params; results align with items.

        deadline is a time.monotonic() instant; None uses the scheduler's default timeout.
        """
        ...

    def queue_depth(self) -> int: ...

    async def close(self) -> None: ...
