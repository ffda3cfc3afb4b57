"""The benchmark tools' own logic: server CPU per request, the suite's in-process limit
(on the fake backend, so a change to the model's API breaks this test, not `make bench`), and
the protocol rows' load drivers (gRPC, v2 HTTP binary, native JSON) against a real server on
the fake backend."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest

import bench.common
from app.protocols.v2_codec import parse_infer_request
from app.protocols.v2_grpc import infer_request_from_proto
from app.registry.model import load_model
from app.settings import Settings
from app.spec import ModelSpec
from bench import loadgen, protocols
from bench.common import process_cpu_s, save, sentences, server_cpu_ms_per_request
from bench.suite import SENTIMENT, http_configs, in_process_limit, run_batch, workloads


def scrape_with(count: float, model: str = "m") -> str:
    series = f'route="/v1/sentiment",model="{model}",status="200"'
    return (
        f"nlp_serve_request_duration_seconds_sum{{{series}}} {count * 0.01}\n"
        f"nlp_serve_request_duration_seconds_count{{{series}}} {count}\n"
        f'nlp_serve_request_duration_seconds_count{{model="other",status="200"}} 999\n'
    )


def test_cpu_per_request_divides_by_the_models_answered_requests() -> None:
    ms = server_cpu_ms_per_request(10.0, 12.5, scrape_with(100), scrape_with(600), "m")
    assert ms == 5.0  # 2.5 s of CPU over 500 requests of model m; "other" not counted


def test_no_request_answered_is_not_a_number() -> None:
    assert math.isnan(server_cpu_ms_per_request(1.0, 2.0, scrape_with(7), scrape_with(7), "m"))


def test_process_cpu_counts_this_process_busy_time() -> None:
    before = process_cpu_s(os.getpid())
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    assert process_cpu_s(os.getpid()) - before >= 0.03  # clock ticks are 10 ms


def test_in_process_limit_runs_every_stage(tiny_models: dict[str, Path]) -> None:
    spec = ModelSpec.model_validate(
        {"name": "f", "task": "sentiment", "source": str(tiny_models["sentiment"]),
         "backend": "fake"}
    )  # fmt: skip
    model = load_model(spec, Settings(_env_file=None))  # type: ignore[call-arg]
    texts = sentences(20, words=7)
    answers = run_batch(model, [model.encode(text, SENTIMENT) for text in texts[:3]])
    assert len(answers) == 3
    assert {answer.label for answer in answers} <= {"NEGATIVE", "POSITIVE"}
    limit = in_process_limit(model, texts, repeats=1)
    assert limit["items_per_s"] > 0
    assert limit["batch_size"] in (1, 8, 16, 32)


def test_a_second_run_the_same_day_never_overwrites_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench.common, "RESULTS", tmp_path)
    first = save("backends", {"run": 1})
    second = save("backends", {"run": 2})
    third = save("backends", {"run": 3})
    assert first.name.endswith("-backends.json")
    assert second.name.endswith("-backends-2.json")
    assert third.name.endswith("-backends-3.json")
    assert first.read_text() == '{\n  "run": 1\n}'


def test_the_protocol_rows_send_the_suites_short_texts() -> None:
    assert protocols.short_texts() == workloads()["short"]
    assert protocols.MODEL in http_configs()
    assert http_configs()[protocols.MODEL] == protocols.MODEL_CONFIG


def test_the_v2_binary_request_is_what_the_server_parses() -> None:
    url, body, headers = loadgen.v2_binary_request(
        "http://127.0.0.1:1/", {"inputs": "Très bien.", "model": "m"}
    )
    assert url == "http://127.0.0.1:1/v2/models/m/infer"
    parsed = parse_infer_request(body, headers[loadgen.HEADER_LENGTH])
    assert parsed.input("TEXT").texts() == ["Très bien."]
    assert parsed.parameters == {"binary_data_output": True}


def test_the_grpc_request_is_what_the_server_parses() -> None:
    request = loadgen.grpc_request({"inputs": ["one", "Très bien."], "model": "m"})
    assert request.model_name == "m"
    assert infer_request_from_proto(request).input("TEXT").texts() == ["one", "Très bien."]


def test_the_protocols_turn_their_order_every_round() -> None:
    orders = [protocols.order(round_) for round_ in range(3)]
    assert [order[0] for order in orders] == list(protocols.PROTOCOLS)
    assert all(sorted(order) == sorted(protocols.PROTOCOLS) for order in orders)


async def test_each_protocols_driver_counts_answers_without_errors(
    tiny_models: dict[str, Path],
) -> None:
    """The three drivers for ~1 s in all against one real server (fake backend) serving HTTP
    and gRPC, and the load generator's own process once (the protocol option end to end)."""
    model = {"name": "f", "task": "sentiment", "source": str(tiny_models["sentiment"]),
             "backend": "fake", "device": "cpu"}  # fmt: skip
    bodies = [{"inputs": text, "model": "f"} for text in sentences(8, words=7)]
    grpc_port = bench.common.free_port()
    with bench.common.serve([model], NLP_SERVE_GRPC_PORT=str(grpc_port)) as server:
        urls = protocols.targets(server, grpc_port)
        for row, protocol in protocols.PROTOCOLS.items():
            result = await loadgen.drive(protocol, urls[row], bodies, 4, 0.3, warmup_requests=8)
            assert result["requests"] > 0, (row, result)
            assert result["errors"] == 0, (row, result.get("first_error"))
            assert result["protocol"] == protocol
        result = protocols.measure_one(server, urls["grpc"], "grpc", bodies, 2, 0.3, "f")
    assert result["requests"] > 0
    assert result["errors"] == 0, result.get("first_error")
    assert result["server_cpu_ms"] > 0
    median = protocols.median_row("grpc", 2, [result, result])
    assert median["requests"] == 2 * result["requests"]
    assert median["grpc_channels"] == 1


def test_sparse_in_process_limit_runs_every_stage(tiny_models: dict[str, Path]) -> None:
    from bench import sparse

    spec = ModelSpec.model_validate(
        {"name": "s", "task": "embed-sparse", "source": str(tiny_models["splade"]),
         "backend": "fake"}
    )  # fmt: skip
    model = load_model(spec, Settings(_env_file=None))  # type: ignore[call-arg]
    vectors = sparse.run_batch(model, [model.encode(t, sparse.PARAMS) for t in ("a", "b c")])
    assert len(vectors) == 2
    assert all(vector and vector[0].index >= 0 for vector in vectors)
    limit = sparse.in_process_limit(model, sentences(6, words=5), repeats=1, sizes=(1, 4))
    assert limit["docs_per_s"] > 0
    assert limit["batch_size"] in (1, 4)
    bodies = sparse.workloads()
    assert len(bodies["passages"][0]["inputs"]) == sparse.PASSAGES_PER_REQUEST


def test_the_rerank_rows_in_process_limit_and_aim(tiny_models: dict[str, Path]) -> None:
    """bench/rerank.py's in-process limit runs the task's own stages (fake backend), and its
    report says whether documents/s at the most clients reaches 80% of that limit."""
    from bench import rerank

    spec = ModelSpec.model_validate(
        {"name": "r", "task": "rerank", "source": str(tiny_models["cross-encoder"]),
         "backend": "fake"}
    )  # fmt: skip
    model = load_model(spec, Settings(_env_file=None))  # type: ignore[call-arg]
    pairs = [(query, doc) for query, docs in rerank.requests(10, 2) for doc in docs]
    limit = rerank.in_process_limit(model, pairs, repeats=1)
    assert limit["documents_per_s"] > 0
    assert limit["batch_size"] in (8, 16, 32)
    rows = [{"engine": "torch", "documents": 100, "concurrency": c, "rps": rps,
             "documents_per_s": rps * 100, "p50_ms": 1.0, "p99_ms": 2.0, "errors": 0}
            for c, rps in ((1, 0.5), (32, 0.9))]  # fmt: skip
    summary = rerank.report(rows, {"torch": {"documents_per_s": 100.0, "batch_size": 32}})
    assert summary["engines"]["torch"]["share"] == pytest.approx(0.9)
    assert summary["engines"]["torch"]["aim_met"] is True
    slow = rerank.report(rows, {"torch": {"documents_per_s": 200.0, "batch_size": 32}})
    assert slow["engines"]["torch"]["aim_met"] is False
    assert [len(docs) for _, docs in rerank.requests(100, 3)] == [100, 100, 100]
