"""Admission: whether a request may join a model's queue, and its items tokenized and held to
the work limits before it does.

A full queue answers 429 at once with Retry-After (queue depth / batch size x the
moving-average batch time); a request whose rows per input or padded tokens exceed the
limits answers 413 before anything is queued.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from app import metrics
from app.batching.base import WorkLimits
from app.batching.policy import padded_tokens
from app.batching.work import for_input, model_failed
from app.errors import PayloadTooLarge, QueueFull, ServeError
from app.pipeline import ServedModel
from app.tasks.base import Encoded

# The batcher's own log, as before it was split into modules: log queries keep matching.
logger = logging.getLogger("app.batching.batcher")


def retry_after_s(depth: int, max_batch_size: int, batch_seconds: float) -> int:
    """Seconds until the batches ahead of a new request have likely run (at least 1)."""
    batches_ahead = math.ceil(depth / max_batch_size)
    return max(1, math.ceil(batches_ahead * batch_seconds))


class Admission:
    """One model's admission rules (its batching spec, the service's work limits)."""

    def __init__(self, model: ServedModel, limits: WorkLimits) -> None:
        self.model = model
        self.spec = model.batching
        self.limits = limits

    def check_room(self, depth: int, count: int, batch_seconds: float) -> None:
        """Refuse (429, counted as dropped for overload) `count` items that would take the
        queue past max_queue; depth counts the items queued and being tokenized."""
        if depth + count > self.spec.max_queue:
            metrics.ITEMS_DROPPED.labels(self.model.name, "overload").inc(count)
            retry = retry_after_s(depth, self.spec.max_batch_size, batch_seconds)
            raise QueueFull(
                f"model {self.model.name!r} has {depth} items queued (max_queue "
                f"{self.spec.max_queue}); retry after {retry} s or send fewer items at once",
                headers={"Retry-After": str(retry)},
            )

    def tokenize_inline(self, items: Sequence[Any], idle: bool) -> bool:
        """Idle model and a small request: tokenizing on the loop saves two thread hops, and
        there is no running batch to overlap with. Large requests never block the loop."""
        if not idle:
            return False
        budget = self.limits.inline_tokenize_max_chars
        return sum(self.model.item_chars(item) for item in items) <= budget

    def encode_all(self, items: Sequence[Any], params: Any) -> list[Encoded]:
        """Tokenize every item and check the request's work against the limits."""
        encoded = []
        for index, item in enumerate(items):
            try:
                encoded.append(self.model.encode(item, params))
            except ServeError as exc:
                raise for_input(exc, index, len(items)) from None
            except Exception:
                logger.exception("model %s: tokenizing inputs[%d] failed", self.model.name, index)
                raise for_input(model_failed(self.model.name), index, len(items)) from None
        self.check_work(encoded)
        return encoded

    def check_work(self, encoded: Sequence[Encoded]) -> None:
        name, limits = self.model.name, self.limits
        for index, item in enumerate(encoded):
            if len(item.rows) > limits.max_rows_per_item:
                raise PayloadTooLarge(
                    f"inputs[{index}] expands to {len(item.rows)} model rows for model {name!r} "
                    "(context windows, sentences or labels); the limit is "
                    f"{limits.max_rows_per_item} (NLP_SERVE_MAX_ROWS_PER_ITEM): shorten it or "
                    "split it into several inputs"
                )
        total = sum(padded_tokens(item.n_tokens, len(item.rows)) for item in encoded)
        if total > limits.max_tokens_per_request:
            raise PayloadTooLarge(
                f"this request needs {total} padded tokens on model {name!r}; the limit is "
                f"{limits.max_tokens_per_request} (NLP_SERVE_MAX_TOKENS_PER_REQUEST): send "
                "fewer or shorter inputs per request"
            )
