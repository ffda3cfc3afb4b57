"""Protocol surfaces answer through our native task routes: one body, one path, same limits."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from app.routers import classify, embed, ner, qa, sentiment, summarize, translate
from app.schemas.classify import ClassifyRequest
from app.schemas.embed import EmbedRequest
from app.schemas.ner import NERRequest
from app.schemas.qa import QARequest
from app.schemas.sentiment import SentimentRequest
from app.schemas.summarize import SummarizeRequest
from app.schemas.translate import TranslateRequest
from app.spec import TaskName

NATIVE: dict[TaskName, tuple[type[BaseModel], Any]] = {
    TaskName.CLASSIFY: (ClassifyRequest, classify.classify),
    TaskName.SENTIMENT: (SentimentRequest, sentiment.sentiment),
    TaskName.QA: (QARequest, qa.qa),
    TaskName.TRANSLATE: (TranslateRequest, translate.translate),
    TaskName.SUMMARIZE: (SummarizeRequest, summarize.summarize),
    TaskName.NER: (NERRequest, ner.ner),
    TaskName.EMBED: (EmbedRequest, embed.embed),
}


async def native_results(
    request: Request, task: TaskName, body: dict[str, Any]
) -> tuple[str, list[Any]]:
    """(model name, JSON-ready results) of the native route for `task` given `body`."""
    schema, route = NATIVE[task]
    try:
        parsed = schema.model_validate(body)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    response = await route(request, parsed)
    answer = orjson.loads(response.body)
    return str(answer["model"]), list(answer["results"])
