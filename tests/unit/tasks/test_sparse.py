"""embed-sparse: SPLADE pooling, the passes that bound the logits' memory, pruning, the
model's modules and architecture, and prompts (on the tiny SPLADE model's task, no backend)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from transformers import AutoConfig, AutoTokenizer

from app.errors import InvalidInput, ModelLoadError
from app.runtimes.base import Backend, ModelInputs, ModelOutputs
from app.spec import ModelSpec
from app.tasks.base import collate
from app.tasks.sparse import SparseEmbedParams, SparseEmbedTask, SparseValue, activate, prune

VOCAB = 30522


class LogitsBackend:
    """forward() gives fixed pseudo-random logits per (row, position); forward_token_max is
    the base class's, so what execute() asks of a backend is what runs."""

    forward_token_max = Backend.forward_token_max

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, inputs: ModelInputs) -> ModelOutputs:
        ids = inputs["input_ids"]
        self.shapes.append(ids.shape)
        positions = np.arange(ids.shape[1])[None, :, None]
        vocab = np.arange(VOCAB)[None, None, :]
        logits = np.sin(ids[..., None] * 0.37 + positions * 1.3 + vocab * 0.011)
        return {"logits": logits.astype(np.float32)}


def reference(logits: np.ndarray, lengths: list[int], activation: str = "relu") -> np.ndarray:
    """sentence-transformers' SpladePooling, literally: activation per token, then max over
    each row's real tokens."""
    out = []
    for row, n in enumerate(lengths):
        weights = np.log1p(np.maximum(logits[row, :n], 0))
        if activation == "log1p_relu":
            weights = np.log1p(weights)
        out.append(weights.max(axis=0))
    return np.stack(out)


def batch(task: Any, texts: list[str]) -> tuple[ModelInputs, list[int]]:
    rows = [task.encode(text, SparseEmbedParams()).rows[0] for text in texts]
    return collate(rows, 0), [len(row["input_ids"]) for row in rows]


TEXTS = ["a short text", "a somewhat longer text with more words in it", "x"]


def test_pooling_is_splade_over_each_rows_real_tokens(make_task: Any) -> None:
    task = make_task("embed-sparse", "splade")
    inputs, lengths = batch(task, TEXTS)
    weights = task.execute(LogitsBackend(), inputs, SparseEmbedParams(), None)["weights"]
    logits = LogitsBackend().forward(inputs)["logits"]
    assert weights.shape == (3, VOCAB)
    assert weights.dtype == np.float32
    np.testing.assert_allclose(weights, reference(logits, lengths), rtol=1e-6)
    padded = reference(logits, [inputs["input_ids"].shape[1]] * 3)
    assert not np.allclose(weights[2], padded[2])  # padding would change the short row


def test_a_batch_runs_in_passes_within_the_logits_budget(make_task: Any) -> None:
    task = make_task("embed-sparse", "splade", options={"logits_budget_mb": 1})
    inputs, lengths = batch(task, TEXTS)
    backend = LogitsBackend()
    weights = task.execute(backend, inputs, SparseEmbedParams(), None)["weights"]
    # 1 MiB holds no two rows of 30522 logits per token: one row a pass, each as wide as
    # its own tokens
    assert backend.shapes == [(1, n) for n in lengths]
    whole = make_task("embed-sparse", "splade")
    one_pass = LogitsBackend()
    expected = whole.execute(one_pass, inputs, SparseEmbedParams(), None)["weights"]
    assert one_pass.shapes == [inputs["input_ids"].shape]
    np.testing.assert_array_equal(weights, expected)


def test_log1p_relu_activation() -> None:
    logits = np.array([[-1.0, 0.0, 0.5, 3.0]], dtype=np.float32)
    np.testing.assert_allclose(activate(logits, "relu"), np.log1p([[0, 0, 0.5, 3.0]]), 1e-6)
    twice = np.log1p(np.log1p([[0, 0, 0.5, 3.0]]))
    np.testing.assert_allclose(activate(logits, "log1p_relu"), twice, 1e-6)


def test_pruning_keeps_the_largest_sorted_by_index_ties_to_the_lower_index() -> None:
    weights = np.array([0.0, 0.5, 0.2, 0.5, 0.9, 0.1, 0.0], dtype=np.float32)
    assert prune(weights, None, 0.0).tolist() == [1, 2, 3, 4, 5]
    assert prune(weights, None, 0.2).tolist() == [1, 3, 4]
    assert prune(weights, 2, 0.0).tolist() == [1, 4]  # 0.9, then the first of the two 0.5s
    assert prune(weights, 3, 0.0).tolist() == [1, 3, 4]
    assert prune(weights, 10, 0.6).tolist() == [4]


def test_decode_prunes_with_request_or_catalog_defaults(make_task: Any) -> None:
    task = make_task("embed-sparse", "splade", options={"top_k": 3, "threshold": 0.1})
    encoded = task.encode("text", SparseEmbedParams())
    weights = np.zeros((1, VOCAB), dtype=np.float32)
    weights[0, [7, 2000, 2001, 2002, 2003]] = [0.05, 0.4, 0.3, 0.2, 0.15]
    outputs = {"weights": weights}

    def kept(params: SparseEmbedParams) -> list[tuple[Any, ...]]:
        vector = task.decode(encoded, outputs, params)
        return [(type(e).__name__, *(round(v, 6) if isinstance(v, float) else v
                                      for v in vars(e).values())) for e in vector]  # fmt: skip

    assert kept(SparseEmbedParams()) == [
        ("SparseValue", 2000, 0.4), ("SparseValue", 2001, 0.3), ("SparseValue", 2002, 0.2)
    ]  # fmt: skip
    everything = kept(SparseEmbedParams(top_k=100, threshold=0))
    assert [entry[1] for entry in everything] == [7, 2000, 2001, 2002, 2003]
    token = task.tokenizer.convert_ids_to_tokens(2000)
    assert kept(SparseEmbedParams(top_k=1, return_tokens=True)) == [
        ("TokenValue", 2000, 0.4, token)
    ]
    weights[0, 5] = np.nan
    with pytest.raises(RuntimeError, match="NaN"):
        task.decode(encoded, outputs, SparseEmbedParams())


def test_agreement_is_the_cosine_of_the_sparse_vectors(make_task: Any) -> None:
    task = make_task("embed-sparse", "splade")
    a = [SparseValue(1, 1.0), SparseValue(5, 1.0)]
    assert task.agreement(a, a) == pytest.approx(1.0)
    assert task.agreement(a, [SparseValue(1, 1.0)]) == pytest.approx(2**-0.5)
    assert task.agreement(a, [SparseValue(2, 1.0)]) == 0.0


def test_prompts_come_from_the_sentence_transformers_config(make_task: Any) -> None:
    task = make_task("embed-sparse", "splade")
    plain = task.encode("cats", SparseEmbedParams()).rows[0]
    query = task.encode("cats", SparseEmbedParams(prompt_name="query")).rows[0]
    assert query == task.text_row("query: cats") != plain
    assert task.describe()["prompts"] == {"query": "query: ", "document": "passage: "}
    refusal = task.refusal(SparseEmbedParams(prompt_name="passage"))
    assert isinstance(refusal, InvalidInput)
    assert "['document', 'query']" in refusal.message
    assert task.refusal(SparseEmbedParams(input_type="document")) is None


def test_a_model_without_a_masked_lm_head_is_refused(make_task: Any) -> None:
    with pytest.raises(ModelLoadError, match=r"sparse_linear\.pt"):
        make_task("embed-sparse", "encoder")  # a BertModel, as bge-m3's weights are


def splade_copy(tiny_models: dict[str, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_models["splade"], tmp_path / "splade"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"1_SpladePooling/config.json": {"pooling_strategy": "sum"}}, "pooling_strategy 'sum'"),
        ({"modules.json": [{"type": "sentence_transformers.sparse_encoder.modules.Router"}]},
         "['Router']"),
    ],
)  # fmt: skip
def test_other_sparse_encoders_are_refused_by_name(
    tiny_models: dict[str, Path], tmp_path: Path, change: Any, message: str
) -> None:
    directory = splade_copy(tiny_models, tmp_path)
    for name, content in change.items():
        (directory / name).write_text(json.dumps(content))
    spec = ModelSpec(name="m", task="embed-sparse", source=str(directory))  # type: ignore[arg-type]
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    with pytest.raises(ModelLoadError) as caught:
        SparseEmbedTask(spec, directory, tokenizer, AutoConfig.from_pretrained(directory))
    assert message in str(caught.value)
