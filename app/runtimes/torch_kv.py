"""PyTorch's side of the KV rows (app/runtimes/kv.py): tensors, and a cache layer that grows
in place.

transformers' DynamicCache appends each step's keys with torch.cat, a copy of the whole
cache per layer per step, and building one from existing tensors copies them once more.
Here each layer's keys live at the front of a buffer with spare columns: a step writes its
column in place and hands the model a view, so a step copies only when the buffer is full
(then into one with room to grow) or the batch's rows changed (a join or a leave made new
tensors).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from app.runtimes.kv import KVCache

# Spare columns a new buffer gets: at least this many, or a quarter of its width.
MIN_SPARE_COLUMNS = 32


class TorchKV(KVCache):
    """Keys and values as torch tensors on the model's device."""

    @staticmethod
    def _shape(array: Any) -> tuple[int, ...]:
        return tuple(array.shape)

    @staticmethod
    def _index(rows: Sequence[int]) -> Any:
        return torch.as_tensor(list(rows), dtype=torch.long)

    @staticmethod
    def _pad_left(array: Any, columns: int) -> Any:
        return torch.nn.functional.pad(array, (0, 0, columns, 0))

    @staticmethod
    def _cat(arrays: list[Any]) -> Any:
        return torch.cat(arrays, dim=0)

    @staticmethod
    def _nbytes(array: Any) -> int:
        return int(array.numel() * array.element_size())

    def write_row(self, row: int, other: KVCache) -> None:
        # The tensors are inference tensors (made under inference_mode): only written there.
        with torch.inference_mode():
            super().write_row(row, other)

    def as_model_cache(self) -> DynamicCache:
        """A transformers cache over these tensors, without copying them."""
        cache = DynamicCache()
        cache.layers = [GrowingLayer(keys, values) for keys, values in self.layers]
        return cache

    @classmethod
    def of(cls, cache: DynamicCache) -> TorchKV:
        layers: list[Any] = list(cache.layers)
        return cls([(layer.keys, layer.values) for layer in layers])


def _front_of_buffer(view: torch.Tensor, columns: int) -> torch.Tensor | None:
    """The buffer `view` is the first columns of, if it has room for `columns` in all."""
    base = view._base
    if (
        base is None
        or base.dim() != 4
        or base.shape[:2] != view.shape[:2]
        or base.shape[3] != view.shape[3]
        or base.shape[2] < columns
        or base.data_ptr() != view.data_ptr()
        or base.stride() != view.stride()
    ):
        return None
    return base


def _append(keys: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    width, added = keys.shape[2], new.shape[2]
    total = width + added
    buffer = _front_of_buffer(keys, total)
    if buffer is None:
        spare = max(MIN_SPARE_COLUMNS, total // 4)
        buffer = keys.new_empty((*keys.shape[:2], total + spare, keys.shape[3]))
        buffer[:, :, :width] = keys
    buffer[:, :, width:total] = new
    return buffer[:, :, :total]


class GrowingLayer(DynamicLayer):  # type: ignore[no-untyped-call]
    """A DynamicLayer whose update writes into spare columns instead of concatenating.

    Safe because the scheduler never steps from a cache it has already stepped from: once a
    step has written column w of a buffer, only the cache that step returned reads it."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.device = keys.device
        self.keys, self.values = keys, values
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.keys, self.values
        if keys is None or values is None:  # pragma: no cover - made with both
            raise AssertionError("a growing layer holds keys and values")
        self.keys, self.values = _append(keys, key_states), _append(values, value_states)
        return self.keys, self.values
