from __future__ import annotations

import pytest

from app.errors import InvalidInput
from app.protocols.hf import ClientGeneration, HFTask, client_generation, hf_task_of, serve
from app.spec import TaskName
from app.tasks.classification import ClassifyParams, LabelScore, SentimentParams
from app.tasks.embed import EmbedParams
from app.tasks.generation import SummarizeParams, TranslateParams
from app.tasks.ner import Aggregation, Entity, NERParams, TokenEntity
from app.tasks.qa import Answer, QAItem, QAParams
from tests.unit.protocols.recording_core import CALL, RecordingCore

CURRENT = ClientGeneration.CURRENT


async def hf(core, task, payload, model=None, served_by=None, generation=CURRENT):
    shaped, _ = await serve(core, task, payload, model, served_by, generation, CALL)  # type: ignore[arg-type]
    return shaped


@pytest.mark.parametrize(
    ("task", "payload", "expected"),
    [
        (TaskName.EMBED, {"inputs": "a"}, HFTask.FEATURE_EXTRACTION),
        (TaskName.EMBED, {"inputs": {"source_sentence": "a", "sentences": ["b"]}},
         HFTask.SENTENCE_SIMILARITY),
        (TaskName.CLASSIFY, {"inputs": "a"}, HFTask.TEXT_CLASSIFICATION),
        (TaskName.CLASSIFY, {"inputs": "a", "parameters": {"candidate_labels": ["x"]}},
         HFTask.ZERO_SHOT_CLASSIFICATION),
        (TaskName.SENTIMENT, {"inputs": "a"}, HFTask.TEXT_CLASSIFICATION),
        (TaskName.QA, {"inputs": {}}, HFTask.QUESTION_ANSWERING),
        (TaskName.NER, {"inputs": "a"}, HFTask.TOKEN_CLASSIFICATION),
        (TaskName.TRANSLATE, {"inputs": "a"}, HFTask.TRANSLATION),
        (TaskName.SUMMARIZE, {"inputs": "a"}, HFTask.SUMMARIZATION),
    ],
)  # fmt: skip
def test_the_task_comes_from_the_model_and_the_payload(task, payload, expected) -> None:
    assert hf_task_of(task, payload) is expected


@pytest.mark.parametrize(
    ("task", "payload", "method", "inputs", "params"),
    [
        (HFTask.TEXT_CLASSIFICATION, {"inputs": "t", "parameters": {"top_k": 2}},
         "classify", ["t"], ClassifyParams(top_k=2)),
        (HFTask.TEXT_CLASSIFICATION,
         {"inputs": "t", "parameters": {"function_to_apply": "sigmoid"}},
         "classify", ["t"], ClassifyParams(multi_label=True)),
        (HFTask.ZERO_SHOT_CLASSIFICATION,
         {"inputs": "t", "parameters": {"candidate_labels": ["a", "b"], "multi_label": True}},
         "classify", ["t"], ClassifyParams(candidate_labels=("a", "b"), multi_label=True)),
        (HFTask.QUESTION_ANSWERING,
         {"inputs": {"question": "q", "context": "c"}, "parameters": {"top_k": 2}},
         "qa", [QAItem("q", "c")], QAParams(top_k=2)),
        (HFTask.SUMMARIZATION,
         {"inputs": "t", "parameters": {"generate_parameters": {"max_new_tokens": 9}}},
         "summarize", ["t"], SummarizeParams(min_length=0, max_length=9)),
        (HFTask.TRANSLATION,
         {"inputs": "t", "parameters": {"src_lang": "en", "tgt_lang": "de",
                                         "generate_parameters": {"max_new_tokens": 5}}},
         "translate", ["t"], TranslateParams("de", "en", 5)),
        (HFTask.TOKEN_CLASSIFICATION,
         {"inputs": "t", "parameters": {"aggregation_strategy": "simple"}},
         "ner", ["t"], NERParams()),
        (HFTask.TOKEN_CLASSIFICATION, {"inputs": "t"}, "ner", ["t"], NERParams()),
        (HFTask.TOKEN_CLASSIFICATION,
         {"inputs": ["t", "u"], "parameters": {"aggregation_strategy": "max"}},
         "ner", ["t", "u"], NERParams(Aggregation.MAX)),
        (HFTask.TOKEN_CLASSIFICATION,
         {"inputs": "t", "parameters": {"aggregation_strategy": "none"}},
         "ner", ["t"], NERParams(Aggregation.NONE)),
        (HFTask.FEATURE_EXTRACTION, {"inputs": ["a", "b"], "normalize": False, "truncate": True},
         "embed", ["a", "b"], EmbedParams(normalize=False)),
        (HFTask.FEATURE_EXTRACTION,  # 1.x and later: lower-case direction, encoding_format
         {"inputs": "a", "truncation_direction": "left", "encoding_format": "float"},
         "embed", ["a"], EmbedParams(truncation_direction="left")),
        (HFTask.FEATURE_EXTRACTION, {"inputs": "a", "truncation_direction": "Right"},
         "embed", ["a"], EmbedParams(truncation_direction="right")),
        (HFTask.FEATURE_EXTRACTION, {"inputs": "a", "truncate": False, "prompt_name": "query"},
         "embed", ["a"], EmbedParams(truncate=False, prompt_name="query")),
        (HFTask.SENTENCE_SIMILARITY, {"inputs": {"source_sentence": "s", "sentences": ["a", "b"]}},
         "similarity", ["s", "a", "b"], None),
    ],
)  # fmt: skip
async def test_payloads_become_typed_core_calls(task, payload, method, inputs, params) -> None:
    core = RecordingCore()
    await hf(core, task, payload, "m")
    assert (core.last.method, core.last.inputs, core.last.params) == (method, inputs, params)
    assert core.last.model == "m"


@pytest.mark.parametrize(
    ("task", "payload", "fragment"),
    [
        (HFTask.TEXT_CLASSIFICATION, {"inputs": "t", "parameters": {"function_to_apply": "none"}},
         "function_to_apply"),
        (HFTask.QUESTION_ANSWERING, {"inputs": {"question": "q", "context": "c"},
                                     "parameters": {"doc_stride": 3}}, "doc_stride"),
        (HFTask.SUMMARIZATION,
         {"inputs": "t", "parameters": {"generate_parameters": {"temperature": 0.5}}},
         "temperature"),
        (HFTask.TRANSLATION, {"inputs": "t"}, "tgt_lang"),
        (HFTask.TOKEN_CLASSIFICATION,
         {"inputs": "t", "parameters": {"aggregation_strategy": "longest"}},
         "parameters.aggregation_strategy"),
        (HFTask.TOKEN_CLASSIFICATION, {"inputs": "t", "parameters": {"ignore_labels": ["O"]}},
         "ignore_labels"),
        (HFTask.FEATURE_EXTRACTION, {"inputs": "t", "truncation_direction": "up"},
         "truncation_direction"),
        (HFTask.FEATURE_EXTRACTION, {"inputs": "t", "truncate": "maybe"}, "truncate"),
        (HFTask.FEATURE_EXTRACTION, {"inputs": "t", "dimensions": 8}, "/v1/embeddings"),
        (HFTask.FEATURE_EXTRACTION, {"inputs": "t", "encoding_format": "base64"},
         "encoding_format"),
        (HFTask.SENTENCE_SIMILARITY, {"inputs": {"source_sentence": "s"}}, "sentences"),
        (HFTask.SUMMARIZATION, {"text": "t"}, "inputs"),
        (HFTask.SUMMARIZATION, {"inputs": 3}, "inputs"),
        (HFTask.SUMMARIZATION, {"inputs": ["t", " "]}, r"inputs\[1\]: .*empty"),
        (HFTask.QUESTION_ANSWERING, {"inputs": {"question": "q", "context": ""}},
         "inputs.context"),
        (HFTask.ZERO_SHOT_CLASSIFICATION,
         {"inputs": "t", "parameters": {"candidate_labels": ["a", "a"]}},
         "parameters.candidate_labels"),
        (HFTask.TEXT_CLASSIFICATION, {"inputs": "t", "parameters": {"top_k": 0}},
         "parameters.top_k"),
        (HFTask.SUMMARIZATION, {"inputs": "t", "parameters": {"generate_parameters": {
            "min_new_tokens": 9, "max_new_tokens": 3}}}, "min_length"),
    ],
)  # fmt: skip
async def test_what_we_cannot_honour_is_refused_by_name(task, payload, fragment) -> None:
    core = RecordingCore()
    with pytest.raises(InvalidInput, match=fragment):
        await hf(core, task, payload)
    assert not core.calls


# The User-Agents the real clients send (InferenceClient and AsyncInferenceClient alike), as
# captured from huggingface_hub 0.36.2, 1.21.0 and 2.4.0.
HUB_0_36 = "unknown/None; hf_hub/0.36.2; python/3.11.7; torch/2.13.0+cpu"
HUB_1_21 = "unknown/None; hf_hub/1.21.0; python/3.11.7"
HUB_2_4 = "unknown/None; hf_hub/2.4.0; python/3.11.7; torch/2.13.0+cpu; agent/codex"


@pytest.mark.parametrize(
    ("user_agent", "generation"),
    [
        (HUB_0_36, ClientGeneration.HUB_0),
        ("transformers/4.57.6; hf_hub/0.20.3; python/3.11.7", ClientGeneration.HUB_0),
        ("hf_hub/0.36.0.dev0", ClientGeneration.HUB_0),
        (HUB_1_21, ClientGeneration.CURRENT),
        (HUB_2_4, ClientGeneration.CURRENT),
        ("unknown/None; hf_hub/10.0.0; python/3.13.1", ClientGeneration.CURRENT),
        (None, ClientGeneration.CURRENT),  # no User-Agent: the current shapes
        ("", ClientGeneration.CURRENT),
        ("python-httpx/0.28.1", ClientGeneration.CURRENT),
        ("curl/8.5.0", ClientGeneration.CURRENT),
        ("unknown/None; hf_hub/None; python/3.11.7", ClientGeneration.CURRENT),
        ("my-app/0.1 (not-hf_hub/0.36.2)", ClientGeneration.CURRENT),  # not the client's token
    ],
)  # fmt: skip
def test_the_generation_comes_from_the_user_agent(
    user_agent: str | None, generation: ClientGeneration
) -> None:
    assert client_generation(user_agent) is generation


SCORES = [LabelScore("a", 0.75), LabelScore("b", 0.25)]


async def test_zero_shot_takes_each_generations_shape() -> None:
    other = [LabelScore("b", 0.5), LabelScore("a", 0.5)]
    core = RecordingCore({"classify": [SCORES]})
    one = {"inputs": "t", "parameters": {"candidate_labels": ["a", "b"]}}
    two = {"inputs": ["t", "u"], "parameters": {"candidate_labels": ["a", "b"]}}
    task = HFTask.ZERO_SHOT_CLASSIFICATION
    legacy = ClientGeneration.HUB_0
    assert await hf(core, task, one, generation=legacy) == {
        "sequence": "t", "labels": ["a", "b"], "scores": [0.75, 0.25]}  # fmt: skip
    core.results["classify"] = [SCORES, other]
    assert await hf(core, task, two, generation=legacy) == [
        {"sequence": "t", "labels": ["a", "b"], "scores": [0.75, 0.25]},
        {"sequence": "u", "labels": ["b", "a"], "scores": [0.5, 0.5]},
    ]
    assert await hf(core, task, two) == [SCORES, other]
    core.results["classify"] = [SCORES]
    assert await hf(core, task, one) == SCORES


@pytest.mark.parametrize("generation", list(ClientGeneration))
async def test_the_other_answers_are_the_same_for_every_generation(
    generation: ClientGeneration,
) -> None:
    async def answer(task, payload, method, results):
        return await hf(RecordingCore({method: results}), task, payload, generation=generation)

    text = {"inputs": "t"}
    assert await answer(HFTask.TEXT_CLASSIFICATION, text, "classify", [SCORES]) == [SCORES]
    best = SCORES[0]
    assert await answer(HFTask.TEXT_CLASSIFICATION, text, "classify", [best]) == [[best]]
    found = Answer("x", 0.5, 0, 1)
    pair = {"inputs": {"question": "q", "context": "c"}}
    assert await answer(HFTask.QUESTION_ANSWERING, pair, "qa", [found]) == found
    assert await answer(HFTask.QUESTION_ANSWERING, pair, "qa", [[found, found]]) == [
        found, found]  # fmt: skip
    entity = Entity("PER", 0.9, "Ada", 0, 3)
    assert await answer(HFTask.TOKEN_CLASSIFICATION, text, "ner", [[entity]]) == [entity]
    assert await answer(HFTask.TOKEN_CLASSIFICATION, {"inputs": ["t", "u"]}, "ner",
                        [[entity], []]) == [[entity], []]  # fmt: skip
    token = TokenEntity("B-PER", 0.9, 1, "Ada", 0, 3)
    tokens = {"inputs": "t", "parameters": {"aggregation_strategy": "none"}}
    assert await answer(HFTask.TOKEN_CLASSIFICATION, tokens, "ner", [[token]]) == [token]
    summary = [{"summary_text": "s"}]
    assert await answer(HFTask.SUMMARIZATION, text, "summarize", summary) == summary
    vectors = [[0.5, 0.25]]
    assert await answer(HFTask.FEATURE_EXTRACTION, text, "embed", vectors) == vectors
    similar = {"inputs": {"source_sentence": "s", "sentences": ["a", "b"]}}
    assert await answer(HFTask.SENTENCE_SIMILARITY, similar, "similarity", [0.6, -1.0]) == [
        0.6, -1.0]  # fmt: skip


async def test_a_sentiment_model_answers_text_classification_with_top_k_labels() -> None:
    core = RecordingCore({"sentiment": [SCORES[0]]})
    task = HFTask.TEXT_CLASSIFICATION
    assert await hf(core, task, {"inputs": "t"}, "s", TaskName.SENTIMENT) == [[SCORES[0]]]
    assert core.last.params == SentimentParams()  # no top_k: its best label, as before
    payload = {"inputs": "t", "parameters": {"top_k": 2, "function_to_apply": "softmax"}}
    await hf(core, task, payload, "s", TaskName.SENTIMENT)
    assert (core.last.method, core.last.params) == ("sentiment", SentimentParams(top_k=2))
    sigmoid = {"inputs": "t", "parameters": {"function_to_apply": "sigmoid"}}
    with pytest.raises(InvalidInput, match="softmax over its labels"):
        await hf(core, task, sigmoid, "s", TaskName.SENTIMENT)
