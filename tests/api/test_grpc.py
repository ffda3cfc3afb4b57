"""The gRPC surface in the app's own process and loop: the Open Inference Protocol's
GRPCInferenceService on the fake backend, called with our protobuf stubs over a real channel on
127.0.0.1, every answer compared with the native HTTP route's."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from app.protocols.grpc_v2 import inference_pb2 as pb
from app.protocols.grpc_v2.inference_pb2_grpc import GRPCInferenceServiceStub
from tests.conftest import serve_in_process, settings_for, tiny_catalog

KEY = "grpc-test-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Surface:
    def __init__(self, http: httpx.AsyncClient, channel: grpc.aio.Channel) -> None:
        self.http = http
        self.channel = channel
        self.stub = GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="module")
async def surface(
    tiny_models: dict[str, Path], write_catalog: Callable[[list[dict[str, Any]]], Path]
) -> AsyncIterator[Surface]:
    # Names of their own: the session's other apps share the process's metrics, and this one's
    # shutdown would mark their models unloaded.
    models = [{**entry, "name": "g" + entry["name"]} for entry in tiny_catalog(tiny_models, "fake")]
    models.append({"name": "slow", "task": "sentiment", "source": str(tiny_models["sentiment"]),
                   "backend": "fake", "backend_options": {"delay_ms": 400},
                   "batching": {"max_batch_size": 1}})  # fmt: skip
    port = free_port()
    settings = settings_for(write_catalog(models), grpc_port=port, api_keys=[KEY],
                             max_items_per_request=8, max_body_bytes=64 * 1024)  # fmt: skip
    async with serve_in_process(settings) as http:
        http.headers["x-api-key"] = KEY
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Surface(http, channel)


AUTH = (("x-api-key", KEY),)


def texts_tensor(name: str, texts: list[str]) -> pb.ModelInferRequest.InferInputTensor:
    return pb.ModelInferRequest.InferInputTensor(
        name=name,
        datatype="BYTES",
        shape=[len(texts)],
        contents=pb.InferTensorContents(bytes_contents=[t.encode() for t in texts]),
    )


def raw_texts(texts: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in texts)


def outputs(response: pb.ModelInferResponse) -> dict[str, Any]:
    """Each output by name, read from raw_output_contents as tritonclient does."""
    found: dict[str, Any] = {}
    dtypes = {"FP32": "<f4", "INT64": "<i8"}
    for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        if tensor.datatype == "BYTES":
            items, offset = [], 0
            while offset < len(raw):
                (length,) = struct.unpack_from("<I", raw, offset)
                items.append(raw[offset + 4 : offset + 4 + length].decode())
                offset += 4 + length
            found[tensor.name] = items
        else:
            found[tensor.name] = np.frombuffer(raw, dtypes[tensor.datatype]).reshape(
                list(tensor.shape)
            )
    return found


async def native(surface: Surface, path: str, body: dict[str, Any]) -> list[Any]:
    response = await surface.http.post(path, json=body)
    assert response.status_code == 200, response.text
    results: list[Any] = response.json()["results"]
    return results


async def test_every_task_answers_as_the_native_route(surface: Surface) -> None:
    texts = ["Ada Lovelace wrote the first program.", "I love this"]

    async def infer(model: str, *tensors: Any, **parameters: Any) -> dict[str, Any]:
        request = pb.ModelInferRequest(model_name=model, inputs=list(tensors))
        for key, value in parameters.items():
            request.parameters[key].string_param = value
        return outputs(await surface.stub.ModelInfer(request, metadata=AUTH))

    sentiment = await infer("gtiny-sentiment", texts_tensor("TEXT", texts))
    expected = await native(surface, "/v1/sentiment", {"inputs": texts, "model": "gtiny-sentiment"})
    assert sentiment["LABEL"] == [r["label"] for r in expected]
    assert sentiment["SCORE"].tolist() == pytest.approx([r["score"] for r in expected], abs=1e-6)

    topics = await infer("gtiny-topics", texts_tensor("TEXT", texts))
    expected = await native(surface, "/v1/classify", {"inputs": texts, "model": "gtiny-topics"})
    assert topics["LABELS"] == [s["label"] for row in expected for s in row]

    zero_shot = await infer("gtiny-nli", texts_tensor("TEXT", texts), candidate_labels="a,b")
    body = {"inputs": texts, "model": "gtiny-nli", "candidate_labels": ["a", "b"]}
    expected = await native(surface, "/v1/classify", body)
    assert zero_shot["LABELS"] == [s["label"] for row in expected for s in row]

    qa = await infer(
        "gtiny-qa", texts_tensor("QUESTION", ["who?"]), texts_tensor("CONTEXT", texts[:1])
    )
    (answer,) = await native(surface, "/v1/qa", {"model": "gtiny-qa",
                             "inputs": {"question": "who?", "context": texts[0]}})  # fmt: skip
    assert (qa["ANSWER"], qa["START"].tolist(), qa["END"].tolist()) == (
        [answer["answer"]], [answer["start"]], [answer["end"]])  # fmt: skip

    ner = await infer("gtiny-ner", texts_tensor("TEXT", texts))
    expected = await native(surface, "/v1/ner", {"inputs": texts, "model": "gtiny-ner"})
    assert ner["WORD"] == [e["word"] for row in expected for e in row]

    embed = await infer("gtiny-embed", texts_tensor("TEXT", texts))
    expected = await native(surface, "/v1/embed", {"inputs": texts, "model": "gtiny-embed"})
    assert embed["EMBEDDING"] == pytest.approx(np.array(expected, "f4"), abs=1e-6)

    translated = await infer("gtiny-translate", texts_tensor("TEXT", texts), target_lang="de")
    body = {"inputs": texts, "model": "gtiny-translate", "target_lang": "de"}
    expected = await native(surface, "/v1/translate", body)
    assert translated["TRANSLATION"] == [r["translation_text"] for r in expected]

    summary = await infer("gtiny-summarize", texts_tensor("TEXT", texts))
    expected = await native(surface, "/v1/summarize", {"inputs": texts, "model": "gtiny-summarize"})
    assert summary["SUMMARY"] == [r["summary_text"] for r in expected]


async def test_raw_inputs_and_typed_outputs_are_the_same_answer(surface: Surface) -> None:
    texts = ["first", "second text"]
    raw = pb.ModelInferRequest(
        model_name="gtiny-sentiment",
        inputs=[pb.ModelInferRequest.InferInputTensor(name="TEXT", datatype="BYTES", shape=[2])],
        raw_input_contents=[raw_texts(texts)],
    )
    typed = pb.ModelInferRequest(model_name="gtiny-sentiment", inputs=[texts_tensor("TEXT", texts)])
    from_raw = outputs(await surface.stub.ModelInfer(raw, metadata=AUTH))
    from_typed = outputs(await surface.stub.ModelInfer(typed, metadata=AUTH))
    assert from_raw["LABEL"] == from_typed["LABEL"]
    assert from_raw["SCORE"].tolist() == from_typed["SCORE"].tolist()


async def test_probes_metadata_config_and_index(surface: Surface) -> None:
    stub = surface.stub
    assert (await stub.ServerLive(pb.ServerLiveRequest())).live  # probes need no key
    assert (await stub.ServerReady(pb.ServerReadyRequest())).ready
    assert (await stub.ModelReady(pb.ModelReadyRequest(name="gtiny-embed"), metadata=AUTH)).ready
    for unknown in (
        pb.ModelReadyRequest(name="nope"),
        pb.ModelReadyRequest(name="gtiny-embed", version="7"),
    ):
        assert not (await stub.ModelReady(unknown, metadata=AUTH)).ready  # as Triton answers
    server = await stub.ServerMetadata(pb.ServerMetadataRequest(), metadata=AUTH)
    assert server.name == "nlp-serve"
    meta = await stub.ModelMetadata(pb.ModelMetadataRequest(name="gtiny-embed"), metadata=AUTH)
    http_meta = (await surface.http.get("/v2/models/gtiny-embed")).json()
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [
        (t["name"], t["datatype"], t["shape"]) for t in http_meta["outputs"]
    ]
    config = (await stub.ModelConfig(pb.ModelConfigRequest(name="gtiny-qa"), metadata=AUTH)).config
    assert [i.name for i in config.input] == ["QUESTION", "CONTEXT"]
    assert config.input[0].data_type == pb.TYPE_STRING
    assert config.max_batch_size > 0
    index = await stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=True), metadata=AUTH)
    assert {"gtiny-embed", "gtiny-qa", "slow"} <= {m.name for m in index.models}
    assert {m.state for m in index.models} == {"READY"}


async def test_health_and_reflection(surface: Surface) -> None:
    health: Any = health_pb2_grpc.HealthStub(surface.channel)  # the stubs' types lack methods
    for service in ("", "inference.GRPCInferenceService"):
        answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await health.Check(health_pb2.HealthCheckRequest(service="nope"))
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
    reflection: Any = reflection_pb2_grpc.ServerReflectionStub(surface.channel)  # type: ignore[arg-type]
    ask = reflection_pb2.ServerReflectionRequest(list_services="")
    async for answer in reflection.ServerReflectionInfo(iter([ask])):
        names = {s.name for s in answer.list_services_response.service}
        assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= names


async def code_of(call: Any) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call
    trailing = {k: v for k, v in failed.value.trailing_metadata() or () if isinstance(v, str)}
    return failed.value.code(), str(failed.value.details()), trailing


async def test_errors_map_to_status_codes(surface: Surface) -> None:
    stub = surface.stub

    def infer(model: str, *tensors: Any, metadata: Any = AUTH, **kwargs: Any) -> Any:
        request = pb.ModelInferRequest(model_name=model, inputs=list(tensors))
        return stub.ModelInfer(request, metadata=metadata, **kwargs)

    text = texts_tensor("TEXT", ["x"])
    code, details, trailing = await code_of(infer("nope", text))
    assert code is grpc.StatusCode.NOT_FOUND
    assert trailing["nlp-serve-error-type"] == "model_not_found"
    code, details, _ = await code_of(infer("gtiny-sentiment", texts_tensor("WORDS", ["x"])))
    assert (code, "WORDS" in details) == (grpc.StatusCode.INVALID_ARGUMENT, True)
    code, details, _ = await code_of(infer("gtiny-sentiment", texts_tensor("TEXT", ["x", " "])))
    assert (code, "TEXT[1]" in details) == (grpc.StatusCode.INVALID_ARGUMENT, True)
    code, details, _ = await code_of(infer("gtiny-sentiment", texts_tensor("TEXT", ["x"] * 9)))
    assert (code, "NLP_SERVE_MAX_ITEMS_PER_REQUEST" in details) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED, True)  # fmt: skip
    huge = texts_tensor("TEXT", ["x" * (70 * 1024)])  # over the 64 KiB message limit
    code, _, _ = await code_of(infer("gtiny-sentiment", huge))
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
    code, details, trailing = await code_of(infer("gtiny-sentiment", text, metadata=()))
    assert (code, trailing.get("nlp-serve-error-type")) == (
        grpc.StatusCode.UNAUTHENTICATED, "unauthorized")  # fmt: skip
    assert "API key" in details
    wrong = (("authorization", "Bearer wrong"),)
    code, _, _ = await code_of(infer("gtiny-sentiment", text, metadata=wrong))
    assert code is grpc.StatusCode.UNAUTHENTICATED
    code, _, _ = await code_of(stub.ModelMetadata(pb.ModelMetadataRequest(name="gtiny-embed")))
    assert code is grpc.StatusCode.UNAUTHENTICATED
    bearer = (("authorization", f"Bearer {KEY}"),)
    assert (await infer("gtiny-sentiment", text, metadata=bearer)).outputs
    empty_bearer = (("authorization", "Bearer "), ("x-api-key", KEY))  # as HTTP: falls back
    assert (await infer("gtiny-sentiment", text, metadata=empty_bearer)).outputs


async def test_the_deadline_is_the_calls_and_cancelling_drops_the_items(surface: Surface) -> None:
    stub = surface.stub
    request = pb.ModelInferRequest(model_name="slow", inputs=[texts_tensor("TEXT", ["x"])])
    # A busy model: the first call holds it for 400 ms; the second's 100 ms deadline passes
    # while it waits in the queue.
    first = asyncio.ensure_future(stub.ModelInfer(request, metadata=AUTH))
    await asyncio.sleep(0.05)
    code, _, _ = await code_of(stub.ModelInfer(request, metadata=AUTH, timeout=0.1))
    assert code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert (await first).outputs

    async def dropped() -> float:
        text = (await surface.http.get("/metrics")).text
        line = 'nlp_serve_items_dropped_total{model="slow",reason="cancelled"}'
        return sum(float(row.split()[-1]) for row in text.splitlines() if row.startswith(line))

    before = await dropped()
    first = asyncio.ensure_future(stub.ModelInfer(request, metadata=AUTH))
    await asyncio.sleep(0.05)
    waiting = stub.ModelInfer(request, metadata=AUTH)
    await asyncio.sleep(0.05)
    waiting.cancel()
    await first
    for _ in range(50):  # the server learns of the cancel over the wire
        if await dropped() > before:
            break
        await asyncio.sleep(0.05)
    assert await dropped() == before + 1


async def test_request_ids_metrics_and_the_protocol_label(surface: Surface) -> None:
    request = pb.ModelInferRequest(model_name="gtiny-ner", inputs=[texts_tensor("TEXT", ["Ada"])])
    call = surface.stub.ModelInfer(request, metadata=(*AUTH, ("x-request-id", "grpc-abc-1")))
    await call
    assert ("x-request-id", "grpc-abc-1") in tuple(await call.trailing_metadata())
    fresh = surface.stub.ModelInfer(request, metadata=(*AUTH, ("x-request-id", "bad id!")))
    await fresh
    generated = dict(await fresh.trailing_metadata())["x-request-id"]
    assert generated != "bad id!"
    assert len(generated) == 32
    text = (await surface.http.get("/metrics")).text
    series = ('nlp_serve_requests_total{model="gtiny-ner",protocol="grpc",'
              'route="/inference.GRPCInferenceService/ModelInfer",status="200"}')  # fmt: skip
    assert any(line.startswith(series) for line in text.splitlines()), text
    refused = 'protocol="grpc",route="/inference.GRPCInferenceService/ModelInfer",status="404"'
    assert refused in text
