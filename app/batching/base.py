"""The scheduler seam: routes submit items; a scheduler decides how they meet the model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass
class StageTimes:
    """Where one request's time went, in seconds; for the Server-Timing response header.

    Items of one request may run in different batches: each stage holds its slowest item's.
    """

    tokenize: float = 0.0
    queue: float = 0.0
    forward: float = 0.0
    postprocess: float = 0.0

    def server_timing(self) -> str:
        """The W3C Server-Timing header value (durations in milliseconds)."""
        return ", ".join(
            f"{name};dur={seconds * 1000:.3f}"
            for name, seconds in (
                ("tokenize", self.tokenize),
                ("queue", self.queue),
                ("forward", self.forward),
                ("postprocess", self.postprocess),
            )
        )


class Scheduler(Protocol):
    async def submit(
        self,
        items: Sequence[Any],
        params: Any,
        deadline: float | None = None,
        times: StageTimes | None = None,
    ) -> list[Any]:
        """Run every item with the same params; results align with items.

        deadline is a time.monotonic() instant; None uses the scheduler's default timeout.
        times, when given, is filled with where the request's time went once it succeeds.
        """
        ...

    def queue_depth(self) -> int: ...

    async def close(self) -> None: ...
