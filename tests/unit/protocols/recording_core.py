"""A stand-in for the typed core that records each call and answers canned results: what a
protocol surface asked for, checked without any model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.batching.base import StageTimes
from app.core import Answer, CallContext


@dataclass
class Recorded:
    method: str
    inputs: Any
    params: Any
    model: str | None


@dataclass
class RecordingCore:
    """results: what each method answers, by method name (one result per input by default)."""

    results: dict[str, list[Any]] = field(default_factory=dict)
    calls: list[Recorded] = field(default_factory=list)

    def _answer(self, method: str, inputs: Any, params: Any, model: str | None) -> Answer[Any]:
        self.calls.append(Recorded(method, inputs, params, model))
        canned = self.results.get(method, [None] * len(inputs))
        return Answer(model or "default", canned, StageTimes())

    async def classify(self, texts, params, *, model=None, call: CallContext) -> Answer[Any]:
        return self._answer("classify", texts, params, model)

    async def sentiment(self, texts, params, *, model=None, call: CallContext) -> Answer[Any]:
        return self._answer("sentiment", texts, params, model)

    async def qa(self, pairs, params, *, model=None, call: CallContext) -> Answer[Any]:
        return self._answer("qa", pairs, params, model)

    async def translate(self, texts, params, *, model=None, call: CallContext) -> Answer[Any]:
        return self._answer("translate", texts, params, model)

    async def summarize(self, texts, params, *, model=None, call: CallContext) -> Answer[Any]:
        return self._answer("summarize", texts, params, model)

    async def ner(self, texts, params, *, model=None, call: CallContext) -> Answer[Any]:
        return self._answer("ner", texts, params, model)

    async def embed(self, inputs, params, *, model=None, call: CallContext) -> Answer[Any]:
        return self._answer("embed", inputs, params, model)

    async def similarity(self, source, sentences, *, model=None, call: CallContext) -> Answer[Any]:
        return self._answer("similarity", [source, *sentences], None, model)

    @property
    def last(self) -> Recorded:
        return self.calls[-1]


CALL = CallContext(deadline=float("inf"))
