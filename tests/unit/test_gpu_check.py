"""bench/gpu_check.py's judgement of a row, without loading a model."""

from __future__ import annotations

import numpy as np

from bench.gpu_check import BATCHES, Result, compare, onnx_cuda_missing, table, vocabulary

REFERENCE = np.array([[0.1, -0.2], [0.3, 0.0]], dtype=np.float32)


def test_within_the_bound_is_ok_and_counts_agreeing_labels() -> None:
    result = Result("torch cuda fp16")
    compare(result, REFERENCE + np.float32(0.001), REFERENCE, "fp16")
    assert result.status == "ok"
    assert result.agree == 2
    assert result.max_diff is not None
    assert result.max_diff < 0.002


def test_beyond_the_bound_or_not_finite_fails() -> None:
    off = Result("torch cuda fp32")
    compare(off, REFERENCE + np.float32(0.5), REFERENCE, "fp32")
    assert off.failed
    assert "max |logit diff|" in off.status
    nan = Result("torch cuda bf16")
    compare(nan, np.full_like(REFERENCE, np.nan), REFERENCE, "bf16")
    assert nan.status == "FAILED: NaN or infinite logits"


def test_one_table_one_line_per_result() -> None:
    results = [Result("a", ms=dict.fromkeys(BATCHES, 1.0), throughput="9 items/s"),
               Result("b", status="not checked (why)")]  # fmt: skip
    lines = table(results).splitlines()
    assert len(lines) == 2 + len(results)
    assert lines[2].startswith("a ")
    assert lines[3].endswith("not checked (why)")


def test_onnx_cuda_is_not_checked_without_a_cuda_provider() -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return
    assert onnx_cuda_missing() == "not checked (no CUDA provider in this onnxruntime)"


def test_the_vocabulary_has_no_duplicates_and_bert_specials_first() -> None:
    vocab = vocabulary()
    assert len(vocab) == len(set(vocab))
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
