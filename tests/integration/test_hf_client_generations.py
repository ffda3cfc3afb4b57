"""Every huggingface_hub InferenceClient generation against one real server on 127.0.0.1.

0.36 (the project's pin) runs in the project venv; 1.21 and 2.4 each run in their own venv,
built once under .cache/client-venvs/ (tests/fixtures/client_venvs.py). hf_client_calls.py
makes every call the /hf routes serve with InferenceClient and AsyncInferenceClient and prints
what the client parsed; each answer is compared with the native route's answer on the same
server. The server tells the generations apart by their User-Agent only (app/protocols/hf.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from bench.common import serve
from tests.conftest import tiny_catalog
from tests.fixtures.client_venvs import client_answer, client_python
from tests.fixtures.tiny_models import SENTIMENT_LABELS

pytestmark = pytest.mark.integration

KEY = "generations-test-key"
VERSIONS = ("0.36.2", "1.21.0", "2.4.0")
SCRIPT = Path(__file__).with_name("hf_client_calls.py")
CALLS_TIMEOUT_S = 120
TEXTS = ["The team shipped the release.", "Ada Lovelace lived in London."]
LABELS = ["sports", "politics", "science"]
PAIR = {"question": "Where did Ada live?", "context": TEXTS[1]}


@pytest.fixture(scope="module")
def server(tiny_models: dict[str, Path]) -> Iterator[str]:
    env = {"NLP_SERVE_WARMUP": "false", "NLP_SERVE_API_KEYS": f'["{KEY}"]'}
    with serve(tiny_catalog(tiny_models, "fake"), env) as running:
        yield running.base


def native(server: str, route: str, body: dict[str, Any]) -> Any:
    """The first result of the native route for `body`."""
    headers = {"Authorization": f"Bearer {KEY}"}
    response = httpx.post(f"{server}{route}", json=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["results"][0]


def call(method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"method": method, "args": list(args), "kwargs": kwargs}


def calls(server: str) -> dict[str, dict[str, Any]]:
    """Every method the routes serve, at model URLs and task URLs."""
    model, task = f"{server}/hf/models", f"{server}/hf/tasks"
    return {
        "topics": call("text_classification", TEXTS[0], model=f"{model}/tiny-topics"),
        "topics_top_2": call("text_classification", TEXTS[0], top_k=2,
                             model=f"{task}/text-classification"),
        "sentiment": call("text_classification", TEXTS[0], model=f"{model}/tiny-sentiment"),
        "sentiment_top_2": call("text_classification", TEXTS[0], top_k=2,
                                model=f"{model}/tiny-sentiment"),
        "sentiment_top_5": call("text_classification", TEXTS[0], top_k=5,
                                model=f"{model}/tiny-sentiment"),
        "zero_shot": call("zero_shot_classification", TEXTS[0], LABELS,
                          model=f"{task}/zero-shot-classification"),
        "zero_shot_multi": call("zero_shot_classification", TEXTS[0], LABELS, multi_label=True,
                                model=f"{model}/tiny-nli"),
        "qa": call("question_answering", model=f"{task}/question-answering", **PAIR),
        "qa_top_2": call("question_answering", top_k=2, model=f"{model}/tiny-qa", **PAIR),
        "summary": call("summarization", TEXTS[0], generate_parameters={"max_new_tokens": 5},
                        model=f"{task}/summarization"),
        "translation": call("translation", TEXTS[0], src_lang="en", tgt_lang="fr",
                            model=f"{model}/tiny-translate"),
        "entities": call("token_classification", TEXTS[1], aggregation_strategy="simple",
                         model=f"{model}/tiny-ner"),
        "vector": call("feature_extraction", TEXTS[0], normalize=False,
                       model=f"{model}/tiny-embed"),
        "similarity": call("sentence_similarity", TEXTS[0], TEXTS,
                           model=f"{task}/sentence-similarity"),
        "tokens": call("token_classification", TEXTS[1], aggregation_strategy="none",
                       model=f"{model}/tiny-ner"),
        "refused": call("token_classification", TEXTS[1], ignore_labels=["O"],
                        model=f"{model}/tiny-ner"),
    }  # fmt: skip


def interpreter(version: str) -> Path:
    """The project venv's for its own pinned client; a cached venv of its own for the others."""
    if metadata.version("huggingface_hub") == version:
        return Path(sys.executable)
    # 0.x's AsyncInferenceClient runs on aiohttp (1.x and later on httpx, a dependency)
    extra = [f"numpy=={metadata.version('numpy')}", f"aiohttp=={metadata.version('aiohttp')}"]
    return client_python("huggingface_hub", version, *extra)


@pytest.fixture(scope="module", params=VERSIONS)
def report(request: pytest.FixtureRequest, server: str) -> dict[str, Any]:
    """What one client generation parsed, sync and async, for every call."""
    version = str(request.param)
    stdin = json.dumps({"api_key": KEY, "calls": calls(server)})
    done = subprocess.run(
        [str(interpreter(version)), str(SCRIPT)],
        input=stdin, capture_output=True, text=True, timeout=CALLS_TIMEOUT_S, check=False,
        env={**os.environ, "HF_HUB_DISABLE_TELEMETRY": "1"},
    )  # fmt: skip
    assert done.returncode == 0, f"huggingface_hub {version}: {done.stderr[-3000:]}"
    parsed: dict[str, Any] = json.loads(done.stdout)
    return {**parsed, "asked": version}


@pytest.fixture(params=["sync", "async"])
def parsed(request: pytest.FixtureRequest, report: dict[str, Any]) -> dict[str, Any]:
    answers: dict[str, Any] = report[str(request.param)]
    return answers


answer = client_answer


def labelled(items: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(item["label"], pytest.approx(item["score"], abs=1e-9)) for item in items]


def test_each_client_is_the_release_asked_for_and_says_so(report: dict[str, Any]) -> None:
    assert report["version"] == report["asked"]
    assert f"hf_hub/{report['asked']}" in report["user_agent"]  # what the server reads


def test_text_classification(server: str, parsed: dict[str, Any]) -> None:
    topics = native(server, "/v1/classify", {"model": "tiny-topics", "inputs": TEXTS[0]})
    got = answer(parsed, "topics")
    assert {item["_type"] for item in got} == {"TextClassificationOutputElement"}
    assert labelled(got) == labelled(topics)
    assert labelled(answer(parsed, "topics_top_2")) == labelled(topics[:2])


def test_text_classification_top_k_on_a_sentiment_model(
    server: str, parsed: dict[str, Any]
) -> None:
    best = native(server, "/v1/sentiment", {"inputs": TEXTS[0]})
    assert labelled(answer(parsed, "sentiment")) == labelled([best])
    both = answer(parsed, "sentiment_top_2")
    assert labelled(both) == labelled(native(server, "/v1/sentiment",
                                             {"inputs": TEXTS[0], "top_k": 2}))  # fmt: skip
    # every label once, best first, the softmax's scores: positive and summing to 1
    assert sorted(item["label"] for item in both) == sorted(SENTIMENT_LABELS)
    assert both[0]["label"] == best["label"]
    assert both[0]["score"] >= both[1]["score"] > 0
    assert sum(item["score"] for item in both) == pytest.approx(1.0, abs=1e-9)
    assert labelled(answer(parsed, "sentiment_top_5")) == labelled(both)  # up to its labels


def test_zero_shot_classification(server: str, parsed: dict[str, Any]) -> None:
    for name, multi in (("zero_shot", False), ("zero_shot_multi", True)):
        expected = native(server, "/v1/classify", {"model": "tiny-nli", "inputs": TEXTS[0],
                                                   "candidate_labels": LABELS,
                                                   "multi_label": multi})  # fmt: skip
        got = answer(parsed, name)
        assert {item["_type"] for item in got} == {"ZeroShotClassificationOutputElement"}
        assert labelled(got) == labelled(expected), name


def test_question_answering(server: str, parsed: dict[str, Any]) -> None:
    expected = native(server, "/v1/qa", {"model": "tiny-qa", "inputs": PAIR, "top_k": 2})

    def spans(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(a["answer"], pytest.approx(a["score"], abs=1e-9), a["start"], a["end"])
                for a in items]  # fmt: skip

    one = answer(parsed, "qa")
    assert one["_type"] == "QuestionAnsweringOutputElement"
    assert spans([one]) == spans(expected[:1])
    assert spans(answer(parsed, "qa_top_2")) == spans(expected)


def test_summarization_and_translation(server: str, parsed: dict[str, Any]) -> None:
    summary = native(server, "/v1/summarize", {"inputs": TEXTS[0], "max_length": 5})
    got = answer(parsed, "summary")
    assert (got["_type"], got["summary_text"]) == ("SummarizationOutput", summary["summary_text"])
    translation = native(server, "/v1/translate", {"inputs": TEXTS[0], "source_lang": "en",
                                                   "target_lang": "fr"})  # fmt: skip
    got = answer(parsed, "translation")
    assert got["_type"] == "TranslationOutput"
    assert got["translation_text"] == translation["translation_text"]


def test_token_classification(server: str, parsed: dict[str, Any]) -> None:
    expected = native(server, "/v1/ner", {"inputs": TEXTS[1]})
    got = answer(parsed, "entities")
    assert expected, "the tiny NER model finds entities in this text"
    assert {e["_type"] for e in got} == {"TokenClassificationOutputElement"}
    fields = ("entity_group", "word", "start", "end")
    assert [tuple(e[f] for f in fields) for e in got] == [
        tuple(e[f] for f in fields) for e in expected
    ]
    assert [e["score"] for e in got] == pytest.approx([e["score"] for e in expected], abs=1e-9)
    # aggregation_strategy "none": each token's label in the element's `entity`
    tokens = native(server, "/v1/ner", {"inputs": TEXTS[1], "aggregation_strategy": "none"})
    assert tokens, "the tiny NER model labels tokens in this text"
    fields = ("entity", "word", "start", "end")
    assert [tuple(e[f] for f in fields) for e in answer(parsed, "tokens")] == [
        tuple(e[f] for f in fields) for e in tokens
    ]


def test_feature_extraction_and_sentence_similarity(server: str, parsed: dict[str, Any]) -> None:
    vector = native(server, "/v1/embed", {"inputs": TEXTS[0], "normalize": False})
    got = answer(parsed, "vector")
    assert got["dtype"] == "float32"
    # one text: its vector as a one-row matrix, as the route has always answered
    assert np.array_equal(np.asarray(got["values"], dtype=np.float32),
                          np.asarray([vector], dtype=np.float32))  # fmt: skip
    headers = {"Authorization": f"Bearer {KEY}"}
    embedded = httpx.post(f"{server}/v1/embed", json={"inputs": TEXTS, "normalize": True},
                          headers=headers, timeout=30)  # fmt: skip
    vectors = np.asarray(embedded.json()["results"])
    assert answer(parsed, "similarity") == pytest.approx((vectors @ vectors[0]).tolist(), abs=1e-6)


def test_a_refusal_reaches_the_client_with_its_status(parsed: dict[str, Any]) -> None:
    refused = parsed["refused"]
    assert refused.get("_error"), refused
    assert refused["status"] == 422
    if refused["_error"] != "ClientResponseError":  # 0.36's async client keeps only the status
        assert "ignore_labels" in refused["message"]
