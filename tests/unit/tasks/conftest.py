from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import AutoConfig, AutoTokenizer

from app.spec import ModelSpec
from app.tasks import task_class


@pytest.fixture(scope="session")
def make_task(tiny_models: dict[str, Path]) -> Any:
    def make(task: str, model: str, **spec_fields: Any) -> Any:
        directory = tiny_models[model]
        spec = ModelSpec(name=f"unit-{model}", task=task, source=str(directory), **spec_fields)  # type: ignore[arg-type]
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
        return task_class(spec)(spec, directory, tokenizer, AutoConfig.from_pretrained(directory))

    return make
