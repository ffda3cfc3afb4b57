"""The naive baseline: how most tutorials serve a model.

A FastAPI app that calls a transformers pipeline once per request in a sync endpoint (so
FastAPI runs it in its thread pool), no batching. transformers 5 has no text2text
pipeline, so summaries call the model's own generate() per request, as its documentation
shows. It takes nlp-serve's request shape so the same load hits both.

    NAIVE_MODEL_DIR=... uvicorn bench.baselines.naive_fastapi:app --port 9000
"""

from __future__ import annotations

import os
from typing import Any

import torch
from fastapi import FastAPI
from pydantic import BaseModel
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

app = FastAPI()
classifier = pipeline("text-classification", model=os.environ["NAIVE_MODEL_DIR"], device="cpu")
seq2seq: tuple[Any, Any] | None = None
if os.environ.get("NAIVE_SEQ2SEQ_DIR"):
    seq2seq = (
        AutoTokenizer.from_pretrained(os.environ["NAIVE_SEQ2SEQ_DIR"]),
        AutoModelForSeq2SeqLM.from_pretrained(os.environ["NAIVE_SEQ2SEQ_DIR"]).eval(),
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
    assert seq2seq is not None
    tokenizer, model = seq2seq
    inputs = tokenizer(request.inputs, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        ids = model.generate(
            **inputs, min_new_tokens=request.min_length, max_new_tokens=request.max_length
        )
    text = tokenizer.decode(ids[0], skip_special_tokens=True)
    return {"model": "naive", "results": [{"summary_text": text}]}
