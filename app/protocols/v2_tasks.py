"""Each task's tensors on the Open Inference Protocol v2: what its metadata declares, which core
method an infer request calls with which typed params, and how its typed results become
tensors. Shared by the HTTP and gRPC surfaces.

No model logic. Text goes in as BYTES (UTF-8); labels, scores, spans and
FP32 vectors come out. Request-level ``parameters`` carry the task's options under the native
route's names (e.g. ``candidate_labels``, ``target_lang``); an unknown one is refused by name.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.core import Answer, CallContext, InferenceCore
from app.errors import InvalidInput
from app.protocols.v2_codec import InferRequest, OutputTensor
from app.schemas.classify import ClassifyOptions
from app.schemas.common import TaskOptions, Text
from app.schemas.embed import EmbedOptions
from app.schemas.ner import NEROptions
from app.schemas.qa import QAOptions
from app.schemas.summarize import SummarizeOptions
from app.schemas.translate import TranslateOptions
from app.schemas.validation import parse_as, parse_options
from app.spec import TaskName
from app.tasks.classification import SentimentParams
from app.tasks.ner import Entity, TokenEntity
from app.tasks.qa import QAItem

VERSION = "1"
# Parameters of the protocol itself, not task options: the binary extension's, and Triton's
# request timeout in microseconds (tritonclient's `timeout=`), which may shorten the deadline.
TIMEOUT_PARAMETER = "timeout"
PROTOCOL_PARAMETERS = frozenset({"binary_data_output", TIMEOUT_PARAMETER})


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


TEXT = TensorSpec("TEXT", "BYTES", (-1,))

INPUTS: dict[TaskName, tuple[TensorSpec, ...]] = {
    task: (TEXT,) for task in TaskName if task is not TaskName.QA
} | {TaskName.QA: (TensorSpec("QUESTION", "BYTES", (-1,)), TensorSpec("CONTEXT", "BYTES", (-1,)))}

OUTPUTS: dict[TaskName, tuple[TensorSpec, ...]] = {
    TaskName.CLASSIFY: (TensorSpec("LABELS", "BYTES", (-1, -1)),
                        TensorSpec("SCORES", "FP32", (-1, -1))),
    TaskName.SENTIMENT: (TensorSpec("LABEL", "BYTES", (-1,)), TensorSpec("SCORE", "FP32", (-1,))),
    TaskName.QA: (TensorSpec("ANSWER", "BYTES", (-1,)), TensorSpec("SCORE", "FP32", (-1,)),
                  TensorSpec("START", "INT64", (-1,)), TensorSpec("END", "INT64", (-1,))),
    TaskName.TRANSLATE: (TensorSpec("TRANSLATION", "BYTES", (-1,)),),
    TaskName.SUMMARIZE: (TensorSpec("SUMMARY", "BYTES", (-1,)),),
    # entities of every input, flattened; INPUT_INDEX says which input each belongs to
    TaskName.NER: (TensorSpec("ENTITY_GROUP", "BYTES", (-1,)), TensorSpec("WORD", "BYTES", (-1,)),
                   TensorSpec("SCORE", "FP32", (-1,)), TensorSpec("START", "INT64", (-1,)),
                   TensorSpec("END", "INT64", (-1,)), TensorSpec("INPUT_INDEX", "INT64", (-1,))),
    TaskName.EMBED: (TensorSpec("EMBEDDING", "FP32", (-1, -1)),),
}  # fmt: skip

# Request parameters each task takes, under its native route's field names.
PARAMETERS: dict[TaskName, frozenset[str]] = {
    TaskName.CLASSIFY: frozenset({"candidate_labels", "multi_label", "top_k",
                                  "hypothesis_template"}),
    TaskName.SENTIMENT: frozenset(),
    TaskName.QA: frozenset({"max_answer_len"}),
    TaskName.TRANSLATE: frozenset({"source_lang", "target_lang", "max_new_tokens"}),
    TaskName.SUMMARIZE: frozenset({"min_length", "max_length"}),
    TaskName.NER: frozenset({"aggregation_strategy"}),
    TaskName.EMBED: frozenset({"normalize"}),
}  # fmt: skip


def check_offered(name: str, task: TaskName) -> None:
    """Tasks without tensors here (fill-mask) are served by their native route only."""
    if task not in OUTPUTS:
        raise InvalidInput(
            f"model {name!r} serves {task.value!r}, which the Open Inference Protocol surface "
            f"does not offer; use its native route POST /v1/{task.value}"
        )


def model_metadata(
    name: str, task: TaskName, platform: str, dimensions: int | None
) -> dict[str, Any]:
    check_offered(name, task)
    outputs = [spec.metadata() for spec in OUTPUTS[task]]
    if task is TaskName.EMBED and dimensions:
        outputs[0]["shape"] = [-1, dimensions]
    return {
        "name": name,
        "versions": [VERSION],
        "platform": platform,
        "inputs": [spec.metadata() for spec in INPUTS[task]],
        "outputs": outputs,
    }


def served_metadata(core: InferenceCore, name: str, version: str | None) -> dict[str, Any]:
    """A served model's metadata (404 unknown, 503 not ready, 422 another version)."""
    model = core.handle(name).model
    check_version(name, version)
    facts = model.describe()
    dimensions = facts.get("dimensions")
    return model_metadata(
        name,
        model.spec.task,
        f"nlp-serve_{facts['backend']}",
        dimensions if isinstance(dimensions, int) else None,
    )


def check_version(name: str, version: str | None) -> None:
    if version is not None and version != VERSION:
        raise InvalidInput(
            f"model {name!r} has only version {VERSION!r}; drop /versions/{version} or use "
            f"/versions/{VERSION}"
        )


OPTIONS: dict[TaskName, type[TaskOptions] | None] = {
    TaskName.CLASSIFY: ClassifyOptions,
    TaskName.SENTIMENT: None,
    TaskName.QA: QAOptions,
    TaskName.TRANSLATE: TranslateOptions,
    TaskName.SUMMARIZE: SummarizeOptions,
    TaskName.NER: NEROptions,
    TaskName.EMBED: EmbedOptions,
}


def task_params(task: TaskName, parameters: Mapping[str, Any]) -> Any:
    """The request's ``parameters`` as the task's typed params, validated like the native
    route's fields; an unknown one is refused by name."""
    options = {k: v for k, v in parameters.items() if k not in PROTOCOL_PARAMETERS}
    unknown = sorted(set(options) - PARAMETERS[task])
    if unknown:
        raise InvalidInput(
            f"parameter(s) {unknown} are not supported for {task.value!r}; supported: "
            f"{sorted(PARAMETERS[task])}"
        )
    labels = options.get("candidate_labels")
    if isinstance(labels, str):  # v2 parameter values are scalars: "a,b,c" is the list form
        options["candidate_labels"] = [label.strip() for label in labels.split(",")]
    kind = OPTIONS[task]
    if kind is None:
        return SentimentParams() if task is TaskName.SENTIMENT else None
    return parse_options(kind, options, "parameters").task_params()


def _shorten_deadline(parameters: Mapping[str, Any], call: CallContext) -> None:
    """Triton's `timeout` parameter (microseconds): the call's deadline, when sooner."""
    timeout_us = parameters.get(TIMEOUT_PARAMETER)
    if timeout_us is None:
        return
    if not isinstance(timeout_us, int) or isinstance(timeout_us, bool) or timeout_us < 1:
        raise InvalidInput(
            f"parameter 'timeout' is the request's timeout in microseconds: a positive whole "
            f"number, not {timeout_us!r}"
        )
    call.deadline = min(call.deadline, time.monotonic() + timeout_us / 1e6)


def _texts(request: InferRequest, name: str) -> list[str]:
    texts: list[str] = parse_as(list[Text], request.input(name).texts(), name)
    return texts


def _pairs(request: InferRequest) -> list[QAItem]:
    questions, contexts = _texts(request, "QUESTION"), _texts(request, "CONTEXT")
    if len(questions) != len(contexts):
        raise InvalidInput(
            f"QUESTION has {len(questions)} elements and CONTEXT {len(contexts)}; "
            "send one context per question"
        )
    return [QAItem(q, c) for q, c in zip(questions, contexts, strict=True)]


async def infer(
    core: InferenceCore, task: TaskName, request: InferRequest, model: str, call: CallContext
) -> Answer[Any]:
    """The core's method for the model's task, with the request's tensors and parameters."""
    check_offered(model, task)
    expected = {spec.name for spec in INPUTS[task]}
    extra = sorted({t.name for t in request.inputs} - expected)
    if extra:
        raise InvalidInput(f"unknown input tensor(s) {extra}; {task.value!r} takes "
                           f"{sorted(expected)} (GET /v2/models/{model})")  # fmt: skip
    params = task_params(task, request.parameters)
    _shorten_deadline(request.parameters, call)
    if task is TaskName.QA:
        return await core.qa(_pairs(request), params, model=model, call=call)
    texts = _texts(request, "TEXT")
    if task is TaskName.CLASSIFY:
        return await core.classify(texts, params, model=model, call=call)
    if task is TaskName.SENTIMENT:
        return await core.sentiment(texts, params, model=model, call=call)
    if task is TaskName.TRANSLATE:
        return await core.translate(texts, params, model=model, call=call)
    if task is TaskName.SUMMARIZE:
        return await core.summarize(texts, params, model=model, call=call)
    if task is TaskName.NER:
        return await core.ner(texts, params, model=model, call=call)
    return await core.embed(texts, params, model=model, call=call)


def _rectangular(rows: Sequence[Sequence[Any]], what: str) -> int:
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        raise InvalidInput(f"the inputs got different numbers of {what}; send them one by one")
    return widths.pop() if widths else 0


def _f4(values: Iterable[float]) -> np.ndarray:
    return np.fromiter(values, dtype=np.float32)


def _i8(values: Iterable[int]) -> np.ndarray:
    return np.fromiter(values, dtype=np.int64)


def _entity_label(entity: Entity | TokenEntity) -> str:
    """An entity's group, or with aggregation_strategy "none" its token's label (B-PER)."""
    return entity.entity if isinstance(entity, TokenEntity) else entity.entity_group


def output_tensors(task: TaskName, results: Sequence[Any]) -> list[OutputTensor]:
    """One request's typed results as this task's output tensors."""
    n = len(results)
    if task is TaskName.CLASSIFY:
        width = _rectangular(results, "labels")
        scores = [s for row in results for s in row]
        return [
            OutputTensor("LABELS", "BYTES", [n, width], [s.label for s in scores]),
            OutputTensor("SCORES", "FP32", [n, width], _f4(s.score for s in scores)),
        ]
    if task is TaskName.SENTIMENT:
        return [
            OutputTensor("LABEL", "BYTES", [n], [r.label for r in results]),
            OutputTensor("SCORE", "FP32", [n], _f4(r.score for r in results)),
        ]
    if task is TaskName.QA:
        return [
            OutputTensor("ANSWER", "BYTES", [n], [r.answer for r in results]),
            OutputTensor("SCORE", "FP32", [n], _f4(r.score for r in results)),
            OutputTensor("START", "INT64", [n], _i8(r.start for r in results)),
            OutputTensor("END", "INT64", [n], _i8(r.end for r in results)),
        ]
    if task is TaskName.TRANSLATE:
        return [OutputTensor("TRANSLATION", "BYTES", [n], [r.translation_text for r in results])]
    if task is TaskName.SUMMARIZE:
        return [OutputTensor("SUMMARY", "BYTES", [n], [r.summary_text for r in results])]
    if task is TaskName.NER:
        flat = [(i, e) for i, entities in enumerate(results) for e in entities]
        m = len(flat)
        return [
            OutputTensor("ENTITY_GROUP", "BYTES", [m], [_entity_label(e) for _, e in flat]),
            OutputTensor("WORD", "BYTES", [m], [e.word for _, e in flat]),
            OutputTensor("SCORE", "FP32", [m], _f4(e.score for _, e in flat)),
            OutputTensor("START", "INT64", [m], _i8(e.start for _, e in flat)),
            OutputTensor("END", "INT64", [m], _i8(e.end for _, e in flat)),
            OutputTensor("INPUT_INDEX", "INT64", [m], _i8(i for i, _ in flat)),
        ]
    width = _rectangular(results, "dimensions")
    return [
        OutputTensor("EMBEDDING", "FP32", [n, width], np.array(results, "f4").reshape(n, width))
    ]
