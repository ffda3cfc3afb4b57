"""What runs on a model's own thread: the forward pass of a batch (in several passes when it
is over the token budget), decoding each item (here or in the model's decode pool), and the
retry one item at a time that makes a poison input fail alone. Nothing here touches the
queue or the event loop; every outcome is returned to the batcher, which settles the futures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from app import metrics
from app.batching.policy import padded_tokens
from app.batching.work import WorkItem, deadline_passed, model_failed, split_rows, stack_rows
from app.errors import InferenceFailed, ServeError
from app.pipeline import ServedModel
from app.runtimes.base import ModelOutputs

# The batcher's own log, as before it was split into modules: log queries keep matching.
logger = logging.getLogger("app.batching.batcher")


class ModelRunner:
    """Runs batches through one model: forward, decode, and the faults of either."""

    def __init__(self, model: ServedModel) -> None:
        self.model = model
        self.spec = model.batching

    def forward_and_decode(self, batch: list[WorkItem]) -> list[Any]:
        """Each item's answer or error, forward and decoding both on this thread."""
        return self.decode_all(batch, self.forward_only(batch))

    def forward_only(self, batch: list[WorkItem]) -> list[ModelOutputs | BaseException]:
        """Each item's own outputs, or why it has none (dropped between chunks)."""
        # Items share a batch key, so the first item's params drive the forward pass.
        params = batch[0].params
        started = time.time_ns()
        if self.oversized(batch):
            outputs = self._forward_in_chunks(batch, params)
        else:
            # Generation stops once the last waiting item's deadline has passed.
            forward = self.model.forward_rows(
                [row for item in batch for row in item.encoded.rows],
                params,
                max(item.deadline for item in batch),
            )
            for item in batch:
                item.forward_s = forward.seconds
            outputs = list(split_rows(forward.value, [item.rows for item in batch]))
        ended = time.time_ns()
        for item in batch:
            item.clock.forward_started, item.clock.forward_ended = started, ended
        return outputs

    def oversized(self, batch: list[WorkItem]) -> bool:
        rows = sum(item.rows for item in batch)
        return padded_tokens(max(item.tokens for item in batch), rows) > self.spec.max_batch_tokens

    def _forward_in_chunks(
        self, batch: list[WorkItem], params: Any
    ) -> list[ModelOutputs | BaseException]:
        """Run rows in passes of at most max_batch_tokens padded tokens (one item may hold
        hundreds of rows), shortest first; between passes, rows of items nobody waits for any
        more (client gone, deadline passed) are skipped."""
        order = sorted(
            (len(row["input_ids"]), index, position)
            for index, item in enumerate(batch)
            for position, row in enumerate(item.encoded.rows)
        )
        per_row: list[list[ModelOutputs]] = [[{} for _ in range(item.rows)] for item in batch]
        dropped: dict[int, BaseException] = {}
        next_row = 0
        while next_row < len(order):
            now = time.monotonic()
            for index, item in enumerate(batch):
                if index not in dropped and not item.wanted(now):
                    dropped[index] = self._drop_running(item)
            chunk: list[tuple[int, int]] = []
            longest = 0
            while next_row < len(order):
                length, index, position = order[next_row]
                if index in dropped:
                    next_row += 1
                    continue
                wider = max(longest, length)
                if chunk and padded_tokens(wider, len(chunk) + 1) > self.spec.max_batch_tokens:
                    break
                chunk.append((index, position))
                longest = wider
                next_row += 1
            if not chunk:
                break
            members = {index for index, _ in chunk}
            forward = self.model.forward_rows(
                [batch[index].encoded.rows[position] for index, position in chunk],
                params,
                max(batch[index].deadline for index in members),
            )
            for k, (index, position) in enumerate(chunk):
                per_row[index][position] = {key: value[k] for key, value in forward.value.items()}
            for index in members:
                batch[index].forward_s += forward.seconds
        return [
            dropped[index] if index in dropped else stack_rows(per_row[index])
            for index in range(len(batch))
        ]

    def _drop_running(self, item: WorkItem) -> BaseException:
        """Count an item dropped mid-run; its outcome (ignored if its future is done)."""
        reason = item.drop_reason if item.future.done() else "deadline"
        metrics.ITEMS_DROPPED.labels(self.model.name, reason).inc()
        return deadline_passed(self.model.name)

    def decode_all(
        self, batch: list[WorkItem], outputs: Sequence[ModelOutputs | BaseException]
    ) -> list[Any]:
        """Decode item by item: one item's decoding error is that item's alone."""
        outcomes: list[Any] = []
        for item, own in zip(batch, outputs, strict=True):
            item.clock.decode_started = item.clock.decode_ended = time.time_ns()
            if isinstance(own, BaseException):
                outcomes.append(own)
                continue
            try:
                decoded = self.model.decode(item.encoded, own, item.params)
            except ServeError as exc:
                outcomes.append(exc)
                continue
            except Exception:
                outcomes.append(self._fault(item, "failed in decoding"))
                continue
            item.postprocess_s = decoded.seconds
            item.clock.decode_ended = time.time_ns()
            outcomes.append(decoded.value)
        return outcomes

    def one_by_one(self, batch: list[WorkItem]) -> list[Any]:
        """Run each item alone: the poison input fails by itself, the others succeed."""
        outcomes: list[Any] = []
        for item in batch:
            if item.future.done():
                outcomes.append(None)  # abandoned meanwhile; settle() ignores it
                continue
            try:
                outcomes.append(self.forward_and_decode([item])[0])
            except ServeError as exc:
                outcomes.append(exc)
            except Exception:
                outcomes.append(self._fault(item, "failed on its own"))
        return outcomes

    def _fault(self, item: WorkItem, where: str) -> InferenceFailed:
        """Log the exception being handled, once, with the item's request id; the client's
        error names no backend text."""
        logger.exception(
            "model %s: an input %s",
            self.model.name,
            where,
            extra={"request_id": item.request_id, "model": self.model.name},
        )
        return model_failed(self.model.name)
