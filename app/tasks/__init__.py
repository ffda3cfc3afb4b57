"""Per-task pre/post-processing, independent of any backend."""

from __future__ import annotations

from typing import Any

from app.spec import ModelSpec, TaskName
from app.tasks.base import Task
from app.tasks.causal import GenerateTask
from app.tasks.classification import ClassifyTask, SentimentTask
from app.tasks.embed import EmbedTask
from app.tasks.fill_mask import FillMaskTask
from app.tasks.generation import SummarizeTask, TranslateTask
from app.tasks.ner import NERTask
from app.tasks.qa import QATask
from app.tasks.rerank import RerankTask
from app.tasks.semantic import (
    SemanticClassifyTask,
    SemanticQATask,
    SemanticRerankTask,
    SemanticSentimentTask,
    SemanticSummarizeTask,
)
from app.tasks.sparse import SparseEmbedTask

TaskClass = type[Task[Any, Any, Any]]

# (task, method) -> implementation. "head" uses the model's fine-tuned head; "semantic"
# answers from sentence embeddings (see app/tasks/semantic.py).
TASKS: dict[tuple[TaskName, str], TaskClass] = {
    (TaskName.CLASSIFY, "head"): ClassifyTask,
    (TaskName.SENTIMENT, "head"): SentimentTask,
    (TaskName.QA, "head"): QATask,
    (TaskName.TRANSLATE, "head"): TranslateTask,
    (TaskName.SUMMARIZE, "head"): SummarizeTask,
    (TaskName.NER, "head"): NERTask,
    (TaskName.EMBED, "head"): EmbedTask,
    (TaskName.FILL_MASK, "head"): FillMaskTask,
    (TaskName.EMBED_SPARSE, "head"): SparseEmbedTask,
    (TaskName.RERANK, "head"): RerankTask,
    (TaskName.GENERATE, "head"): GenerateTask,
    (TaskName.CLASSIFY, "semantic"): SemanticClassifyTask,
    (TaskName.SENTIMENT, "semantic"): SemanticSentimentTask,
    (TaskName.QA, "semantic"): SemanticQATask,
    (TaskName.SUMMARIZE, "semantic"): SemanticSummarizeTask,
    (TaskName.RERANK, "semantic"): SemanticRerankTask,
}


def task_class(spec: ModelSpec) -> TaskClass:
    return TASKS[(spec.task, spec.method)]
