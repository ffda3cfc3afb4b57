"""The floor for latency at concurrency 1: the least a Python server can do per request.

A bare ASGI app on uvicorn (no framework, no middleware, no metrics, no queue): read the body,
parse it with orjson, tokenize, run the forward pass on one model thread (off the event loop,
as nlp-serve does), softmax, answer. It reports its forward pass in a Server-Timing header like
nlp-serve, so the load generator measures each request's latency beyond its forward pass the
same way for both. What it still pays is what any Python server on this machine pays: the
event loop, HTTP parsing, tokenization and the two thread hand-offs.

    MINIMAL_MODEL_DIR=... GOMP_SPINCOUNT=30000 \
        uvicorn bench.baselines.minimal_asgi:app --port 9000 --log-level warning
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

MODEL_DIR = os.environ["MINIMAL_MODEL_DIR"]
JSON_HEADERS = [(b"content-type", b"application/json")]
tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)
# Loaded and run on one thread, as nlp-serve does (one OpenMP team; see app/registry).
model_thread = ThreadPoolExecutor(1, thread_name_prefix="model")


def load() -> Any:
    loaded = AutoModelForSequenceClassification.from_pretrained(MODEL_DIR).eval()
    with torch.inference_mode():
        loaded(**tokenizer("warm-up request", return_tensors="pt"))
    return loaded


model = model_thread.submit(load).result()
labels = [model.config.id2label[i] for i in range(model.config.num_labels)]


def forward(row: dict[str, list[int]]) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    with torch.inference_mode():
        logits = model(**{key: torch.tensor([ids]) for key, ids in row.items()}).logits
    return logits[0].numpy(), time.perf_counter() - started


async def read_body(receive: Any) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def answer(send: Any, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["path"] != "/v1/sentiment":  # /readyz and anything else
        await answer(send, b'{"status":"ready"}', JSON_HEADERS)
        return
    text = orjson.loads(await read_body(receive))["inputs"]
    encoding = tokenizer(text, truncation=True)
    row = {key: list(encoding[key]) for key in tokenizer.model_input_names}
    logits, seconds = await asyncio.get_running_loop().run_in_executor(model_thread, forward, row)
    scores = np.exp(logits - logits.max())
    scores /= scores.sum()
    best = int(scores.argmax())
    result = {"label": labels[best], "score": float(scores[best])}
    timing = f"forward;dur={seconds * 1000:.3f}".encode()
    await answer(
        send,
        orjson.dumps({"model": "minimal", "results": [result]}),
        [*JSON_HEADERS, (b"server-timing", timing)],
    )
