"""The one in-process API every surface calls: a typed method per task.

Native routes, OpenAI, the Hugging Face API, the Open Inference Protocol over HTTP and gRPC,
and `nlp-serve eval` all come here with texts (or pairs) and the task's typed params; each
method checks the request limits, resolves the model, submits to its scheduler within the
call's deadline, drops the work if the caller leaves, and answers the typed results with where
the time went. No surface builds another surface's body or re-validates one; each shapes its
own answers and errors from what comes back here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from app.batching.base import Served, StageTimes
from app.errors import ClientClosedRequest, InvalidInput, PayloadTooLarge
from app.registry.registry import ModelHandle, Registry
from app.settings import Settings
from app.spec import TaskName
from app.tasks.classification import ClassifyParams, LabelScore, SentimentParams, SentimentResult
from app.tasks.embed import CountedEmbedding, EmbedParams, TokenIds, cosine_similarities
from app.tasks.fill_mask import FillMaskParams, MaskFill
from app.tasks.generation import SummarizeParams, Summary, TranslateParams, Translation
from app.tasks.ner import Entity
from app.tasks.qa import QAItem, QAParams, QAResult

ResultT = TypeVar("ResultT")


@dataclass
class CallContext:
    """One call as its surface sees it: when it must be answered by, how to tell that its
    caller left, and (set here once resolved) the model serving it, for the surface's metrics
    and logs even when the call fails."""

    deadline: float  # a time.monotonic() instant
    # Returns when the caller has gone (an HTTP disconnect); None where leaving cancels the
    # awaiting task itself (gRPC, in-process callers).
    gone: Callable[[], Awaitable[None]] | None = None
    model: str | None = field(default=None, init=False)


@dataclass(frozen=True)
class Answer(Generic[ResultT]):
    """The model that served a call, one result per input (in order), and the stage times."""

    model: str
    results: list[ResultT]
    times: StageTimes


class InferenceCore:
    def __init__(self, registry: Registry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings

    def handle(self, name: str) -> ModelHandle:
        """A served model by name, for a surface's metadata (404 unknown, 503 not ready)."""
        return self.registry.handle(name)

    # -- the call's deadline and limits ----------------------------------------------------

    def deadline(self, timeout_ms: int | None = None) -> float:
        """Now + the request timeout; a caller's own timeout may only shorten it."""
        limit_ms = self.settings.request_timeout_ms
        if timeout_ms is not None:
            limit_ms = min(limit_ms, timeout_ms)
        return time.monotonic() + limit_ms / 1000.0

    def context(self, timeout_ms: int | None = None) -> CallContext:
        return CallContext(self.deadline(timeout_ms))

    def check_limits(self, count: int, texts: Iterable[str]) -> None:
        settings = self.settings
        if count < 1:
            raise InvalidInput("the request has no inputs; send at least one")
        if count > settings.max_items_per_request:
            raise PayloadTooLarge(
                f"{count} inputs in one request; the limit is {settings.max_items_per_request} "
                "(NLP_SERVE_MAX_ITEMS_PER_REQUEST): split the request"
            )
        for text in texts:
            if len(text) > settings.max_input_chars:
                raise PayloadTooLarge(
                    f"an input has {len(text)} characters; the limit is "
                    f"{settings.max_input_chars} (NLP_SERVE_MAX_INPUT_CHARS): shorten or split it"
                )

    # -- the one path ----------------------------------------------------------------------

    async def run(
        self,
        task: TaskName,
        items: Sequence[Any],
        params: Any,
        texts: Iterable[str],
        *,
        model: str | None,
        call: CallContext,
    ) -> Answer[Any]:
        """Limits, the model for (task, name, params), submit, answer: what every typed method
        below does with its own types."""
        self.check_limits(len(items), texts)
        handle = self.registry.resolve(task, model, params)
        call.model = handle.name
        served = await self._submit(handle, items, params, call)
        return Answer(handle.name, served.results, served.times)

    async def _submit(
        self, handle: ModelHandle, items: Sequence[Any], params: Any, call: CallContext
    ) -> Served:
        """Submit within the deadline; a caller that leaves cancels its queued items."""
        if call.gone is None:  # leaving cancels the awaiting task, and with it the items
            return await handle.submit(items, params, call.deadline)
        work = asyncio.ensure_future(handle.submit(items, params, call.deadline))
        watcher = asyncio.ensure_future(call.gone())
        try:
            await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
        if not work.done():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            raise ClientClosedRequest("the client disconnected before the answer was ready")
        return work.result()

    # -- one typed method per task ---------------------------------------------------------

    async def classify(
        self,
        texts: Sequence[str],
        params: ClassifyParams,
        *,
        model: str | None = None,
        call: CallContext,
    ) -> Answer[list[LabelScore]]:
        """Each text's labels, best first: a model's own labels, or candidate_labels."""
        return await self.run(TaskName.CLASSIFY, texts, params, texts, model=model, call=call)

    async def sentiment(
        self,
        texts: Sequence[str],
        params: SentimentParams,
        *,
        model: str | None = None,
        call: CallContext,
    ) -> Answer[SentimentResult]:
        return await self.run(TaskName.SENTIMENT, texts, params, texts, model=model, call=call)

    async def qa(
        self,
        pairs: Sequence[QAItem],
        params: QAParams,
        *,
        model: str | None = None,
        call: CallContext,
    ) -> Answer[QAResult]:
        texts = (text for pair in pairs for text in (pair.question, pair.context))
        return await self.run(TaskName.QA, pairs, params, texts, model=model, call=call)

    async def translate(
        self,
        texts: Sequence[str],
        params: TranslateParams,
        *,
        model: str | None = None,
        call: CallContext,
    ) -> Answer[Translation]:
        return await self.run(TaskName.TRANSLATE, texts, params, texts, model=model, call=call)

    async def summarize(
        self,
        texts: Sequence[str],
        params: SummarizeParams,
        *,
        model: str | None = None,
        call: CallContext,
    ) -> Answer[Summary]:
        return await self.run(TaskName.SUMMARIZE, texts, params, texts, model=model, call=call)

    async def ner(
        self, texts: Sequence[str], *, model: str | None = None, call: CallContext
    ) -> Answer[list[Entity]]:
        return await self.run(TaskName.NER, texts, None, texts, model=model, call=call)

    async def embed(
        self,
        inputs: Sequence[str | TokenIds],
        params: EmbedParams,
        *,
        model: str | None = None,
        call: CallContext,
    ) -> Answer[list[float] | CountedEmbedding]:
        """Texts, or token ids of the model's own tokenizer; with count_tokens each result is
        a CountedEmbedding."""
        texts = [item for item in inputs if isinstance(item, str)]
        return await self.run(TaskName.EMBED, inputs, params, texts, model=model, call=call)

    async def fill_mask(
        self,
        texts: Sequence[str],
        params: FillMaskParams,
        *,
        model: str | None = None,
        call: CallContext,
    ) -> Answer[list[MaskFill]]:
        return await self.run(TaskName.FILL_MASK, texts, params, texts, model=model, call=call)

    async def similarity(
        self,
        source: str,
        sentences: Sequence[str],
        *,
        model: str | None = None,
        call: CallContext,
    ) -> Answer[float]:
        """The cosine similarity of each sentence to the source (an embed model, one batch)."""
        if not sentences:
            raise InvalidInput("similarity needs at least one sentence to compare the source to")
        embedded = await self.embed(
            [source, *sentences], EmbedParams(normalize=True), model=model, call=call
        )
        vectors: list[list[float]] = embedded.results  # type: ignore[assignment]
        return Answer(embedded.model, cosine_similarities(vectors[0], vectors[1:]), embedded.times)
