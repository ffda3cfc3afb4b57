"""Reading a labelled JSONL set: one example per line, all of one task (docs/evaluation.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.spec import TaskName

# Fields each task's lines must carry besides "task" (and an optional "params" object).
REQUIRED: dict[TaskName, tuple[str, ...]] = {
    TaskName.CLASSIFY: ("text", "label"),
    TaskName.SENTIMENT: ("text", "label"),
    TaskName.QA: ("question", "context", "answers"),
    TaskName.SUMMARIZE: ("text", "summary"),
    TaskName.TRANSLATE: ("text", "translation", "source_lang", "target_lang"),
    TaskName.NER: ("text", "entities"),
    TaskName.FILL_MASK: ("text",),
}


class DataError(ValueError):
    """A labelled file that cannot be read; the message names the line and the fix."""


@dataclass(frozen=True)
class Example:
    line: int
    fields: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LabelledSet:
    path: Path
    task: TaskName
    examples: list[Example]


def load(path: Path) -> LabelledSet:
    if not path.is_file():
        raise DataError(f"{path}: no such file; pass a JSONL file with --data")
    task: TaskName | None = None
    examples: list[Example] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{path}:{number}"
        try:
            line = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not JSON ({exc.msg}); write one object per line") from None
        if not isinstance(line, dict):
            raise DataError(f"{where}: each line must be a JSON object")
        try:
            this = TaskName(str(line.get("task")))
        except ValueError:
            known = ", ".join(t.value for t in REQUIRED)
            raise DataError(f'{where}: "task" must be one of {known}') from None
        if this not in REQUIRED:
            raise DataError(f"{where}: task {this.value!r} has no evaluation")
        if task is not None and this is not task:
            raise DataError(f"{where}: task {this.value!r}, but earlier lines are {task.value!r}"
                            "; put each task in its own file")  # fmt: skip
        task = this
        missing = [name for name in REQUIRED[this] if name not in line]
        if missing:
            raise DataError(f"{where}: {this.value} lines need {list(REQUIRED[this])}; "
                            f"missing {missing}")  # fmt: skip
        params = line.get("params", {})
        if not isinstance(params, dict):
            raise DataError(f'{where}: "params" must be an object of request fields')
        fields = {k: v for k, v in line.items() if k not in ("task", "params")}
        examples.append(Example(number, fields, params))
    if task is None:
        raise DataError(f"{path}: no examples")
    return LabelledSet(path, task, examples)
