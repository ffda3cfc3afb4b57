"""Which waiting items form the next batch: a pure function, tested on its own.

The oldest item always goes in (so long items are never starved). The rest come from the
items that may share its batch (equal batch key), nearest in token length first, so similar
lengths share a batch and padding stays low, until the batch would exceed max_batch_size
items or max_batch_tokens padded tokens (longest item x rows).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Protocol, TypeVar


class Batchable(Protocol):
    @property
    def tokens(self) -> int: ...  # longest row of the item

    @property
    def rows(self) -> int: ...  # model rows the item needs (QA windows, zero-shot labels)

    @property
    def key(self) -> Hashable: ...


ItemT = TypeVar("ItemT", bound=Batchable)


def padded_tokens(longest: int, rows: int) -> int:
    return longest * rows


def select_batch(
    waiting: Sequence[ItemT], max_batch_size: int, max_batch_tokens: int
) -> list[ItemT]:
    """Choose the next batch from `waiting` (oldest first). Never empty if waiting is not."""
    if not waiting:
        return []
    anchor = waiting[0]
    peers = sorted(
        (item for item in waiting[1:] if item.key == anchor.key), key=lambda item: item.tokens
    )
    # Split the peers around the anchor's length and grow outwards, nearest length first.
    split = next((i for i, item in enumerate(peers) if item.tokens > anchor.tokens), len(peers))
    shorter = peers[:split][::-1]  # closest first
    longer = peers[split:]
    chosen = [anchor]
    longest, rows = anchor.tokens, anchor.rows
    while len(chosen) < max_batch_size and (shorter or longer):
        take_shorter = bool(shorter) and (
            not longer or anchor.tokens - shorter[0].tokens <= longer[0].tokens - anchor.tokens
        )
        side = shorter if take_shorter else longer
        candidate = side[0]
        new_longest = max(longest, candidate.tokens)
        if padded_tokens(new_longest, rows + candidate.rows) > max_batch_tokens:
            # Over budget: a shorter item may still fit; a longer one never will.
            if side is longer:
                longer.clear()
            else:
                shorter.pop(0)
            continue
        side.pop(0)
        chosen.append(candidate)
        longest, rows = new_longest, rows + candidate.rows
    return chosen
