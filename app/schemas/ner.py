from __future__ import annotations

from pydantic import Field

from app.core import Answer, CallContext, InferenceCore
from app.schemas.common import TaskOptions, TaskResponse, TextTaskRequest, as_list
from app.tasks.ner import Aggregation, Entity, NERParams, TokenEntity


class NEROptions(TaskOptions):
    aggregation_strategy: Aggregation = Field(
        default=Aggregation.SIMPLE,
        description=(
            "How tokens become entities, as the Hugging Face transformers pipeline does it. "
            '"simple": adjacent tokens of one type grouped (a B- tag starts a new entity). '
            '"first", "average", "max": each word first gets one label (its first token\'s, '
            "the best mean over its tokens, its most confident token's), then words are "
            'grouped, so a word is never split. "none": every labelled token on its own, as '
            "{entity, score, index, word, start, end}."
        ),
    )

    def task_params(self) -> NERParams:
        return NERParams(aggregation_strategy=self.aggregation_strategy)


class NERRequest(NEROptions, TextTaskRequest):
    async def serve(
        self, core: InferenceCore, call: CallContext
    ) -> Answer[list[Entity] | list[TokenEntity]]:
        return await core.ner(as_list(self.inputs), self.task_params(), model=self.model, call=call)


class NERResponse(TaskResponse):
    results: list[list[Entity] | list[TokenEntity]] = Field(
        description=(
            "Each input's entities in text order: {entity_group, ...} groups, or "
            '{entity, index, ...} tokens with aggregation_strategy "none".'
        )
    )
