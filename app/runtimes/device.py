"""Choosing the device and precision a model really runs with, with clean CPU fallbacks."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def cuda_device_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken CUDA install must not take the CPU path down
        return 0


def resolve_device(requested: str, model_name: str) -> str:
    """Map a catalog device (auto | cpu | cuda | cuda:N) to a usable one."""
    count = cuda_device_count()
    if requested == "cpu":
        return "cpu"
    if requested == "auto":
        return "cuda:0" if count else "cpu"
    index = int(requested.partition(":")[2] or 0)
    if index < count:
        return f"cuda:{index}"
    logger.warning(
        "model %s asks for device %s but only %d CUDA device(s) are visible; using CPU",
        model_name,
        requested,
        count,
    )
    return "cpu"


def resolve_precision(precision: str, device: str, model_name: str) -> str:
    """fp16 has no fast CPU kernels: fall back to fp32 there with a warning."""
    if precision == "fp16" and device == "cpu":
        logger.warning("model %s: fp16 is not supported on CPU; using fp32", model_name)
        return "fp32"
    return precision
