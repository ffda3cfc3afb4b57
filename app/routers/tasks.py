"""The native task routes, one per row of TASK_ROUTES: each declares its schemas and nothing
else; the request schema knows its core method (app/schemas/)."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import APIRouter, Request

from app.responses import JSONResponse
from app.routers.common import TASK_ROUTE_OPTIONS, serve_task
from app.schemas.classify import ClassifyRequest, ClassifyResponse
from app.schemas.common import TaskRequest, TaskResponse
from app.schemas.embed import EmbedRequest, EmbedResponse
from app.schemas.embed_sparse import SparseEmbedRequest, SparseEmbedResponse
from app.schemas.fill_mask import FillMaskRequest, FillMaskResponse
from app.schemas.ner import NERRequest, NERResponse
from app.schemas.qa import QARequest, QAResponse
from app.schemas.sentiment import SentimentRequest, SentimentResponse
from app.schemas.summarize import SummarizeRequest, SummarizeResponse
from app.schemas.translate import TranslateRequest, TranslateResponse
from app.spec import TaskName


@dataclass(frozen=True)
class TaskRoute:
    path: str
    task: TaskName
    request_model: type[TaskRequest]
    response_model: type[TaskResponse]
    summary: str


TASK_ROUTES = (
    TaskRoute("/v1/classify", TaskName.CLASSIFY, ClassifyRequest, ClassifyResponse,
              "Classify texts: a model's fixed labels, or zero-shot candidate_labels"),
    TaskRoute("/v1/sentiment", TaskName.SENTIMENT, SentimentRequest, SentimentResponse,
              "Sentiment of texts"),
    TaskRoute("/v1/qa", TaskName.QA, QARequest, QAResponse,
              "Answer questions from a context: spans with character offsets"),
    TaskRoute("/v1/translate", TaskName.TRANSLATE, TranslateRequest, TranslateResponse,
              "Translate texts; the model is picked by the language pair"),
    TaskRoute("/v1/summarize", TaskName.SUMMARIZE, SummarizeRequest, SummarizeResponse,
              "Summarize texts"),
    TaskRoute("/v1/ner", TaskName.NER, NERRequest, NERResponse,
              "Named entities with character offsets"),
    TaskRoute("/v1/embed", TaskName.EMBED, EmbedRequest, EmbedResponse,
              "Sentence embeddings"),
    TaskRoute("/v1/embed-sparse", TaskName.EMBED_SPARSE, SparseEmbedRequest, SparseEmbedResponse,
              "Sparse (SPLADE) embeddings: vocabulary weights as {index, value}"),
    TaskRoute("/v1/fill-mask", TaskName.FILL_MASK, FillMaskRequest, FillMaskResponse,
              "A masked language model's best tokens for the mask in each input"),
)  # fmt: skip


def _endpoint(route: TaskRoute) -> Callable[[Request, TaskRequest], Awaitable[JSONResponse]]:
    async def endpoint(request: Request, body: TaskRequest) -> JSONResponse:
        return await serve_task(request, body)

    # FastAPI reads the body's schema from the annotation: make it this route's own model.
    endpoint.__annotations__ = {**endpoint.__annotations__, "body": route.request_model}
    endpoint.__name__ = route.task.value
    return endpoint


router = APIRouter(tags=["tasks"])
for _route in TASK_ROUTES:
    router.add_api_route(
        _route.path,
        _endpoint(_route),
        methods=["POST"],
        response_model=_route.response_model,
        summary=_route.summary,
        **TASK_ROUTE_OPTIONS,
    )
