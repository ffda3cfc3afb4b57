"""translate and summarize: seq2seq generation, batched by equal generation settings."""

from __future__ import annotations

import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from app.errors import UnsupportedLanguagePair
from app.runtimes.base import Backend, GenerationRequest, Head, ModelInputs, ModelOutputs
from app.spec import LanguagePair, TaskName
from app.tasks.base import Encoded, Task


def time_left(deadline: float | None) -> float | None:
    """Seconds until the deadline (never negative); None without one."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


@dataclass(frozen=True)
class TranslateParams:
    target_lang: str
    source_lang: str | None = None  # None: any source the model pairs with target_lang
    max_new_tokens: int = 256


@dataclass(frozen=True)
class SummarizeParams:
    """Summary length bounds in generated tokens (min_length <= max_length, checked by the
    request schema)."""

    min_length: int
    max_length: int


# How much `auto` lets engines generate when it compares them (translations and summaries).
PROBE_NEW_TOKENS = 40
# Summaries are compared at the lengths the labelled set is checked at.
PROBE_SUMMARY = SummarizeParams(min_length=10, max_length=PROBE_NEW_TOKENS)


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

    def _find_pair(self, params: TranslateParams) -> LanguagePair | None:
        """The pair this model serves for the request; a missing source matches any."""
        for pair in self.spec.languages:
            source_ok = params.source_lang is None or pair.source == params.source_lang
            if pair.target == params.target_lang and source_ok:
                return pair  # type: ignore[no-any-return]
        return None

    def _pair(self, params: TranslateParams) -> LanguagePair:
        pair = self._find_pair(params)
        if pair is None:
            raise self._unsupported(params)
        return pair

    def _unsupported(self, params: TranslateParams) -> UnsupportedLanguagePair:
        wanted = f"{params.source_lang or '*'}-{params.target_lang}"
        served = sorted(p.key for p in self.spec.languages)
        return UnsupportedLanguagePair(
            f"model {self.spec.name!r} does not translate {wanted}; it serves {served}"
        )

    def refusal(self, params: TranslateParams) -> UnsupportedLanguagePair | None:
        return None if self._find_pair(params) is not None else self._unsupported(params)

    def encode(self, item: str, params: TranslateParams) -> Encoded:
        return self._encode_text(item, self.spec.prefix + self._pair(params).prefix)

    def batch_key(self, params: TranslateParams) -> Hashable:
        return (self._pair(params).key, params.max_new_tokens)

    def execute(
        self,
        backend: Backend,
        inputs: ModelInputs,
        params: TranslateParams,
        deadline: float | None,
    ) -> ModelOutputs:
        pair = self._pair(params)
        forced = None
        if pair.forced_bos_token:
            forced = int(self.tokenizer.convert_tokens_to_ids(pair.forced_bos_token))
        request = GenerationRequest(
            max_new_tokens=params.max_new_tokens,
            forced_bos_token_id=forced,
            max_time=time_left(deadline),
        )
        return backend.generate(inputs, request)

    def decode(
        self, encoded: Encoded, outputs: ModelOutputs, params: TranslateParams
    ) -> Translation:
        return Translation(self._decode_text(outputs))

    def warmup_request(self) -> tuple[str, TranslateParams]:
        first = self.spec.languages[0]
        return "warm-up request", TranslateParams(first.target, first.source, max_new_tokens=4)

    def example_request(self, fields: Mapping[str, Any]) -> tuple[str, TranslateParams]:
        first = self.spec.languages[0]
        return str(fields["text"]), TranslateParams(
            first.target, first.source, max_new_tokens=PROBE_NEW_TOKENS
        )

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "languages": [p.key for p in self.spec.languages]}


class SummarizeTask(_Seq2SeqTask, Task[str, SummarizeParams, Summary]):
    name = TaskName.SUMMARIZE
    head = Head.SEQ2SEQ_LM
    method = "abstractive seq2seq generation"

    def encode(self, item: str, params: SummarizeParams) -> Encoded:
        return self._encode_text(item, self.spec.prefix)

    def batch_key(self, params: SummarizeParams) -> Hashable:
        return (params.min_length, params.max_length)

    def execute(
        self,
        backend: Backend,
        inputs: ModelInputs,
        params: SummarizeParams,
        deadline: float | None,
    ) -> ModelOutputs:
        request = GenerationRequest(
            max_new_tokens=params.max_length,
            min_new_tokens=params.min_length,
            max_time=time_left(deadline),
        )
        return backend.generate(inputs, request)

    def decode(self, encoded: Encoded, outputs: ModelOutputs, params: SummarizeParams) -> Summary:
        return Summary(self._decode_text(outputs))

    def warmup_request(self) -> tuple[str, SummarizeParams]:
        return "warm-up request", SummarizeParams(min_length=0, max_length=4)

    def example_request(self, fields: Mapping[str, Any]) -> tuple[str, SummarizeParams]:
        return str(fields["text"]), PROBE_SUMMARY
