"""The catalog schema: one ModelSpec per served model, with typed task and backend options.

The foundation every layer may import: it imports nothing of the app.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)


class TaskName(StrEnum):
    CLASSIFY = "classify"
    SENTIMENT = "sentiment"
    QA = "qa"
    TRANSLATE = "translate"
    SUMMARIZE = "summarize"
    NER = "ner"
    EMBED = "embed"
    FILL_MASK = "fill-mask"
    RERANK = "rerank"
    EMBED_SPARSE = "embed-sparse"
    GENERATE = "generate"


# `auto` (backend or precision): measured on this CPU at first load (app/registry/auto.py).
AUTO = "auto"
Precision = Literal["fp32", "fp16", "bf16", "int8", "auto"]
Method = Literal["head", "semantic"]
SEMANTIC_TASKS = frozenset(
    {TaskName.CLASSIFY, TaskName.SENTIMENT, TaskName.QA, TaskName.SUMMARIZE, TaskName.RERANK}
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class BatchingSpec(_Strict):
    """How the batcher in front of this model forms batches (docs/architecture.md)."""

    max_batch_size: int = Field(default=32, ge=1, le=4096)
    max_batch_tokens: int = Field(default=8192, ge=1)
    max_wait_ms: float = Field(default=5.0, ge=0, le=10_000)
    max_queue: int = Field(default=1024, ge=1)
    min_fill: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Least ratio of a batch's shortest item to its longest (bounds padding).",
    )


class LanguagePair(_Strict):
    source: str = Field(min_length=2, max_length=16)
    target: str = Field(min_length=2, max_length=16)
    prefix: str = Field(
        default="",
        description="Text put before every input, for models prompted per pair (T5).",
    )
    forced_bos_token: str | None = Field(
        default=None,
        description="Token the decoder must start with (multilingual models such as M2M100).",
    )

    @property
    def key(self) -> str:
        return f"{self.source}-{self.target}"


PLACEHOLDER = "{}"


def check_template(template: str) -> str:
    """A label template holds exactly one `{}` where the label goes; nothing else is special."""
    if template.count(PLACEHOLDER) != 1:
        raise ValueError(
            f"the template must contain exactly one {PLACEHOLDER} where the label goes, e.g. "
            f"'This text is about {PLACEHOLDER}.'; got {template!r}"
        )
    return template


class GenerationOptions(_Strict):
    """generate() arguments a seq2seq entry may set: typed and bounded, because they reach
    transformers' generate(). An unknown key is an error naming it, never passed on (keys such
    as custom_generate or trust_remote_code would run code that came with a model)."""

    max_new_tokens: int | None = Field(
        default=None, ge=1, le=1024, description="Default generated length; a request's wins."
    )
    min_new_tokens: int | None = Field(
        default=None, ge=0, le=1024, description="Default least generated length; a request's wins."
    )
    num_beams: int | None = Field(default=None, ge=1, le=16, description="Beam search width.")
    length_penalty: float | None = Field(
        default=None, ge=-10, le=10, description="Beam search: >0 favours longer outputs."
    )
    no_repeat_ngram_size: int | None = Field(
        default=None, ge=0, le=16, description="No n-gram of this size appears twice (0: off)."
    )
    repetition_penalty: float | None = Field(
        default=None, ge=0.5, le=10, description="Above 1 discourages repeating tokens."
    )
    early_stopping: bool | Literal["never"] | None = Field(
        default=None, description="Beam search: stop when num_beams candidates are finished."
    )

    def kwargs(self) -> dict[str, Any]:
        """The arguments set, for generate()."""
        return self.model_dump(exclude_none=True)


class TaskOptions(_Strict):
    """Options of a (task, method) that takes none: any key is a mistake."""


class QAHeadOptions(TaskOptions):
    null_answer: bool = Field(
        default=False,
        description="The model was trained with unanswerable questions (SQuAD 2.0).",
    )
    doc_stride: int = Field(
        default=128, ge=1, description="Token overlap between windows of a long context."
    )


class SimilarityOptions(TaskOptions):
    temperature: float = Field(
        default=0.05,
        gt=0,
        le=10,
        description="Softmax temperature over cosine similarities (they differ by ~0.05-0.3).",
    )


class SemanticClassifyOptions(SimilarityOptions):
    labels: tuple[str, ...] = Field(
        default=(), description="Labels used when a request sends no candidate_labels."
    )
    hypothesis_template: str = Field(
        default=PLACEHOLDER,
        max_length=512,
        description="Text embedded for each label; {} is replaced by the label.",
    )
    multi_label_center: float = Field(
        default=0.25,
        ge=-1,
        le=1,
        description="Cosine similarity at which a multi_label score is 0.5.",
    )

    @field_validator("hypothesis_template")
    @classmethod
    def _one_placeholder(cls, value: str) -> str:
        return check_template(value)


class SemanticSentimentOptions(SimilarityOptions):
    labels: dict[str, tuple[str, ...]] = Field(
        min_length=1,
        description="Each label with the descriptions whose mean similarity scores it.",
    )

    @field_validator("labels")
    @classmethod
    def _descriptions_given(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        empty = [label for label, descriptions in value.items() if not descriptions]
        if empty:
            raise ValueError(f"labels {empty} have no descriptions; give each at least one")
        return value


PROMPT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_PROMPT_CHARS = 2048


class PromptOptions(TaskOptions):
    """An encoder's prompts (embed, embed-sparse): texts put before an input, chosen by name
    per request (`prompt_name`, OpenAI `input_type`), as sentence-transformers does."""

    prompts: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Prompt name -> text put before each input, e.g. {query: 'query: '}; added to "
            "(and overriding) the prompts of the model's config_sentence_transformers.json."
        ),
    )
    default_prompt_name: str | None = Field(
        default=None,
        description=(
            "The prompt used when a request names none; unset: the model's own "
            "config_sentence_transformers.json default, else no prompt."
        ),
    )
    input_types: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "OpenAI `input_type` -> prompt name, e.g. {query: query, document: passage}; an "
            "input_type not listed names the prompt of the same name."
        ),
    )

    @field_validator("prompts", "input_types")
    @classmethod
    def _names_and_texts(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name in value if not re.fullmatch(PROMPT_NAME, name)]
        if bad:
            raise ValueError(
                f"names {bad} are not prompt names: 1-64 letters, digits, '_', '.' or '-'"
            )
        long = [name for name, text in value.items() if len(text) > MAX_PROMPT_CHARS]
        if long:
            raise ValueError(f"entries {long} are longer than {MAX_PROMPT_CHARS} characters")
        return value


class EmbedOptions(PromptOptions):
    matryoshka_dimensions: tuple[int, ...] = Field(
        default=(),
        description=(
            "Sizes a request may truncate the vectors to (OpenAI `dimensions`), for models "
            "trained for it (Matryoshka); empty allows none but the full size."
        ),
    )

    @field_validator("matryoshka_dimensions")
    @classmethod
    def _positive_and_distinct(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(size < 1 for size in value) or len(set(value)) != len(value):
            raise ValueError(f"sizes must be distinct whole numbers of at least 1, not {value}")
        return value


class RerankOptions(TaskOptions):
    """A cross-encoder's options (task rerank, method head)."""

    doc_stride: int = Field(
        default=64,
        ge=0,
        description=(
            "Token overlap between the windows of a document longer than one window (at most "
            "half the room the query leaves); the best window scores the document."
        ),
    )
    positive_label: str | None = Field(
        default=None,
        description=(
            "The config's label whose probability is the relevance score, for heads of two or "
            "more logits. Unset: a one-logit head's sigmoid; with two logits the label named "
            "relevant, positive, yes, true or 1, else index 1."
        ),
    )


class SemanticRerankOptions(SimilarityOptions):
    doc_stride: int = Field(
        default=64, ge=0, description="Token overlap between the windows of a long document."
    )
    relevance_center: float = Field(
        default=0.3,
        ge=-1,
        le=1,
        description=(
            "Cosine similarity at which relevance_score is 0.5: the score is "
            "sigmoid((cosine - center) / temperature)."
        ),
    )


class SparseEmbedOptions(PromptOptions):
    """A SPLADE model's options (task embed-sparse): the pruning defaults a request may
    override, and how much memory one forward pass's logits may take."""

    top_k: int | None = Field(
        default=None,
        ge=1,
        description="Keep at most this many of the largest weights per input; unset keeps all.",
    )
    threshold: float = Field(
        default=0.0, ge=0, description="Keep only weights above this value (0: every non-zero)."
    )
    logits_budget_mb: int = Field(
        default=128,
        ge=1,
        le=65536,
        description=(
            "Most MiB of masked-LM logits (rows x tokens x vocabulary x 4 bytes) one forward "
            "pass may hold; a larger batch runs in several passes."
        ),
    )


class GenerateOptions(TaskOptions):
    """A causal LM's options (task generate): the defaults a request may override, and how
    its sequences share the model (docs/configuration.md, continuous batching).
    `batching.max_batch_size` caps the sequences decoded together, `batching.max_queue` the
    ones waiting to start."""

    max_new_tokens: int = Field(
        default=64, ge=1, le=32768, description="Tokens generated when a request names no max."
    )
    chat_template: str | None = Field(
        default=None,
        min_length=1,
        max_length=65536,
        description=(
            "Jinja chat template for chat/completions, used instead of the tokenizer's own; "
            "unset: the tokenizer's (a model without one answers chat requests with 422)."
        ),
    )
    kv_cache_tokens: int = Field(
        default=16384,
        ge=16,
        description=(
            "Tokens of keys and values the running sequences may hold together: each reserves "
            "its prompt + max_new_tokens when it starts. A request that cannot fit alone "
            "answers 413; when the budget is taken, sequences wait (max_queue, then 429)."
        ),
    )
    prefill_chunk_tokens: int = Field(
        default=256,
        ge=1,
        le=65536,
        description=(
            "Prompt tokens prefilled between two decoder steps: a long prompt is read in "
            "chunks, so running streams wait at most one chunk for it."
        ),
    )
    scheduling: Literal["continuous", "static"] = Field(
        default="continuous",
        description=(
            "continuous: sequences join and leave the running batch between decoder steps. "
            "static: a batch starts only when the previous one has finished (for comparison)."
        ),
    )


OptionsT = TypeVar("OptionsT", bound=TaskOptions)
BackendOptionsT = TypeVar("BackendOptionsT", bound="BackendOptions")

# (task, method) -> its options; pairs not listed take none.
TASK_OPTIONS: dict[tuple[TaskName, Method], type[TaskOptions]] = {
    (TaskName.QA, "head"): QAHeadOptions,
    (TaskName.QA, "semantic"): SimilarityOptions,
    (TaskName.CLASSIFY, "semantic"): SemanticClassifyOptions,
    (TaskName.SENTIMENT, "semantic"): SemanticSentimentOptions,
    (TaskName.EMBED, "head"): EmbedOptions,
    (TaskName.EMBED_SPARSE, "head"): SparseEmbedOptions,
    (TaskName.RERANK, "head"): RerankOptions,
    (TaskName.RERANK, "semantic"): SemanticRerankOptions,
    (TaskName.GENERATE, "head"): GenerateOptions,
}


class BackendOptions(_Strict):
    """Options of a backend that takes none."""


class FakeBackendOptions(BackendOptions):
    """Knobs of the deterministic fake backend used by the tests."""

    delay_ms: float = Field(default=0, ge=0, le=60_000, description="Sleep per batch.")
    fail_token: str | None = Field(
        default=None, description="A token whose presence makes the whole batch raise."
    )
    nan_token: str | None = Field(
        default=None, description="A token whose rows come out as NaN (a model fault)."
    )


class OpenVinoBackendOptions(BackendOptions):
    calibration: str | None = Field(
        default=None,
        description=(
            "precision int8 with export: text file of calibration sentences (one per line) for "
            "NNCF; unset uses the English corpus shipped in app/calibration/."
        ),
    )
    prefer_bf16: bool = Field(
        default=False,
        description=(
            "precision fp32: run the fp32 IR with bf16 kernels where the CPU has them (AMX, "
            "avx512_bf16), fp32 elsewhere; /v1/models and the start-up log say which. Measure "
            "the accuracy first (nlp-serve eval): answers move by bf16 rounding."
        ),
    )


BACKEND_OPTIONS: dict[str, type[BackendOptions]] = {
    "fake": FakeBackendOptions,
    "openvino": OpenVinoBackendOptions,
}


def _validate_options(kind: type[_Strict], value: Any, what: str) -> Any:
    """Validate a free mapping as `kind`, with a message that names the bad keys."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    try:
        return kind.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'options'}: {err['msg']}"
            for err in exc.errors()
        )
        known = ", ".join(kind.model_fields) or "none"
        raise ValueError(f"{problems} ({what} takes: {known})") from None


class ModelSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    task: TaskName
    source: str = Field(
        min_length=1,
        description="Local directory, hub id (org/name), or python:<module> (pip-shipped weights).",
    )
    revision: str | None = Field(default=None, description="Hub revision (tag, branch or commit).")
    trust_remote_code: bool = Field(
        default=False,
        description=(
            "Let the model's own code run: auto_map classes, custom pipelines, a custom_generate "
            "folder, remote tokenizers. Off, a folder that names any is refused (the admin API "
            "refuses true unless NLP_SERVE_ADMIN_ALLOW_MODEL_CODE)."
        ),
    )
    allow_pickle: bool = Field(
        default=False,
        description=(
            "Load weights that exist only as pickle checkpoints (pytorch_model.bin, *.pt): "
            "unpickling can run code. Off, such a model is refused; safetensors always load."
        ),
    )
    method: Method = Field(
        default="head",
        description=(
            "head: the model's own fine-tuned head. semantic: zero-shot / extractive answers "
            "from a sentence encoder (classify, sentiment, qa, summarize, rerank)."
        ),
    )
    backend: str = Field(
        default="torch",
        description=(
            "torch | onnx | openvino, or auto: measure them on this CPU at first load and serve "
            "the fastest that answers like the fp32 reference (needs `export: true`)."
        ),
    )
    device: str = "auto"
    precision: Precision = Field(
        default="fp32",
        description=(
            "fp32 | fp16 | bf16 | int8, or auto: the fastest precision of the backend(s) that "
            "answers like fp32 (a lower one only when faster by NLP_SERVE_AUTO_SPEEDUP_MARGIN)."
        ),
    )
    default: bool = False
    export: bool = Field(
        default=False,
        description=("backend onnx / openvino: export a PyTorch `source` on first load (cached)."),
    )
    optimize: Literal["O1", "O2", "O3"] | None = Field(
        default=None, description="backend onnx with export: ONNX Runtime graph optimisation."
    )
    max_length: int | None = Field(
        default=None, ge=8, description="Token limit per input; unset uses the model's own."
    )
    batching: BatchingSpec = Field(default_factory=BatchingSpec)
    languages: list[LanguagePair] = Field(
        default_factory=list, description="Translation models: the pairs this model serves."
    )
    prefix: str = Field(default="", description="Text put before every input (T5 prompts).")
    generation: GenerationOptions = Field(
        default_factory=GenerationOptions,
        description="generate() arguments for seq2seq models, e.g. {num_beams: 4} (typed).",
    )
    options: SerializeAsAny[TaskOptions] = Field(
        default_factory=TaskOptions,
        validate_default=True,
        description="Options of the task and method; see docs/configuration.md.",
    )
    backend_options: SerializeAsAny[BackendOptions] = Field(
        default_factory=BackendOptions,
        validate_default=True,
        description="Options of the backend (openvino: calibration; fake: test knobs).",
    )

    @field_validator("generation", mode="before")
    @classmethod
    def _generation_typed(cls, value: Any) -> Any:
        return _validate_options(GenerationOptions, value or {}, "generation")

    @field_validator("options", mode="before")
    @classmethod
    def _options_of_task(cls, value: Any, info: ValidationInfo) -> Any:
        task, method = info.data.get("task"), info.data.get("method")
        if task is None or method is None:
            return TaskOptions()  # the task or method itself is wrong: reported on its own
        kind = TASK_OPTIONS.get((task, method), TaskOptions)
        return _validate_options(kind, value, f"task {task.value} with method {method}")

    @field_validator("backend_options", mode="before")
    @classmethod
    def _options_of_backend(cls, value: Any, info: ValidationInfo) -> Any:
        backend = info.data.get("backend")
        kind = BACKEND_OPTIONS.get(str(backend), BackendOptions)
        return _validate_options(kind, value, f"backend {backend}")

    def options_as(self, kind: type[OptionsT]) -> OptionsT:
        """The task options as the type this task reads (validated to it at parse time)."""
        if not isinstance(self.options, kind):
            raise TypeError(f"model {self.name!r}: options are {type(self.options).__name__}")
        return self.options

    def backend_options_as(self, kind: type[BackendOptionsT]) -> BackendOptionsT:
        if not isinstance(self.backend_options, kind):
            raise TypeError(f"model {self.name!r}: backend options are not {kind.__name__}")
        return self.backend_options

    @field_validator("device")
    @classmethod
    def _device_known(cls, value: str) -> str:
        if value in ("auto", "cpu", "cuda") or (
            value.startswith("cuda:") and value.removeprefix("cuda:").isdigit()
        ):
            return value
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {value!r}")

    @model_validator(mode="after")
    def _languages_only_for_translation(self) -> ModelSpec:
        if self.task is TaskName.TRANSLATE and not self.languages:
            raise ValueError(
                "a translate model needs `languages`, e.g. languages: [{source: en, target: de}]"
            )
        if self.task is not TaskName.TRANSLATE and self.languages:
            raise ValueError("`languages` applies only to task: translate")
        if self.method == "semantic" and self.task not in SEMANTIC_TASKS:
            raise ValueError(
                f"method semantic serves {sorted(t.value for t in SEMANTIC_TASKS)}, not "
                f"{self.task.value}; use method: head with a fine-tuned model"
            )
        if self.task is TaskName.GENERATE:
            self._check_generate()
        if self.backend not in ("onnx", "openvino", AUTO) and self.export:
            raise ValueError("`export` applies only to backend: onnx, openvino or auto")
        measured = self.backend == AUTO or (
            self.precision == AUTO and self.backend in ("onnx", "openvino")
        )
        if measured and not self.export:
            raise ValueError(
                f"backend {self.backend} with precision {self.precision} exports the model into "
                "each candidate engine's cache to measure it: set `export: true` (and point "
                "`source` at the PyTorch model)"
            )
        if self.backend != "onnx" and self.optimize:
            raise ValueError("`optimize` applies only to backend: onnx")
        calibration = getattr(self.backend_options, "calibration", None)
        if calibration and not (self.precision == "int8" and self.export):
            raise ValueError(
                "backend_options.calibration applies only to precision: int8 with export: true"
            )
        if getattr(self.backend_options, "prefer_bf16", False) and self.precision != "fp32":
            raise ValueError(
                "backend_options.prefer_bf16 applies only to precision: fp32 (bf16 asks for bf16 "
                "kernels outright, int8 has its own)"
            )
        if self.optimize and not self.export:
            raise ValueError(
                "`optimize` needs `export: true` (or pass --optimize to nlp-serve export)"
            )
        return self

    def _check_generate(self) -> None:
        if AUTO in (self.backend, self.precision):
            raise ValueError(
                "task generate does not take backend or precision auto (the choice compares "
                "encoder answers): name the engine, e.g. backend: torch, precision: fp32, and "
                "compare engines with `make bench-generate`"
            )
        if self.generation.kwargs():
            raise ValueError(
                "`generation` (transformers generate() arguments) applies to translate and "
                "summarize; a generate model takes its defaults in `options` "
                "(max_new_tokens) and sampling per request"
            )


class Catalog(_Strict):
    models: list[ModelSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _names_unique_and_one_default(self) -> Catalog:
        seen: set[str] = set()
        for spec in self.models:
            if spec.name in seen:
                raise ValueError(f"model name {spec.name!r} appears twice; names must be unique")
            seen.add(spec.name)
        for task in TaskName:
            defaults = [m.name for m in self.models if m.task is task and m.default]
            if len(defaults) > 1:
                raise ValueError(
                    f"task {task.value!r} has several defaults ({', '.join(defaults)}); "
                    "mark exactly one with `default: true`"
                )
        return self

    def default_for(self, task: TaskName) -> ModelSpec | None:
        candidates = [m for m in self.models if m.task is task]
        for spec in candidates:
            if spec.default:
                return spec
        return candidates[0] if candidates else None
