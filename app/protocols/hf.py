"""The Hugging Face Inference API as every `huggingface_hub.InferenceClient` generation speaks it.

Pure protocol code, no model logic. The client posts ``{"inputs": ..., "parameters": {...}}``
(feature-extraction: parameters at the root) to the URL it is given and never names the task,
so the task comes from the URL (/hf/tasks/{task}) or from the model and the payload's shape
(/hf/models/{name}). Each payload is translated into the body of our native route for the
task, and each native answer into the shape the client parses. A parameter we cannot honour
is refused with a message that names it, never silently ignored.

The client generations, read from huggingface_hub 0.36.2, 1.21.0 and 2.4.0 (``inference/
_client.py``, ``_generated/_async_client.py``, ``_generated/types``; sync and async parse
alike). They send the same requests (1.x and later may add feature-extraction's
``dimensions`` and ``encoding_format``, and spell ``truncation_direction`` in lower case) and
parse the same answers but one, zero_shot_classification:

- 0.x reads ``{"sequence", "labels": [...], "scores": [...]}``;
- 1.x and 2.x, like the Inference API today, read ``[{"label", "score"}, ...]``, best first.

Every generation reads text_classification as ``[[{"label", "score"}, ...]]`` (the first
list), question_answering as one ``{"answer", "score", "start", "end"}`` or a list of them,
summarization and translation as ``[{"summary_text"}]`` / ``[{"translation_text"}]``,
token_classification as a list of entities, feature_extraction as the vector(s) and
sentence_similarity as one float per other sentence.

The generation comes from the User-Agent every InferenceClient sends (utils/_headers.py:
``unknown/None; hf_hub/<version>; python/<version>[; ...]``); a client that does not name a
huggingface_hub release there gets the current shapes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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


class ClientGeneration(StrEnum):
    """Lines of huggingface_hub releases whose InferenceClient parses answers alike."""

    HUB_0 = "huggingface_hub<1"  # zero-shot as {"sequence", "labels", "scores"}
    CURRENT = "huggingface_hub>=1"  # 1.x, 2.x and the Inference API today


# The token InferenceClient puts in its User-Agent: "hf_hub/" and the release, e.g. 0.36.2.
_HUB_RELEASE = re.compile(r"(?:^|;)\s*hf_hub/(\d+)\.")


def client_generation(user_agent: str | None) -> ClientGeneration:
    """The generation of the client that sent this User-Agent; the current one when the
    header names no huggingface_hub release (another client, or none)."""
    found = _HUB_RELEASE.search(user_agent or "")
    if found is not None and int(found.group(1)) == 0:
        return ClientGeneration.HUB_0
    return ClientGeneration.CURRENT


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


@dataclass(frozen=True)
class _Call:
    """One HF request on its way to a native body."""

    task: HFTask
    payload: Mapping[str, Any]
    model: str | None
    served_by: TaskName | None

    @property
    def inputs(self) -> Any:
        return self.payload["inputs"]

    def parameters(self, supported: set[str]) -> dict[str, Any]:
        return _parameters(self.payload, self.task, supported)

    def texts(self) -> Any:
        return _texts(self.inputs, self.task)


def _text_classification(call: _Call) -> dict[str, Any]:
    """top_k keeps the k best labels with their scores (a model's fixed labels or a sentiment
    model's); function_to_apply picks softmax or independent sigmoids (classify models)."""
    params = call.parameters({"top_k", "function_to_apply"})
    applied = params.get("function_to_apply", "softmax")
    body: dict[str, Any] = {"inputs": call.texts()}
    if "top_k" in params:
        body["top_k"] = params["top_k"]
    if call.served_by is TaskName.SENTIMENT:
        if applied != "softmax":
            raise InvalidInput(
                f"model {call.model!r} is a sentiment model: its scores are a softmax over its "
                'labels; drop function_to_apply or send "softmax"'
            )
        return body
    if applied not in ("softmax", "sigmoid"):
        raise InvalidInput(
            f"text-classification: function_to_apply {applied!r} is not supported; use "
            '"softmax" or "sigmoid"'
        )
    return {**body, "multi_label": applied == "sigmoid"}


def _zero_shot_classification(call: _Call) -> dict[str, Any]:
    params = call.parameters({"candidate_labels", "multi_label", "hypothesis_template"})
    return {"inputs": call.texts(), **params}


def _question_answering(call: _Call) -> dict[str, Any]:
    params = call.parameters({"top_k", "max_answer_len"})
    pair = _object(call.inputs, 'question-answering "inputs" ({"question", "context"})')
    return {"inputs": pair, **params}


def _summarization(call: _Call) -> dict[str, Any]:
    lengths = _generation(call.parameters({"generate_parameters"}), call.task)
    body: dict[str, Any] = {"inputs": call.texts()}
    if "max" in lengths:
        body["max_length"] = lengths["max"]
    if "min" in lengths:
        body["min_length"] = lengths["min"]
    return body


def _translation(call: _Call) -> dict[str, Any]:
    params = call.parameters({"src_lang", "tgt_lang", "generate_parameters"})
    lengths = _generation(params, call.task)
    if "min" in lengths:
        raise InvalidInput("translation: a minimum length is not supported; drop it")
    if "tgt_lang" not in params:
        raise InvalidInput(
            "translation: name the languages with src_lang and tgt_lang, e.g. "
            'src_lang="en", tgt_lang="de"'
        )
    body: dict[str, Any] = {"inputs": call.texts(), "target_lang": params["tgt_lang"]}
    if "src_lang" in params:
        body["source_lang"] = params["src_lang"]
    if "max" in lengths:
        body["max_new_tokens"] = lengths["max"]
    return body


def _token_classification(call: _Call) -> dict[str, Any]:
    strategy = call.parameters({"aggregation_strategy"}).get("aggregation_strategy", "simple")
    if strategy != "simple":
        raise InvalidInput(
            f"token-classification: aggregation_strategy {strategy!r} is not supported; "
            'entities are grouped as "simple" does'
        )
    return {"inputs": call.texts()}


def _feature_extraction(call: _Call) -> dict[str, Any]:
    if call.payload.get("dimensions") is not None:
        raise InvalidInput(
            "feature-extraction: dimensions is not supported here; for shortened vectors "
            "call POST /v1/embeddings (OpenAI) with a model whose catalog entry lists "
            "options.matryoshka_dimensions"
        )
    params = call.parameters({"normalize", "truncate", "truncation_direction", "encoding_format"})
    if params.get("encoding_format", "float") != "float":
        raise InvalidInput(
            "feature-extraction: vectors are answered as floats only; drop encoding_format "
            'or send "float"'
        )
    if params.get("truncate") is False:
        raise InvalidInput(
            "feature-extraction: truncate=false is not supported; inputs are always "
            "truncated to the model's max_length (GET /v1/models)"
        )
    if str(params.get("truncation_direction", "right")).lower() != "right":
        raise InvalidInput("feature-extraction: only truncation_direction 'right' is served")
    body: dict[str, Any] = {"inputs": call.texts()}
    if "normalize" in params:
        body["normalize"] = params["normalize"]
    return body


def _sentence_similarity(call: _Call) -> dict[str, Any]:
    """The source and the other sentences, embedded (normalised) in one request."""
    call.parameters(set())
    pair = _object(call.inputs, 'sentence-similarity "inputs" ({"source_sentence", "sentences"})')
    source, others = pair.get("source_sentence"), pair.get("sentences")
    if not isinstance(source, str) or not isinstance(others, list) or not others:
        raise InvalidInput(
            'sentence-similarity: "inputs" needs "source_sentence" (a text) and '
            '"sentences" (a non-empty list of texts)'
        )
    return {"inputs": [source, *others], "normalize": True}


_BODIES: dict[HFTask, Callable[[_Call], dict[str, Any]]] = {
    HFTask.TEXT_CLASSIFICATION: _text_classification,
    HFTask.ZERO_SHOT_CLASSIFICATION: _zero_shot_classification,
    HFTask.QUESTION_ANSWERING: _question_answering,
    HFTask.SUMMARIZATION: _summarization,
    HFTask.TRANSLATION: _translation,
    HFTask.TOKEN_CLASSIFICATION: _token_classification,
    HFTask.FEATURE_EXTRACTION: _feature_extraction,
    HFTask.SENTENCE_SIMILARITY: _sentence_similarity,
}


def native_body(
    task: HFTask, payload: Any, model: str | None, served_by: TaskName | None = None
) -> dict[str, Any]:
    """The body of our native route that answers this HF request (`served_by`: the model's
    task when it is not the HF task's usual one, i.e. sentiment for text-classification)."""
    payload = _object(payload, "the request body")
    if "inputs" not in payload:
        raise InvalidInput('the request body needs "inputs", e.g. {"inputs": "some text"}')
    return {"model": model, **_BODIES[task](_Call(task, payload, model, served_by))}


def _zero_shot_answer(
    texts: list[str], results: list[Any], generation: ClientGeneration
) -> list[Any]:
    """One answer per text: its labels and scores, best first, as the generation parses them."""
    if generation is ClientGeneration.CURRENT:
        return results  # [{"label", "score"}, ...] per text
    return [
        {
            "sequence": text,
            "labels": [s["label"] for s in scores],
            "scores": [s["score"] for s in scores],
        }
        for text, scores in zip(texts, results, strict=True)
    ]


def hf_answer(
    task: HFTask, body: Mapping[str, Any], results: list[Any], generation: ClientGeneration
) -> Any:
    """Our native results (JSON-ready) in the shape the client's generation parses."""
    single = isinstance(body.get("inputs"), str | dict)
    if task is HFTask.TEXT_CLASSIFICATION:  # one label (sentiment, top_k 1) or a ranked list
        return [r if isinstance(r, list) else [r] for r in results]
    if task is HFTask.ZERO_SHOT_CLASSIFICATION:
        texts = [body["inputs"]] if single else list(body["inputs"])
        shaped = _zero_shot_answer(texts, results, generation)
        return shaped[0] if single else shaped
    if task in (HFTask.QUESTION_ANSWERING, HFTask.TOKEN_CLASSIFICATION):
        return results[0] if single else results
    if task is HFTask.SENTENCE_SIMILARITY:
        source, *others = results
        return [float(sum(a * b for a, b in zip(source, o, strict=True))) for o in others]
    return results  # summarization, translation ([{..._text}]), feature extraction (vectors)
