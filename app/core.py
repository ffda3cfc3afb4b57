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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from concurrent.futures import Executor
from contextvars import copy_context
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from app.batching.base import Served, StageTimes
from app.batching.continuous import Generation
from app.errors import (
    ClientClosedRequest,
    DeadlineExceeded,
    InvalidInput,
    PayloadTooLarge,
    QueryTooLong,
    ServeError,
    TaskNotServed,
)
from app.registry.registry import ModelHandle, Registry
from app.settings import Settings
from app.spec import TaskName
from app.tasks import tokens
from app.tasks.causal import Completion, GenerateParams, GenerateTask, Prompt, TokenEvent
from app.tasks.classification import ClassifyParams, LabelScore, SentimentParams, SentimentResult
from app.tasks.embed import CountedEmbedding, EmbedParams, TokenIds, cosine_similarities
from app.tasks.fill_mask import FillMaskParams, MaskFill
from app.tasks.generation import SummarizeParams, Summary, TranslateParams, Translation
from app.tasks.ner import Entity, NERParams, TokenEntity
from app.tasks.prompts import EncoderParams, PromptTable
from app.tasks.qa import QAItem, QAParams, QAResult
from app.tasks.rerank import DocumentScore, RankedDocument, RerankItem, RerankParams, rank
from app.tasks.sparse import SparseEmbedParams, SparseVector
from app.tasks.tokens import DetokenizeParams, Tokenized, TokenizeParams

ResultT = TypeVar("ResultT")
T = TypeVar("T")


@dataclass
class CallContext:
    """One call as its surface sees it: when it must be answered by, how to tell that its
    caller left, and (set here once resolved) the model serving it, for the surface's metrics
    and logs even when the call fails."""

    deadline: float  # a time.monotonic() instant
    # Returns when the caller has gone (an HTTP disconnect); None where leaving cancels the
    # awaiting task itself (gRPC, in-process callers).
    gone: Callable[[], Awaitable[None]] | None = None
    # What the caller asked for (X-Request-Timeout-Ms, a gRPC deadline): generation has its
    # own, longer, limit, which this may only shorten too.
    timeout_ms: int | None = None
    arrived: float = field(default_factory=time.monotonic)
    model: str | None = field(default=None, init=False)


@dataclass(frozen=True)
class Answer(Generic[ResultT]):
    """The model that served a call, one result per input (in order), the stage times, and
    which inputs were cut to the model's max_length (their indices)."""

    model: str
    results: list[ResultT]
    times: StageTimes
    truncated: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class StartedGeneration:
    """A generate call once its sequences are queued: the model, and their events."""

    model: str
    running: Generation

    def events(self) -> AsyncIterator[tuple[int, TokenEvent | Completion]]:
        """(prompt index, token or completion) as they come; a sequence's error is raised,
        and closing the iterator early ends every sequence at its next step."""
        return aiter(self.running)

    def times(self) -> StageTimes:
        return self.running.times()

    def cancel(self) -> None:
        """End every sequence at its next step (a no-op for those already ended)."""
        self.running.cancel()


@dataclass(frozen=True)
class Ranking(Answer[RankedDocument]):
    """A rerank call's answer: the documents best first (at most top_n), and the tokens the
    model read for all of them (windows, query and special tokens included)."""

    tokens: int = 0


class InferenceCore:
    def __init__(
        self, registry: Registry, settings: Settings, tokenize_pool: Executor | None = None
    ) -> None:
        self.registry = registry
        self.settings = settings
        # Where tokenizer-only work (tokenize, detokenize) runs off the event loop: the
        # batchers' shared tokenize pool; None: asyncio's default executor.
        self.tokenize_pool = tokenize_pool

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
        return CallContext(self.deadline(timeout_ms), timeout_ms=timeout_ms)

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
        return Answer(handle.name, served.results, served.times, served.truncated)

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
        self,
        texts: Sequence[str],
        params: NERParams,
        *,
        model: str | None = None,
        call: CallContext,
    ) -> Answer[list[Entity] | list[TokenEntity]]:
        """Each text's entities, grouped as params.aggregation_strategy says."""
        return await self.run(TaskName.NER, texts, params, texts, model=model, call=call)

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

    async def embed_sparse(
        self,
        texts: Sequence[str],
        params: SparseEmbedParams,
        *,
        model: str | None = None,
        call: CallContext,
    ) -> Answer[SparseVector]:
        """Each text's SPLADE vector: its kept vocabulary weights, by id."""
        return await self.run(TaskName.EMBED_SPARSE, texts, params, texts, model=model, call=call)

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

    async def rerank(
        self,
        query: str,
        documents: Sequence[str],
        params: RerankParams,
        *,
        model: str | None = None,
        call: CallContext,
    ) -> Ranking:
        """The documents by relevance to the query, best first (at most params.top_n), each
        with its position in `documents`. Each document is one item of the batcher; one longer
        than the model's window is scored in windows, its best window counting."""
        self.check_rerank_limits(query, documents)
        handle = self.registry.resolve(TaskName.RERANK, model, params)
        call.model = handle.name
        items = [RerankItem(query, document) for document in documents]
        try:
            served = await self._submit(handle, items, params, call)
        except ServeError as exc:  # the batcher names an item inputs[i]: here, a document
            if not exc.message.startswith("inputs["):
                raise
            message = "documents[" + exc.message.removeprefix("inputs[")
            if isinstance(exc, QueryTooLong):  # the same for every document: name none
                message = message.partition("]: ")[2]
            raise type(exc)(message, headers=exc.headers) from None
        scores: list[DocumentScore] = served.results
        ranked = rank(scores, params.top_n)
        tokens = sum(s.tokens for s in scores)
        return Ranking(handle.name, ranked, served.times, served.truncated, tokens=tokens)

    def check_rerank_limits(self, query: str, documents: Sequence[str]) -> None:
        settings = self.settings
        if not documents:
            raise InvalidInput("the request has no documents; send at least one")
        if len(documents) > settings.max_documents_per_rerank:
            raise PayloadTooLarge(
                f"{len(documents)} documents in one request; the limit is "
                f"{settings.max_documents_per_rerank} (NLP_SERVE_MAX_DOCUMENTS_PER_RERANK): "
                "split the request"
            )
        longest = max(range(len(documents)), key=lambda i: len(documents[i]))
        for what, text in (("query", query), (f"documents[{longest}]", documents[longest])):
            if len(text) > settings.max_input_chars:
                raise PayloadTooLarge(
                    f"{what} has {len(text)} characters; the limit is {settings.max_input_chars} "
                    "(NLP_SERVE_MAX_INPUT_CHARS): shorten it"
                )

    # -- text generation (causal LMs): streamed or not ----------------------------------------

    async def generate(
        self,
        prompts: Sequence[Prompt],
        params: GenerateParams,
        *,
        model: str | None = None,
        call: CallContext,
    ) -> Answer[Completion]:
        """Each prompt's completion, once every one has finished; a caller that leaves ends
        them at their next step."""
        handle, params = self._generation_call(prompts, params, model, call)
        served = await self._submit(handle, prompts, params, call)
        return Answer(handle.name, served.results, served.times)

    async def generation(
        self,
        prompts: Sequence[Prompt],
        params: GenerateParams,
        *,
        model: str | None = None,
        call: CallContext,
    ) -> StartedGeneration:
        """Start generating for every prompt (tokenized, checked, queued: a 4xx comes here,
        before anything is streamed) and answer the running generation to iterate."""
        handle, params = self._generation_call(prompts, params, model, call)
        running = await handle.generation(prompts, params, call.deadline)
        return StartedGeneration(handle.name, running)

    def _generation_call(
        self,
        prompts: Sequence[Prompt],
        params: GenerateParams,
        model: str | None,
        call: CallContext,
    ) -> tuple[ModelHandle, GenerateParams]:
        """Limits, the model, its defaults in the params, and the call's deadline: generation's
        own timeout (NLP_SERVE_GENERATE_TIMEOUT_MS), which the caller may only shorten."""
        texts = (t for p in prompts for t in (p.text, *(m.content for m in p.messages)))
        self.check_limits(len(prompts), texts)
        handle = self.registry.resolve(TaskName.GENERATE, model, params)
        call.model = handle.name
        task = handle.model.task
        if not isinstance(task, GenerateTask):  # pragma: no cover - resolve() picks by task
            raise TaskNotServed(f"model {handle.name!r} does not generate text")
        params = task.resolved(params)
        self.check_generate_limits(params)
        limit_ms = self.settings.generate_timeout_ms
        if call.timeout_ms is not None:
            limit_ms = min(limit_ms, call.timeout_ms)
        call.deadline = call.arrived + limit_ms / 1000.0
        return handle, params

    def check_generate_limits(self, params: GenerateParams) -> None:
        settings = self.settings
        if params.max_new_tokens is not None and params.max_new_tokens > settings.max_new_tokens:
            raise InvalidInput(
                f"max_new_tokens is {params.max_new_tokens}; this server generates at most "
                f"{settings.max_new_tokens} tokens per sequence (NLP_SERVE_MAX_NEW_TOKENS)"
            )
        if len(params.stop) > settings.max_stop_sequences:
            raise InvalidInput(
                f"stop: {len(params.stop)} stop sequences; this server takes at most "
                f"{settings.max_stop_sequences} (NLP_SERVE_MAX_STOP_SEQUENCES)"
            )
        longest = max(params.stop, key=len, default="")
        if len(longest) > settings.max_stop_chars:
            raise InvalidInput(
                f"stop: a stop sequence has {len(longest)} characters; at most "
                f"{settings.max_stop_chars} (NLP_SERVE_MAX_STOP_CHARS)"
            )

    # -- a model's tokenizer alone: no batcher, no model run --------------------------------

    def tokenizer_model(self, model: str | None) -> ModelHandle:
        """The model whose tokenizer a tokenize call uses: the one named (any served model),
        else the default embed model."""
        if model is not None:
            return self.registry.handle(model)
        names = self.registry.names_for(TaskName.EMBED)
        if not names:
            raise TaskNotServed(
                "no model was named, and this catalog serves no embed model, whose tokenizer "
                'is the default: name the model whose tokenizer to use ("model" on '
                "POST /v1/tokenize and /v1/detokenize; GET /v1/models lists them)"
            )
        return self.registry.handle(names[0])

    def prompted(
        self, texts: Sequence[str], prompt_name: str | None, *, model: str | None = None
    ) -> list[str]:
        """Each text as the model reads it: with its prompt first (the one named, else the
        model's default prompt, if it has one), for a tokenize call that shows the prompt's
        tokens too (Text Embeddings Inference's /tokenize)."""
        handle = self.tokenizer_model(model)
        prompts = getattr(handle.model.task, "prompts", None)
        if not isinstance(prompts, PromptTable):
            if prompt_name is None:
                return list(texts)
            raise InvalidInput(
                f"prompt_name: model {handle.name!r} ({handle.model.spec.task.value}) takes no "
                "prompts; drop prompt_name"
            )
        chosen = EncoderParams(prompt_name=prompt_name)
        return [prompts.apply(text, chosen) for text in texts]

    async def _tokenizer_work(
        self, call: CallContext, size: int | None, work: Callable[[], T]
    ) -> T:
        """Tokenizer-only work: on the event loop when small (as an idle batcher does; size
        None: never), else in the tokenize pool, within the call's deadline and dropped if the
        caller leaves."""
        if size is not None and size <= self.settings.inline_tokenize_max_chars:
            return work()
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(self.tokenize_pool, copy_context().run, work)
        watcher = asyncio.ensure_future(call.gone()) if call.gone is not None else None
        waiting: set[asyncio.Future[Any]] = {job} if watcher is None else {job, watcher}
        try:
            done, _ = await asyncio.wait(
                waiting,
                timeout=max(0.0, call.deadline - time.monotonic()),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            if watcher is not None:
                watcher.cancel()
        if job in done:
            return job.result()
        job.cancel()  # not started yet: it never will; running: it finishes unheard
        if watcher is not None and watcher in done:
            raise ClientClosedRequest("the client disconnected before the answer was ready")
        raise DeadlineExceeded(
            "tokenizing did not finish within the request deadline; send fewer or shorter "
            "texts, or allow more time with X-Request-Timeout-Ms (up to "
            "NLP_SERVE_REQUEST_TIMEOUT_MS)"
        )

    async def tokenize(
        self,
        texts: Sequence[str],
        params: TokenizeParams,
        *,
        model: str | None = None,
        call: CallContext,
    ) -> Answer[Tokenized]:
        """Each text's tokens by the model's tokenizer (untruncated), with how many of them the
        model reads and its max_length; the default model: the default embed model."""
        self.check_limits(len(texts), texts)
        handle = self.tokenizer_model(model)
        call.model = handle.name
        task = handle.model.task
        started = time.perf_counter()
        # a model's first tokenize call copies its tokenizer's core: never on the loop
        size = sum(map(len, texts)) if tokens.prepared(task.tokenizer) else None
        results = await self._tokenizer_work(
            call, size, lambda: tokens.tokenize(task.tokenizer, texts, params, task.max_length)
        )
        return Answer(handle.name, results, StageTimes(tokenize=time.perf_counter() - started))

    async def detokenize(
        self,
        id_lists: Sequence[Sequence[int]],
        params: DetokenizeParams,
        *,
        model: str | None = None,
        call: CallContext,
    ) -> Answer[str]:
        """Each id list's text by the model's tokenizer; ids outside its vocabulary answer 422
        naming them. At most NLP_SERVE_MAX_TOKENS_PER_REQUEST ids in all."""
        self.check_limits(len(id_lists), ())
        total = sum(map(len, id_lists))
        if total > self.settings.max_tokens_per_request:
            raise PayloadTooLarge(
                f"{total} token ids in one request; the limit is "
                f"{self.settings.max_tokens_per_request} (NLP_SERVE_MAX_TOKENS_PER_REQUEST): "
                "split the request"
            )
        handle = self.tokenizer_model(model)
        call.model = handle.name
        tokenizer = handle.model.task.tokenizer
        started = time.perf_counter()
        results = await self._tokenizer_work(
            call, total, lambda: tokens.detokenize(tokenizer, id_lists, params, handle.name)
        )
        return Answer(handle.name, results, StageTimes(tokenize=time.perf_counter() - started))
