"""What a task is: turning one request item into model rows, and model outputs back into an answer.

A task never touches a backend's internals: it calls backend.forward() or backend.generate()
on padded arrays. One item may need several rows (zero-shot labels, QA windows); the batcher
counts rows and tokens, the task decodes its own slice of the outputs.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar, cast

import numpy as np

from app.errors import InvalidInput, PayloadTooLarge, ServeError
from app.runtimes.base import Backend, Head, ModelInputs, ModelOutputs
from app.spec import ModelSpec, TaskName

ContextT = TypeVar("ContextT")
ItemT = TypeVar("ItemT")
ParamsT = TypeVar("ParamsT")
ResultT = TypeVar("ResultT")

Row = dict[str, list[int]]
# Which end of a text over max_length is cut: the tokenizer's own (None), or one a request asks.
TruncationSide = Literal["left", "right"]

# Model input name -> the tokenizers.Encoding attribute holding it.
ENCODING_FIELDS = {
    "input_ids": "ids",
    "attention_mask": "attention_mask",
    "token_type_ids": "type_ids",
}


@dataclass
class Encoded:
    """One request item after tokenization: its model rows, and what decoding needs besides
    the outputs (a task's own named context type: offsets, windows, sentence spans)."""

    rows: list[Row]
    context: object = None
    n_tokens: int = field(init=False)
    tokenize_s: float = 0.0  # how long encoding took, set by the served model
    truncated: bool = False  # the input was cut to the model's max_length (answers say so)

    def __post_init__(self) -> None:
        self.n_tokens = max((len(row["input_ids"]) for row in self.rows), default=0)

    def context_as(self, kind: type[ContextT]) -> ContextT:
        """The context as the type the task's encode() put there."""
        if not isinstance(self.context, kind):
            raise TypeError(
                f"expected a {kind.__name__} context, got {type(self.context).__name__}"
            )
        return self.context


def collate(rows: Sequence[Row], pad_token_id: int) -> ModelInputs:
    """Right-pad rows to the longest one; input_ids pad with the pad id, the rest with 0."""
    width = max(len(row["input_ids"]) for row in rows)
    arrays: ModelInputs = {}
    for key in rows[0]:
        fill = pad_token_id if key == "input_ids" else 0
        array = np.full((len(rows), width), fill, dtype=np.int64)
        for i, row in enumerate(rows):
            array[i, : len(row[key])] = row[key]
        arrays[key] = array
    return arrays


class Task(ABC, Generic[ItemT, ParamsT, ResultT]):
    name: ClassVar[TaskName]
    head: ClassVar[Head]
    method: str = "fine-tuned head"
    needs_offsets: ClassVar[bool] = False  # needs a fast tokenizer's character offsets
    # How `auto` holds another engine's answers to the fp32 reference's (see agreement()):
    # "answers" must agree on a share of the probes, "cosine" on every one of them.
    agreement_kind: ClassVar[Literal["answers", "cosine"]] = "answers"

    def __init__(self, spec: ModelSpec, model_dir: Path, tokenizer: Any, config: Any) -> None:
        self.spec = spec
        self.model_dir = model_dir
        self.tokenizer = tokenizer
        self.config = config
        self.model_inputs = tuple(tokenizer.model_input_names)
        self.truncation_side: TruncationSide = (
            "left" if getattr(tokenizer, "truncation_side", "right") == "left" else "right"
        )
        # Encoders for requests that cut the other end or not at all, made on first use:
        # each is configured once, never changed while tokenizing threads use it.
        self._other_encoders: dict[str, Any] = {}
        self._encoders_lock = threading.Lock()
        self._encoder = self._plain_encoder()
        self.max_length = self._max_length()

    @property
    def max_length(self) -> int:
        """Longest row, in tokens; longer texts are truncated."""
        return self._max_length_value

    @max_length.setter
    def max_length(self, value: int) -> None:
        # Subclasses may lower it (a sentence-transformers max_seq_length): the direct
        # encoder's truncation must follow.
        self._max_length_value = value
        if self._encoder is not None:
            self._encoder.enable_truncation(value, direction=self.truncation_side)
        for side, encoder in self._other_encoders.items():
            if side != "none":
                encoder.enable_truncation(value, direction=side)

    def _max_length(self) -> int:
        limits = [self.spec.max_length, getattr(self.config, "max_position_embeddings", None)]
        model_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(model_max, int) and model_max < 1_000_000:  # HF uses 1e30 for "unset"
            limits.append(model_max)
        return min((v for v in limits if isinstance(v, int) and v > 0), default=512)

    def _plain_encoder(self) -> Any:
        """The fast tokenizer's Rust core for plain texts (max_length sets its truncation).

        Calling it directly skips ~20 Python calls per text in transformers' wrapper, which
        matter at low load, where every request pays them on cold caches. None when the
        tokenizer is not a fast one or the model takes inputs the core does not give.
        """
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None or not set(self.model_inputs) <= set(ENCODING_FIELDS):
            return None
        from tokenizers import Tokenizer

        encoder = Tokenizer.from_str(backend.to_str())  # a copy: the wrapper mutates its own
        encoder.no_padding()
        return encoder

    def tokenize(self, *texts: str | list[str], **kwargs: Any) -> Any:
        kwargs.setdefault("truncation", True)
        kwargs.setdefault("max_length", self.max_length)
        return self.tokenizer(*texts, **kwargs)

    def rows(self, texts: list[str]) -> list[Row]:
        """Model rows for plain texts (special tokens added, truncated at max_length), in one
        tokenizer call."""
        if self._encoder is None:
            encoding = self.tokenize(texts)
            return [self.row(encoding, i) for i in range(len(texts))]
        encodings = (
            [self._encoder.encode(texts[0])]
            if len(texts) == 1
            else self._encoder.encode_batch(texts)
        )
        return [
            {key: getattr(enc, ENCODING_FIELDS[key]) for key in self.model_inputs}
            for enc in encodings
        ]

    def text_row(self, text: str) -> Row:
        """The model row for one plain text."""
        return self.rows([text])[0]

    def _encoder_for(self, kind: str) -> Any:
        """The Rust encoder that cuts `kind` ("left", "right") or nothing ("none")."""
        encoder = self._other_encoders.get(kind)
        if encoder is None:
            with self._encoders_lock:
                encoder = self._other_encoders.get(kind)
                if encoder is None:
                    encoder = self._plain_encoder()
                    if kind == "none":
                        encoder.no_truncation()
                    else:
                        encoder.enable_truncation(self.max_length, direction=kind)
                    self._other_encoders[kind] = encoder
        return encoder

    def truncation_refusal(self, side: TruncationSide | None) -> ServeError | None:
        """Why this model cannot cut inputs on `side`, or None."""
        if self._encoder is None and side not in (None, self.truncation_side):
            return InvalidInput(
                f"truncation_direction: model {self.spec.name!r} has no fast tokenizer "
                f"(tokenizer.json), so it cuts long inputs on the {self.truncation_side} only; "
                f"send {self.truncation_side!r} or leave it out"
            )
        return None

    def too_long(self, tokens: int) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"an input has {tokens} tokens; model {self.spec.name!r} takes at most "
            f"{self.max_length} (its max_length): shorten it, or send truncate: true to have "
            "it cut"
        )

    def encode_text(
        self, text: str, truncate: bool = True, side: TruncationSide | None = None
    ) -> tuple[Row, bool]:
        """The model row for one plain text, and whether it was cut to max_length.

        truncate=False refuses (413) a text over max_length, naming its token count; `side`
        says which end is cut (None: the tokenizer's own). Each way has its own encoder, so
        one request's choice never reaches another's, and the default costs what text_row
        does (measured: a second encoder tokenizes as fast; cutting after encoding without
        truncation costs 8-11% more)."""
        if self._encoder is None:
            encoding = self.tokenize(text, truncation=False, max_length=None)
            tokens = len(encoding["input_ids"])
            if tokens <= self.max_length:
                return self.row(encoding), False
            if not truncate:
                raise self.too_long(tokens)
            return self.row(self.tokenize(text)), True  # the tokenizer's own side
        if not truncate:
            encoder = self._encoder_for("none")
        elif side is None or side == self.truncation_side:
            encoder = self._encoder
        else:
            encoder = self._encoder_for(side)
        encoded = encoder.encode(text)
        row = {key: getattr(encoded, ENCODING_FIELDS[key]) for key in self.model_inputs}
        if not truncate:
            if len(encoded.ids) > self.max_length:
                raise self.too_long(len(encoded.ids))
            return row, False
        return row, bool(encoded.overflowing)

    def row(self, encoding: Any, index: int | None = None) -> Row:
        """Keep only the arrays the model takes, from one (or the index-th) tokenized sequence."""
        return {
            key: list(encoding[key] if index is None else encoding[key][index])
            for key in self.model_inputs
            if key in encoding
        }

    def refusal(self, params: ParamsT) -> ServeError | None:
        """Why this model cannot serve these request parameters, or None when it can.

        The registry asks every model of the task when a request names none, so the rule for
        which model serves a request lives with the task (zero-shot vs fixed labels, the
        language pair), not in the routes.
        """
        return None

    @abstractmethod
    def encode(self, item: ItemT, params: ParamsT) -> Encoded: ...

    def batch_key(self, params: ParamsT) -> Hashable:
        """Items share a batch only when their keys are equal (e.g. generation lengths)."""
        return None

    def execute(
        self, backend: Backend, inputs: ModelInputs, params: ParamsT, deadline: float | None
    ) -> ModelOutputs:
        """Run the rows; deadline (time.monotonic()) lets long work, such as generation,
        stop when nobody waits for it any more."""
        return backend.forward(inputs)

    def item_chars(self, item: ItemT) -> int:
        """The item's size in characters: how much tokenizing it costs."""
        return len(item) if isinstance(item, str) else sum(map(len, vars(item).values()))

    @abstractmethod
    def decode(self, encoded: Encoded, outputs: ModelOutputs, params: ParamsT) -> ResultT:
        """outputs holds only this item's rows, in the order encode() produced them."""

    @abstractmethod
    def warmup_request(self) -> tuple[ItemT, ParamsT]: ...

    def example_request(self, fields: Mapping[str, Any]) -> tuple[ItemT, ParamsT]:
        """The request for one probe: a labelled example's fields (text, question, context,
        candidate_labels, ... as in app/calibration/labelled/*.jsonl) or a calibration text,
        which carries text, question and context alike. What `auto` compares engines on."""
        return cast(ItemT, str(fields["text"])), self.warmup_request()[1]

    def agreement(self, reference: ResultT, candidate: ResultT) -> float:
        """How well another engine's answer agrees with the reference's: 1.0 when they are the
        same answer once scores are left out, else 0.0 (embeddings: their cosine)."""
        return float(without_scores(reference) == without_scores(candidate))

    def example_requests(self, fields: Mapping[str, Any]) -> list[tuple[ItemT, ParamsT]]:
        """The requests of one probe: one for most tasks (example_request); rerank asks one per
        document of the example, whose answers only mean something together (a ranking)."""
        return [self.example_request(fields)]

    def probe_agreement(self, reference: Sequence[ResultT], candidate: Sequence[ResultT]) -> float:
        """How well another engine's answers to one probe agree with the reference's: the mean
        of agreement() over them (rerank: whether the same document ranks first)."""
        scores = [self.agreement(r, c) for r, c in zip(reference, candidate, strict=True)]
        return sum(scores) / len(scores)

    def describe(self) -> dict[str, Any]:
        """Task facts for GET /v1/models."""
        return {"method": self.method}


def all_finite(value: object) -> bool:
    """True when no float in a result (numbers, lists, dataclasses) is NaN or infinite."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        if value and isinstance(value[0], float):  # a vector: stay in C
            return all(map(math.isfinite, value))
        return all(all_finite(v) for v in value)
    if is_dataclass(value):
        return all(all_finite(v) for v in vars(value).values())
    return True


def without_scores(value: object) -> object:
    """A result with every float left out: what two engines must agree on exactly."""
    if isinstance(value, float):
        return None
    if isinstance(value, list | tuple):
        return [without_scores(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return {k: without_scores(v) for k, v in vars(value).items()}
    if isinstance(value, dict):
        return {k: without_scores(v) for k, v in value.items()}
    return value


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    exp = np.exp(x - x.max(axis=axis, keepdims=True))
    out: np.ndarray = exp / exp.sum(axis=axis, keepdims=True)
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return out
