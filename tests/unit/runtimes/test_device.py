from __future__ import annotations

import logging

import pytest

from app.runtimes.device import cuda_device_count, resolve_device, resolve_precision


def test_cpu_and_auto_without_cuda() -> None:
    assert resolve_device("cpu", "m") == "cpu"
    expected = "cuda:0" if cuda_device_count() else "cpu"
    assert resolve_device("auto", "m") == expected


@pytest.mark.skipif(cuda_device_count() > 0, reason="checks the fallback on CPU-only machines")
def test_missing_cuda_falls_back_to_cpu_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert resolve_device("cuda:1", "my-model") == "cpu"
    assert "my-model" in caplog.text
    assert "using CPU" in caplog.text


def test_fp16_on_cpu_falls_back_to_fp32(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert resolve_precision("fp16", "cpu", "m") == "fp32"
    assert "fp16" in caplog.text
    assert resolve_precision("bf16", "cpu", "m") == "bf16"
    assert resolve_precision("fp16", "cuda:0", "m") == "fp16"
