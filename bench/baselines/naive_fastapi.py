"""The naive baseline: how most tutorials serve a model.

A FastAPI app that calls a transformers pipeline once per request in a sync endpoint (so
FastAPI runs it in its thread pool), no batching. It takes nlp-serve's request shape so the
same load hits both.

    NAIVE_MODEL_DIR=... uvicorn bench.baselines.naive_fastapi:app --port 9000
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from transformers import pipeline

app = FastAPI()
classifier = pipeline("text-classification", model=os.environ["NAIVE_MODEL_DIR"], device="cpu")
generator = None
if os.environ.get("NAIVE_SEQ2SEQ_DIR"):
    generator = pipeline(
        "text2text-generation", model=os.environ["NAIVE_SEQ2SEQ_DIR"], device="cpu"
    )


class Request(BaseModel):
    inputs: str
    model: str | None = None
    min_length: int | None = None
    max_length: int | None = None


@app.get("/readyz")
def ready() -> dict[str, str]:
    return {"status": "ready"}


@app.post("/v1/sentiment")
def sentiment(request: Request) -> dict[str, Any]:
    result = classifier(request.inputs, truncation=True)
    return {"model": "naive", "results": result}


@app.post("/v1/summarize")
def summarize(request: Request) -> dict[str, Any]:
    assert generator is not None
    out = generator(
        request.inputs,
        min_new_tokens=request.min_length,
        max_new_tokens=request.max_length,
        truncation=True,
    )
    return {"model": "naive", "results": out}
