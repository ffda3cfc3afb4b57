"""OpenAI's text generation APIs on our causal LMs: POST /v1/completions and
POST /v1/chat/completions, answered whole or streamed (Server-Sent Events, `data: [DONE]` last).

The protocol (fields, answers, chunks) is app/protocols/openai_completions.py; here the
requests become core generation calls: n choices per prompt fan out into sequences (one call,
or one per choice when a seed is given), started before anything is streamed so every 4xx is a
plain answer, and their events merged into one stream of choices.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

from fastapi import Request
from starlette.responses import Response

from app.core import CallContext, InferenceCore, StartedGeneration
from app.errors import (
    ClientClosedRequest,
    InvalidInput,
    PayloadTooLarge,
    ServeError,
    status_and_type,
)
from app.logs import REQUEST_ID
from app.protocols.openai_completions import (
    CHAT_FIELDS,
    COMPLETIONS_FIELDS,
    ChatChunks,
    ChatCompletionsRequest,
    ChunkStream,
    CompletionChunks,
    CompletionsRequest,
    Envelope,
    OpenAIGenerateFields,
    Run,
    chat_answer,
    completions_answer,
    error_chunk,
    fan_out,
)
from app.protocols.sse import log_stream_end, sse_event, sse_response
from app.responses import JSONResponse
from app.routers.common import core_of, serving, timing_headers
from app.tasks.causal import Completion, GenerateParams, Prompt, TokenEvent

Event = tuple[int, TokenEvent | Completion]
T = TypeVar("T")
DONE = b"data: [DONE]\n\n"


@contextlib.asynccontextmanager
async def closing(events: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Close an async generator (ending its sequences) however the block is left."""
    try:
        yield events
    finally:
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()


def check_request(core: InferenceCore, body: OpenAIGenerateFields, prompts: int) -> None:
    """n against the server's limit on sequences, checked here to name OpenAI's field (the
    core checks the rest: stop is named alike on every surface)."""
    settings = core.settings
    if prompts * body.n > settings.max_items_per_request:
        raise PayloadTooLarge(
            f"n: {prompts} prompt(s) x n={body.n} is {prompts * body.n} sequences; this server "
            f"takes at most {settings.max_items_per_request} per request "
            "(NLP_SERVE_MAX_ITEMS_PER_REQUEST): lower n or split the request"
        )


def check_tokens(core: InferenceCore, name: str, value: int | None) -> None:
    limit = core.settings.max_new_tokens
    if value is not None and value > limit:
        raise InvalidInput(
            f"{name}: {value} tokens asked for; this server generates at most {limit} per "
            f"choice (NLP_SERVE_MAX_NEW_TOKENS): lower {name}"
        )


def envelope(prefix: str, model: str, body: OpenAIGenerateFields) -> Envelope:
    request_id = REQUEST_ID.get() or uuid.uuid4().hex
    return Envelope(f"{prefix}-{request_id}", int(time.time()), model, body.n, body.include_usage)


async def start(
    core: InferenceCore, call: CallContext, model: str, runs: Sequence[Run]
) -> list[tuple[StartedGeneration, list[int]]]:
    """Queue every run's sequences; if one is refused, end those already queued."""
    started: list[tuple[StartedGeneration, list[int]]] = []
    try:
        for run in runs:
            generation = await core.generation(run.prompts, run.params, model=model, call=call)
            started.append((generation, run.choices))
    except BaseException:
        for generation, _ in started:
            generation.cancel()
        raise
    return started


async def merged(started: Sequence[tuple[StartedGeneration, list[int]]]) -> AsyncIterator[Event]:
    """Every run's events as (choice, event), as they come; the first error is raised, and
    leaving early (closed, cancelled) ends every sequence."""
    if len(started) == 1:
        generation, choices = started[0]
        async with closing(generation.events()) as events:
            async for index, event in events:
                yield choices[index], event
        return
    queue: asyncio.Queue[Event | Exception | None] = asyncio.Queue()

    async def pump(generation: StartedGeneration, choices: list[int]) -> None:
        try:
            async with closing(generation.events()) as events:
                async for index, event in events:
                    queue.put_nowait((choices[index], event))
        except Exception as error:  # raised to the reader, as one generation alone would
            queue.put_nowait(error)
        finally:
            queue.put_nowait(None)

    pumps = [asyncio.ensure_future(pump(g, c)) for g, c in started]
    try:
        running = len(pumps)
        while running:
            item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield item
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


async def collect(
    call: CallContext, started: Sequence[tuple[StartedGeneration, list[int]]], choices: int
) -> list[Completion]:
    """Every choice's completion, in order, once all have finished; the client leaving ends
    the sequences (ClientClosedRequest)."""

    async def completions() -> list[Completion]:
        done: dict[int, Completion] = {}
        async with closing(merged(started)) as events:
            async for choice, event in events:
                if isinstance(event, Completion):
                    done[choice] = event
        return [done[i] for i in range(choices)]

    work = asyncio.ensure_future(completions())
    if call.gone is None:
        return await work
    gone = asyncio.ensure_future(call.gone())
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            raise ClientClosedRequest("the client disconnected while text was generated")
        return work.result()
    finally:
        gone.cancel()


def cancel(started: Sequence[tuple[StartedGeneration, Any]]) -> Callable[[], None]:
    """What ends every sequence of the request, however its stream ends."""

    def end() -> None:
        for generation, _ in started:
            generation.cancel()

    return end


def times_headers(
    core: InferenceCore, started: Sequence[tuple[StartedGeneration, Any]]
) -> dict[str, str]:
    return timing_headers(core, started[0][0].times()) if started else {}


async def chunks(
    stream: ChunkStream,
    events: AsyncIterator[Event],
    fields: frozenset[str],
) -> AsyncIterator[bytes]:
    """The SSE body: opening chunks, a chunk per token and per finished choice, the usage
    chunk when asked for, `data: [DONE]`; an error ends the stream with an error event."""
    async with closing(events):
        for chunk in stream.opening():
            yield sse_event(chunk)
        try:
            async for choice, event in events:
                if isinstance(event, TokenEvent):
                    data = stream.token(choice, event)
                    if data is not None:
                        yield sse_event(data)
                else:
                    yield sse_event(stream.finish(choice, event))
        except ServeError as error:
            status, kind = status_and_type(error)
            log_stream_end(status, kind, error.message)
            yield sse_event(error_chunk(status, kind, error.message, fields))
            return
    last = stream.last()
    if last is not None:
        yield sse_event(last)
    yield DONE


async def run_request(
    request: Request,
    body: CompletionsRequest | ChatCompletionsRequest,
    prompts: list[Prompt],
    params: GenerateParams,
) -> tuple[InferenceCore, list[tuple[StartedGeneration, list[int]]], list[Completion] | None]:
    """Start the request's sequences (and, not streamed, wait for them all)."""
    core = core_of(request)
    check_request(core, body, len(prompts))
    runs = fan_out(prompts, params, body.n)
    choices = len(prompts) * body.n

    async def serve(
        core: InferenceCore, call: CallContext
    ) -> tuple[list[tuple[StartedGeneration, list[int]]], list[Completion] | None]:
        started = await start(core, call, body.model, runs)
        if body.stream:
            return started, None
        return started, await collect(call, started, choices)

    started, completions = await serving(request, serve, core)
    return core, started, completions


async def complete(request: Request, body: CompletionsRequest) -> Response:
    """POST /v1/completions: each prompt's n choices, whole or streamed."""
    body.refusals()
    check_tokens(core_of(request), "max_tokens", body.max_tokens)
    texts = body.prompt_texts()
    core, started, completions = await run_request(request, body, body.prompts(), body.params())
    model = started[0][0].model
    answer = envelope("cmpl", model, body)
    if completions is not None:
        return JSONResponse(
            completions_answer(answer, completions, texts, body.echo),
            headers=times_headers(core, started),
        )
    stream = CompletionChunks(answer, len(texts) * body.n, prompts=texts, echo=body.echo)
    return sse_response(
        chunks(stream, merged(started), COMPLETIONS_FIELDS), {"X-Model": model}, cancel(started)
    )


async def chat(request: Request, body: ChatCompletionsRequest) -> Response:
    """POST /v1/chat/completions: the conversation's n answers, whole or streamed."""
    body.refusals()
    check_tokens(core_of(request), body.token_field, body.max_new_tokens)
    core, started, completions = await run_request(request, body, body.prompts(), body.params())
    model = started[0][0].model
    answer = envelope("chatcmpl", model, body)
    if completions is not None:
        return JSONResponse(chat_answer(answer, completions), headers=times_headers(core, started))
    stream = ChatChunks(answer, body.n)
    return sse_response(
        chunks(stream, merged(started), CHAT_FIELDS), {"X-Model": model}, cancel(started)
    )
