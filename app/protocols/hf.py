"""The Hugging Face Inference API as every `huggingface_hub.InferenceClient` generation speaks it.

No model logic. The client posts ``{"inputs": ..., "parameters": {...}}`` (feature-extraction:
parameters at the root) to the URL it is given and never names the task, so the task comes
from the URL (/hf/tasks/{task}) or from the model and the payload's shape (/hf/models/{name}).
Each payload becomes the core's typed call for the task (its parameters validated by the
task's options schema, as the native route's fields are), and each typed answer the shape the
client parses. A parameter we cannot honour
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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from app.core import Answer, CallContext, InferenceCore
from app.errors import InvalidInput
from app.schemas.classify import ClassifyOptions
from app.schemas.common import TaskOptions, Text, TextInputs, TextList, as_list
from app.schemas.embed import EmbedOptions
from app.schemas.ner import NEROptions
from app.schemas.qa import QAInput, QAOptions
from app.schemas.sentiment import SentimentOptions
from app.schemas.summarize import SummarizeOptions
from app.schemas.translate import TranslateOptions
from app.schemas.validation import parse_as, parse_options
from app.spec import TaskName
from app.tasks.classification import LabelScore
from app.tasks.qa import QAItem


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
        return parse_as(TextInputs, inputs, "inputs")
    raise InvalidInput(f'{task.value}: "inputs" must be a text or a list of texts')


@dataclass(frozen=True)
class _Call:
    """One HF request on its way to the core."""

    task: HFTask
    payload: Mapping[str, Any]
    model: str | None
    served_by: TaskName | None
    generation: ClientGeneration

    @property
    def inputs(self) -> Any:
        return self.payload["inputs"]

    @property
    def single(self) -> bool:
        return isinstance(self.inputs, str | dict)

    def parameters(self, supported: set[str]) -> dict[str, Any]:
        return _parameters(self.payload, self.task, supported)

    def texts(self) -> list[str]:
        return as_list(_texts(self.inputs, self.task))


OptionsT = TypeVar("OptionsT", bound=TaskOptions)


def _options(kind: type[OptionsT], values: Mapping[str, Any]) -> OptionsT:
    return parse_options(kind, values, "parameters")


def _one_or_all(call: _Call, results: list[Any]) -> Any:
    return results[0] if call.single else results


Served = tuple[Any, Answer[Any]]  # the answer in the client's shape, and the core's answer


async def _text_classification(core: InferenceCore, call: _Call, ctx: CallContext) -> Served:
    """top_k keeps the k best labels with their scores (a model's fixed labels or a sentiment
    model's); function_to_apply picks softmax or independent sigmoids (classify models).
    Every generation reads a list of labels per text."""
    params = call.parameters({"top_k", "function_to_apply"})
    applied = params.pop("function_to_apply", "softmax")
    answer: Answer[Any]
    if call.served_by is TaskName.SENTIMENT:
        if applied != "softmax":
            raise InvalidInput(
                f"model {call.model!r} is a sentiment model: its scores are a softmax over its "
                'labels; drop function_to_apply or send "softmax"'
            )
        options = _options(SentimentOptions, params).task_params()
        answer = await core.sentiment(call.texts(), options, model=call.model, call=ctx)
    else:
        if applied not in ("softmax", "sigmoid"):
            raise InvalidInput(
                f"text-classification: function_to_apply {applied!r} is not supported; use "
                '"softmax" or "sigmoid"'
            )
        values = {**params, "multi_label": applied == "sigmoid"}
        classify = _options(ClassifyOptions, values).task_params()
        answer = await core.classify(call.texts(), classify, model=call.model, call=ctx)
    return [r if isinstance(r, list) else [r] for r in answer.results], answer


async def _zero_shot_classification(core: InferenceCore, call: _Call, ctx: CallContext) -> Served:
    params = call.parameters({"candidate_labels", "multi_label", "hypothesis_template"})
    texts = call.texts()
    options = _options(ClassifyOptions, params).task_params()
    answer = await core.classify(texts, options, model=call.model, call=ctx)
    return _one_or_all(call, _zero_shot_answer(texts, answer.results, call.generation)), answer


async def _question_answering(core: InferenceCore, call: _Call, ctx: CallContext) -> Served:
    options = _options(QAOptions, call.parameters({"top_k", "max_answer_len"})).task_params()
    _object(call.inputs, 'question-answering "inputs" ({"question", "context"})')
    pair: QAInput = parse_as(QAInput, call.inputs, "inputs")
    answer = await core.qa(
        [QAItem(pair.question, pair.context)], options, model=call.model, call=ctx
    )
    return answer.results[0], answer


async def _summarization(core: InferenceCore, call: _Call, ctx: CallContext) -> Served:
    lengths = _generation(call.parameters({"generate_parameters"}), call.task)
    values = {}
    if "max" in lengths:
        values["max_length"] = lengths["max"]
    if "min" in lengths:
        values["min_length"] = lengths["min"]
    options = _options(SummarizeOptions, values).task_params()
    answer = await core.summarize(call.texts(), options, model=call.model, call=ctx)
    return answer.results, answer


async def _translation(core: InferenceCore, call: _Call, ctx: CallContext) -> Served:
    params = call.parameters({"src_lang", "tgt_lang", "generate_parameters"})
    lengths = _generation(params, call.task)
    if "min" in lengths:
        raise InvalidInput("translation: a minimum length is not supported; drop it")
    if "tgt_lang" not in params:
        raise InvalidInput(
            "translation: name the languages with src_lang and tgt_lang, e.g. "
            'src_lang="en", tgt_lang="de"'
        )
    values: dict[str, Any] = {"target_lang": params["tgt_lang"]}
    if "src_lang" in params:
        values["source_lang"] = params["src_lang"]
    if "max" in lengths:
        values["max_new_tokens"] = lengths["max"]
    options = _options(TranslateOptions, values).task_params()
    answer = await core.translate(call.texts(), options, model=call.model, call=ctx)
    return answer.results, answer


async def _token_classification(core: InferenceCore, call: _Call, ctx: CallContext) -> Served:
    """aggregation_strategy as transformers' pipeline has it (none, simple, first, average,
    max); "none" answers each token as {"entity", "score", "index", "word", "start", "end"}."""
    options = _options(NEROptions, call.parameters({"aggregation_strategy"})).task_params()
    answer = await core.ner(call.texts(), options, model=call.model, call=ctx)
    return _one_or_all(call, answer.results), answer


async def _feature_extraction(core: InferenceCore, call: _Call, ctx: CallContext) -> Served:
    if call.payload.get("dimensions") is not None:
        raise InvalidInput(
            "feature-extraction: dimensions is not supported here; for shortened vectors "
            "call POST /v1/embeddings (OpenAI) with a model whose catalog entry lists "
            "options.matryoshka_dimensions"
        )
    params = call.parameters(
        {"normalize", "prompt_name", "truncate", "truncation_direction", "encoding_format"}
    )
    if params.pop("encoding_format", "float") != "float":
        raise InvalidInput(
            "feature-extraction: vectors are answered as floats only; drop encoding_format "
            'or send "float"'
        )
    direction = params.get("truncation_direction")
    if isinstance(direction, str):  # 0.x sends "Right", 1.x and later "right"
        params["truncation_direction"] = direction.lower()
    options = _options(EmbedOptions, params).task_params()
    answer = await core.embed(call.texts(), options, model=call.model, call=ctx)
    return answer.results, answer


async def _sentence_similarity(core: InferenceCore, call: _Call, ctx: CallContext) -> Served:
    """One float per other sentence: its similarity to the source."""
    call.parameters(set())
    pair = _object(call.inputs, 'sentence-similarity "inputs" ({"source_sentence", "sentences"})')
    source, others = pair.get("source_sentence"), pair.get("sentences")
    if not isinstance(source, str) or not isinstance(others, list) or not others:
        raise InvalidInput(
            'sentence-similarity: "inputs" needs "source_sentence" (a text) and '
            '"sentences" (a non-empty list of texts)'
        )
    source = parse_as(Text, source, "inputs.source_sentence")
    others = parse_as(TextList, others, "inputs.sentences")
    answer = await core.similarity(source, others, model=call.model, call=ctx)
    return answer.results, answer


_SERVERS: dict[HFTask, Callable[[InferenceCore, _Call, CallContext], Awaitable[Served]]] = {
    HFTask.TEXT_CLASSIFICATION: _text_classification,
    HFTask.ZERO_SHOT_CLASSIFICATION: _zero_shot_classification,
    HFTask.QUESTION_ANSWERING: _question_answering,
    HFTask.SUMMARIZATION: _summarization,
    HFTask.TRANSLATION: _translation,
    HFTask.TOKEN_CLASSIFICATION: _token_classification,
    HFTask.FEATURE_EXTRACTION: _feature_extraction,
    HFTask.SENTENCE_SIMILARITY: _sentence_similarity,
}


async def serve(
    core: InferenceCore,
    task: HFTask,
    payload: Any,
    model: str | None,
    served_by: TaskName | None,
    generation: ClientGeneration,
    ctx: CallContext,
) -> Served:
    """This HF request through the core's method for it, answered in the shape the client's
    generation parses (`served_by`: the model's task when it is not the HF task's usual one,
    i.e. sentiment for text-classification)."""
    payload = _object(payload, "the request body")
    if "inputs" not in payload:
        raise InvalidInput('the request body needs "inputs", e.g. {"inputs": "some text"}')
    return await _SERVERS[task](core, _Call(task, payload, model, served_by, generation), ctx)


def _zero_shot_answer(
    texts: list[str], results: list[list[LabelScore]], generation: ClientGeneration
) -> list[Any]:
    """One answer per text: its labels and scores, best first, as the generation parses them."""
    if generation is ClientGeneration.CURRENT:
        return results  # [{"label", "score"}, ...] per text
    return [
        {
            "sequence": text,
            "labels": [s.label for s in scores],
            "scores": [s.score for s in scores],
        }
        for text, scores in zip(texts, results, strict=True)
    ]
