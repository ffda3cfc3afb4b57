from __future__ import annotations

from fastapi import APIRouter, Request

from app.responses import JSONResponse
from app.routers.common import TASK_ROUTE_OPTIONS, answer, as_list, check_limits, registry_of, run
from app.schemas.qa import QARequest, QAResponse
from app.spec import TaskName
from app.tasks.qa import QAItem, QAParams

router = APIRouter(tags=["tasks"])


@router.post("/v1/qa", response_model=QAResponse, **TASK_ROUTE_OPTIONS)
async def qa(request: Request, body: QARequest) -> JSONResponse:
    pairs = as_list(body.inputs)
    check_limits(request, len(pairs), (t for p in pairs for t in (p.question, p.context)))
    model = registry_of(request).for_task(TaskName.QA, body.model)
    items = [QAItem(p.question, p.context) for p in pairs]
    params = QAParams(top_k=body.top_k, max_answer_len=body.max_answer_len)
    results = await run(request, model, items, params)
    # top_k == 1 keeps the contract's one-answer-per-input shape; above 1 each is a list.
    return answer(model, [r[0] for r in results] if body.top_k == 1 else results)
