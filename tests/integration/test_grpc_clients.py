"""tritonclient.grpc, sync and aio, against the gRPC surface of one real server on 127.0.0.1.

`nlp-serve serve` runs as a subprocess with NLP_SERVE_GRPC_PORT and an API key, on the tiny
models and the deterministic fake backend: this checks the wire protocol, not the models.
tritonclient[grpc] 2.73 needs protobuf<7 (the project pins 7) and registers the same
`inference.*` protobuf symbols as our generated modules, so it runs in a venv of its own
(tests/fixtures/client_venvs.py), in a subprocess: tests/fixtures/triton_grpc_calls.py makes a
batch of calls with both clients and prints what they parsed. Two such runs in all (the calls,
and docs/clients.md's gRPC snippet); every answer is compared with the native HTTP route's for
the same input, on the same server.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.spec import BatchingSpec
from bench.common import free_port, serve
from tests.conftest import tiny_catalog
from tests.fixtures.client_venvs import client_answer, client_python
from tests.fixtures.doc_snippets import SNIPPET_KEY, python_blocks
from tests.integration.test_clients import KEY, MAX_BODY, TEXTS, metric, native

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "fixtures" / "triton_grpc_calls.py"
CLIENT = ("tritonclient[grpc]", "2.73.0", "numpy==2.4.6", "protobuf==6.33.6", "grpcio==1.85.3")
CALLS_TIMEOUT_S = 120
SNIPPET_ADDRESS = "127.0.0.1:8001"
# The offline catalog's names the snippet uses, served here by the tiny models of the same task.
SNIPPET_MODELS = {"minilm-sentiment": "tiny-sentiment", "minilm-zero-shot": "tiny-nli"}
SLOW_MS = 500  # one batch of a slow model: what a queued call waits behind
LEAD_S = 0.1  # the busy call reaches the model before the next one is sent
LATE_TIMEOUT_S = 0.15  # the client_timeout of a call queued behind a busy one
LABELS = ["sports", "politics", "science"]
PAIRS = [("Where did Ada live?", TEXTS[1]), ("Who shipped it?", TEXTS[0])]
# Every model whose metadata and config are compared with the HTTP surface's.
MODELS = ["tiny-sentiment", "tiny-topics", "tiny-nli", "tiny-qa", "tiny-ner", "tiny-embed",
          "tiny-translate", "tiny-summarize"]  # fmt: skip
DROPPED = "nlp_serve_items_dropped_total"
BATCHING = BatchingSpec()
CONFIG_TYPES = {"BYTES": "TYPE_STRING", "FP32": "TYPE_FP32", "INT64": "TYPE_INT64"}


@dataclass(frozen=True)
class Server:
    http: str  # http://127.0.0.1:<port>
    grpc: str  # 127.0.0.1:<port>


@pytest.fixture(scope="module")
def server(tiny_models: dict[str, Path]) -> Iterator[Server]:
    models = tiny_catalog(tiny_models, "fake")
    by_name = {entry["name"]: entry for entry in models}
    models += [{**by_name[tiny], "name": name} for name, tiny in SNIPPET_MODELS.items()]
    for name in ("slow-deadline", "slow-cancel"):  # one per scenario: their drops add up apart
        models.append({"name": name, "task": "sentiment", "source": str(tiny_models["sentiment"]),
                       "backend": "fake", "backend_options": {"delay_ms": SLOW_MS},
                       "batching": {"max_batch_size": 1, "max_wait_ms": 0}})  # fmt: skip
    grpc_port = free_port()
    env = {
        "NLP_SERVE_WARMUP": "false",
        "NLP_SERVE_API_KEYS": json.dumps([KEY, SNIPPET_KEY]),
        "NLP_SERVE_GRPC_PORT": str(grpc_port),
        "NLP_SERVE_MAX_BODY_BYTES": str(MAX_BODY),
        "NLP_SERVE_DRAIN_SECONDS": "0",  # nothing to drain for at the end: stop at once
    }
    with serve(models, env) as running:
        yield Server(running.base, f"127.0.0.1:{grpc_port}")


def run_client(*command: str, stdin: str = "") -> str:
    """Run the tritonclient venv's python with `command`; its stdout."""
    python = client_python(*CLIENT)
    done = subprocess.run(
        [str(python), *command],
        input=stdin, capture_output=True, text=True, timeout=CALLS_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{command}: {done.stderr[-3000:]}"
    return done.stdout


def infer(
    model: str, *, parameters: dict[str, Any] | None = None, **options: Any
) -> dict[str, Any]:
    """An infer call; each BYTES input tensor is a keyword (TEXT=[...], QUESTION=[...])."""
    names = {"outputs", "version", "auth", "headers", "client_timeout"}
    inputs = [[name, texts] for name, texts in options.items() if name not in names]
    call = {"method": "infer", "model": model, "inputs": inputs, "parameters": parameters or {}}
    return call | {key: value for key, value in options.items() if key in names}


def method(name: str, *args: Any, auth: bool = True) -> dict[str, Any]:
    return {"method": name, "args": list(args), "auth": auth}


def calls() -> dict[str, dict[str, Any]]:
    questions, contexts = [q for q, _ in PAIRS], [c for _, c in PAIRS]
    candidates = ",".join(LABELS)  # v2 parameters are scalars: the list as "a,b,c"
    return {
        # every task the v2 route serves
        "sentiment": infer("tiny-sentiment", TEXT=TEXTS),
        "sentiment_score_only": infer("tiny-sentiment", TEXT=TEXTS, outputs=["SCORE"]),
        "sentiment_version_1": infer("tiny-sentiment", TEXT=TEXTS, version="1"),
        "topics": infer("tiny-topics", TEXT=TEXTS),
        "zero_shot": infer("tiny-nli", TEXT=TEXTS, parameters={"candidate_labels": candidates}),
        "zero_shot_multi": infer("tiny-nli", TEXT=TEXTS,
                                 parameters={"candidate_labels": candidates, "multi_label": True}),
        "qa": infer("tiny-qa", QUESTION=questions, CONTEXT=contexts),
        "ner": infer("tiny-ner", TEXT=TEXTS),
        "embed": infer("tiny-embed", TEXT=TEXTS),
        "embed_raw": infer("tiny-embed", TEXT=TEXTS, parameters={"normalize": False}),
        "translate": infer("tiny-translate", TEXT=TEXTS,
                           parameters={"source_lang": "en", "target_lang": "fr"}),
        "summarize": infer("tiny-summarize", TEXT=TEXTS, parameters={"max_length": 5}),
        # probes (no key) and metadata (the key)
        "live": method("is_server_live", auth=False),
        "ready": method("is_server_ready", auth=False),
        "model_ready": method("is_model_ready", "tiny-qa"),
        "model_ready_v1": method("is_model_ready", "tiny-qa", "1"),
        "model_ready_unknown": method("is_model_ready", "no-such-model"),
        "model_ready_other_version": method("is_model_ready", "tiny-qa", "7"),
        # tritonclient's own request timeout (microseconds) travels as a parameter
        "sentiment_timeout": {**infer("tiny-sentiment", TEXT=TEXTS),
                              "kwargs": {"timeout": 5_000_000}},
        "server_metadata": method("get_server_metadata"),
        **{f"metadata {name}": method("get_model_metadata", name) for name in MODELS},
        **{f"config {name}": method("get_model_config", name) for name in MODELS},
        "index": method("get_model_repository_index"),
        # errors
        "unknown_model": infer("no-such-model", TEXT=TEXTS),
        "no_key": infer("tiny-sentiment", TEXT=TEXTS, auth=False),
        "wrong_key": infer("tiny-sentiment", TEXT=TEXTS, headers={"x-api-key": "wrong"}),
        "no_key_metadata": method("get_model_metadata", "tiny-qa", auth=False),
        "unknown_parameter": infer("tiny-sentiment", TEXT=TEXTS, parameters={"top_k": 2}),
        "bad_parameter_value": infer("tiny-summarize", TEXT=TEXTS, parameters={"max_length": 0}),
        "wrong_version": infer("tiny-sentiment", TEXT=TEXTS, version="7"),
        "wrong_input": infer("tiny-sentiment", WORDS=TEXTS),
        "too_large": infer("tiny-embed", TEXT=["x" * MAX_BODY]),
        "statistics": method("get_inference_statistics", "tiny-qa"),
    }  # fmt: skip


SCENARIOS = {
    "deadline": {"kind": "deadline", "model": "slow-deadline", "lead_s": LEAD_S,
                 "client_timeout": LATE_TIMEOUT_S},
    "cancel": {"kind": "cancel", "model": "slow-cancel", "lead_s": LEAD_S},
}  # fmt: skip


def counts(server: Server) -> dict[str, float]:
    """What the slow models' metrics say: items dropped (for their deadline, cancelled, both)
    and batches run."""
    found = {}
    for model in ("slow-deadline", "slow-cancel"):
        for reason in ("deadline", "cancelled"):
            labels = {"model": model, "reason": reason}
            found[f"{model} {reason}"] = metric(server.http, DROPPED, **labels)
        found[f"{model} dropped"] = found[f"{model} deadline"] + found[f"{model} cancelled"]
        found[f"{model} batches"] = metric(server.http, "nlp_serve_batch_size_count", model=model)
    return found


@pytest.fixture(scope="module")
def report(server: Server) -> dict[str, Any]:
    """What both clients parsed for every call and scenario; the slow models' counts before."""
    job = {"url": server.grpc, "headers": {"authorization": f"Bearer {KEY}"}, "calls": calls(),
           "scenarios": SCENARIOS}  # fmt: skip
    before = counts(server)
    started = time.monotonic()
    parsed: dict[str, Any] = json.loads(run_client(str(SCRIPT), stdin=json.dumps(job)))
    return {**parsed, "before": before, "seconds": time.monotonic() - started}


@pytest.fixture(params=["sync", "aio"])
def parsed(request: pytest.FixtureRequest, report: dict[str, Any]) -> dict[str, Any]:
    answers: dict[str, Any] = report[str(request.param)]
    return answers


answer = client_answer


def values(outputs: dict[str, Any], name: str) -> Any:
    return outputs[name]["values"]


def close(got: list[Any], want: list[Any]) -> bool:
    """Floats, of any shape: FP32 on the wire, float64 in the native JSON."""
    got_array, want_array = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return got_array.shape == want_array.shape and np.allclose(
        got_array, want_array, rtol=0, atol=1e-6
    )


def error(parsed: dict[str, Any], name: str) -> tuple[str, str]:
    got = parsed[name]
    assert isinstance(got, dict), f"{name}: no error raised; got {got}"
    assert got.get("_error") == "InferenceServerException", got
    return got["status"], got["message"]


def test_the_client_is_the_release_asked_for(report: dict[str, Any]) -> None:
    assert report["version"] == CLIENT[1]


# --- every task, as the native route answers -------------------------------------------------


def test_sentiment(server: Server, parsed: dict[str, Any]) -> None:
    expected = native(server.http, "/v1/sentiment", {"model": "tiny-sentiment", "inputs": TEXTS})
    for name in ("sentiment", "sentiment_version_1"):
        got = answer(parsed, name)
        assert list(got) == ["LABEL", "SCORE"]
        assert got["LABEL"] == {"datatype": "BYTES", "shape": [2],
                                "values": [e["label"] for e in expected]}  # fmt: skip
        assert got["SCORE"]["datatype"] == "FP32"
        assert close(values(got, "SCORE"), [e["score"] for e in expected])
    only = answer(parsed, "sentiment_score_only")
    assert list(only) == ["SCORE"]  # the outputs asked for, and only those
    assert close(values(only, "SCORE"), [e["score"] for e in expected])


def test_classify_with_fixed_labels(server: Server, parsed: dict[str, Any]) -> None:
    expected = native(server.http, "/v1/classify", {"model": "tiny-topics", "inputs": TEXTS})
    got = answer(parsed, "topics")
    width = len(expected[0])
    assert got["LABELS"]["shape"] == got["SCORES"]["shape"] == [2, width]
    assert values(got, "LABELS") == [[s["label"] for s in row] for row in expected]
    assert close(values(got, "SCORES"), [[s["score"] for s in row] for row in expected])


def test_zero_shot_classify_takes_candidate_labels(server: Server, parsed: dict[str, Any]) -> None:
    for name, multi in (("zero_shot", False), ("zero_shot_multi", True)):
        expected = native(server.http, "/v1/classify", {
            "model": "tiny-nli", "inputs": TEXTS, "candidate_labels": LABELS,
            "multi_label": multi})  # fmt: skip
        got = answer(parsed, name)
        assert got["LABELS"]["shape"] == [2, len(LABELS)], name
        assert values(got, "LABELS") == [[s["label"] for s in row] for row in expected], name
        assert close(values(got, "SCORES"), [[s["score"] for s in row] for row in expected]), name


def test_question_answering(server: Server, parsed: dict[str, Any]) -> None:
    pairs = [{"question": q, "context": c} for q, c in PAIRS]
    expected = native(server.http, "/v1/qa", {"model": "tiny-qa", "inputs": pairs})
    got = answer(parsed, "qa")
    assert values(got, "ANSWER") == [a["answer"] for a in expected]
    assert values(got, "START") == [a["start"] for a in expected]
    assert values(got, "END") == [a["end"] for a in expected]
    assert (got["START"]["datatype"], got["END"]["datatype"]) == ("INT64", "INT64")
    assert close(values(got, "SCORE"), [a["score"] for a in expected])


def test_ner_flattens_the_entities_of_every_input(server: Server, parsed: dict[str, Any]) -> None:
    expected = native(server.http, "/v1/ner", {"model": "tiny-ner", "inputs": TEXTS})
    flat = [(i, e) for i, entities in enumerate(expected) for e in entities]
    assert flat, "the tiny NER model finds entities in these texts"
    got = answer(parsed, "ner")
    assert values(got, "INPUT_INDEX") == [i for i, _ in flat]
    for output, field in (("ENTITY_GROUP", "entity_group"), ("WORD", "word"),
                          ("START", "start"), ("END", "end")):  # fmt: skip
        assert values(got, output) == [e[field] for _, e in flat], output
    assert close(values(got, "SCORE"), [e["score"] for _, e in flat])


def test_embed(server: Server, parsed: dict[str, Any]) -> None:
    for name, normalize in (("embed", True), ("embed_raw", False)):
        expected = native(server.http, "/v1/embed", {"model": "tiny-embed", "inputs": TEXTS,
                                                     "normalize": normalize})  # fmt: skip
        got = answer(parsed, name)["EMBEDDING"]
        assert (got["datatype"], got["shape"]) == ("FP32", [2, len(expected[0])]), name
        assert close(got["values"], expected), name


def test_translate_and_summarize(server: Server, parsed: dict[str, Any]) -> None:
    body = {"model": "tiny-translate", "inputs": TEXTS, "source_lang": "en", "target_lang": "fr"}
    translation = native(server.http, "/v1/translate", body)
    assert values(answer(parsed, "translate"), "TRANSLATION") == [
        t["translation_text"] for t in translation
    ]
    summary = native(server.http, "/v1/summarize",
                     {"model": "tiny-summarize", "inputs": TEXTS, "max_length": 5})  # fmt: skip
    assert values(answer(parsed, "summarize"), "SUMMARY") == [s["summary_text"] for s in summary]


# --- probes, metadata, config, repository index -----------------------------------------------


def test_probes_need_no_key_and_models_are_ready(parsed: dict[str, Any]) -> None:
    assert answer(parsed, "live") is True
    assert answer(parsed, "ready") is True
    assert answer(parsed, "model_ready") is True
    assert answer(parsed, "model_ready_v1") is True


def test_an_unknown_model_or_version_is_not_ready(parsed: dict[str, Any]) -> None:
    """As Triton answers: ready=false, not an error."""
    assert answer(parsed, "model_ready_unknown") is False
    assert answer(parsed, "model_ready_other_version") is False


def test_the_clients_own_timeout_parameter_is_honoured(parsed: dict[str, Any]) -> None:
    assert answer(parsed, "sentiment_timeout") == answer(parsed, "sentiment")


def test_server_and_model_metadata_are_the_http_surfaces(
    server: Server, parsed: dict[str, Any]
) -> None:
    meta = answer(parsed, "server_metadata")
    http = httpx.get(f"{server.http}/v2", headers={"x-api-key": KEY}).json()
    assert (meta["name"], meta["version"]) == (http["name"], http["version"])
    for name in MODELS:
        got = answer(parsed, f"metadata {name}")
        want = httpx.get(f"{server.http}/v2/models/{name}", headers={"x-api-key": KEY}).json()
        assert (got["name"], got["versions"], got["platform"]) == (
            want["name"], want["versions"], want["platform"])  # fmt: skip
        for kind in ("inputs", "outputs"):  # as_json: int64 dims come as strings
            tensors = [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in got[kind]]
            assert tensors == [(t["name"], t["datatype"], t["shape"]) for t in want[kind]], name


def test_model_config_describes_the_tensors_and_batching(
    server: Server, parsed: dict[str, Any]
) -> None:
    for name in MODELS:
        config = answer(parsed, f"config {name}")["config"]
        want = httpx.get(f"{server.http}/v2/models/{name}", headers={"x-api-key": KEY}).json()
        assert config["name"] == name
        assert config["backend"] == "fake"
        # the tiny catalog's entries batch as the catalog's defaults say
        assert int(config["max_batch_size"]) == BATCHING.max_batch_size
        delay_us = int(config["dynamic_batching"]["max_queue_delay_microseconds"])
        assert delay_us == BATCHING.max_wait_ms * 1000
        for kind, field in (("input", "inputs"), ("output", "outputs")):
            tensors = [(t["name"], t["data_type"], [int(d) for d in t.get("dims", [])])
                       for t in config[kind]]  # fmt: skip
            # dims leave out the batch dimension, which max_batch_size describes
            assert tensors == [(t["name"], CONFIG_TYPES[t["datatype"]], t["shape"][1:])
                               for t in want[field]], (name, kind)  # fmt: skip


def test_repository_index_lists_every_model_ready(server: Server, parsed: dict[str, Any]) -> None:
    index = answer(parsed, "index")["models"]
    served = httpx.get(f"{server.http}/v1/models", headers={"x-api-key": KEY}).json()["models"]
    assert sorted(m["name"] for m in index) == sorted(m["name"] for m in served)
    assert {(m["version"], m["state"]) for m in index} == {("1", "READY")}


# --- errors as gRPC status codes ---------------------------------------------------------------


def test_an_unknown_model_is_not_found(parsed: dict[str, Any]) -> None:
    status, message = error(parsed, "unknown_model")
    assert status == "StatusCode.NOT_FOUND"
    assert "no-such-model" in message


def test_a_missing_or_wrong_key_is_unauthenticated(parsed: dict[str, Any]) -> None:
    for name in ("no_key", "wrong_key", "no_key_metadata"):
        status, message = error(parsed, name)
        assert status == "StatusCode.UNAUTHENTICATED", name
        assert "API key" in message, name


def test_bad_requests_are_invalid_arguments(parsed: dict[str, Any]) -> None:
    status, message = error(parsed, "unknown_parameter")
    assert (status, "top_k" in message) == ("StatusCode.INVALID_ARGUMENT", True), message
    status, message = error(parsed, "bad_parameter_value")
    assert (status, "max_length" in message) == ("StatusCode.INVALID_ARGUMENT", True), message
    status, message = error(parsed, "wrong_version")
    assert (status, "only version '1'" in message) == ("StatusCode.INVALID_ARGUMENT", True)
    status, message = error(parsed, "wrong_input")
    assert (status, "WORDS" in message) == ("StatusCode.INVALID_ARGUMENT", True), message


def test_a_message_over_the_body_limit_is_resource_exhausted(parsed: dict[str, Any]) -> None:
    status, _ = error(parsed, "too_large")
    assert status == "StatusCode.RESOURCE_EXHAUSTED"


def test_methods_the_server_does_not_offer_are_unimplemented(parsed: dict[str, Any]) -> None:
    status, _ = error(parsed, "statistics")
    assert status == "StatusCode.UNIMPLEMENTED"


# --- deadlines and cancellation drop the queued item ------------------------------------------


def settled(server: Server, before: dict[str, float], want: dict[str, float]) -> dict[str, float]:
    """The slow models' counts once they reach `before` + `want` (the server purges a dropped
    item when the model is free again), or after 5 s."""
    for _ in range(50):
        now = counts(server)
        if all(now[key] >= before[key] + want.get(key, 0) for key in now):
            break
        time.sleep(0.1)
    return {key: now[key] - before[key] for key in now}


def test_client_timeout_is_the_deadline_and_the_server_drops_the_item(
    server: Server, report: dict[str, Any]
) -> None:
    for client in ("sync", "aio"):
        outcome = report["scenarios"][client]["deadline"]
        assert "LABEL" in outcome["busy"], (client, outcome["busy"])
        status, _ = error(outcome, "late")
        assert status == "StatusCode.DEADLINE_EXCEEDED", client
        assert outcome["late_s"] < SLOW_MS / 1000, client  # it did not wait for the busy call
    grew = settled(
        server, report["before"], {"slow-deadline dropped": 2, "slow-deadline batches": 2}
    )
    # one late item per client, dropped for its deadline or for the call's end, whichever the
    # server saw first
    assert grew["slow-deadline dropped"] == 2, grew
    assert grew["slow-deadline batches"] == 2, grew  # only the busy calls reached the model


def test_a_cancelled_call_is_dropped_from_the_queue(server: Server, report: dict[str, Any]) -> None:
    sync, aio = (report["scenarios"][client]["cancel"] for client in ("sync", "aio"))
    # sync: async_infer(...).cancel(), and the callback hears CANCELLED; aio: the task cancelled
    assert error(sync, "waiting")[0] == "StatusCode.CANCELLED"
    assert aio["waiting"] == "cancelled"
    for outcome in (sync, aio):
        assert "LABEL" in outcome["busy"], outcome["busy"]
    grew = settled(server, report["before"], {"slow-cancel cancelled": 2, "slow-cancel batches": 2})
    assert (grew["slow-cancel cancelled"], grew["slow-cancel deadline"]) == (2, 0), grew
    assert grew["slow-cancel batches"] == 2, grew  # the cancelled items never ran


# --- docs/clients.md --------------------------------------------------------------------------


def grpc_snippet() -> str:
    """The Python block of docs/clients.md's gRPC section."""
    (block,) = python_blocks("gRPC")
    return block


def test_the_docs_grpc_snippet_runs(server: Server) -> None:
    """As written, but for the address: its key is one of the server's, its models are served
    under the offline catalog's names."""
    snippet = grpc_snippet()
    assert SNIPPET_ADDRESS in snippet
    assert f"Bearer {SNIPPET_KEY}" in snippet
    assert all(name in snippet for name in SNIPPET_MODELS)
    out = run_client("-c", snippet.replace(SNIPPET_ADDRESS, server.grpc))
    assert out.startswith("True "), out  # is_server_ready(), then the model's metadata
    assert "POSITIVE" in out or "NEGATIVE" in out, out  # sentiment labels
    assert "praise" in out, out  # the candidate labels, ranked
    assert "complaint" in out, out
