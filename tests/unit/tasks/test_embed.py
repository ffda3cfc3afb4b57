"""Embed: token-id inputs, Matryoshka truncation and token counts (the OpenAI surface's needs)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app.errors import InvalidInput
from app.spec import ModelSpec
from app.tasks.embed import CountedEmbedding, EmbedParams, TokenIds


def hidden(rows: int, tokens: int, width: int = 32) -> dict[str, np.ndarray]:
    values = np.arange(rows * tokens * width, dtype=np.float32).reshape(rows, tokens, width)
    return {"last_hidden_state": np.sin(values)}


def test_token_ids_give_the_same_row_as_the_text(make_task: Any) -> None:
    task = make_task("embed", "encoder")
    text_row = task.encode("a short text", EmbedParams()).rows[0]
    ids_row = task.encode(TokenIds(tuple(text_row["input_ids"])), EmbedParams()).rows[0]
    assert ids_row == text_row


def test_token_ids_are_truncated_and_checked(make_task: Any) -> None:
    task = make_task("embed", "encoder")
    long = task.encode(TokenIds((5,) * (task.max_length + 10)), EmbedParams())
    assert long.n_tokens == task.max_length
    with pytest.raises(InvalidInput, match="vocabulary"):
        task.encode(TokenIds((task.vocab_size,)), EmbedParams())


def test_dimensions_only_where_the_catalog_allows_them(make_task: Any) -> None:
    plain = make_task("embed", "encoder")
    assert plain.refusal(EmbedParams(dimensions=plain.dimensions)) is None
    refusal = plain.refusal(EmbedParams(dimensions=8))
    assert isinstance(refusal, InvalidInput)
    assert "matryoshka_dimensions" in refusal.message
    mrl = make_task("embed", "encoder", options={"matryoshka_dimensions": [8, 16]})
    assert mrl.refusal(EmbedParams(dimensions=8)) is None
    encoded = mrl.encode("a text", EmbedParams())
    outputs = hidden(1, encoded.n_tokens)
    full = np.asarray(mrl.decode(encoded, outputs, EmbedParams(normalize=False)))
    short = np.asarray(mrl.decode(encoded, outputs, EmbedParams(normalize=False, dimensions=8)))
    assert short == pytest.approx(full[:8] / np.linalg.norm(full[:8]))
    counted = mrl.decode(encoded, outputs, EmbedParams(count_tokens=True))
    assert isinstance(counted, CountedEmbedding)
    assert counted.tokens == encoded.n_tokens


@pytest.mark.parametrize("sizes", [[0], [8, 8]])
def test_matryoshka_sizes_are_validated(tmp_path: Any, sizes: list[int]) -> None:
    with pytest.raises(ValueError, match="matryoshka_dimensions"):
        ModelSpec(name="m", task="embed", source=str(tmp_path),  # type: ignore[arg-type]
                  options={"matryoshka_dimensions": sizes})  # fmt: skip
