"""Per-task pre/post-processing, independent of any backend."""

from __future__ import annotations

from typing import Any

from app.registry.spec import TaskName
from app.tasks.base import Task
from app.tasks.classification import ClassifyTask, SentimentTask
from app.tasks.embed import EmbedTask
from app.tasks.generation import SummarizeTask, TranslateTask
from app.tasks.ner import NERTask
from app.tasks.qa import QATask

TASKS: dict[TaskName, type[Task[Any, Any, Any]]] = {
    TaskName.CLASSIFY: ClassifyTask,
    TaskName.SENTIMENT: SentimentTask,
    TaskName.QA: QATask,
    TaskName.TRANSLATE: TranslateTask,
    TaskName.SUMMARIZE: SummarizeTask,
    TaskName.NER: NERTask,
    TaskName.EMBED: EmbedTask,
}
