from __future__ import annotations

import pytest

from app.errors import InvalidInput
from app.protocols.hf import HFTask, hf_answer, hf_task_of, native_body
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
        (HFTask.SENTENCE_SIMILARITY, {"inputs": {"source_sentence": "s"}}, "sentences"),
        (HFTask.SUMMARIZATION, {"text": "t"}, "inputs"),
        (HFTask.SUMMARIZATION, {"inputs": 3}, "inputs"),
    ],
)  # fmt: skip
def test_what_we_cannot_honour_is_refused_by_name(task, payload, fragment) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        native_body(task, payload, None)


def test_answers_take_the_shapes_the_client_parses() -> None:
    scores = [{"label": "a", "score": 0.75}, {"label": "b", "score": 0.25}]
    assert hf_answer(HFTask.TEXT_CLASSIFICATION, {"inputs": "t"}, [scores]) == [scores]
    assert hf_answer(HFTask.TEXT_CLASSIFICATION, {"inputs": "t"}, [scores[0]]) == [[scores[0]]]
    assert hf_answer(HFTask.ZERO_SHOT_CLASSIFICATION, {"inputs": "t"}, [scores]) == {
        "sequence": "t", "labels": ["a", "b"], "scores": [0.75, 0.25]}  # fmt: skip
    answer = {"answer": "x", "score": 0.5, "start": 0, "end": 1}
    assert hf_answer(HFTask.QUESTION_ANSWERING, {"inputs": {}}, [answer]) == answer
    assert hf_answer(HFTask.QUESTION_ANSWERING, {"inputs": {}}, [[answer, answer]]) == [
        answer, answer]  # fmt: skip
    assert hf_answer(HFTask.TOKEN_CLASSIFICATION, {"inputs": "t"}, [[answer]]) == [answer]
    similarity = hf_answer(HFTask.SENTENCE_SIMILARITY, {"inputs": []},
                           [[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0]])  # fmt: skip
    assert similarity == pytest.approx([0.6, -1.0])


def test_a_sentiment_model_answers_text_classification_with_its_best_label() -> None:
    payload = {"inputs": "t", "parameters": {"top_k": 1}}
    body = native_body(HFTask.TEXT_CLASSIFICATION, payload, "s", TaskName.SENTIMENT)
    assert body == {"model": "s", "inputs": "t"}
    with pytest.raises(InvalidInput, match="best label only"):
        native_body(HFTask.TEXT_CLASSIFICATION, {"inputs": "t", "parameters": {"top_k": 2}},
                    "s", TaskName.SENTIMENT)  # fmt: skip
