"""The Hugging Face Inference API as `huggingface_hub.InferenceClient` (0.36) speaks it.

Pure protocol code, no model logic. The client posts ``{"inputs": ..., "parameters": {...}}``
(feature-extraction: parameters at the root) to the URL it is given and never names the task,
so the task comes from the URL (/hf/tasks/{task}) or from the model and the payload's shape
(/hf/models/{name}). Each payload is translated into the body of our native route for the
task, and each native answer into the shape the client parses. A parameter we cannot honour
is refused with a message that names it, never silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from app.errors import InvalidInput
from app.spec import TaskName


class HFTask(StrEnum):
    TEXT_CLASSIFICATION = "text-classification"
    ZERO_SHOT_CLASSIFICATION = "zero-shot-classification"
    QUESTION_ANSWERING = "question-answering"
    SUMMARIZATION = "summarization"
    TRANSLATION = "translation"
    TOKEN_CLASSIFICATION = "token-classification"
    FEATURE_EXTRACTION = "feature-extraction"
    SENTENCE_SIMILARITY = "sentence-similarity"


# Which of our tasks serves each HF task (its default model answers /hf/tasks/{task}).
SERVED_BY: dict[HFTask, TaskName] = {
    HFTask.TEXT_CLASSIFICATION: TaskName.CLASSIFY,
    HFTask.ZERO_SHOT_CLASSIFICATION: TaskName.CLASSIFY,
    HFTask.QUESTION_ANSWERING: TaskName.QA,
    HFTask.SUMMARIZATION: TaskName.SUMMARIZE,
    HFTask.TRANSLATION: TaskName.TRANSLATE,
    HFTask.TOKEN_CLASSIFICATION: TaskName.NER,
    HFTask.FEATURE_EXTRACTION: TaskName.EMBED,
    HFTask.SENTENCE_SIMILARITY: TaskName.EMBED,
}


def hf_task_of(task: TaskName, payload: Mapping[str, Any]) -> HFTask:
    """The HF task a payload sent to one of our models' URLs asks for."""
    inputs = payload.get("inputs")
    parameters = payload.get("parameters") or {}
    if task is TaskName.EMBED:
        is_pair = isinstance(inputs, dict) and "source_sentence" in inputs
        return HFTask.SENTENCE_SIMILARITY if is_pair else HFTask.FEATURE_EXTRACTION
    if task in (TaskName.CLASSIFY, TaskName.SENTIMENT):
        zero_shot = isinstance(parameters, dict) and "candidate_labels" in parameters
        return HFTask.ZERO_SHOT_CLASSIFICATION if zero_shot else HFTask.TEXT_CLASSIFICATION
    by_task = {
        TaskName.QA: HFTask.QUESTION_ANSWERING,
        TaskName.SUMMARIZE: HFTask.SUMMARIZATION,
        TaskName.TRANSLATE: HFTask.TRANSLATION,
        TaskName.NER: HFTask.TOKEN_CLASSIFICATION,
    }
    if task not in by_task:
        raise InvalidInput(
            f"the Hugging Face surface does not offer {task.value!r}; use its native route "
            f"POST /v1/{task.value}"
        )
    return by_task[task]


def _object(payload: Any, what: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return payload


def _parameters(payload: Mapping[str, Any], task: HFTask, supported: set[str]) -> dict[str, Any]:
    """The request's parameters, refusing any we do not implement."""
    if task is HFTask.FEATURE_EXTRACTION:
        parameters = {k: v for k, v in payload.items() if k != "inputs"}
    else:
        extra = sorted(set(payload) - {"inputs", "parameters"})
        if extra:
            raise InvalidInput(f'unknown field(s) {extra}: send {{"inputs": ..., "parameters": '
                               "{...}}")  # fmt: skip
        parameters = _object(payload.get("parameters") or {}, '"parameters"')
    parameters = {k: v for k, v in parameters.items() if v is not None}
    unknown = sorted(set(parameters) - supported)
    if unknown:
        raise InvalidInput(
            f"{task.value}: parameter(s) {unknown} are not supported by this server; "
            f"supported: {sorted(supported)}"
        )
    return parameters


def _generation(parameters: Mapping[str, Any], task: HFTask) -> dict[str, Any]:
    """generate_parameters -> our length limits (the only generation knobs a request has)."""
    generate = _object(parameters.get("generate_parameters") or {}, "generate_parameters")
    generate = {k: v for k, v in generate.items() if v is not None}
    known = {"max_new_tokens", "max_length", "min_new_tokens", "min_length"}
    unknown = sorted(set(generate) - known)
    if unknown:
        raise InvalidInput(
            f"{task.value}: generate_parameters {unknown} are not supported by this server "
            f"(the catalog entry sets decoding); supported: {sorted(known)}"
        )
    out = {}
    if "max_new_tokens" in generate or "max_length" in generate:
        out["max"] = generate.get("max_new_tokens", generate.get("max_length"))
    if "min_new_tokens" in generate or "min_length" in generate:
        out["min"] = generate.get("min_new_tokens", generate.get("min_length"))
    return out


def _texts(inputs: Any, task: HFTask) -> Any:
    if isinstance(inputs, str) or (
        isinstance(inputs, list) and inputs and all(isinstance(t, str) for t in inputs)
    ):
        return inputs
    raise InvalidInput(f'{task.value}: "inputs" must be a text or a list of texts')


def native_body(
    task: HFTask, payload: Any, model: str | None, served_by: TaskName | None = None
) -> dict[str, Any]:
    """The body of our native route that answers this HF request (`served_by`: the model's
    task when it is not the HF task's usual one, i.e. sentiment for text-classification)."""
    payload = _object(payload, "the request body")
    if "inputs" not in payload:
        raise InvalidInput('the request body needs "inputs", e.g. {"inputs": "some text"}')
    inputs = payload["inputs"]
    body: dict[str, Any] = {"model": model}
    if task is HFTask.TEXT_CLASSIFICATION and served_by is TaskName.SENTIMENT:
        # a sentiment model answers its best label only: top_k 1 and a softmax
        params = _parameters(payload, task, {"top_k", "function_to_apply"})
        if params.get("top_k", 1) != 1 or params.get("function_to_apply", "softmax") != "softmax":
            raise InvalidInput(
                f"model {model!r} is a sentiment model: it answers its best label only "
                "(top_k 1, softmax); use a classify model for more labels"
            )
        body["inputs"] = _texts(inputs, task)
    elif task is HFTask.TEXT_CLASSIFICATION:
        params = _parameters(payload, task, {"top_k", "function_to_apply"})
        applied = params.get("function_to_apply", "softmax")
        if applied not in ("softmax", "sigmoid"):
            raise InvalidInput(
                f"text-classification: function_to_apply {applied!r} is not supported; use "
                '"softmax" or "sigmoid"'
            )
        body.update(inputs=_texts(inputs, task), multi_label=applied == "sigmoid")
        if "top_k" in params:
            body["top_k"] = params["top_k"]
    elif task is HFTask.ZERO_SHOT_CLASSIFICATION:
        params = _parameters(
            payload, task, {"candidate_labels", "multi_label", "hypothesis_template"}
        )
        body.update(inputs=_texts(inputs, task), **params)
    elif task is HFTask.QUESTION_ANSWERING:
        params = _parameters(payload, task, {"top_k", "max_answer_len"})
        pair = _object(inputs, 'question-answering "inputs" ({"question", "context"})')
        body.update(inputs=pair, **params)
    elif task is HFTask.SUMMARIZATION:
        params = _parameters(payload, task, {"generate_parameters"})
        lengths = _generation(params, task)
        body["inputs"] = _texts(inputs, task)
        if "max" in lengths:
            body["max_length"] = lengths["max"]
        if "min" in lengths:
            body["min_length"] = lengths["min"]
    elif task is HFTask.TRANSLATION:
        params = _parameters(payload, task, {"src_lang", "tgt_lang", "generate_parameters"})
        lengths = _generation(params, task)
        if "min" in lengths:
            raise InvalidInput("translation: a minimum length is not supported; drop it")
        if "tgt_lang" not in params:
            raise InvalidInput(
                "translation: name the languages with src_lang and tgt_lang, e.g. "
                'src_lang="en", tgt_lang="de"'
            )
        body.update(inputs=_texts(inputs, task), target_lang=params["tgt_lang"])
        if "src_lang" in params:
            body["source_lang"] = params["src_lang"]
        if "max" in lengths:
            body["max_new_tokens"] = lengths["max"]
    elif task is HFTask.TOKEN_CLASSIFICATION:
        params = _parameters(payload, task, {"aggregation_strategy"})
        strategy = params.get("aggregation_strategy", "simple")
        if strategy != "simple":
            raise InvalidInput(
                f"token-classification: aggregation_strategy {strategy!r} is not supported; "
                'entities are grouped as "simple" does'
            )
        body["inputs"] = _texts(inputs, task)
    elif task is HFTask.FEATURE_EXTRACTION:
        params = _parameters(payload, task, {"normalize", "truncate", "truncation_direction"})
        if params.get("truncate") is False:
            raise InvalidInput(
                "feature-extraction: truncate=false is not supported; inputs are always "
                "truncated to the model's max_length (GET /v1/models)"
            )
        if str(params.get("truncation_direction", "right")).lower() != "right":
            raise InvalidInput("feature-extraction: only truncation_direction 'right' is served")
        body["inputs"] = _texts(inputs, task)
        if "normalize" in params:
            body["normalize"] = params["normalize"]
    else:  # sentence similarity: embed the source and the others in one request
        _parameters(payload, task, set())
        pair = _object(inputs, 'sentence-similarity "inputs" ({"source_sentence", "sentences"})')
        source, others = pair.get("source_sentence"), pair.get("sentences")
        if not isinstance(source, str) or not isinstance(others, list) or not others:
            raise InvalidInput(
                'sentence-similarity: "inputs" needs "source_sentence" (a text) and '
                '"sentences" (a non-empty list of texts)'
            )
        body.update(inputs=[source, *others], normalize=True)
    return body


def hf_answer(task: HFTask, body: Mapping[str, Any], results: list[Any]) -> Any:
    """Our native results (JSON-ready) in the shape the HF client parses for the task."""
    single = isinstance(body.get("inputs"), str | dict)
    if task is HFTask.TEXT_CLASSIFICATION:
        return [r if isinstance(r, list) else [r] for r in results]
    if task is HFTask.ZERO_SHOT_CLASSIFICATION:
        texts = [body["inputs"]] if single else body["inputs"]
        shaped = [
            {
                "sequence": text,
                "labels": [s["label"] for s in scores],
                "scores": [s["score"] for s in scores],
            }
            for text, scores in zip(texts, results, strict=True)
        ]
        return shaped[0] if single else shaped
    if task in (HFTask.QUESTION_ANSWERING, HFTask.TOKEN_CLASSIFICATION):
        return results[0] if single else results
    if task is HFTask.SENTENCE_SIMILARITY:
        source, *others = results
        return [float(sum(a * b for a, b in zip(source, o, strict=True))) for o in others]
    return results  # summarization, translation ([{..._text}]), feature extraction (vectors)
