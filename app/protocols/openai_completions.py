"""OpenAI's text generation APIs on our causal LMs: ``POST /v1/completions`` and
``POST /v1/chat/completions``, answered whole or streamed as OpenAI's Server-Sent Events.

Pure protocol code, no model logic: the requests (validated, with every field OpenAI defines
either honoured or refused by name, never silently dropped when it would change the text),
how ``n`` fans out into sequences, and the answers and stream chunks in OpenAI's shapes. The
routes (app/routers/openai_generate.py) run the sequences on the core.

Choices are numbered as OpenAI numbers them: prompt ``i``'s ``j``-th of ``n`` is choice
``i * n + j``. With a ``seed``, choice ``j`` samples with ``seed + j``: the choices differ and
the same request gives the same choices again. ``usage.prompt_tokens`` counts each prompt once,
however many choices it has (as OpenAI does); ``completion_tokens`` counts every choice's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from app.errors import InvalidInput
from app.protocols.openai_embeddings import openai_error_body
from app.schemas.common import Text, TextList, bounded_list, check_utf8
from app.schemas.generate import MAX_NEW_TOKENS, MAX_TOP_K, SamplingOptions
from app.tasks.causal import (
    ChatMessage,
    Completion,
    GenerateParams,
    LoggedToken,
    Prompt,
    TokenEvent,
)

MAX_CHOICES = 128  # OpenAI's own bound on n
MAX_COMPLETION_LOGPROBS = 5  # /v1/completions' logprobs, as OpenAI bounds it
MAX_CHAT_TOP_LOGPROBS = 20  # /v1/chat/completions' top_logprobs, as OpenAI bounds it
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's documented default for /v1/completions
SEED_MODULUS = 2**64  # seeds (and seed + j) are taken modulo this: any int64 seed works
TEXT_PART = "text"
NO_CALL = ("none", "auto")  # tool_choice / function_call values that, without tools, call none


def _no_token_ids(value: Any) -> Any:
    """Refuse a completions prompt given as token ids (a list of ints, or a list of them)."""
    first = value[0] if isinstance(value, list) and value else None
    if isinstance(first, int) or (isinstance(first, list) and first and isinstance(first[0], int)):
        raise ValueError(
            "token-id prompts are not supported (this server's models do not read OpenAI's "
            "token ids); send the prompt as text, or a list of texts"
        )
    return value


def _text_parts_only(value: Any) -> Any:
    """Chat content parts: only {"type": "text", "text": ...}; name any other type."""
    if not isinstance(value, list):
        return value
    value = bounded_list(value)
    for index, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if isinstance(kind, str) and kind != TEXT_PART:
            raise ValueError(
                f"part {index} has type {kind[:40]!r}, which this server cannot read (its "
                'models read text only): send {"type": "text", "text": "..."} parts, or the '
                "content as a string"
            )
    return value


Utf8 = Annotated[str, BeforeValidator(lambda v: check_utf8(v) if isinstance(v, str) else v)]


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: Utf8


ChatContent = Annotated[
    Utf8 | Annotated[list[TextPart], Field(min_length=1)], BeforeValidator(_text_parts_only)
]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = Field(
        default=False,
        description="A last chunk with `usage` and no choices, before `data: [DONE]`.",
    )
    include_obfuscation: bool | None = Field(
        default=None, description="Accepted; this server adds no obfuscation field."
    )


class OpenAIGenerateFields(SamplingOptions):
    """What both routes take besides their prompts. A field sent as null means its default,
    as OpenAI reads it."""

    model: str = Field(min_length=1, description="Catalog name of a generate model.")
    n: int = Field(
        default=1,
        ge=1,
        le=MAX_CHOICES,
        description="Choices per prompt; with a seed, choice j samples with seed + j.",
    )
    stream: bool = Field(default=False, description="Answer Server-Sent Events, chunk by chunk.")
    stream_options: StreamOptions | None = Field(default=None, description="Only with stream.")
    logit_bias: dict[str, float] | None = Field(
        default=None, description="Only empty: this server does not bias tokens (422 otherwise)."
    )
    user: str | None = Field(default=None, description="Accepted and ignored.")
    # Extensions (vLLM's and Text Generation Inference's names), not OpenAI's.
    top_k: int = Field(
        default=0,
        ge=0,
        le=MAX_TOP_K,
        description="Extension: sample only from the k likeliest tokens (0: all).",
    )
    repetition_penalty: float = Field(
        default=1.0,
        gt=0,
        le=10,
        description="Extension: above 1 discourages tokens already in the prompt or output.",
    )
    ignore_eos: bool = Field(
        default=False,
        description="Extension: keep generating past end-of-text, up to the token limit.",
    )

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data: Any) -> Any:
        """OpenAI takes null for any optional field and reads it as the default."""
        if not isinstance(data, dict):
            return data
        optional = {name for name, f in cls.model_fields.items() if not f.is_required()}
        return {k: v for k, v in data.items() if v is not None or k not in optional}

    def common_refusals(self) -> None:
        if self.stream_options is not None and not self.stream:
            raise InvalidInput(
                "stream_options: only allowed with stream: true; drop it or set stream: true"
            )
        if self.logit_bias:
            raise InvalidInput(
                "logit_bias: this server does not bias token logits; leave logit_bias out"
            )

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def generate_params(self, max_new_tokens: int | None, logprobs: int | None) -> GenerateParams:
        seed = None if self.seed is None else self.seed % SEED_MODULUS
        return GenerateParams(
            max_new_tokens=max_new_tokens,
            sampling=replace(self.sampling(self.top_k, self.repetition_penalty), seed=seed),
            stop=tuple(self.stop or ()),
            ignore_eos=self.ignore_eos,
            logprobs=logprobs,
        )


class CompletionsRequest(OpenAIGenerateFields):
    """OpenAI's legacy completions: one prompt or a list, each continued as it is."""

    prompt: Annotated[Text | TextList, BeforeValidator(_no_token_ids)] = Field(
        description="A text or a list of texts (token ids are not supported)."
    )
    max_tokens: int = Field(
        default=COMPLETIONS_DEFAULT_MAX_TOKENS,
        ge=1,
        le=MAX_NEW_TOKENS,
        description="Most tokens to generate per choice (OpenAI's default, 16, when omitted).",
    )
    logprobs: int | None = Field(
        default=None,
        ge=0,
        le=MAX_COMPLETION_LOGPROBS,
        description=(
            "Each token's log-probability, and the likeliest `logprobs` alternatives; the "
            "chosen token is always among `top_logprobs`."
        ),
    )
    echo: bool = Field(default=False, description="Put the prompt before each choice's text.")
    suffix: str | None = Field(default=None, description="Only empty (no insertion, 422).")
    best_of: int | None = Field(
        default=None, ge=1, le=MAX_CHOICES, description="Only equal to n (no re-ranking, 422)."
    )

    def prompt_texts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def prompts(self) -> list[Prompt]:
        return [Prompt(text) for text in self.prompt_texts()]

    def refusals(self) -> None:
        """The fields this server cannot honour, refused by name (422)."""
        self.common_refusals()
        if self.suffix:
            raise InvalidInput(
                "suffix: this server does not insert text (its models only continue a "
                "prompt); leave suffix out"
            )
        if self.best_of is not None and self.best_of != self.n:
            raise InvalidInput(
                f"best_of: this server does not re-rank candidates, so best_of must equal n "
                f"({self.n}) or be left out, not {self.best_of}; ask for n choices instead"
            )
        if self.echo and self.logprobs is not None:
            raise InvalidInput(
                "echo: with logprobs it needs the prompt's own log-probabilities, which this "
                "server does not compute; drop echo or logprobs"
            )

    def params(self) -> GenerateParams:
        return self.generate_params(self.max_tokens, self.logprobs)


ChatRole = Literal["system", "developer", "user", "assistant", "tool"]


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: ChatRole
    content: ChatContent | None = Field(
        default=None,
        description="A string, or text parts (joined with newlines); null only for assistant.",
    )
    name: str | None = Field(
        default=None, max_length=256, description="Accepted; not passed to the chat template."
    )
    tool_call_id: str | None = Field(default=None, max_length=256, description="Accepted.")
    tool_calls: list[Any] | None = Field(default=None, description="Only empty (no tools).")
    function_call: Any | None = Field(default=None, description="Refused: no functions.")
    refusal: str | None = Field(default=None, description="Accepted and ignored.")

    def text(self) -> str:
        content = self.content
        if content is None:
            return ""
        if isinstance(content, str):
            return content
        return "\n".join(part.text for part in content)


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = Field(description='Only "text": no JSON mode or schema (422).')


ChatMessages = Annotated[list[ChatMessageIn], BeforeValidator(bounded_list), Field(min_length=1)]


class ChatCompletionsRequest(OpenAIGenerateFields):
    """OpenAI's chat completions: messages through the model's chat template."""

    messages: ChatMessages = Field(
        description="The conversation; roles system, developer, user, assistant, tool."
    )
    max_completion_tokens: int | None = Field(
        default=None,
        ge=1,
        le=MAX_NEW_TOKENS,
        description="Most tokens to generate per choice; omit for the model's default.",
    )
    max_tokens: int | None = Field(
        default=None, ge=1, le=MAX_NEW_TOKENS, description="max_completion_tokens' older name."
    )
    logprobs: bool = Field(default=False, description="Each generated token's log-probability.")
    top_logprobs: int | None = Field(
        default=None,
        ge=0,
        le=MAX_CHAT_TOP_LOGPROBS,
        description="The likeliest alternatives at each token (needs logprobs: true).",
    )
    response_format: ResponseFormat | None = Field(default=None, description='Only "text".')
    tools: list[Any] | None = Field(default=None, description="Only empty (no tool calling).")
    tool_choice: Any | None = Field(default=None, description='Only "none" or "auto".')
    parallel_tool_calls: bool | None = Field(default=None, description="Accepted (no tools).")
    functions: list[Any] | None = Field(default=None, description="Only empty (no functions).")
    function_call: Any | None = Field(default=None, description='Only "none" or "auto".')
    store: bool | None = Field(default=None, description="Only false: nothing is stored.")
    metadata: dict[str, str] | None = Field(default=None, description="Accepted and ignored.")
    safety_identifier: str | None = Field(default=None, description="Accepted and ignored.")
    prompt_cache_key: str | None = Field(default=None, description="Accepted and ignored.")

    @property
    def max_new_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def token_field(self) -> str:
        return "max_completion_tokens" if self.max_completion_tokens else "max_tokens"

    def prompts(self) -> list[Prompt]:
        messages = tuple(ChatMessage(m.role, m.text()) for m in self.messages)
        return [Prompt(messages=messages)]

    def refusals(self) -> None:
        """The fields this server cannot honour, refused by name (422)."""
        self.common_refusals()
        if (
            self.max_tokens is not None
            and self.max_completion_tokens is not None
            and self.max_tokens != self.max_completion_tokens
        ):
            raise InvalidInput(
                f"max_tokens: {self.max_tokens} differs from max_completion_tokens "
                f"({self.max_completion_tokens}); send one of them"
            )
        if self.top_logprobs is not None and not self.logprobs:
            raise InvalidInput("top_logprobs: needs logprobs: true; set it or drop top_logprobs")
        if self.response_format is not None and self.response_format.type != "text":
            raise InvalidInput(
                f"response_format: type {self.response_format.type[:40]!r} is not supported "
                '(no JSON mode or schemas here); use {"type": "text"} or leave it out'
            )
        if self.tools:
            raise InvalidInput("tools: this server does not call tools; leave tools out")
        if self.functions:
            raise InvalidInput("functions: this server does not call functions; leave them out")
        # Without tools, "none" and "auto" both mean plain text; anything else asks for a call.
        for name, value in [
            ("tool_choice", self.tool_choice),
            ("function_call", self.function_call),
        ]:
            if value is not None and value not in NO_CALL:
                shown = value if isinstance(value, str) else "a named tool"
                raise InvalidInput(
                    f"{name}: {shown[:40]!r} asks for a tool call, which this server does not "
                    f'make; send "none" or "auto", or leave {name} out'
                )
        if self.store:
            raise InvalidInput("store: this server keeps no completions; leave store out")
        for index, message in enumerate(self.messages):
            if message.tool_calls or message.function_call is not None:
                raise InvalidInput(
                    f"messages[{index}].tool_calls: this server does not call tools, so it "
                    "cannot read a conversation with tool calls; send text messages"
                )
            if message.content is None and message.role != "assistant":
                raise InvalidInput(
                    f"messages[{index}].content: a {message.role} message needs content (a "
                    "string or text parts)"
                )

    def params(self) -> GenerateParams:
        top = (self.top_logprobs or 0) if self.logprobs else None
        return self.generate_params(self.max_new_tokens, top)


COMPLETIONS_FIELDS = frozenset(CompletionsRequest.model_fields)
CHAT_FIELDS = frozenset(ChatCompletionsRequest.model_fields)


# --- the answers' published shapes (OpenAPI) -------------------------------------------------


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int] = Field(description="Where each token starts in the choice's text.")


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None
    finish_reason: Literal["stop", "length"]


class OpenAIUsage(BaseModel):
    prompt_tokens: int = Field(description="Each prompt's tokens once, however many choices.")
    completion_tokens: int
    total_tokens: int


class OpenAIAnswer(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    id: str
    created: int
    model: str
    system_fingerprint: None = None
    usage: OpenAIUsage


class CompletionsResponse(OpenAIAnswer):
    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    content: list[TokenLogprob]
    refusal: None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None
    finish_reason: Literal["stop", "length"]


class ChatCompletionResponse(OpenAIAnswer):
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice]


# --- fanning n out ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One core generation call: its prompts and params, and the choice each prompt is."""

    prompts: list[Prompt]
    params: GenerateParams
    choices: list[int]


def fan_out(prompts: Sequence[Prompt], params: GenerateParams, n: int) -> list[Run]:
    """The generation calls for n choices per prompt. Without a seed, one call with each
    prompt n times (each sequence samples on its own); with one, a call per j whose seed is
    seed + j, so the choices differ and come back the same for the same request."""
    seed = params.sampling.seed
    if seed is None or n == 1:
        repeated = [p for p in prompts for _ in range(n)]
        return [Run(repeated, params, list(range(len(repeated))))]
    return [
        Run(
            list(prompts),
            replace(params, sampling=replace(params.sampling, seed=(seed + j) % SEED_MODULUS)),
            [i * n + j for i in range(len(prompts))],
        )
        for j in range(n)
    ]


# --- answers ------------------------------------------------------------------------------------


def usage(completions: Iterable[tuple[int, Completion]], n: int) -> dict[str, int]:
    """Each prompt's tokens once (its choices share it), every choice's generated tokens."""
    prompt_tokens: dict[int, int] = {}
    generated = 0
    for choice, completion in completions:
        prompt_tokens[choice // n] = completion.prompt_tokens
        generated += completion.completion_tokens
    prompt = sum(prompt_tokens.values())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": generated,
        "total_tokens": prompt + generated,
    }


def _top(token: LoggedToken) -> dict[str, float]:
    """The alternatives by text, the chosen token always among them (OpenAI: up to k + 1)."""
    top = {alt.text: alt.logprob for alt in token.top}
    top.setdefault(token.text, token.logprob)
    return top


def completion_logprobs(tokens: Sequence[LoggedToken], offset: int) -> dict[str, Any]:
    """/v1/completions' logprobs; text_offset: where each token starts in the choice's text
    (after the prompt with echo), its tokens' texts laid end to end."""
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token.text)
    return {
        "tokens": [t.text for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [_top(t) for t in tokens],
        "text_offset": offsets,
    }


def _chat_token(token: LoggedToken) -> dict[str, Any]:
    return {"token": token.text, "logprob": token.logprob, "bytes": list(token.text.encode())}


def chat_logprobs(tokens: Sequence[LoggedToken]) -> dict[str, Any]:
    return {
        "content": [
            {**_chat_token(t), "top_logprobs": [_chat_token(alt) for alt in t.top]} for t in tokens
        ],
        "refusal": None,
    }


@dataclass
class Envelope:
    """What every answer and chunk of one request shares."""

    id: str
    created: int
    model: str
    n: int
    include_usage: bool = False

    def head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model,
                "system_fingerprint": None}  # fmt: skip


def completions_answer(
    answer: Envelope, completions: Sequence[Completion], prompts: Sequence[str], echo: bool
) -> dict[str, Any]:
    choices = []
    for index, completion in enumerate(completions):
        prefix = prompts[index // answer.n] if echo else ""
        logprobs = None
        if completion.logprobs is not None:
            logprobs = completion_logprobs(completion.logprobs, len(prefix))
        choices.append({"index": index, "text": prefix + completion.text, "logprobs": logprobs,
                        "finish_reason": completion.finish_reason})  # fmt: skip
    return {
        **answer.head("text_completion"),
        "choices": choices,
        "usage": usage(enumerate(completions), answer.n),
    }


def chat_answer(answer: Envelope, completions: Sequence[Completion]) -> dict[str, Any]:
    choices = [
        {
            "index": index,
            "message": {"role": "assistant", "content": c.text, "refusal": None},
            "logprobs": None if c.logprobs is None else chat_logprobs(c.logprobs),
            "finish_reason": c.finish_reason,
        }
        for index, c in enumerate(completions)
    ]
    return {
        **answer.head("chat.completion"),
        "choices": choices,
        "usage": usage(enumerate(completions), answer.n),
    }


# --- stream chunks ------------------------------------------------------------------------------


@dataclass
class ChunkStream:
    """One streamed request's chunks, in OpenAI's shapes: opening chunks, one per token that
    released text (or carries a logprob), a finishing chunk per choice, and with
    stream_options.include_usage a last chunk with usage and no choices."""

    KIND: ClassVar[str]

    answer: Envelope
    choices: int
    completions: list[tuple[int, Completion]] = field(default_factory=list)

    def opening(self) -> list[dict[str, Any]]:
        return []

    def token(self, choice: int, event: TokenEvent) -> dict[str, Any] | None:
        raise NotImplementedError

    def finish(self, choice: int, completion: Completion) -> dict[str, Any]:
        raise NotImplementedError

    def chunk(self, choice: dict[str, Any]) -> dict[str, Any]:
        chunk = {**self.answer.head(self.KIND), "choices": [choice]}
        if self.answer.include_usage:
            chunk["usage"] = None  # OpenAI: every chunk has usage: null but the last
        return chunk

    def last(self) -> dict[str, Any] | None:
        """The usage chunk, when asked for."""
        if not self.answer.include_usage:
            return None
        return {**self.answer.head(self.KIND), "choices": [],
                "usage": usage(self.completions, self.answer.n)}  # fmt: skip


@dataclass
class CompletionChunks(ChunkStream):
    prompts: Sequence[str] = ()
    echo: bool = False
    offsets: dict[int, int] = field(default_factory=dict)

    KIND: ClassVar[str] = "text_completion"

    def _choice(self, index: int, text: str, logprobs: Any, finish: str | None) -> dict[str, Any]:
        return self.chunk(
            {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}
        )

    def opening(self) -> list[dict[str, Any]]:
        if not self.echo:
            return []
        return [
            self._choice(index, self.prompts[index // self.answer.n], None, None)
            for index in range(self.choices)
        ]

    def token(self, choice: int, event: TokenEvent) -> dict[str, Any] | None:
        if event.logprob is None:
            return self._choice(choice, event.text, None, None) if event.text else None
        start = self.offsets.get(choice)
        if start is None:
            start = len(self.prompts[choice // self.answer.n]) if self.echo else 0
        self.offsets[choice] = start + len(event.logprob.text)
        return self._choice(choice, event.text, completion_logprobs([event.logprob], start), None)

    def finish(self, choice: int, completion: Completion) -> dict[str, Any]:
        self.completions.append((choice, completion))
        return self._choice(choice, "", None, completion.finish_reason)


@dataclass
class ChatChunks(ChunkStream):
    KIND: ClassVar[str] = "chat.completion.chunk"

    def _choice(
        self, index: int, delta: dict[str, Any], logprobs: Any, finish: str | None
    ) -> dict[str, Any]:
        return self.chunk(
            {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        )

    def opening(self) -> list[dict[str, Any]]:
        return [
            self._choice(index, {"role": "assistant", "content": ""}, None, None)
            for index in range(self.choices)
        ]

    def token(self, choice: int, event: TokenEvent) -> dict[str, Any] | None:
        if event.logprob is None:
            return self._choice(choice, {"content": event.text}, None, None) if event.text else None
        return self._choice(choice, {"content": event.text}, chat_logprobs([event.logprob]), None)

    def finish(self, choice: int, completion: Completion) -> dict[str, Any]:
        self.completions.append((choice, completion))
        return self._choice(choice, {}, None, completion.finish_reason)


def error_chunk(status: int, kind: str, message: str, fields: frozenset[str]) -> dict[str, Any]:
    """An error after the stream started: OpenAI's error envelope as the last data event (the
    SDK raises APIError with its message)."""
    return openai_error_body(status, kind, message, fields)
