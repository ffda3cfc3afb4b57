"""Each task's tensors on the Open Inference Protocol v2: what its metadata declares, how an
infer request becomes the body of our native route, and how the native answer becomes tensors.

Pure protocol code, no model logic. Text goes in as BYTES (UTF-8); labels, scores, spans and
FP32 vectors come out. Request-level ``parameters`` carry the task's options under the native
route's names (e.g. ``candidate_labels``, ``target_lang``); an unknown one is refused by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.errors import InvalidInput
from app.protocols.v2_codec import InferRequest, OutputTensor
from app.spec import TaskName

VERSION = "1"
# Parameters the binary extension itself uses; not task options.
PROTOCOL_PARAMETERS = frozenset({"binary_data_output"})


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
    TaskName.NER: frozenset(),
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


def check_version(name: str, version: str | None) -> None:
    if version is not None and version != VERSION:
        raise InvalidInput(
            f"model {name!r} has only version {VERSION!r}; drop /versions/{version} or use "
            f"/versions/{VERSION}"
        )


def _parameters(task: TaskName, parameters: Mapping[str, Any]) -> dict[str, Any]:
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
    return options


def native_body(task: TaskName, request: InferRequest, model: str) -> dict[str, Any]:
    """The body of our native route for this task that answers the infer request."""
    check_offered(model, task)
    expected = {spec.name for spec in INPUTS[task]}
    extra = sorted({t.name for t in request.inputs} - expected)
    if extra:
        raise InvalidInput(f"unknown input tensor(s) {extra}; {task.value!r} takes "
                           f"{sorted(expected)} (GET /v2/models/{model})")  # fmt: skip
    body: dict[str, Any] = {"model": model, **_parameters(task, request.parameters)}
    if task is TaskName.QA:
        questions = request.input("QUESTION").texts()
        contexts = request.input("CONTEXT").texts()
        if len(questions) != len(contexts):
            raise InvalidInput(
                f"QUESTION has {len(questions)} elements and CONTEXT {len(contexts)}; "
                "send one context per question"
            )
        body["inputs"] = [
            {"question": q, "context": c} for q, c in zip(questions, contexts, strict=True)
        ]
    else:
        body["inputs"] = request.input("TEXT").texts()
    return body


def _rectangular(rows: Sequence[Sequence[Any]], what: str) -> int:
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        raise InvalidInput(f"the inputs got different numbers of {what}; send them one by one")
    return widths.pop() if widths else 0


def output_tensors(task: TaskName, results: Sequence[Any]) -> list[OutputTensor]:
    """The native results (JSON-ready) of one request as this task's output tensors."""
    n = len(results)
    if task is TaskName.CLASSIFY:
        width = _rectangular(results, "labels")
        labels = [s["label"] for row in results for s in row]
        scores = np.array([s["score"] for row in results for s in row], dtype=np.float32)
        return [OutputTensor("LABELS", "BYTES", [n, width], labels),
                OutputTensor("SCORES", "FP32", [n, width], scores)]  # fmt: skip
    if task is TaskName.SENTIMENT:
        return [
            OutputTensor("LABEL", "BYTES", [n], [r["label"] for r in results]),
            OutputTensor("SCORE", "FP32", [n], np.array([r["score"] for r in results], "f4")),
        ]
    if task is TaskName.QA:
        return [
            OutputTensor("ANSWER", "BYTES", [n], [r["answer"] for r in results]),
            OutputTensor("SCORE", "FP32", [n], np.array([r["score"] for r in results], "f4")),
            OutputTensor("START", "INT64", [n], np.array([r["start"] for r in results], "i8")),
            OutputTensor("END", "INT64", [n], np.array([r["end"] for r in results], "i8")),
        ]
    if task is TaskName.TRANSLATE:
        return [OutputTensor("TRANSLATION", "BYTES", [n], [r["translation_text"] for r in results])]
    if task is TaskName.SUMMARIZE:
        return [OutputTensor("SUMMARY", "BYTES", [n], [r["summary_text"] for r in results])]
    if task is TaskName.NER:
        flat = [(i, e) for i, entities in enumerate(results) for e in entities]
        m = len(flat)
        return [
            OutputTensor("ENTITY_GROUP", "BYTES", [m], [e["entity_group"] for _, e in flat]),
            OutputTensor("WORD", "BYTES", [m], [e["word"] for _, e in flat]),
            OutputTensor("SCORE", "FP32", [m], np.array([e["score"] for _, e in flat], "f4")),
            OutputTensor("START", "INT64", [m], np.array([e["start"] for _, e in flat], "i8")),
            OutputTensor("END", "INT64", [m], np.array([e["end"] for _, e in flat], "i8")),
            OutputTensor("INPUT_INDEX", "INT64", [m], np.array([i for i, _ in flat], "i8")),
        ]
    width = _rectangular(results, "dimensions")
    return [
        OutputTensor("EMBEDDING", "FP32", [n, width], np.array(results, "f4").reshape(n, width))
    ]
