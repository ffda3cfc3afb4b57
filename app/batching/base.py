"""The scheduler seam: routes submit items; a scheduler decides how they meet the model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class StageTimes:
    """Where one request's time went, in seconds; for the Server-Timing response header.

    Tokenize is the sum over the request's items (they are tokenized one after another);
    items may run in different batches, so the other stages hold the slowest item's.
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


@dataclass(frozen=True)
class WorkLimits:
    """Bounds on the work one request may bring, checked once it is tokenized, before it is
    queued (docs/operations.md lists them with their settings)."""

    max_rows_per_item: int  # model rows one input may expand to (QA windows, sentences, labels)
    max_tokens_per_request: int  # padded tokens (rows x longest row) over all inputs
    inline_tokenize_max_chars: int  # an idle model tokenizes smaller requests on the loop


@dataclass
class Served:
    """A request's results (aligned with its items) and where its time went."""

    results: list[Any]
    times: StageTimes = field(default_factory=StageTimes)
    truncated: list[int] = field(default_factory=list)  # items cut to the model's max_length


class Scheduler(Protocol):
    async def submit(
        self, items: Sequence[Any], params: Any, deadline: float | None = None
    ) -> Served:
        """Run every item with the same params; results align with items.

        deadline is a time.monotonic() instant; None uses the scheduler's default timeout.
        """
        ...

    def queue_depth(self) -> int: ...

    async def drain(self) -> None:
        """Answer everything already submitted, then close (a model being unloaded)."""
        ...

    async def close(self) -> None:
        """Fail what waits with 503, finish the running batch (the service stopping)."""
        ...
