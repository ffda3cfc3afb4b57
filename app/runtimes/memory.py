"""Giving freed heap memory back to the operating system after a large request."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, where the C library has one (not musl, not macOS)."""
    name = ctypes.util.find_library("c")
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_TRIM = _malloc_trim()


def release_free_heap() -> None:
    """Return the allocator's free pages to the OS.

    glibc keeps freed memory in its heaps for reuse; after a request that needed hundreds of
    megabytes (model outputs of many rows) that memory would stay with the process.
    """
    if _TRIM is not None:
        _TRIM(0)
