"""CausalGraph's feeds and outputs (no engine), reading a graph's cache inputs, the parity
check's near-tie rule, and that a causal LM's cached export serves without torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.errors import ModelLoadError
from app.runtimes import needs_torch, onnx
from app.runtimes.base import Head, StepInputs
from app.runtimes.kv import NumpyKV
from app.runtimes.onnx_causal import CausalGraph, PastShape, past_shapes, same_greedy_tokens
from app.runtimes.onnx_export import FORMAT, MANIFEST, export_model
from app.settings import Settings
from app.spec import ModelSpec

PAST = [PastShape("past.0.key", 2, 8), PastShape("past.0.value", 2, 4)]


def step(rows: int, tokens: int, width: int) -> StepInputs:
    ids = np.arange(rows * tokens, dtype=np.int64).reshape(rows, tokens)
    mask = np.ones((rows, width + tokens), np.int64)
    return StepInputs(ids, mask, np.tile(np.arange(width, width + tokens), (rows, 1)))


def echo(seen: list[dict[str, np.ndarray]]) -> CausalGraph:
    """A graph whose logits are zeros and whose cache grows by the new tokens."""

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        seen.append(feeds)
        rows, tokens = feeds["input_ids"].shape
        grown = [
            np.concatenate([feeds[p.name], np.ones((rows, p.heads, tokens, p.head_dim))], axis=2)
            for p in PAST
        ]
        return [np.zeros((rows, 10), np.float64), *grown]

    return CausalGraph(run, PAST)


def test_a_first_chunk_feeds_a_zero_width_past() -> None:
    seen: list[dict[str, np.ndarray]] = []
    logits, cache = echo(seen).step(step(rows=1, tokens=3, width=0), None)
    assert list(seen[0]) == ["input_ids", "attention_mask", "position_ids", "past.0.key",
                             "past.0.value"]  # fmt: skip
    assert seen[0]["past.0.key"].shape == (1, 2, 0, 8)
    assert seen[0]["past.0.value"].shape == (1, 2, 0, 4)
    assert logits.dtype == np.float32
    assert logits.shape == (1, 10)
    assert isinstance(cache, NumpyKV)
    assert (cache.rows, cache.width) == (1, 3)


def test_later_steps_feed_the_cache_contiguous() -> None:
    seen: list[dict[str, np.ndarray]] = []
    graph = echo(seen)
    _, cache = graph.step(step(rows=1, tokens=4, width=0), None)
    batch = cache.extend(cache).trim(1)  # trimmed: a strided view of each array
    _, grown = graph.step(step(rows=2, tokens=1, width=3), batch)
    assert all(seen[1][p.name].flags.c_contiguous for p in PAST)
    assert (grown.rows, grown.width) == (2, 4)


def test_a_graph_without_cache_inputs_is_refused(tmp_path: Path) -> None:
    encoder: list[tuple[str, list[Any]]] = [
        ("input_ids", ["batch", "sequence"]),
        ("attention_mask", ["batch", "sequence"]),
    ]
    with pytest.raises(ModelLoadError, match="not a causal-LM export"):
        past_shapes(encoder, tmp_path)
    dynamic_heads = [*encoder, ("position_ids", ["b", "s"]), ("past.0.key", ["b", "h", "p", 8]),
                     ("past.0.value", ["b", 2, "p", 8])]  # fmt: skip
    with pytest.raises(ModelLoadError, match=r"'past\.0\.key'"):
        past_shapes(dynamic_heads, tmp_path)


def test_past_shapes_come_in_cache_order(tmp_path: Path) -> None:
    cache = [(f"past.{i}.{kind}", [None, 2, None, 4]) for i in (1, 0) for kind in ("value", "key")]
    steps = [(name, [None, None]) for name in ("input_ids", "attention_mask", "position_ids")]
    names = [p.name for p in past_shapes([*cache, *steps], tmp_path)]
    assert names == ["past.0.key", "past.0.value", "past.1.key", "past.1.value"]


def test_greedy_tokens_may_differ_only_on_near_ties() -> None:
    want = np.array([[0.0, 5.0, 5.0 - 1e-6], [1.0, 0.0, 0.0]], np.float32)
    near_tie = np.array([[0.0, 5.0, 5.0 + 1e-6], [1.0, 0.0, 0.0]], np.float32)
    assert same_greedy_tokens(want, near_tie, tolerance=1e-3)
    different = np.array([[0.0, 5.0, 4.0], [0.0, 2.0, 0.0]], np.float32)
    assert not same_greedy_tokens(want, different, tolerance=1e-3)


@pytest.mark.parametrize(("head", "task", "needs"), [
    (Head.CAUSAL_LM, "generate", False),
    (Head.SEQ2SEQ_LM, "summarize", True),
])  # fmt: skip
def test_only_a_causal_lm_export_serves_without_torch(
    tmp_path: Path, head: Head, task: str, needs: bool
) -> None:
    """Exported, a causal LM's graph is stepped with numpy; seq2seq's still runs under
    transformers' generate()."""
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "config.json").write_text("{}")
    settings = Settings(_env_file=None, onnx_cache_dir=tmp_path / "cache")  # type: ignore[call-arg]
    spec = ModelSpec.model_validate(
        {"name": "m", "task": task, "source": str(weights), "backend": "onnx", "export": True}
    )
    assert needs_torch(spec, weights, head, settings)  # not exported yet: torch exports it
    cached = settings.onnx_cache_dir / onnx.cache_name(spec, weights, head)
    cached.mkdir(parents=True)
    (cached / MANIFEST).write_text(json.dumps({"format": FORMAT, "head": head.value}))
    assert needs_torch(spec, weights, head, settings) is needs


def test_int8_is_refused_for_text_generation(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="int8 is not offered for text-generation"):
        export_model(tmp_path, Head.CAUSAL_LM, tmp_path / "out", source="lm", quantize=True)
    assert not (tmp_path / "out.partial").exists()
