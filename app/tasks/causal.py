"""generate: text from a causal LM (GPT-2, Llama-family chat models), token by token.

The task turns a prompt (a text, or chat messages through the model's chat template) into
token ids, and each generated sequence's logits into tokens, text and a finish reason
(`Continuation`). How sequences share the model's decoder steps is the continuous batcher's
job (app/batching/continuous.py); the backends only run steps (Backend.decode_step).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from app.errors import InvalidInput, PayloadTooLarge
from app.runtimes.base import Backend, Head, ModelInputs, ModelOutputs
from app.spec import GenerateOptions, TaskName
from app.tasks.base import Encoded, Task
from app.tasks.sampling import Logits, Sampler, SamplingParams, TokenLogprob, logprob_of
from app.tasks.text_stream import TextStream

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str


@dataclass(frozen=True)
class Prompt:
    """A plain text prompt, or chat messages the model's chat template turns into one."""

    text: str = ""
    messages: tuple[ChatMessage, ...] = ()

    @property
    def chars(self) -> int:
        return len(self.text) + sum(len(m.content) + len(m.role) for m in self.messages)


@dataclass(frozen=True)
class GenerateParams:
    max_new_tokens: int | None = None  # None: the model's default (options.max_new_tokens)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False  # keep going past end-of-text (benchmarks on random weights)
    logprobs: int | None = None  # None: none; 0: each token's own; k: and the k likeliest


@dataclass(frozen=True)
class LoggedToken:
    """A token with its log-probability under the model (its raw logits), and where asked
    the likeliest alternatives at that step (best first)."""

    id: int
    text: str
    logprob: float
    top: tuple[LoggedToken, ...] = ()


@dataclass(frozen=True)
class Completion:
    """One finished sequence."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    logprobs: tuple[LoggedToken, ...] | None = None


@dataclass(frozen=True)
class TokenEvent:
    """One generated token as a stream sends it: the text it releases (may be empty while a
    character or a possible stop sequence is incomplete)."""

    token: int
    text: str
    logprob: LoggedToken | None = None


@dataclass(frozen=True)
class PromptTokens:
    """What encode() makes of a prompt: its ids (chat template applied)."""

    ids: list[int]


class Continuation:
    """One sequence's generated side: sampling, text, and when it is finished."""

    def __init__(self, task: GenerateTask, prompt: list[int], params: GenerateParams) -> None:
        self.params = params
        self.max_new_tokens = task.new_tokens(params)
        self.prompt_tokens = len(prompt)
        self._sampler = Sampler(params.sampling, prompt)
        self._text = TextStream(task.tokenizer, prompt, params.stop)
        self._eos = frozenset() if params.ignore_eos else task.eos_ids
        self.tokens: list[int] = []
        self.logprobs: list[LoggedToken] = []
        self.finish_reason: FinishReason | None = None

    def advance(self, logits: Logits) -> TokenEvent:
        """Choose the next token from this sequence's logits row."""
        token = self._sampler.choose(logits)
        logprob = None
        if self.params.logprobs is not None:
            logprob = self._logged(logprob_of(logits, token, self.params.logprobs))
            self.logprobs.append(logprob)
        self._sampler.observe(token)
        self.tokens.append(token)
        if token in self._eos:
            self.finish_reason = "stop"
        else:
            self._text.push(token)
            if self._text.stopped:
                self.finish_reason = "stop"
            elif len(self.tokens) >= self.max_new_tokens:
                self.finish_reason = "length"
        return TokenEvent(token, self._text.release(self.finished), logprob)

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def completion(self) -> Completion:
        return Completion(
            text=self._text.text,
            finish_reason=self.finish_reason or "length",
            prompt_tokens=self.prompt_tokens,
            completion_tokens=len(self.tokens),
            logprobs=tuple(self.logprobs) if self.params.logprobs is not None else None,
        )

    def _logged(self, chosen: TokenLogprob) -> LoggedToken:
        text = self._text.token_text
        top = tuple(LoggedToken(t, text(t), lp) for t, lp in chosen.top)
        return LoggedToken(chosen.token, text(chosen.token), chosen.logprob, top)


class GenerateTask(Task[Prompt, GenerateParams, Completion]):
    name = TaskName.GENERATE
    head = Head.CAUSAL_LM
    method = "causal LM, continuous batching"

    def __init__(self, spec: Any, model_dir: Any, tokenizer: Any, config: Any) -> None:
        super().__init__(spec, model_dir, tokenizer, config)
        self.options = spec.options_as(GenerateOptions)
        self.chat_template: str | None = self.options.chat_template or getattr(
            tokenizer, "chat_template", None
        )
        self.eos_ids = frozenset(_token_ids(config, tokenizer, model_dir))
        self.vocab_size = int(getattr(config, "vocab_size", len(tokenizer)))

    def _max_length(self) -> int:
        """The context: prompt and generated tokens together (max_position_embeddings, or
        GPT-2's n_positions)."""
        limits = [
            self.spec.max_length,
            getattr(self.config, "max_position_embeddings", None),
            getattr(self.config, "n_positions", None),
        ]
        return min((v for v in limits if isinstance(v, int) and v > 0), default=2048)

    def resolved(self, params: GenerateParams) -> GenerateParams:
        """The request's params with the model's defaults filled in."""
        return replace(params, max_new_tokens=self.new_tokens(params))

    def new_tokens(self, params: GenerateParams) -> int:
        return params.max_new_tokens or self.options.max_new_tokens

    def prompt_text(self, item: Prompt) -> str:
        if not item.messages:
            return item.text
        if not self.chat_template:
            raise InvalidInput(
                f"model {self.spec.name!r} has no chat template, so it cannot read chat "
                "messages: send a plain prompt (POST /v1/completions or /v1/generate), or "
                "give the catalog entry options.chat_template"
            )
        from jinja2 import TemplateError

        messages = [{"role": m.role, "content": m.content} for m in item.messages]
        try:
            text = self.tokenizer.apply_chat_template(
                messages,
                chat_template=self.chat_template,
                add_generation_prompt=True,
                tokenize=False,
            )
        except TemplateError as exc:
            raise InvalidInput(
                f"model {self.spec.name!r}'s chat template refused the messages: {exc}"
            ) from None
        return str(text)

    def encode(self, item: Prompt, params: GenerateParams) -> Encoded:
        text = self.prompt_text(item)
        # A chat template writes the special tokens itself; a plain prompt gets the
        # tokenizer's own (a BOS for Llama-family tokenizers, none for GPT-2's).
        # verbose=False: a prompt over the context is refused below, not warned about.
        encoding = self.tokenizer(text, add_special_tokens=not item.messages, verbose=False)
        ids = list(encoding["input_ids"])
        self.check_lengths(len(ids), self.new_tokens(params))
        return Encoded(rows=[{"input_ids": ids}], context=PromptTokens(ids))

    def check_lengths(self, prompt_tokens: int, max_new_tokens: int) -> None:
        if prompt_tokens < 1:
            raise InvalidInput("the prompt has no tokens; send some text")
        if prompt_tokens + max_new_tokens > self.max_length:
            raise PayloadTooLarge(
                f"the prompt has {prompt_tokens} tokens and asks for up to {max_new_tokens} "
                f"more; model {self.spec.name!r} reads at most {self.max_length} tokens in all "
                "(its context): shorten the prompt or ask for fewer new tokens (max_new_tokens; "
                "max_tokens on the OpenAI routes)"
            )

    def continuation(self, encoded: Encoded, params: GenerateParams) -> Continuation:
        return Continuation(self, encoded.context_as(PromptTokens).ids, params)

    def item_chars(self, item: Prompt) -> int:
        return item.chars

    def execute(
        self, backend: Backend, inputs: ModelInputs, params: GenerateParams, deadline: float | None
    ) -> ModelOutputs:
        raise TypeError("generate models run under the continuous batcher, not forward()")

    def decode(self, encoded: Encoded, outputs: ModelOutputs, params: GenerateParams) -> Completion:
        raise TypeError("generate models run under the continuous batcher, not decode()")

    def warmup_request(self) -> tuple[Prompt, GenerateParams]:
        return Prompt("warm-up request"), GenerateParams(
            max_new_tokens=2, sampling=SamplingParams(temperature=0.0), ignore_eos=True
        )

    def example_request(self, fields: Mapping[str, Any]) -> tuple[Prompt, GenerateParams]:
        return Prompt(str(fields["text"])), self.warmup_request()[1]

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "context_tokens": self.max_length,
            "chat_template": self.chat_template is not None,
            "kv_cache_tokens": self.options.kv_cache_tokens,
            "scheduling": self.options.scheduling,
        }


def _generation_config(model_dir: Any) -> Any:
    """The folder's generation_config.json (chat models list their end-of-turn ids there)."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(str(model_dir))
    except (OSError, ValueError):
        return None


def _token_ids(config: Any, tokenizer: Any, model_dir: Any) -> set[int]:
    """End-of-sequence ids: the model's (one or a list) and the tokenizer's."""
    ids: set[int] = set()
    for source in (config, _generation_config(model_dir)):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids
