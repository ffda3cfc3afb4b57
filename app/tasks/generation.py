"""translate and summarize: seq2seq generation, batched by equal generation settings."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from app.errors import InvalidInput
from app.runtimes.base import Backend, GenerationRequest, Head, ModelInputs, ModelOutputs
from app.spec import LanguagePair, TaskName
from app.tasks.base import Encoded, Task


@dataclass(frozen=True)
class TranslateParams:
    pair: LanguagePair
    max_new_tokens: int


@dataclass(frozen=True)
class SummarizeParams:
    min_length: int
    max_length: int

    def check(self) -> None:
        if self.min_length > self.max_length:
            raise InvalidInput(
                f'"min_length" ({self.min_length}) is larger than "max_length" '
                f"({self.max_length}); make min_length <= max_length"
            )


@dataclass(frozen=True)
class Translation:
    translation_text: str


@dataclass(frozen=True)
class Summary:
    summary_text: str


class _Seq2SeqTask:
    """Shared encode/decode for generation tasks (mixed into the Task classes below)."""

    spec: Any
    tokenizer: Any

    def _encode_text(self: Any, text: str, prefix: str) -> Encoded:
        return Encoded(rows=[self.text_row(prefix + text)])

    def _decode_text(self, outputs: ModelOutputs) -> str:
        text = self.tokenizer.decode(
            outputs["sequences"][0].tolist(),
            skip_special_tokens=True,
            clean_up_tokenization_spaces=True,
        )
        return str(text).strip()


class TranslateTask(_Seq2SeqTask, Task[str, TranslateParams, Translation]):
    name = TaskName.TRANSLATE
    head = Head.SEQ2SEQ_LM
    method = "seq2seq generation"

    def pair(self, source: str | None, target: str) -> LanguagePair | None:
        """The pair this model serves for (source, target); source None matches any."""
        for pair in self.spec.languages:
            if pair.target == target and (source is None or pair.source == source):
                return pair  # type: ignore[no-any-return]
        return None

    def encode(self, item: str, params: TranslateParams) -> Encoded:
        return self._encode_text(item, self.spec.prefix + params.pair.prefix)

    def batch_key(self, params: TranslateParams) -> Hashable:
        return (params.pair.key, params.max_new_tokens)

    def execute(
        self, backend: Backend, inputs: ModelInputs, params: TranslateParams
    ) -> ModelOutputs:
        forced = None
        if params.pair.forced_bos_token:
            forced = int(self.tokenizer.convert_tokens_to_ids(params.pair.forced_bos_token))
        request = GenerationRequest(
            max_new_tokens=params.max_new_tokens, forced_bos_token_id=forced
        )
        return backend.generate(inputs, request)

    def decode(
        self, encoded: Encoded, outputs: ModelOutputs, params: TranslateParams
    ) -> Translation:
        return Translation(self._decode_text(outputs))

    def warmup_request(self) -> tuple[str, TranslateParams]:
        return "warm-up request", TranslateParams(self.spec.languages[0], max_new_tokens=4)

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "languages": [p.key for p in self.spec.languages]}


class SummarizeTask(_Seq2SeqTask, Task[str, SummarizeParams, Summary]):
    name = TaskName.SUMMARIZE
    head = Head.SEQ2SEQ_LM
    method = "abstractive seq2seq generation"

    def check(self, params: SummarizeParams) -> None:
        params.check()

    def encode(self, item: str, params: SummarizeParams) -> Encoded:
        return self._encode_text(item, self.spec.prefix)

    def batch_key(self, params: SummarizeParams) -> Hashable:
        return (params.min_length, params.max_length)

    def execute(
        self, backend: Backend, inputs: ModelInputs, params: SummarizeParams
    ) -> ModelOutputs:
        request = GenerationRequest(
            max_new_tokens=params.max_length, min_new_tokens=params.min_length
        )
        return backend.generate(inputs, request)

    def decode(self, encoded: Encoded, outputs: ModelOutputs, params: SummarizeParams) -> Summary:
        return Summary(self._decode_text(outputs))

    def warmup_request(self) -> tuple[str, SummarizeParams]:
        return "warm-up request", SummarizeParams(min_length=0, max_length=4)
