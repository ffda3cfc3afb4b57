from __future__ import annotations

import pytest

from app.errors import InvalidInput
from app.protocols.hf import (
    ClientGeneration,
    HFTask,
    client_generation,
    hf_answer,
    hf_task_of,
    native_body,
)
from app.spec import TaskName


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
    ("task", "payload", "native"),
    [
        (HFTask.TEXT_CLASSIFICATION, {"inputs": "t", "parameters": {"top_k": 2}},
         {"inputs": "t", "multi_label": False, "top_k": 2}),
        (HFTask.TEXT_CLASSIFICATION,
         {"inputs": "t", "parameters": {"function_to_apply": "sigmoid"}},
         {"inputs": "t", "multi_label": True}),
        (HFTask.ZERO_SHOT_CLASSIFICATION,
         {"inputs": "t", "parameters": {"candidate_labels": ["a", "b"], "multi_label": True}},
         {"inputs": "t", "candidate_labels": ["a", "b"], "multi_label": True}),
        (HFTask.QUESTION_ANSWERING,
         {"inputs": {"question": "q", "context": "c"}, "parameters": {"top_k": 2}},
         {"inputs": {"question": "q", "context": "c"}, "top_k": 2}),
        (HFTask.SUMMARIZATION,
         {"inputs": "t", "parameters": {"generate_parameters": {"max_new_tokens": 9}}},
         {"inputs": "t", "max_length": 9}),
        (HFTask.TRANSLATION,
         {"inputs": "t", "parameters": {"src_lang": "en", "tgt_lang": "de",
                                         "generate_parameters": {"max_new_tokens": 5}}},
         {"inputs": "t", "source_lang": "en", "target_lang": "de", "max_new_tokens": 5}),
        (HFTask.TOKEN_CLASSIFICATION,
         {"inputs": "t", "parameters": {"aggregation_strategy": "simple"}},
         {"inputs": "t"}),
        (HFTask.FEATURE_EXTRACTION, {"inputs": ["a", "b"], "normalize": False, "truncate": True},
         {"inputs": ["a", "b"], "normalize": False}),
        (HFTask.FEATURE_EXTRACTION,  # 1.x and later: lower-case direction, encoding_format
         {"inputs": "a", "truncation_direction": "right", "encoding_format": "float"},
         {"inputs": "a"}),
        (HFTask.FEATURE_EXTRACTION, {"inputs": "a", "truncation_direction": "Right"},
         {"inputs": "a"}),
        (HFTask.SENTENCE_SIMILARITY, {"inputs": {"source_sentence": "s", "sentences": ["a", "b"]}},
         {"inputs": ["s", "a", "b"], "normalize": True}),
    ],
)  # fmt: skip
def test_payloads_become_native_bodies(task, payload, native) -> None:
    assert native_body(task, payload, "m") == {"model": "m", **native}


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
         {"inputs": "t", "parameters": {"aggregation_strategy": "max"}},
         "aggregation_strategy"),
        (HFTask.FEATURE_EXTRACTION, {"inputs": "t", "truncate": False}, "truncate"),
        (HFTask.FEATURE_EXTRACTION, {"inputs": "t", "prompt_name": "query"}, "prompt_name"),
        (HFTask.FEATURE_EXTRACTION, {"inputs": "t", "dimensions": 8}, "/v1/embeddings"),
        (HFTask.FEATURE_EXTRACTION, {"inputs": "t", "encoding_format": "base64"},
         "encoding_format"),
        (HFTask.SENTENCE_SIMILARITY, {"inputs": {"source_sentence": "s"}}, "sentences"),
        (HFTask.SUMMARIZATION, {"text": "t"}, "inputs"),
        (HFTask.SUMMARIZATION, {"inputs": 3}, "inputs"),
    ],
)  # fmt: skip
def test_what_we_cannot_honour_is_refused_by_name(task, payload, fragment) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        native_body(task, payload, None)


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


SCORES = [{"label": "a", "score": 0.75}, {"label": "b", "score": 0.25}]


def test_zero_shot_takes_each_generations_shape() -> None:
    one, two = {"inputs": "t"}, {"inputs": ["t", "u"]}
    other = [{"label": "b", "score": 0.5}, {"label": "a", "score": 0.5}]
    legacy = ClientGeneration.HUB_0
    assert hf_answer(HFTask.ZERO_SHOT_CLASSIFICATION, one, [SCORES], legacy) == {
        "sequence": "t", "labels": ["a", "b"], "scores": [0.75, 0.25]}  # fmt: skip
    assert hf_answer(HFTask.ZERO_SHOT_CLASSIFICATION, two, [SCORES, other], legacy) == [
        {"sequence": "t", "labels": ["a", "b"], "scores": [0.75, 0.25]},
        {"sequence": "u", "labels": ["b", "a"], "scores": [0.5, 0.5]},
    ]
    current = ClientGeneration.CURRENT
    assert hf_answer(HFTask.ZERO_SHOT_CLASSIFICATION, one, [SCORES], current) == SCORES
    assert hf_answer(HFTask.ZERO_SHOT_CLASSIFICATION, two, [SCORES, other], current) == [
        SCORES, other]  # fmt: skip


@pytest.mark.parametrize("generation", list(ClientGeneration))
def test_the_other_answers_are_the_same_for_every_generation(
    generation: ClientGeneration,
) -> None:
    assert hf_answer(HFTask.TEXT_CLASSIFICATION, {"inputs": "t"}, [SCORES], generation) == [
        SCORES]  # fmt: skip
    best = SCORES[0]
    assert hf_answer(HFTask.TEXT_CLASSIFICATION, {"inputs": "t"}, [best], generation) == [[best]]
    answer = {"answer": "x", "score": 0.5, "start": 0, "end": 1}
    assert hf_answer(HFTask.QUESTION_ANSWERING, {"inputs": {}}, [answer], generation) == answer
    assert hf_answer(HFTask.QUESTION_ANSWERING, {"inputs": {}}, [[answer, answer]],
                     generation) == [answer, answer]  # fmt: skip
    entity = {"entity_group": "PER", "score": 0.9, "word": "Ada", "start": 0, "end": 3}
    assert hf_answer(HFTask.TOKEN_CLASSIFICATION, {"inputs": "t"}, [[entity]], generation) == [
        entity]  # fmt: skip
    summary = [{"summary_text": "s"}]
    assert hf_answer(HFTask.SUMMARIZATION, {"inputs": "t"}, summary, generation) == summary
    vectors = [[0.5, 0.25]]
    assert hf_answer(HFTask.FEATURE_EXTRACTION, {"inputs": "t"}, vectors, generation) == vectors
    similarity = hf_answer(HFTask.SENTENCE_SIMILARITY, {"inputs": []},
                           [[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0]], generation)  # fmt: skip
    assert similarity == pytest.approx([0.6, -1.0])


def test_a_sentiment_model_answers_text_classification_with_top_k_labels() -> None:
    best = native_body(HFTask.TEXT_CLASSIFICATION, {"inputs": "t"}, "s", TaskName.SENTIMENT)
    assert best == {"model": "s", "inputs": "t"}  # no top_k: its best label, as before
    payload = {"inputs": "t", "parameters": {"top_k": 2, "function_to_apply": "softmax"}}
    body = native_body(HFTask.TEXT_CLASSIFICATION, payload, "s", TaskName.SENTIMENT)
    assert body == {"model": "s", "inputs": "t", "top_k": 2}  # no multi_label: not a field there
    sigmoid = {"inputs": "t", "parameters": {"function_to_apply": "sigmoid"}}
    with pytest.raises(InvalidInput, match="softmax over its labels"):
        native_body(HFTask.TEXT_CLASSIFICATION, sigmoid, "s", TaskName.SENTIMENT)
