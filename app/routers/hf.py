"""The Hugging Face Inference API, as huggingface_hub's InferenceClient calls it.

One URL per model (/hf/models/{name}: the task comes from the model and the payload) and one
per HF task (/hf/tasks/{task}: the task's default model). Answers take the shapes the client's
generation parses, told by its User-Agent (app/protocols/hf.py). Errors are {"error": "..."}.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel

from app.errors import TaskNotServed
from app.protocols.hf import (
    SERVED_BY,
    HFTask,
    client_generation,
    hf_task_of,
    serve,
)
from app.responses import JSONResponse
from app.routers.common import answer_headers, core_of, serving

router = APIRouter(tags=["huggingface"])


class HFError(BaseModel):
    error: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": HFError} for code in (401, 404, 413, 422, 429, 500, 503, 504)
}
PAYLOAD = Body(
    description='{"inputs": ..., "parameters": {...}} as InferenceClient sends it',
    examples=[{"inputs": "I love this!", "parameters": {"top_k": 2}}],
)


async def _serve(request: Request, task: HFTask, payload: Any, name: str | None) -> JSONResponse:
    core = core_of(request)
    served_by = core.handle(name).model.spec.task if name is not None else SERVED_BY[task]
    generation = client_generation(request.headers.get("user-agent"))
    shaped, answer = await serving(
        request,
        lambda core, call: serve(core, task, payload, name, served_by, generation, call),
        core,
    )
    # the shape depends on the User-Agent: caches must not hand one client's to another
    headers = {**answer_headers(core, answer), "Vary": "User-Agent"}
    return JSONResponse(shaped, headers=headers)


@router.post("/hf/models/{name}", responses=ERRORS, response_class=JSONResponse)
async def hf_model(request: Request, name: str, payload: Any = PAYLOAD) -> JSONResponse:
    """Point `InferenceClient(model="http://host/hf/models/{name}")` here: the model's task
    and the payload decide the answer (e.g. an embed model answers feature_extraction and
    sentence_similarity)."""
    model = core_of(request).handle(name).model
    task = hf_task_of(model.spec.task, payload if isinstance(payload, dict) else {})
    return await _serve(request, task, payload, name)


@router.post("/hf/tasks/{task}", responses=ERRORS, response_class=JSONResponse)
async def hf_task(request: Request, task: str, payload: Any = PAYLOAD) -> JSONResponse:
    """The HF task's default model in this catalog answers; `task` is one of
    text-classification, zero-shot-classification, question-answering, summarization,
    translation, token-classification, feature-extraction, sentence-similarity."""
    if task not in HFTask.__members__.values():
        raise TaskNotServed(
            f"no Hugging Face task {task!r} is served here; use one of {[t.value for t in HFTask]}"
        )
    return await _serve(request, HFTask(task), payload, None)
