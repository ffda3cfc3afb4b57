"""fill-mask: a masked language model's best tokens for the one mask token in each input."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.errors import InvalidInput, ModelLoadError
from app.runtimes.base import Backend, Head, ModelInputs, ModelOutputs
from app.spec import TaskName
from app.tasks.base import Encoded, Task

DEFAULT_TOP_K = 5


@dataclass(frozen=True)
class FillMaskParams:
    top_k: int = DEFAULT_TOP_K
    targets: tuple[str, ...] | None = None  # score only these tokens


@dataclass(frozen=True)
class MaskFill:
    token_str: str
    token: int
    score: float  # probability over the whole vocabulary, also when targets restrict the list
    sequence: str  # the input with the mask replaced by this token


@dataclass(frozen=True)
class MaskPosition:
    """Where the mask token is in the item's one row."""

    index: int


class FillMaskTask(Task[str, FillMaskParams, list[MaskFill]]):
    name = TaskName.FILL_MASK
    head = Head.MASKED_LM

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        mask = getattr(self.tokenizer, "mask_token", None)
        if mask is None:
            raise ModelLoadError(
                f"model {self.spec.name!r}: its tokenizer has no mask token, so it is no "
                "masked language model; serve it with another task"
            )
        self.mask_token: str = str(mask)
        self.mask_id = int(self.tokenizer.mask_token_id)
        self._special = {int(i) for i in self.tokenizer.all_special_ids}

    def target_ids(self, targets: tuple[str, ...]) -> list[int]:
        """Each target as one vocabulary id: the token itself (e.g. '##ing'), or the one token
        a word tokenizes to. A target of several tokens cannot fill one mask: refused."""
        ids = []
        vocab = self.tokenizer.get_vocab()
        for target in targets:
            if target in vocab:
                ids.append(int(vocab[target]))
                continue
            pieces = self.tokenizer(target, add_special_tokens=False)["input_ids"]
            if len(pieces) != 1:
                shown = self.tokenizer.convert_ids_to_tokens(pieces)
                raise InvalidInput(
                    f"target {target!r} is not one token of model {self.spec.name!r} (it "
                    f"tokenizes to {shown}); a mask is filled by exactly one token"
                )
            ids.append(int(pieces[0]))
        return ids

    def refusal(self, params: FillMaskParams) -> InvalidInput | None:
        if params.targets:
            try:
                self.target_ids(params.targets)
            except InvalidInput as exc:
                return exc
        return None

    def encode(self, item: str, params: FillMaskParams) -> Encoded:
        row = self.text_row(item)
        found = [i for i, token in enumerate(row["input_ids"]) if token == self.mask_id]
        if len(found) != 1:
            count = item.count(self.mask_token)
            where = (
                f" ({count} in the text, {len(found)} within the model's {self.max_length}-token "
                "limit)"
                if count != len(found)
                else ""
            )
            raise InvalidInput(
                f"each input needs exactly one mask token {self.mask_token!r} for model "
                f"{self.spec.name!r}; found {len(found)}{where}"
            )
        return Encoded(rows=[row], context=MaskPosition(found[0]))

    def execute(
        self,
        backend: Backend,
        inputs: ModelInputs,
        params: FillMaskParams,
        deadline: float | None,
    ) -> ModelOutputs:
        """Keep only the mask position's logits ([rows, vocab]). The head's own output is
        [rows, tokens, vocab] (~15 MB a 128-token row for BERT's vocabulary): kept until
        decoding, a large request would hold gigabytes."""
        logits = backend.forward(inputs)["logits"]
        at_mask = inputs["input_ids"] == self.mask_id  # exactly one per row (encode checks)
        return {"logits": np.ascontiguousarray(logits[at_mask])}

    def decode(
        self, encoded: Encoded, outputs: ModelOutputs, params: FillMaskParams
    ) -> list[MaskFill]:
        position = encoded.context_as(MaskPosition).index
        logits = outputs["logits"][0].astype(np.float64)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        if params.targets:
            candidates = np.asarray(self.target_ids(params.targets), dtype=np.int64)
        else:
            candidates = np.arange(probs.shape[0], dtype=np.int64)
        order = candidates[np.argsort(-probs[candidates], kind="stable")][: params.top_k]
        ids = list(encoded.rows[0]["input_ids"])
        fills = []
        for token in order:
            ids[position] = int(token)
            kept = [i for i in ids if i not in self._special]
            fills.append(
                MaskFill(
                    token_str=str(self.tokenizer.decode([int(token)])),
                    token=int(token),
                    score=float(probs[token]),
                    sequence=str(self.tokenizer.decode(kept, clean_up_tokenization_spaces=True)),
                )
            )
        return fills

    def warmup_request(self) -> tuple[str, FillMaskParams]:
        return f"Paris is the {self.mask_token} of France.", FillMaskParams()

    def example_request(self, fields: Mapping[str, Any]) -> tuple[str, FillMaskParams]:
        """The text with its last word masked, unless it already holds the mask."""
        text = str(fields["text"])
        if self.mask_token not in text:
            head, _, _ = text.rstrip(" .!?").rpartition(" ")
            text = f"{head} {self.mask_token}." if head else f"{self.mask_token}."
        return text, FillMaskParams()

    def agreement(self, reference: list[MaskFill], candidate: list[MaskFill]) -> float:
        """The same best token (the rest may trade places)."""
        return float(
            bool(reference) and bool(candidate) and reference[0].token == candidate[0].token
        )

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "mask_token": self.mask_token}
