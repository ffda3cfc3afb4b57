"""The catalog schema: one ModelSpec per served model (design.md §4)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class TaskName(StrEnum):
    CLASSIFY = "classify"
    SENTIMENT = "sentiment"
    QA = "qa"
    TRANSLATE = "translate"
    SUMMARIZE = "summarize"
    NER = "ner"
    EMBED = "embed"


Precision = Literal["fp32", "fp16", "bf16", "int8"]
SEMANTIC_TASKS = frozenset({TaskName.CLASSIFY, TaskName.SENTIMENT, TaskName.QA, TaskName.SUMMARIZE})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class BatchingSpec(_Strict):
    """How the batcher in front of this model forms batches (design.md §5)."""

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


class ModelSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    task: TaskName
    source: str = Field(
        min_length=1,
        description="Local directory, hub id (org/name), or python:<module> (pip-shipped weights).",
    )
    revision: str | None = Field(default=None, description="Hub revision (tag, branch or commit).")
    method: Literal["head", "semantic"] = Field(
        default="head",
        description=(
            "head: the model's own fine-tuned head. semantic: zero-shot / extractive answers "
            "from a sentence encoder (classify, sentiment, qa, summarize)."
        ),
    )
    backend: str = "torch"
    device: str = "auto"
    precision: Precision = "fp32"
    default: bool = False
    export: bool = Field(
        default=False,
        description=("backend onnx / openvino: export a PyTorch `source` on first load (cached)."),
    )
    optimize: Literal["O1", "O2", "O3"] | None = Field(
        default=None, description="backend onnx with export: ONNX Runtime graph optimisation."
    )
    calibration: str | None = Field(
        default=None,
        description=(
            "backend openvino, precision int8, export: text file of calibration sentences (one "
            "per line) for NNCF; unset uses the English corpus shipped in app/calibration/."
        ),
    )
    max_length: int | None = Field(
        default=None, ge=8, description="Token limit per input; unset uses the model's own."
    )
    batching: BatchingSpec = Field(default_factory=BatchingSpec)
    languages: list[LanguagePair] = Field(
        default_factory=list, description="Translation models: the pairs this model serves."
    )
    prefix: str = Field(default="", description="Text put before every input (T5 prompts).")
    generation: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra generate() arguments for seq2seq models, e.g. {num_beams: 4}.",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Task-specific options; see docs/configuration.md."
    )

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
        if self.backend not in ("onnx", "openvino") and self.export:
            raise ValueError("`export` applies only to backend: onnx or openvino")
        if self.backend != "onnx" and self.optimize:
            raise ValueError("`optimize` applies only to backend: onnx")
        if self.calibration and not (
            self.backend == "openvino" and self.precision == "int8" and self.export
        ):
            raise ValueError(
                "`calibration` applies only to backend: openvino with precision: int8 and "
                "export: true"
            )
        if self.optimize and not self.export:
            raise ValueError(
                "`optimize` needs `export: true` (or pass --optimize to nlp-serve export)"
            )
        return self


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
