"""The scheduler seam: routes submit items; a scheduler decides how they meet the model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Scheduler(Protocol):
    async def submit(self, items: Sequence[Any], params: Any) -> list[Any]:
        """Run every item with the same params; results align with items."""
        ...

    def queue_depth(self) -> int: ...

    async def close(self) -> None: ...
