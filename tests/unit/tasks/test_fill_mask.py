from __future__ import annotations

from typing import Any

import numpy as np

from app.tasks.fill_mask import FillMaskParams


class FullLogits:
    """A backend whose masked-LM head answers [rows, tokens, vocab], as real ones do."""

    def __init__(self, vocab: int) -> None:
        self.vocab = vocab

    def forward(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows, tokens = inputs["input_ids"].shape
        values = np.arange(rows * tokens * self.vocab, dtype=np.float32)
        return {"logits": values.reshape(rows, tokens, self.vocab)}


def test_only_the_mask_positions_logits_are_kept(make_task: Any) -> None:
    task = make_task("fill-mask", "masked-lm")
    rows = [
        task.encode(f"a {task.mask_token} b c", FillMaskParams()).rows[0],
        task.encode(f"{task.mask_token} d", FillMaskParams()).rows[0],
    ]
    width = max(len(r["input_ids"]) for r in rows)
    ids = np.full((2, width), task.tokenizer.pad_token_id, dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row["input_ids"])] = row["input_ids"]
    backend = FullLogits(vocab=len(task.tokenizer))
    full = backend.forward({"input_ids": ids})["logits"]
    kept = task.execute(backend, {"input_ids": ids}, FillMaskParams(), None)["logits"]
    assert kept.shape == (2, backend.vocab)  # not [rows, tokens, vocab]
    for i, row in enumerate(rows):
        assert (kept[i] == full[i, row["input_ids"].index(task.mask_id)]).all()
