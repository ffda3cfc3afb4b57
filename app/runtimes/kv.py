"""Attention keys and values of a batch of sequences, for decoding them together.

Rows are left-padded to one width: a row's own tokens sit in its last columns, and the
attention mask hides the columns before them. So every row appends its next key and value at
the same column, and a sequence can join a running batch (the narrower side is padded on the
left) or leave it (its row is dropped, then columns no row uses any more are trimmed) between
decoder steps. Backends hold the arrays in their own kind (torch tensors, numpy arrays); the
scheduler only calls these methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Self

import numpy as np


class KVCache(ABC):
    """Per layer, (keys, values) of shape [rows, heads, width, head_dim]."""

    def __init__(self, layers: list[tuple[Any, Any]]) -> None:
        self.layers = layers

    @property
    def rows(self) -> int:
        return int(self._shape(self.layers[0][0])[0])

    @property
    def width(self) -> int:
        return int(self._shape(self.layers[0][0])[2])

    def flat(self) -> list[Any]:
        """keys 0, values 0, keys 1, ...: the order graphs take and give them in."""
        return [array for pair in self.layers for array in pair]

    @classmethod
    def from_flat(cls, arrays: Sequence[Any]) -> Self:
        return cls([(arrays[i], arrays[i + 1]) for i in range(0, len(arrays), 2)])

    def select(self, rows: Sequence[int]) -> Self:
        """These rows, in this order."""
        index = self._index(rows)
        return type(self)([(k[index], v[index]) for k, v in self.layers])

    def widen(self, width: int) -> Self:
        """Left-padded with zero columns to `width` (masked out by the caller)."""
        extra = width - self.width
        if extra <= 0:
            return self
        return type(self)(
            [(self._pad_left(k, extra), self._pad_left(v, extra)) for k, v in self.layers]
        )

    def trim(self, columns: int) -> Self:
        """Without its first `columns` columns (padding every row has)."""
        if columns <= 0:
            return self
        return type(self)([(k[:, :, columns:], v[:, :, columns:]) for k, v in self.layers])

    def extend(self, other: KVCache) -> Self:
        """Both caches' rows, this one's first, widened to the wider of the two."""
        width = max(self.width, other.width)
        mine, theirs = self.widen(width), other.widen(width)
        return type(self)(
            [
                (self._cat([k1, k2]), self._cat([v1, v2]))
                for (k1, v1), (k2, v2) in zip(mine.layers, theirs.layers, strict=True)
            ]
        )

    def write_row(self, row: int, other: KVCache) -> None:
        """Put `other`'s one row into row `row`, right-aligned (zeros before it), in place:
        a joining sequence takes a free row without copying the others'. `other` must not be
        wider than this cache."""
        width = other.width
        start = self.width - width
        if start < 0:
            raise ValueError(f"a row {width} wide does not fit a cache {self.width} wide")
        for (keys, values), (new_keys, new_values) in zip(self.layers, other.layers, strict=True):
            keys[row, :, :start] = 0
            values[row, :, :start] = 0
            keys[row, :, start:] = new_keys[0]
            values[row, :, start:] = new_values[0]

    def nbytes(self) -> int:
        return sum(self._nbytes(array) for array in self.flat())

    @staticmethod
    @abstractmethod
    def _shape(array: Any) -> tuple[int, ...]: ...

    @staticmethod
    @abstractmethod
    def _index(rows: Sequence[int]) -> Any: ...

    @staticmethod
    @abstractmethod
    def _pad_left(array: Any, columns: int) -> Any: ...

    @staticmethod
    @abstractmethod
    def _cat(arrays: list[Any]) -> Any: ...

    @staticmethod
    @abstractmethod
    def _nbytes(array: Any) -> int: ...


class NumpyKV(KVCache):
    """Keys and values as numpy arrays (graphs run by ONNX Runtime or OpenVINO)."""

    @staticmethod
    def _shape(array: np.ndarray) -> tuple[int, ...]:
        return tuple(array.shape)

    @staticmethod
    def _index(rows: Sequence[int]) -> Any:
        return np.asarray(rows, dtype=np.int64)

    @staticmethod
    def _pad_left(array: np.ndarray, columns: int) -> np.ndarray:
        return np.pad(array, ((0, 0), (0, 0), (columns, 0), (0, 0)))

    @staticmethod
    def _cat(arrays: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(arrays, axis=0)

    @staticmethod
    def _nbytes(array: np.ndarray) -> int:
        return int(array.nbytes)
