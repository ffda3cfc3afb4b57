"""POST /v1/generate: text from a causal LM, whole or streamed (Server-Sent Events)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field

from app.core import Answer, CallContext, InferenceCore
from app.schemas.common import TaskOptions, TaskResponse, TextTaskRequest, as_list
from app.tasks.causal import Completion, GenerateParams, Prompt
from app.tasks.sampling import SamplingParams

# Bounds every surface shares (the OpenAI routes validate with these too); the server's own
# caps (NLP_SERVE_MAX_NEW_TOKENS, ..._STOP_SEQUENCES, ..._STOP_CHARS) are checked by the core.
MAX_NEW_TOKENS = 32768
MAX_TOP_K = 100_000
MAX_LOGPROBS = 20
SEED_BOUND = 2**63


def _stop_list(value: Any) -> Any:
    """`stop` as one string or a list of them."""
    return [value] if isinstance(value, str) else value


StopList = Annotated[
    list[Annotated[str, Field(min_length=1)]], BeforeValidator(_stop_list), Field(max_length=64)
]


class SamplingOptions(TaskOptions):
    """How tokens are chosen: shared by /v1/generate and the OpenAI routes."""

    temperature: float = Field(
        default=1.0, ge=0, le=2, description="0: always the likeliest token (greedy)."
    )
    top_p: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Sample only from the fewest likeliest tokens holding this probability.",
    )
    seed: int | None = Field(
        default=None,
        ge=-SEED_BOUND,
        lt=SEED_BOUND,
        description="The same request with the same seed, run alone, gives the same text.",
    )
    stop: StopList | None = Field(
        default=None,
        description="Text(s) that end the sequence when generated; the answer leaves them out.",
    )
    presence_penalty: float = Field(
        default=0.0, ge=-2, le=2, description="Subtracted once from every generated token."
    )
    frequency_penalty: float = Field(
        default=0.0, ge=-2, le=2, description="Subtracted per time a token was generated."
    )

    def sampling(self, top_k: int = 0, repetition_penalty: float = 1.0) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=top_k,
            repetition_penalty=repetition_penalty,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            seed=self.seed,
        )


class GenerateFields(SamplingOptions):
    max_new_tokens: int | None = Field(
        default=None,
        ge=1,
        le=MAX_NEW_TOKENS,
        description="Most tokens to generate per prompt; omit for the model's default.",
    )
    top_k: int = Field(
        default=0, ge=0, le=MAX_TOP_K, description="Sample only from the k likeliest (0: all)."
    )
    repetition_penalty: float = Field(
        default=1.0,
        gt=0,
        le=10,
        description="Above 1 discourages tokens already in the prompt or the output.",
    )
    ignore_eos: bool = Field(
        default=False, description="Keep generating past end-of-text, up to max_new_tokens."
    )
    logprobs: int | None = Field(
        default=None,
        ge=0,
        le=MAX_LOGPROBS,
        description="Each token's log-probability, and this many likeliest alternatives.",
    )
    stream: bool = Field(
        default=False,
        description="Answer Server-Sent Events: one per token as it is made, then usage.",
    )

    def task_params(self) -> GenerateParams:
        return GenerateParams(
            max_new_tokens=self.max_new_tokens,
            sampling=self.sampling(self.top_k, self.repetition_penalty),
            stop=tuple(self.stop or ()),
            ignore_eos=self.ignore_eos,
            logprobs=self.logprobs,
        )


class GenerateRequest(GenerateFields, TextTaskRequest):
    """One prompt or a list; each is completed on its own."""

    def prompts(self) -> list[Prompt]:
        return [Prompt(text) for text in as_list(self.inputs)]

    async def serve(self, core: InferenceCore, call: CallContext) -> Answer[Completion]:
        return await core.generate(self.prompts(), self.task_params(), model=self.model, call=call)


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


def usage_of(completions: list[Completion]) -> Usage:
    prompt = sum(c.prompt_tokens for c in completions)
    completion = sum(c.completion_tokens for c in completions)
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


class GenerateResponse(TaskResponse):
    results: list[Completion]
    usage: Usage
