"""Hostile input against the real server: each case gets its 4xx in the contract's format
(never a 5xx), and the server stays healthy after all of them."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

JSON = {"content-type": "application/json"}
SHORT_SENTENCES = "Yes. " * 9000  # 45,000 characters of one-word sentences
# ~100 windows (~13,000 padded tokens) of the tiny QA model: within the rows limit; one fits the
# token budget, two do not; more than one forward pass (max_batch_tokens 8192) either way
LONG_CONTEXT = "Yes. " * 3000


V2 = "/v2/models/tiny-sentiment/infer"
EMPTY_ELEMENTS = b"\x00\x00\x00\x00" * 200_000  # 200,000 empty BYTES elements, 800 KB


def binary_v2(shape: list[int]) -> dict[str, Any]:
    """A v2 binary-extension request announcing `shape` over EMPTY_ELEMENTS."""
    header = json.dumps(
        {"inputs": [{"name": "TEXT", "shape": shape, "datatype": "BYTES",
                     "parameters": {"binary_data_size": len(EMPTY_ELEMENTS)}}]}
    ).encode()  # fmt: skip
    return {"content": header + EMPTY_ELEMENTS,
            "headers": {"Inference-Header-Content-Length": str(len(header))}}  # fmt: skip


def v2_json(shape: list[int], data: Any) -> dict[str, Any]:
    return {"json": {"inputs": [{"name": "TEXT", "shape": shape, "datatype": "BYTES",
                                 "data": data}]}}  # fmt: skip


def nested(depth: int) -> bytes:
    return b'{"inputs": ' + b"[" * depth + b"]" * depth + b"}"


# (name, route, request keyword arguments, status, error type, words in the message)
CASES: list[tuple[str, str, dict[str, Any], int, str, list[str]]] = [
    ("invalid UTF-8", "/v1/sentiment",
     {"content": b'{"inputs": "caf\xe9 \xff"}', "headers": JSON}, 400, "invalid_json", ["UTF-8"]),
    ("truncated JSON", "/v1/sentiment", {"content": b'{"inputs": "x', "headers": JSON},
     400, "invalid_json", ["JSON"]),
    ("nested 5,000 deep", "/v1/sentiment", {"content": nested(5000), "headers": JSON},
     400, "invalid_json", ["JSON"]),
    ("nested 200 deep", "/v1/sentiment", {"content": nested(200), "headers": JSON},
     422, "invalid_input", ["inputs"]),
    ("a JSON array body", "/v1/sentiment", {"content": b"[1, 2]", "headers": JSON},
     422, "invalid_input", ["JSON object"]),
    ("JSON sent as text/plain", "/v1/sentiment",
     {"content": b'{"inputs": "x"}', "headers": {"content-type": "text/plain"}},
     422, "invalid_input", ["Content-Type"]),
    ("lone surrogate", "/v1/sentiment",
     {"content": b'{"inputs": "\\ud800"}', "headers": JSON}, 422, "invalid_input",
     ["inputs", "surrogate"]),
    ("lone surrogate in a QA context", "/v1/qa",
     {"content": b'{"inputs": {"question": "q?", "context": "a \\udfff b"}}', "headers": JSON},
     422, "invalid_input", ["inputs.context", "surrogate"]),
    ("zero-width spaces only", "/v1/sentiment", {"json": {"inputs": "\u200b\u200b\ufeff"}},
     422, "invalid_input", ["inputs", "zero-width"]),
    ("control characters only", "/v1/classify", {"json": {"inputs": "\x00\x01\x7f"}},
     422, "invalid_input", ["inputs"]),
    ("an empty item in a list", "/v1/embed", {"json": {"inputs": ["fine", " "]}},
     422, "invalid_input", ["inputs[1]"]),
    ("numbers for texts", "/v1/sentiment", {"json": {"inputs": [1, 2]}},
     422, "invalid_input", ["inputs[0]", "inputs[1]"]),
    ("a million-item list", "/v1/sentiment",
     {"content": json.dumps({"inputs": ["a"] * 100_000}).encode(), "headers": JSON},
     413, "payload_too_large", ["100000 items", "4096"]),
    ("more items than the limit", "/v1/sentiment", {"json": {"inputs": ["a"] * 9}},
     413, "payload_too_large", ["NLP_SERVE_MAX_ITEMS_PER_REQUEST"]),
    ("a text over the character limit", "/v1/embed", {"json": {"inputs": "a" * 60_001}},
     413, "payload_too_large", ["NLP_SERVE_MAX_INPUT_CHARS"]),
    ("a context of 9,000 sentences", "/v1/qa",
     {"json": {"inputs": {"question": "Yes?", "context": SHORT_SENTENCES},
               "model": "similarity-qa"}},
     413, "payload_too_large", ["NLP_SERVE_MAX_ROWS_PER_ITEM"]),
    ("QA windows over the token budget", "/v1/qa",
     {"json": {"inputs": [{"question": "Yes?", "context": LONG_CONTEXT}] * 2}},
     413, "payload_too_large", ["NLP_SERVE_MAX_TOKENS_PER_REQUEST"]),
    ("a template without a slot", "/v1/classify",
     {"json": {"inputs": "x", "candidate_labels": ["a"], "hypothesis_template": "no slot"}},
     422, "invalid_input", ["hypothesis_template", "exactly one {}"]),
    ("a template with two slots", "/v1/classify",
     {"json": {"inputs": "x", "candidate_labels": ["a"], "hypothesis_template": "{} {}"}},
     422, "invalid_input", ["exactly one {}"]),
    ("a template over 512 characters", "/v1/classify",
     {"json": {"inputs": "x", "candidate_labels": ["a"], "hypothesis_template": "{}" + "x" * 600}},
     422, "invalid_input", ["hypothesis_template"]),
    ("repeated labels", "/v1/classify",
     {"json": {"inputs": "x", "candidate_labels": ["a", "b", "a"]}},
     422, "invalid_input", ["candidate_labels", "['a']"]),
    ("a label over 256 characters", "/v1/classify",
     {"json": {"inputs": "x", "candidate_labels": ["a" * 300]}},
     422, "invalid_input", ["candidate_labels[0]"]),
    ("65 labels", "/v1/classify",
     {"json": {"inputs": "x", "candidate_labels": [f"l{i}" for i in range(65)]}},
     422, "invalid_input", ["candidate_labels"]),
    ("a superscript digit as timeout", "/v1/sentiment",
     {"json": {"inputs": "x"}, "headers": {"X-Request-Timeout-Ms": b"\xb2"}},
     422, "invalid_input", ["X-Request-Timeout-Ms"]),
    ("an absurd timeout", "/v1/sentiment",
     {"json": {"inputs": "x"}, "headers": {"X-Request-Timeout-Ms": "9" * 40}},
     422, "invalid_input", ["at most 9"]),
    ("a zero timeout", "/v1/sentiment",
     {"json": {"inputs": "x"}, "headers": {"X-Request-Timeout-Ms": "0"}},
     422, "invalid_input", ["positive"]),
    ("a body over the size limit", "/v1/embed",
     {"content": b'{"inputs": "' + b"a" * 1_100_000 + b'"}', "headers": JSON},
     413, "payload_too_large", ["NLP_SERVE_MAX_BODY_BYTES"]),
    ("an unknown field", "/v1/sentiment", {"json": {"inputs": "x", "candidate_labels": ["a"]}},
     422, "invalid_input", ["candidate_labels", "not permitted"]),
    # the protocol surfaces answer in their own error shapes (checked by error_of below)
    ("v2: data nested deeper than its shape", V2,
     {"content": b'{"inputs":[{"name":"TEXT","shape":[1],"datatype":"BYTES","data":'
                 + b"[" * 990 + b'"x"' + b"]" * 990 + b"}]}", "headers": JSON},
     422, "", ["nested deeper than its shape"]),
    ("v2: a superscript digit as header length", V2,
     {"content": b"{}", "headers": {"Inference-Header-Content-Length": b"\xb2"}},
     422, "", ["Inference-Header-Content-Length"]),
    ("v2: a shape of 200,000 elements", V2, binary_v2([200_000]),
     413, "", ["200000 elements", "4096"]),
    ("v2: more binary elements than the shape says", V2, binary_v2([1]),
     422, "", ["more than 1 elements"]),
    ("v2: 10,000 dimensions", V2, v2_json([1] * 10_000, ["a"]), 422, "", ["at most 8"]),
    ("v2: zero-width text", V2, v2_json([1], ["\u200b"]), 422, "", ["zero-width"]),
    ("openai: a lone surrogate", "/v1/embeddings",
     {"content": b'{"model": "tiny-embed", "input": "\\ud800"}', "headers": JSON},
     422, "invalid_request_error", ["surrogate"]),
    ("openai: zero-width text", "/v1/embeddings",
     {"json": {"model": "tiny-embed", "input": ["fine", "\u200b"]}},
     422, "invalid_request_error", ["input[1]"]),
    ("openai: 200,000 token ids", "/v1/embeddings",
     {"json": {"model": "tiny-embed", "input": [[1] * 200_000]}},
     413, "invalid_request_error", ["200000 items", "4096"]),
    ("detokenize: 30,000 token ids", "/v1/detokenize", {"json": {"inputs": [[1] * 30_000]}},
     413, "payload_too_large", ["30000 token ids", "NLP_SERVE_MAX_TOKENS_PER_REQUEST"]),
    ("detokenize: negative and huge ids", "/v1/detokenize",
     {"json": {"inputs": [[101], [7, -1, 2**70, -1]]}},
     422, "invalid_input", ["id list 1", f"-1, {2**70} are not", "vocabulary"]),
    ("detokenize: ids that are not whole numbers", "/v1/detokenize",
     {"json": {"inputs": [[1.5, "7", None]]}}, 422, "invalid_input", ["inputs[0][0]"]),
    ("tokenize: a text over the character limit", "/v1/tokenize",
     {"json": {"inputs": ["fine", "a" * 60_001]}},
     413, "payload_too_large", ["NLP_SERVE_MAX_INPUT_CHARS"]),
    ("tei decode: 300,000 ids", "/decode",
     {"content": json.dumps({"ids": [0] * 300_000}).encode(), "headers": JSON},
     413, "", ["300000 token ids"]),
    ("tei decode: negative ids", "/decode", {"json": {"ids": [[-3]]}},
     422, "", ["-3", "vocabulary"]),
]  # fmt: skip


def error_of(body: Any) -> tuple[str, str]:
    """(type, message) of an error body in any surface's shape: ours and OpenAI's
    {"error": {"type", "message"}}, or the HF / v2 {"error": "..."} (no type)."""
    error = body["error"]
    return ("", error) if isinstance(error, str) else (error["type"], error["message"])


@pytest.mark.parametrize(
    ("route", "request_kwargs", "status", "kind", "words"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_hostile_input_gets_its_4xx(
    hostile_server: str,
    route: str,
    request_kwargs: dict[str, Any],
    status: int,
    kind: str,
    words: list[str],
) -> None:
    response = httpx.post(f"{hostile_server}{route}", timeout=60, **request_kwargs)
    assert response.status_code == status, response.text
    error_type, message = error_of(response.json())
    assert error_type == kind
    for word in words:
        assert word in message, message
    for internal in ("function-after", "function-before", "Traceback", "pydantic"):
        assert internal not in message, message


@pytest.mark.parametrize("template", ["{} {1}", "{{}}{0:>5000000}", "{0} {}", "%s {} %(x)s"])
def test_templates_are_plain_text(hostile_server: str, template: str) -> None:
    body = {"inputs": "x", "candidate_labels": ["a", "b"], "hypothesis_template": template}
    for model in ("tiny-nli", "similarity-topics"):
        response = httpx.post(f"{hostile_server}/v1/classify", json={**body, "model": model})
        assert response.status_code == 200, response.text
        assert len(response.content) < 2000  # nothing was padded or formatted


def test_a_failing_item_is_named_and_its_neighbours_untouched(hostile_server: str) -> None:
    body = {"inputs": ["fine", "poison here", "also fine"], "model": "faulty"}
    response = httpx.post(f"{hostile_server}/v1/sentiment", json=body, timeout=30)
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "inference_failed"
    assert error["message"].startswith("inputs[1]: model 'faulty' failed")
    assert "fail_token" not in error["message"]  # the backend's own text stays in the log
    alone = httpx.post(f"{hostile_server}/v1/sentiment", json={"inputs": "fine", "model": "faulty"})
    assert alone.status_code == 200


def test_a_nan_score_is_a_500_never_null(hostile_server: str) -> None:
    body = {"inputs": ["fine", "nan"], "model": "faulty"}
    response = httpx.post(f"{hostile_server}/v1/sentiment", json=body, timeout=30)
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "inference_failed"
    assert "inputs[1]" in response.json()["error"]["message"]


def test_the_largest_allowed_qa_request_is_served(hostile_server: str) -> None:
    body = {"inputs": [{"question": "Yes?", "context": LONG_CONTEXT}]}
    response = httpx.post(f"{hostile_server}/v1/qa", json=body, timeout=120)
    assert response.status_code == 200, response.text
    assert len(response.json()["results"]) == 1


def test_the_server_is_healthy_after_all_of_it(hostile_server: str) -> None:
    assert httpx.get(f"{hostile_server}/healthz").status_code == 200
    assert httpx.get(f"{hostile_server}/readyz").status_code == 200
    for route, body in (("/v1/sentiment", {"inputs": "good"}), ("/v1/embed", {"inputs": "x"})):
        assert httpx.post(f"{hostile_server}{route}", json=body).status_code == 200
    metrics = httpx.get(f"{hostile_server}/metrics").text
    served_5xx = [
        line for line in metrics.splitlines()
        if line.startswith("nlp_serve_requests_total") and 'status="5' in line
        and 'model="faulty"' not in line and not line.endswith(" 0.0")
    ]  # fmt: skip
    assert not served_5xx, served_5xx


def test_a_long_text_is_tokenized_whole(hostile_server: str) -> None:
    """10,000 characters: every token comes back (off the event loop), the model's share
    is max_length."""
    text = "Lovelace " * 1111 + "x"
    response = httpx.post(f"{hostile_server}/v1/tokenize", json={"inputs": text}, timeout=30)
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert len(result["ids"]) == 2 * 1111 + 3
    assert result["model_tokens"] == result["max_length"] == 128
    tei = httpx.post(f"{hostile_server}/tokenize", json={"inputs": text}, timeout=30)
    assert tei.status_code == 200, tei.text
    assert [t["id"] for t in tei.json()[0]] == result["ids"]
