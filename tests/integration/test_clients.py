"""The real clients (openai, huggingface_hub, tritonclient) against one real server on 127.0.0.1.

Every answer is compared with the native route's answer for the same input, on the same
server. The models are the tiny ones on the deterministic fake backend: this checks the wire
protocols, not the models. One server for the whole module keeps it to a few seconds.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import numpy as np
import openai
import pytest
import tritonclient.http as triton
import tritonclient.http.aio as triton_aio
from huggingface_hub import AsyncInferenceClient, InferenceClient
from huggingface_hub.errors import HfHubHTTPError
from tritonclient.utils import InferenceServerException

from bench.common import serve
from tests.conftest import tiny_catalog

pytestmark = pytest.mark.integration

KEY = "client-test-key"


def auth() -> dict[str, str]:
    """A fresh dict each time: tritonclient adds its own headers to the one it is given."""
    return {"Authorization": f"Bearer {KEY}"}


TEXTS = ["The team shipped the release.", "Ada Lovelace lived in London."]
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def server(tiny_models: dict[str, Path]) -> Iterator[str]:
    models = tiny_catalog(tiny_models, "fake")
    models.append(
        {
            "name": "slow-embed",
            "task": "embed",
            "source": str(tiny_models["encoder"]),
            "backend": "fake",
            "backend_options": {"delay_ms": 500},
            "batching": {"max_batch_size": 1, "max_queue": 1, "max_wait_ms": 0},
        }
    )
    models.append({"name": "mrl-embed", "task": "embed", "source": str(tiny_models["encoder"]),
                   "backend": "fake", "options": {"matryoshka_dimensions": [8]}})  # fmt: skip
    models.append({"name": "poison-embed", "task": "embed", "source": str(tiny_models["encoder"]),
                   "backend": "fake", "backend_options": {"fail_token": "poison"}})  # fmt: skip
    env = {
        "NLP_SERVE_WARMUP": "false",
        "NLP_SERVE_API_KEYS": f'["{KEY}"]',
        "NLP_SERVE_MAX_BODY_BYTES": str(MAX_BODY),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    with serve(models, env) as running:
        yield running.base


@pytest.fixture(autouse=True)
def _no_hub_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_DISABLE_TELEMETRY", True)


def native(server: str, route: str, body: dict[str, Any]) -> list[Any]:
    response = httpx.post(f"{server}{route}", json=body, headers=auth(), timeout=30)
    assert response.status_code == 200, response.text
    results: list[Any] = response.json()["results"]
    return results


def metric(server: str, name: str, **labels: str) -> float:
    """The sum of a metric's series whose labels include `labels` (any label order)."""
    wanted = {f'{key}="{value}"' for key, value in labels.items()}
    total = 0.0
    for line in httpx.get(f"{server}/metrics", timeout=10).text.splitlines():
        series, _, value = line.rpartition(" ")
        if series.split("{", 1)[0] != name:
            continue
        have = set(series.partition("{")[2].rstrip("}").split(","))
        if wanted <= have:
            total += float(value)
    return total


# --- OpenAI ------------------------------------------------------------------------------------


def openai_client(server: str, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, **kwargs)


def test_openai_default_base64_decodes_to_the_native_vectors(server: str) -> None:
    client = openai_client(server)
    expected = np.asarray(native(server, "/v1/embed", {"model": "tiny-embed", "inputs": TEXTS}))
    raw = client.embeddings.with_raw_response.create(model="tiny-embed", input=TEXTS)
    assert all(isinstance(d["embedding"], str) for d in raw.http_response.json()["data"])
    result = raw.parse()
    assert result.model == "tiny-embed"
    assert [d.index for d in result.data] == [0, 1]
    got = np.asarray([d.embedding for d in result.data], dtype=np.float32)
    assert np.array_equal(got, expected.astype(np.float32))  # bit for bit


def test_openai_float_is_the_native_vectors(server: str) -> None:
    expected = native(server, "/v1/embed", {"model": "tiny-embed", "inputs": TEXTS})
    result = openai_client(server).embeddings.create(
        model="tiny-embed", input=TEXTS, encoding_format="float"
    )
    assert [d.embedding for d in result.data] == expected
    assert result.object == "list"


async def test_openai_async_both_formats(server: str) -> None:
    expected = np.asarray(native(server, "/v1/embed", {"model": "tiny-embed", "inputs": TEXTS}))
    client = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key=KEY)
    default, floats = await asyncio.gather(
        client.embeddings.create(model="tiny-embed", input=TEXTS),
        client.embeddings.create(model="tiny-embed", input=TEXTS[0], encoding_format="float"),
    )
    got = np.asarray([d.embedding for d in default.data], dtype=np.float32)
    assert np.array_equal(got, expected.astype(np.float32))
    # one text alone vs the same text in a batch: equal up to float rounding, not bit for bit
    assert np.allclose(floats.data[0].embedding, expected[0], rtol=0, atol=1e-6)
    await client.close()


def test_openai_token_ids_usage_and_dimensions(server: str, tiny_models: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_models["encoder"]))
    ids = [tokenizer(text)["input_ids"] for text in TEXTS]  # special tokens included
    expected = native(server, "/v1/embed", {"model": "tiny-embed", "inputs": TEXTS})
    client = openai_client(server)
    by_ids = client.embeddings.create(model="tiny-embed", input=ids, encoding_format="float")
    assert [d.embedding for d in by_ids.data] == expected
    assert by_ids.usage.prompt_tokens == by_ids.usage.total_tokens == sum(map(len, ids))
    one = client.embeddings.create(model="tiny-embed", input=ids[0], encoding_format="float")
    assert np.allclose(one.data[0].embedding, expected[0], rtol=0, atol=1e-6)  # alone vs batched
    by_text = client.embeddings.create(model="tiny-embed", input=TEXTS, encoding_format="float")
    assert by_text.usage.prompt_tokens == sum(map(len, ids))

    full = np.asarray(native(server, "/v1/embed", {"model": "mrl-embed", "inputs": TEXTS}))
    short = client.embeddings.create(model="mrl-embed", input=TEXTS, dimensions=8)
    got = np.asarray([d.embedding for d in short.data])
    want = full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True)
    assert got.shape == (2, 8)
    assert got == pytest.approx(want.astype(np.float32), abs=1e-7)
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        client.embeddings.create(model="tiny-embed", input=TEXTS, dimensions=8)
    assert refused.value.param == "dimensions"
    assert "matryoshka_dimensions" in refused.value.message
    with pytest.raises(openai.UnprocessableEntityError) as outside:
        client.embeddings.create(model="tiny-embed", input=[[10**9]])
    assert "vocabulary" in outside.value.message


def test_openai_typed_errors(server: str) -> None:
    client = openai_client(server, max_retries=0)
    with pytest.raises(openai.NotFoundError) as missing:
        client.embeddings.create(model="no-such-model", input="x")
    assert missing.value.code == "model_not_found"
    assert "no-such-model" in missing.value.message
    with pytest.raises(openai.UnprocessableEntityError) as wrong_task:
        client.embeddings.create(model="tiny-sentiment", input="x")
    assert wrong_task.value.type == "invalid_request_error"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server}/v1", api_key="wrong").embeddings.create(
            model="tiny-embed", input="x"
        )
    with pytest.raises(openai.APIStatusError) as too_large:
        client.embeddings.create(model="tiny-embed", input="x" * MAX_BODY)
    assert too_large.value.status_code == 413
    assert too_large.value.code == "payload_too_large"


def test_openai_does_not_retry_a_failing_input(server: str) -> None:
    before = metric(server, "nlp_serve_requests_total", model="poison-embed")
    with pytest.raises(openai.InternalServerError) as failed:
        openai_client(server, max_retries=2).embeddings.create(model="poison-embed", input="poison")
    assert failed.value.response.headers["x-should-retry"] == "false"
    assert metric(server, "nlp_serve_requests_total", model="poison-embed") == before + 1


async def test_openai_full_queue_is_a_retryable_rate_limit(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, headers=auth(), timeout=30) as http:
        batches = metric(server, "nlp_serve_batch_size_count", model="slow-embed")
        running = asyncio.create_task(
            http.post("/v1/embed", json={"model": "slow-embed", "inputs": "runs"})
        )
        for _ in range(200):  # bounded: ~2 s
            if metric(server, "nlp_serve_batch_size_count", model="slow-embed") > batches:
                break
            await asyncio.sleep(0.01)
        waiting = asyncio.create_task(
            http.post("/v1/embed", json={"model": "slow-embed", "inputs": "waits"})
        )
        for _ in range(200):
            models = (await http.get("/v1/models")).json()["models"]
            if next(m for m in models if m["name"] == "slow-embed")["queue_depth"] >= 1:
                break
            await asyncio.sleep(0.01)
        client = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)
        with pytest.raises(openai.RateLimitError) as limited:
            await client.embeddings.create(model="slow-embed", input="one too many")
        assert int(limited.value.response.headers["retry-after"]) >= 1
        assert "x-should-retry" not in limited.value.response.headers  # the client may retry
        assert (await running).status_code == 200
        assert (await waiting).status_code == 200
        await client.close()


async def test_deadlines_hold_on_every_surface(server: str) -> None:
    """X-Request-Timeout-Ms shortens the deadline on each surface: 504 in its own envelope."""
    short = {**auth(), "X-Request-Timeout-Ms": "50"}
    tensor = {"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": ["late"]}
    calls = [
        ("/v1/embeddings", {"model": "slow-embed", "input": "late"}),
        ("/hf/models/slow-embed", {"inputs": "late"}),
        ("/v2/models/slow-embed/infer", {"inputs": [tensor]}),
    ]
    async with httpx.AsyncClient(base_url=server, headers=auth(), timeout=30) as http:
        for path, body in calls:
            busy = asyncio.create_task(
                http.post("/v1/embed", json={"model": "slow-embed", "inputs": "busy"})
            )
            await asyncio.sleep(0.05)  # let it reach the model (500 ms per batch)
            late = await http.post(path, json=body, headers=short)
            assert late.status_code == 504, (path, late.text)
            error = late.json()["error"]
            message = error["message"] if isinstance(error, dict) else error
            assert "X-Request-Timeout-Ms" in message, path
            assert (await busy).status_code == 200


# --- Hugging Face InferenceClient --------------------------------------------------------------


async def call(client: InferenceClient | AsyncInferenceClient, method: str, *args: Any,
               **kwargs: Any) -> Any:  # fmt: skip
    result = getattr(client, method)(*args, **kwargs)
    return await result if inspect.isawaitable(result) else result


@pytest.fixture(params=["sync", "async"])
def hf(request: pytest.FixtureRequest, server: str) -> InferenceClient | AsyncInferenceClient:
    cls = InferenceClient if request.param == "sync" else AsyncInferenceClient
    return cls(api_key=KEY, timeout=30)


def model_url(server: str, name: str) -> str:
    return f"{server}/hf/models/{name}"


def task_url(server: str, task: str) -> str:
    return f"{server}/hf/tasks/{task}"


def scores(items: Any) -> list[tuple[str, float]]:
    return [(item["label"], item["score"]) for item in items]


async def test_hf_text_classification(server: str, hf: Any) -> None:
    expected = native(server, "/v1/classify", {"model": "tiny-topics", "inputs": TEXTS[0]})[0]
    got = await call(hf, "text_classification", TEXTS[0], model=model_url(server, "tiny-topics"))
    assert [(e.label, e.score) for e in got] == scores(expected)
    by_task = await call(hf, "text_classification", TEXTS[0], top_k=2,
                         model=task_url(server, "text-classification"))  # fmt: skip
    assert [(e.label, e.score) for e in by_task] == scores(expected)[:2]
    sentiment = native(server, "/v1/sentiment", {"inputs": TEXTS[0]})[0]
    best = await call(
        hf, "text_classification", TEXTS[0], model=model_url(server, "tiny-sentiment")
    )
    assert [(e.label, e.score) for e in best] == [(sentiment["label"], sentiment["score"])]
    ranked = native(server, "/v1/sentiment", {"inputs": TEXTS[0], "top_k": 2})[0]
    both = await call(
        hf, "text_classification", TEXTS[0], top_k=2, model=model_url(server, "tiny-sentiment")
    )
    assert [(e.label, e.score) for e in both] == scores(ranked)  # every label, best first


async def test_hf_zero_shot_classification(server: str, hf: Any) -> None:
    labels = ["sports", "politics", "science"]
    expected = native(server, "/v1/classify", {"inputs": TEXTS[0], "candidate_labels": labels,
                                               "multi_label": True})[0]  # fmt: skip
    for url in (task_url(server, "zero-shot-classification"), model_url(server, "tiny-nli")):
        got = await call(hf, "zero_shot_classification", TEXTS[0], labels, multi_label=True,
                         model=url)  # fmt: skip
        assert [(e.label, e.score) for e in got] == scores(expected)


async def test_hf_question_answering(server: str, hf: Any) -> None:
    pair = {"question": "Where did Ada live?", "context": TEXTS[1]}
    expected = native(server, "/v1/qa", {"inputs": pair, "top_k": 2})
    got = await call(hf, "question_answering", top_k=2,
                     model=model_url(server, "tiny-qa"), **pair)  # fmt: skip
    assert [(a.answer, a.score, a.start, a.end) for a in got] == [
        (a["answer"], a["score"], a["start"], a["end"]) for a in expected[0]
    ]
    one = await call(hf, "question_answering", model=task_url(server, "question-answering"), **pair)
    assert (one.answer, one.start, one.end) == (
        expected[0][0]["answer"], expected[0][0]["start"], expected[0][0]["end"])  # fmt: skip


async def test_hf_summarization_and_translation(server: str, hf: Any) -> None:
    summary = native(server, "/v1/summarize", {"inputs": TEXTS[0], "max_length": 5})[0]
    got = await call(hf, "summarization", TEXTS[0], generate_parameters={"max_new_tokens": 5},
                     model=task_url(server, "summarization"))  # fmt: skip
    assert got.summary_text == summary["summary_text"]
    translation = native(server, "/v1/translate", {"inputs": TEXTS[0], "source_lang": "en",
                                                   "target_lang": "fr"})[0]  # fmt: skip
    got = await call(hf, "translation", TEXTS[0], src_lang="en", tgt_lang="fr",
                     model=model_url(server, "tiny-translate"))  # fmt: skip
    assert got.translation_text == translation["translation_text"]


async def test_hf_token_classification(server: str, hf: Any) -> None:
    expected = native(server, "/v1/ner", {"inputs": TEXTS[1]})[0]
    got = await call(hf, "token_classification", TEXTS[1], aggregation_strategy="simple",
                     model=model_url(server, "tiny-ner"))  # fmt: skip
    assert [(e.entity_group, e.word, e.start, e.end, e.score) for e in got] == [
        (e["entity_group"], e["word"], e["start"], e["end"], e["score"]) for e in expected
    ]
    for strategy, key in (("first", "entity_group"), ("none", "entity")):
        body = {"inputs": TEXTS[1], "aggregation_strategy": strategy}
        expected = native(server, "/v1/ner", body)[0]
        got = await call(hf, "token_classification", TEXTS[1], aggregation_strategy=strategy,
                         model=model_url(server, "tiny-ner"))  # fmt: skip
        assert expected, strategy
        assert [(getattr(e, key), e.word, e.start, e.end, e.score) for e in got] == [
            (e[key], e["word"], e["start"], e["end"], e["score"]) for e in expected
        ]


async def test_hf_feature_extraction_and_sentence_similarity(server: str, hf: Any) -> None:
    expected = np.asarray(native(server, "/v1/embed", {"inputs": TEXTS[0], "normalize": False}))
    got = await call(hf, "feature_extraction", TEXTS[0], normalize=False,
                     model=model_url(server, "tiny-embed"))  # fmt: skip
    assert got.dtype == np.float32
    assert np.array_equal(got, expected.astype(np.float32))
    vectors = np.asarray(native(server, "/v1/embed", {"inputs": TEXTS, "normalize": True}))
    similarity = await call(hf, "sentence_similarity", TEXTS[0], TEXTS,
                            model=task_url(server, "sentence-similarity"))  # fmt: skip
    assert similarity == pytest.approx((vectors @ vectors[0]).tolist(), abs=1e-9)


async def test_hf_errors_carry_the_status_and_message(server: str, hf: Any) -> None:
    # InferenceClient raises HfHubHTTPError with our message; AsyncInferenceClient (0.36)
    # raises aiohttp's ClientResponseError, which keeps only the status.
    errors = (HfHubHTTPError, aiohttp.ClientResponseError)

    def status(error: BaseException) -> int:
        if isinstance(error, HfHubHTTPError):
            assert error.response is not None
            return int(error.response.status_code)
        assert isinstance(error, aiohttp.ClientResponseError)
        return error.status

    with pytest.raises(errors) as missing:
        await call(hf, "text_classification", "x", model=model_url(server, "no-such-model"))
    assert status(missing.value) == 404
    with pytest.raises(errors) as refused:
        await call(hf, "token_classification", "x", ignore_labels=["O"],
                   model=model_url(server, "tiny-ner"))  # fmt: skip
    assert status(refused.value) == 422
    if isinstance(hf, InferenceClient):
        assert "no-such-model" in str(missing.value)
        assert "ignore_labels" in str(refused.value)
    with pytest.raises(HfHubHTTPError) as unauthorized:
        InferenceClient(api_key="wrong").text_classification(
            "x", model=model_url(server, "tiny-topics")
        )
    assert unauthorized.value.response is not None
    assert unauthorized.value.response.status_code == 401


# --- Open Inference Protocol v2: tritonclient ---------------------------------------------------


def text_input(name: str, texts: list[str], binary: bool) -> triton.InferInput:
    tensor = triton.InferInput(name, [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=object), binary)
    return tensor


def triton_client(server: str) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=server.removeprefix("http://"))


def test_triton_health_and_metadata(server: str) -> None:
    client = triton_client(server)
    assert client.is_server_live()
    assert client.is_server_ready()
    # the probes need no key; server metadata, like every other route, does
    assert client.get_server_metadata(headers=auth())["extensions"] == ["binary_tensor_data"]
    assert client.is_model_ready("tiny-qa", headers=auth())
    assert client.is_model_ready("tiny-qa", "1", headers=auth())
    assert not client.is_model_ready("no-such-model", headers=auth())
    meta = client.get_model_metadata("tiny-qa", headers=auth())
    assert [i["name"] for i in meta["inputs"]] == ["QUESTION", "CONTEXT"]
    assert [o["name"] for o in meta["outputs"]] == ["ANSWER", "SCORE", "START", "END"]
    client.close()


@pytest.mark.parametrize("binary", [False, True])
def test_triton_sentiment_json_and_binary(server: str, binary: bool) -> None:
    expected = native(server, "/v1/sentiment", {"model": "tiny-sentiment", "inputs": TEXTS})
    client = triton_client(server)
    result = client.infer(
        "tiny-sentiment",
        [text_input("TEXT", TEXTS, binary)],
        outputs=[triton.InferRequestedOutput(n, binary_data=binary) for n in ("LABEL", "SCORE")],
        headers=auth(),
    )
    labels = [x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("LABEL")]
    assert labels == [e["label"] for e in expected]
    assert np.array_equal(
        result.as_numpy("SCORE"), np.asarray([e["score"] for e in expected], dtype=np.float32)
    )
    client.close()


def test_triton_default_outputs_are_binary(server: str) -> None:
    """No outputs named: tritonclient sets binary_data_output and gets every output."""
    expected = native(server, "/v1/embed", {"model": "tiny-embed", "inputs": TEXTS})
    client = triton_client(server)
    result = client.infer("tiny-embed", [text_input("TEXT", TEXTS, True)], "1", headers=auth())
    assert result.get_output("EMBEDDING")["parameters"]["binary_data_size"] > 0
    assert np.array_equal(result.as_numpy("EMBEDDING"), np.asarray(expected, dtype=np.float32))
    pairs = {"question": "Where did Ada live?", "context": TEXTS[1]}
    answer = native(server, "/v1/qa", {"inputs": pairs})[0]
    qa = client.infer("tiny-qa", [text_input("QUESTION", [pairs["question"]], True),
                                  text_input("CONTEXT", [pairs["context"]], False)],
                      headers=auth())  # fmt: skip
    assert qa.as_numpy("ANSWER")[0].decode() == answer["answer"]
    assert (qa.as_numpy("START")[0], qa.as_numpy("END")[0]) == (answer["start"], answer["end"])
    client.close()


def test_triton_parameters_and_errors(server: str) -> None:
    labels = ["sports", "politics"]
    expected = native(server, "/v1/classify", {"model": "tiny-nli", "inputs": TEXTS,
                                               "candidate_labels": labels})  # fmt: skip
    client = triton_client(server)
    result = client.infer("tiny-nli", [text_input("TEXT", TEXTS, False)], headers=auth(),
                          parameters={"candidate_labels": ",".join(labels)})  # fmt: skip
    assert result.as_numpy("LABELS").shape == (2, 2)
    want = np.asarray([[s["score"] for s in row] for row in expected], dtype=np.float32)
    assert np.array_equal(result.as_numpy("SCORES"), want)
    with pytest.raises(InferenceServerException) as missing:
        client.infer("no-such-model", [text_input("TEXT", TEXTS, False)], headers=auth())
    assert missing.value.status() == "404"
    assert "no-such-model" in missing.value.message()
    with pytest.raises(InferenceServerException) as version:
        client.infer("tiny-nli", [text_input("TEXT", TEXTS, False)], "7", headers=auth())
    assert "only version '1'" in version.value.message()
    with pytest.raises(InferenceServerException) as unauthorized:
        client.infer("tiny-nli", [text_input("TEXT", TEXTS, False)])
    assert unauthorized.value.status() == "401"
    with pytest.raises(InferenceServerException) as too_large:
        client.infer("tiny-embed", [text_input("TEXT", ["x" * MAX_BODY], True)], headers=auth())
    assert too_large.value.status() == "413"
    client.close()


async def test_triton_aio(server: str) -> None:
    expected = native(server, "/v1/ner", {"inputs": TEXTS})
    client = triton_aio.InferenceServerClient(url=server.removeprefix("http://"))
    try:
        assert await client.is_server_ready()
        assert (await client.get_model_metadata("tiny-ner", headers=auth()))["name"] == "tiny-ner"
        result = await client.infer("tiny-ner", [text_input("TEXT", TEXTS, True)], headers=auth())
        flat = [(i, e) for i, entities in enumerate(expected) for e in entities]
        assert result.as_numpy("INPUT_INDEX").tolist() == [i for i, _ in flat]
        assert [w.decode() for w in result.as_numpy("WORD")] == [e["word"] for _, e in flat]
        assert result.as_numpy("START").tolist() == [e["start"] for _, e in flat]
    finally:
        await client.close()


# --- the same operations on every surface ----------------------------------------------------


def test_every_surface_is_timed_and_metered(server: str) -> None:
    calls = [
        ("/v1/embeddings", {"model": "tiny-embed", "input": "x"}, "/v1/embeddings"),
        ("/hf/models/tiny-embed", {"inputs": "x"}, "/hf/models/{name}"),
        ("/hf/tasks/feature-extraction", {"inputs": "x"}, "/hf/tasks/{task}"),
        ("/v2/models/tiny-embed/infer",
         {"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": ["x"]}]},
         "/v2/models/{name}/infer"),
    ]  # fmt: skip
    for path, body, route in calls:
        labels = {"route": route, "model": "tiny-embed", "status": "200"}
        before = metric(server, "nlp_serve_requests_total", **labels)
        response = httpx.post(f"{server}{path}", json=body, headers=auth(), timeout=30)
        assert response.status_code == 200, response.text
        assert "forward;dur=" in response.headers["server-timing"], path
        assert metric(server, "nlp_serve_requests_total", **labels) == before + 1, route
