from __future__ import annotations

from fastapi import APIRouter, Request

from app.registry.model import ServedModel
from app.responses import JSONResponse
from app.routers.common import TASK_ROUTE_OPTIONS, answer, as_list, check_limits, registry_of, run
from app.schemas.classify import ClassifyRequest, ClassifyResponse
from app.spec import TaskName
from app.tasks.classification import ClassifyParams

router = APIRouter(tags=["tasks"])


def _pick_model(request: Request, body: ClassifyRequest) -> ServedModel:
    """With candidate_labels and no model named, prefer the first zero-shot classifier."""
    registry = registry_of(request)
    if body.model is None and body.candidate_labels:
        for name in registry.names_for(TaskName.CLASSIFY):
            model = registry.get(name)
            if getattr(model.task, "zero_shot", False):
                return model
    return registry.for_task(TaskName.CLASSIFY, body.model)


@router.post("/v1/classify", response_model=ClassifyResponse, **TASK_ROUTE_OPTIONS)
async def classify(request: Request, body: ClassifyRequest) -> JSONResponse:
    texts = as_list(body.inputs)
    check_limits(request, len(texts), texts)
    model = _pick_model(request, body)
    params = ClassifyParams(
        candidate_labels=tuple(body.candidate_labels) if body.candidate_labels else None,
        multi_label=body.multi_label,
        top_k=body.top_k,
        hypothesis_template=body.hypothesis_template,
    )
    model.task.check(params)
    return answer(model, await run(request, model, texts, params))
