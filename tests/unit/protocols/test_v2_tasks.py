from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app.errors import InvalidInput
from app.protocols.v2_codec import InferRequest, Tensor
from app.protocols.v2_tasks import (
    OUTPUTS,
    check_version,
    model_metadata,
    native_body,
    output_tensors,
)
from app.spec import TaskName


def request(parameters=None, **texts: list[str]) -> InferRequest:
    tensors = [
        Tensor(name, "BYTES", [len(v)], [t.encode() for t in v]) for name, v in texts.items()
    ]
    return InferRequest(inputs=tensors, outputs=None, parameters=parameters or {})


def test_every_task_declares_its_tensors() -> None:
    for task in OUTPUTS:
        meta = model_metadata("m", task, "nlp-serve/torch", 8)
        assert meta["inputs"], task
        assert meta["outputs"], task
        assert all(t["datatype"] == "BYTES" for t in meta["inputs"])
    assert model_metadata("m", TaskName.EMBED, "p", 8)["outputs"][0]["shape"] == [-1, 8]


def test_bodies_carry_texts_and_parameters() -> None:
    body = native_body(
        TaskName.CLASSIFY,
        request({"candidate_labels": "a, b", "binary_data_output": True}, TEXT=["x", "y"]),
        "m",
    )
    assert body == {"model": "m", "inputs": ["x", "y"], "candidate_labels": ["a", "b"]}
    qa = native_body(TaskName.QA, request(QUESTION=["q"], CONTEXT=["c"]), "m")
    assert qa["inputs"] == [{"question": "q", "context": "c"}]


@pytest.mark.parametrize(
    ("task", "req", "fragment"),
    [
        (TaskName.SENTIMENT, request({"top_k": 3}, TEXT=["x"]), "top_k"),
        (TaskName.SENTIMENT, request(TEXT=["x"], OTHER=["y"]), "OTHER"),
        (TaskName.SENTIMENT, request(WORDS=["x"]), "WORDS"),
        (TaskName.QA, request(QUESTION=["q", "r"], CONTEXT=["c"]), "one context per question"),
        (TaskName.QA, request(QUESTION=["q"]), "CONTEXT"),
    ],
)
def test_bad_requests_are_refused_by_name(task, req, fragment) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        native_body(task, req, "m")


def test_versions() -> None:
    check_version("m", None)
    check_version("m", "1")
    with pytest.raises(InvalidInput, match="only version '1'"):
        check_version("m", "2")


def test_outputs_follow_the_declared_tensors() -> None:
    scores = [[{"label": "a", "score": 0.5}, {"label": "b", "score": 0.25}]] * 2
    labels, values = output_tensors(TaskName.CLASSIFY, scores)
    assert labels.shape == [2, 2]
    assert list(labels.data) == ["a", "b", "a", "b"]
    assert np.asarray(values.data).dtype == np.float32
    entities = [[{"entity_group": "PER", "word": "Ada", "score": 0.9, "start": 0, "end": 3}], []]
    ner = {t.name: t for t in output_tensors(TaskName.NER, entities)}
    assert ner["INPUT_INDEX"].shape == [1]
    assert list(ner["INPUT_INDEX"].data) == [0]
    (embedding,) = output_tensors(TaskName.EMBED, [[1.0, 2.0], [3.0, 4.0]])
    assert embedding.shape == [2, 2]
    cases: list[tuple[TaskName, list[Any]]] = [
        (TaskName.SENTIMENT, [{"label": "a", "score": 1.0}]),
        (TaskName.QA, [{"answer": "x", "score": 1.0, "start": 0, "end": 1}]),
        (TaskName.TRANSLATE, [{"translation_text": "x"}]),
        (TaskName.SUMMARIZE, [{"summary_text": "x"}]),
    ]
    for task, results in cases:
        produced = [(t.name, t.datatype) for t in output_tensors(task, results)]
        assert produced == [(s.name, s.datatype) for s in OUTPUTS[task]]
    assert set(OUTPUTS) == set(TaskName) - {TaskName.FILL_MASK}  # native route only
    with pytest.raises(InvalidInput, match="POST /v1/fill-mask"):
        model_metadata("m", TaskName.FILL_MASK, "nlp-serve/torch", None)


def test_ragged_answers_are_refused() -> None:
    with pytest.raises(InvalidInput, match="different numbers"):
        output_tensors(TaskName.CLASSIFY, [[{"label": "a", "score": 1.0}], []])
