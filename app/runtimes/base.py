"""What a backend is: something that runs a batch of token ids through one model head.

A backend knows nothing of tasks: it gets padded numpy arrays and returns numpy arrays.
Tasks (app/tasks/) know nothing of backends: they only call forward() or generate().
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from app.runtimes.kv import KVCache
from app.settings import Settings
from app.spec import GenerationOptions, ModelSpec

ModelInputs = dict[str, npt.NDArray[np.int64]]
ModelOutputs = dict[str, npt.NDArray[Any]]


class Head(StrEnum):
    """The model head a task needs; each backend knows how to load each head."""

    SEQUENCE_CLASSIFICATION = "sequence-classification"
    QUESTION_ANSWERING = "question-answering"
    TOKEN_CLASSIFICATION = "token-classification"
    FEATURE_EXTRACTION = "feature-extraction"
    SEQ2SEQ_LM = "text2text-generation"
    MASKED_LM = "fill-mask"
    CAUSAL_LM = "text-generation"


# Names of the arrays forward() returns for each head.
HEAD_OUTPUTS: dict[Head, tuple[str, ...]] = {
    Head.SEQUENCE_CLASSIFICATION: ("logits",),
    Head.QUESTION_ANSWERING: ("start_logits", "end_logits"),
    Head.TOKEN_CLASSIFICATION: ("logits",),
    Head.FEATURE_EXTRACTION: ("last_hidden_state",),
    Head.SEQ2SEQ_LM: ("sequences",),
    Head.MASKED_LM: ("logits",),
    Head.CAUSAL_LM: ("logits",),
}


# The transformers Auto class that loads each head (PyTorch backend, ONNX export).
AUTO_CLASSES: dict[Head, str] = {
    Head.SEQUENCE_CLASSIFICATION: "AutoModelForSequenceClassification",
    Head.QUESTION_ANSWERING: "AutoModelForQuestionAnswering",
    Head.TOKEN_CLASSIFICATION: "AutoModelForTokenClassification",
    Head.FEATURE_EXTRACTION: "AutoModel",
    Head.SEQ2SEQ_LM: "AutoModelForSeq2SeqLM",
    Head.MASKED_LM: "AutoModelForMaskedLM",
    Head.CAUSAL_LM: "AutoModelForCausalLM",
}


@dataclass(frozen=True)
class StepInputs:
    """One causal-LM step over a batch of sequences (app/runtimes/kv.py): each row's new
    tokens, its mask over the cache's columns and the new ones, and the new tokens' positions
    (a row's own count, not the column: rows are left-padded)."""

    input_ids: npt.NDArray[np.int64]  # [rows, tokens]
    attention_mask: npt.NDArray[np.int64]  # [rows, cache width + tokens]
    position_ids: npt.NDArray[np.int64]  # [rows, tokens]

    @classmethod
    def prefill(
        cls, prompt: Sequence[int] | npt.NDArray[np.int64], start: int, stop: int
    ) -> StepInputs:
        """One sequence's prompt tokens start..stop, after the `start` already in its cache."""
        return cls(
            np.asarray(prompt[start:stop], dtype=np.int64)[None],
            np.ones((1, stop), dtype=np.int64),
            np.arange(start, stop, dtype=np.int64)[None],
        )


@dataclass(frozen=True)
class GenerationRequest:
    """Per-batch generation settings; items share a batch only when these are equal."""

    max_new_tokens: int
    min_new_tokens: int = 0
    forced_bos_token_id: int | None = None
    # Seconds generation may run before it stops (transformers' max_time): the request's
    # deadline reaches running work. Not part of what makes items batchable together.
    max_time: float | None = field(default=None, hash=False, compare=False)

    def generate_kwargs(self, catalog_generation: GenerationOptions) -> dict[str, Any]:
        """Arguments for transformers' generate(): catalog defaults, then this request."""
        kwargs: dict[str, Any] = {
            **catalog_generation.kwargs(),
            "max_new_tokens": self.max_new_tokens,
            "min_new_tokens": self.min_new_tokens,
        }
        if self.forced_bos_token_id is not None:
            kwargs["forced_bos_token_id"] = self.forced_bos_token_id
        if self.max_time is not None:
            kwargs["max_time"] = self.max_time
        return kwargs


class Backend(ABC):
    """One loaded model on one device."""

    name: ClassVar[str]
    config: Any  # the transformers PretrainedConfig: labels, sizes, special token ids

    def __init__(self, model_dir: Path, head: Head, spec: ModelSpec, settings: Settings) -> None:
        self.model_dir = model_dir
        self.head = head
        self.spec = spec
        self.settings = settings

    @classmethod
    def prepare(
        cls, spec: ModelSpec, model_dir: Path, head: Head, settings: Settings
    ) -> Path | None:
        """Make now what loading would otherwise make first (an export into its cache) and
        return the directory loading reads; None for backends that read model_dir as it is.
        `nlp-serve pull --export` calls it so that a baked image never exports at start-up."""
        return None

    @classmethod
    def precisions(cls, head: Head, device: str) -> tuple[str, ...]:
        """The precisions this backend can run `head` in on `device` (after fallbacks: 'cpu'
        or 'cuda:N'), empty where it cannot run it at all: the candidates `backend: auto` and
        `precision: auto` measure."""
        return ()

    @property
    @abstractmethod
    def device(self) -> str:
        """The device actually used, after fallbacks (e.g. 'cpu', 'cuda:0')."""

    @property
    @abstractmethod
    def precision(self) -> str:
        """The precision actually used, after fallbacks."""

    @abstractmethod
    def forward(self, inputs: ModelInputs) -> ModelOutputs:
        """Run encoder heads: HEAD_OUTPUTS[head] as float32 arrays, one row per input row."""

    def forward_token_max(self, inputs: ModelInputs) -> ModelOutputs:
        """forward(), each [rows, tokens, ...] output max-pooled over its row's real tokens
        (rows are right-padded, as collate() pads them): [rows, ...]. What a SPLADE model
        needs of its masked-LM logits; a backend that can pool before copying the outputs out
        (PyTorch: on the device) overrides it."""
        outputs = self.forward(inputs)
        lengths = [max(int(n), 1) for n in inputs["attention_mask"].sum(axis=1)]
        return {
            name: np.stack([value[row, :n].max(axis=0) for row, n in enumerate(lengths)])
            for name, value in outputs.items()
        }

    def generate(self, inputs: ModelInputs, request: GenerationRequest) -> ModelOutputs:
        """Run seq2seq generation: returns {'sequences': int64 [rows, length]}."""
        raise NotImplementedError(f"backend {self.name!r} cannot generate")

    def decode_step(
        self, step: StepInputs, cache: KVCache | None
    ) -> tuple[npt.NDArray[np.float32], KVCache]:
        """Run a causal LM over each row's new tokens after its cached ones (None: no tokens
        yet): the logits at each row's last new token (float32 [rows, vocab]) and the cache
        with the new tokens' keys and values appended (width + tokens columns)."""
        raise NotImplementedError(f"backend {self.name!r} cannot run a causal LM")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free what the backend holds (GPU memory, sessions)."""
