from __future__ import annotations

from fastapi import APIRouter, Request

from app.errors import UnsupportedLanguagePair
from app.registry.model import ServedModel
from app.registry.registry import Registry
from app.responses import JSONResponse
from app.routers.common import TASK_ROUTE_OPTIONS, answer, as_list, check_limits, registry_of, run
from app.schemas.translate import TranslateRequest, TranslateResponse
from app.spec import LanguagePair, TaskName
from app.tasks.generation import TranslateParams, TranslateTask

router = APIRouter(tags=["tasks"])


def _choose(
    registry: Registry, name: str | None, source: str | None, target: str
) -> tuple[ServedModel, LanguagePair]:
    names = [name] if name is not None else registry.names_for(TaskName.TRANSLATE)
    if not names:
        registry.for_task(TaskName.TRANSLATE)  # raises TaskNotServed: no translation model
    supported: list[str] = []
    for candidate in names:
        model = registry.for_task(TaskName.TRANSLATE, candidate)
        assert isinstance(model.task, TranslateTask)
        pair = model.task.pair(source, target)
        if pair is not None:
            return model, pair
        supported += [p.key for p in model.spec.languages]
    wanted = f"{source or '*'}-{target}"
    where = f"model {name!r}" if name else "this catalog"
    raise UnsupportedLanguagePair(
        f"{where} does not translate {wanted}; supported pairs: {sorted(set(supported))}"
    )


@router.post("/v1/translate", response_model=TranslateResponse, **TASK_ROUTE_OPTIONS)
async def translate(request: Request, body: TranslateRequest) -> JSONResponse:
    texts = as_list(body.inputs)
    check_limits(request, len(texts), texts)
    model, pair = _choose(registry_of(request), body.model, body.source_lang, body.target_lang)
    params = TranslateParams(pair=pair, max_new_tokens=body.max_new_tokens)
    return answer(model, await run(request, model, texts, params))
