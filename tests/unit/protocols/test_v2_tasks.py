from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app.errors import InvalidInput
from app.protocols.v2_codec import InferRequest, Tensor
from app.protocols.v2_tasks import OUTPUTS, check_version, infer, model_metadata, output_tensors
from app.spec import TaskName
from app.tasks.classification import ClassifyParams, LabelScore, SentimentParams
from app.tasks.embed import EmbedParams
from app.tasks.generation import Summary, TranslateParams, Translation
from app.tasks.ner import Aggregation, Entity, NERParams, TokenEntity
from app.tasks.qa import Answer, QAItem, QAParams
from tests.unit.protocols.recording_core import CALL, RecordingCore


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


async def test_requests_become_typed_core_calls() -> None:
    core = RecordingCore()
    parameters = {"candidate_labels": "a, b", "binary_data_output": True}
    await infer(core, TaskName.CLASSIFY, request(parameters, TEXT=["x", "y"]), "m", CALL)  # type: ignore[arg-type]
    assert core.last.method == "classify"
    assert (core.last.inputs, core.last.model) == (["x", "y"], "m")
    assert core.last.params == ClassifyParams(candidate_labels=("a", "b"))
    await infer(core, TaskName.QA, request(QUESTION=["q"], CONTEXT=["c"]), "m", CALL)  # type: ignore[arg-type]
    assert (core.last.inputs, core.last.params) == ([QAItem("q", "c")], QAParams())
    await infer(core, TaskName.SENTIMENT, request(TEXT=["x"]), "m", CALL)  # type: ignore[arg-type]
    assert core.last.params == SentimentParams()
    translate = request({"target_lang": "de", "max_new_tokens": 7}, TEXT=["x"])
    await infer(core, TaskName.TRANSLATE, translate, "m", CALL)  # type: ignore[arg-type]
    assert core.last.params == TranslateParams("de", None, 7)
    await infer(core, TaskName.EMBED, request({"normalize": False}, TEXT=["x"]), "m", CALL)  # type: ignore[arg-type]
    assert core.last.params == EmbedParams(normalize=False)
    await infer(core, TaskName.NER, request(TEXT=["x"]), "m", CALL)  # type: ignore[arg-type]
    assert core.last.params == NERParams()
    ner = request({"aggregation_strategy": "first"}, TEXT=["x"])
    await infer(core, TaskName.NER, ner, "m", CALL)  # type: ignore[arg-type]
    assert core.last.params == NERParams(Aggregation.FIRST)


@pytest.mark.parametrize(
    ("task", "req", "fragment"),
    [
        (TaskName.SENTIMENT, request({"top_k": 3}, TEXT=["x"]), "top_k"),
        (TaskName.SENTIMENT, request(TEXT=["x"], OTHER=["y"]), "OTHER"),
        (TaskName.SENTIMENT, request(WORDS=["x"]), "WORDS"),
        (TaskName.QA, request(QUESTION=["q", "r"], CONTEXT=["c"]), "one context per question"),
        (TaskName.QA, request(QUESTION=["q"]), "CONTEXT"),
        (TaskName.SENTIMENT, request(TEXT=["x", "\u200b "]), r"TEXT\[1\]: .*empty"),
        (TaskName.CLASSIFY, request({"top_k": 0}, TEXT=["x"]), "parameters.top_k"),
        (TaskName.SUMMARIZE, request({"min_length": 9, "max_length": 3}, TEXT=["x"]),
         "min_length"),
        (TaskName.FILL_MASK, request(TEXT=["x"]), "POST /v1/fill-mask"),
        (TaskName.SENTIMENT, request({"timeout": 0}, TEXT=["x"]), "microseconds"),
        (TaskName.SENTIMENT, request({"timeout": "soon"}, TEXT=["x"]), "microseconds"),
        (TaskName.NER, request({"aggregation_strategy": "all"}, TEXT=["x"]),
         "parameters.aggregation_strategy"),
    ],
)  # fmt: skip
async def test_bad_requests_are_refused_by_name(task, req, fragment) -> None:
    core = RecordingCore()
    with pytest.raises(InvalidInput, match=fragment):
        await infer(core, task, req, "m", CALL)  # type: ignore[arg-type]
    assert not core.calls


def test_versions() -> None:
    check_version("m", None)
    check_version("m", "1")
    with pytest.raises(InvalidInput, match="only version '1'"):
        check_version("m", "2")


def test_outputs_follow_the_declared_tensors() -> None:
    scores = [[LabelScore("a", 0.5), LabelScore("b", 0.25)]] * 2
    labels, values = output_tensors(TaskName.CLASSIFY, scores)
    assert labels.shape == [2, 2]
    assert list(labels.data) == ["a", "b", "a", "b"]
    assert np.asarray(values.data).dtype == np.float32
    entities = [[Entity("PER", 0.9, "Ada", 0, 3)], []]
    ner = {t.name: t for t in output_tensors(TaskName.NER, entities)}
    assert ner["INPUT_INDEX"].shape == [1]
    assert list(ner["INPUT_INDEX"].data) == [0]
    assert list(ner["WORD"].data) == ["Ada"]
    tokens = [[TokenEntity("B-PER", 0.9, 1, "Ada", 0, 3), TokenEntity("I-PER", 0.8, 2, "L", 4, 5)]]
    by_token = {t.name: t for t in output_tensors(TaskName.NER, tokens)}
    assert list(by_token["ENTITY_GROUP"].data) == ["B-PER", "I-PER"]  # "none": token labels
    assert list(by_token["START"].data) == [0, 4]
    (embedding,) = output_tensors(TaskName.EMBED, [[1.0, 2.0], [3.0, 4.0]])
    assert embedding.shape == [2, 2]
    cases: list[tuple[TaskName, list[Any]]] = [
        (TaskName.SENTIMENT, [LabelScore("a", 1.0)]),
        (TaskName.QA, [Answer("x", 1.0, 0, 1)]),
        (TaskName.TRANSLATE, [Translation("x")]),
        (TaskName.SUMMARIZE, [Summary("x")]),
    ]
    for task, results in cases:
        produced = [(t.name, t.datatype) for t in output_tensors(task, results)]
        assert produced == [(s.name, s.datatype) for s in OUTPUTS[task]]
    assert TaskName.FILL_MASK not in OUTPUTS  # native route only
    with pytest.raises(InvalidInput, match="POST /v1/fill-mask"):
        model_metadata("m", TaskName.FILL_MASK, "nlp-serve/torch", None)


def test_ragged_answers_are_refused() -> None:
    with pytest.raises(InvalidInput, match="different numbers"):
        output_tensors(TaskName.CLASSIFY, [[LabelScore("a", 1.0)], []])


async def test_tritons_timeout_parameter_only_shortens_the_deadline() -> None:
    import time

    from app.core import CallContext

    core = RecordingCore()
    far = CallContext(deadline=time.monotonic() + 60)
    await infer(core, TaskName.SENTIMENT, request({"timeout": 200_000}, TEXT=["x"]), "m", far)  # type: ignore[arg-type]
    assert far.deadline - time.monotonic() == pytest.approx(0.2, abs=0.05)
    near = CallContext(deadline=time.monotonic() + 0.05)
    before = near.deadline
    await infer(core, TaskName.SENTIMENT, request({"timeout": 10**9}, TEXT=["x"]), "m", near)  # type: ignore[arg-type]
    assert near.deadline == before
