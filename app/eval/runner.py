"""Running a labelled set through a model: over HTTP (a running server) or in-process (the
catalog loaded with the app factory), then scoring, comparing and reporting."""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from app.core import InferenceCore
from app.eval import metrics, scoring
from app.eval.data import DataError, LabelledSet
from app.routers.tasks import TASK_ROUTES
from app.spec import TaskName

ROUTES = {route.task: route for route in TASK_ROUTES}
PROGRESS_MIN_REQUESTS = 50  # shorter runs finish before a bar says anything


class EvalError(RuntimeError):
    """A request the model refused or that failed; the message carries the server's."""


class Client(Protocol):
    async def post(self, task: TaskName, body: dict[str, Any]) -> dict[str, Any]: ...

    def tokenizer(self, model: str | None, task: TaskName) -> Any: ...


class HttpClient:
    """A running server's HTTP API (urllib in threads: no client library needed)."""

    def __init__(self, url: str, tokenizer_dir: Path | None = None, timeout: float = 300) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._tokenizer_dir = tokenizer_dir

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except urllib.error.HTTPError as exc:
            raise EvalError(f"{path} answered {exc.code}: {exc.read().decode()[:500]}") from None
        except urllib.error.URLError as exc:
            raise EvalError(
                f"cannot reach {self.url}: {exc.reason}; is the server running?"
            ) from None

    async def post(self, task: TaskName, body: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(self._post, ROUTES[task].path, body)

    def tokenizer(self, model: str | None, task: TaskName) -> Any:
        if self._tokenizer_dir is None:
            return None
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self._tokenizer_dir))


class InProcessClient:
    """The catalog's models in this process, without HTTP: each body is read by the native
    route's request schema and served by the same core method, limits included."""

    def __init__(self, core: InferenceCore) -> None:
        self.core = core

    async def post(self, task: TaskName, body: dict[str, Any]) -> dict[str, Any]:
        from pydantic import ValidationError

        from app.errors import ServeError

        route = ROUTES[task]
        try:
            request = route.request_model.model_validate(body)
            answer = await request.serve(self.core, self.core.context())
        except ValidationError as exc:
            raise EvalError(f"{route.path}: invalid request: {exc.errors()[0]['msg']}") from None
        except ServeError as exc:
            raise EvalError(f"{route.path}: {exc.message}") from None
        shaped = route.response_model(model=answer.model, results=answer.results)
        dumped: dict[str, Any] = shaped.model_dump(mode="json")
        return dumped

    def tokenizer(self, model: str | None, task: TaskName) -> Any:
        registry = self.core.registry
        names = [model] if model else registry.names_for(task)
        return registry.handle(names[0]).model.task.tokenizer if names else None


@asynccontextmanager
async def in_process(catalog: Path) -> AsyncIterator[InProcessClient]:
    """The app factory and its lifespan (loads and warms every model of the catalog)."""
    from app.main import create_app
    from app.settings import Settings

    app = create_app(Settings(models=catalog))
    async with app.router.lifespan_context(app):
        yield InProcessClient(app.state.core)


@dataclass
class RunResult:
    model: str
    task: TaskName
    metrics: dict[str, float]
    predictions: list[scoring.Prediction]
    latencies_s: list[float] = field(repr=False)


class Progress:
    """A one-line bar on stderr for long runs."""

    def __init__(self, total: int, label: str, stream: TextIO = sys.stderr) -> None:
        self.total, self.done, self.label, self.stream = total, 0, label, stream
        self.on = total >= PROGRESS_MIN_REQUESTS

    def step(self) -> None:
        self.done += 1
        if self.on and (self.done == self.total or self.done % max(1, self.total // 50) == 0):
            filled = 30 * self.done // self.total
            self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] "
                              f"{self.done}/{self.total}")  # fmt: skip
            if self.done == self.total:
                self.stream.write("\n")
            self.stream.flush()


async def evaluate(
    client: Client, data: LabelledSet, model: str | None, concurrency: int = 4
) -> RunResult:
    """Every example through the model (one request per input, `concurrency` at a time)."""
    task = data.task
    tokenizer = client.tokenizer(model, task) if task is TaskName.FILL_MASK else None
    bodies = [scoring.requests(task, example, tokenizer) for example in data.examples]
    flat = [(i, body if model is None else {**body, "model": model})
            for i, item in enumerate(bodies) for body in item]  # fmt: skip
    answers: list[list[Any]] = [[None] * len(item) for item in bodies]
    latencies: list[float] = []
    served_by: set[str] = set()
    progress = Progress(len(flat), model or task.value)
    semaphore = asyncio.Semaphore(max(1, concurrency))
    slot = [0] * len(bodies)
    positions = []
    for index, _ in flat:
        positions.append(slot[index])
        slot[index] += 1

    async def one(k: int) -> None:
        index, body = flat[k]
        async with semaphore:
            start = time.perf_counter()
            answer = await client.post(task, body)
            latencies.append(time.perf_counter() - start)
        served_by.add(str(answer["model"]))
        answers[index][positions[k]] = answer["results"][0]
        progress.step()

    started = time.perf_counter()
    await asyncio.gather(*(one(k) for k in range(len(flat))))
    wall = time.perf_counter() - started
    predictions = [
        scoring.predict(task, example, answers[i]) for i, example in enumerate(data.examples)
    ]
    scores = scoring.SET_METRICS[task](data.examples, predictions)
    scores.update(metrics.latency(latencies, wall, len(data.examples)))
    name = model or ",".join(sorted(served_by))
    return RunResult(name, task, scores, predictions, latencies)


@dataclass
class Comparison:
    a: RunResult
    b: RunResult
    agreement: float
    differences: dict[str, float]
    worst: list[dict[str, Any]]


def compare(a: RunResult, b: RunResult, data: LabelledSet, worst: int = 10) -> Comparison:
    """Item by item: the share of same predictions (label, span, entities, text) and the
    disagreements whose own scores differ most."""
    pairs = list(zip(a.predictions, b.predictions, strict=True))
    same = [pa.key == pb.key for pa, pb in pairs]
    rows: list[dict[str, Any]] = [
        {
            "line": example.line,
            "input": _shown_input(example.fields),
            a.model: pa.shown,
            b.model: pb.shown,
            "score_difference": pb.score - pa.score,
        }
        for example, (pa, pb), agree in zip(data.examples, pairs, same, strict=True)
        if not agree
    ]
    disagreements = sorted(rows, key=lambda row: -abs(float(row["score_difference"])))
    differences = {key: b.metrics[key] - a.metrics[key] for key in a.metrics if key in b.metrics}
    return Comparison(a, b, sum(same) / len(same) if same else math.nan, differences,
                      disagreements[:worst])  # fmt: skip


def _shown_input(fields: dict[str, Any], width: int = 60) -> str:
    text = str(fields.get("question") or fields.get("text") or "")
    return text if len(text) <= width else text[: width - 1] + "…"


def table(rows: Sequence[RunResult]) -> str:
    """Models as rows, metrics as columns (the task's own first, then latency)."""
    keys = list(dict.fromkeys(key for row in rows for key in row.metrics))
    header = ["model", "task", "n", *keys]
    body = [
        [row.model, row.task.value, str(len(row.predictions)),
         *(_number(row.metrics.get(key)) for key in keys)]
        for row in rows
    ]  # fmt: skip
    return _grid(header, body)


def comparison_table(result: Comparison) -> str:
    lines = [table([result.a, result.b]), ""]
    lines.append("difference (" + result.b.model + " - " + result.a.model + "): " + ", ".join(
        f"{key} {value:+.4g}" for key, value in result.differences.items()))  # fmt: skip
    lines.append(f"agreement: {100 * result.agreement:.1f}% of items predict the same "
                 f"({_kind_of(result.a.task)})")  # fmt: skip
    if result.worst:
        lines.append(f"worst disagreements (by {scoring.ITEM_SCORE[result.a.task]} difference):")
        header = ["line", "input", result.a.model, result.b.model, "difference"]
        body = [[str(r["line"]), str(r["input"]), _cut(str(r[result.a.model])),
                 _cut(str(r[result.b.model])), f"{r['score_difference']:+.3g}"]
                for r in result.worst]  # fmt: skip
        lines.append(_grid(header, body))
    return "\n".join(lines)


def _kind_of(task: TaskName) -> str:
    return {TaskName.QA: "same span", TaskName.NER: "same entities",
            TaskName.SUMMARIZE: "same text", TaskName.TRANSLATE: "same text",
            TaskName.FILL_MASK: "same pseudo-log-likelihood to 3 decimals"}.get(
        task, "same label")  # fmt: skip


def _cut(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _grid(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt.format(*header), rule, *(fmt.format(*r) for r in body)])


def as_json(rows: Sequence[RunResult], data: LabelledSet, cmp: Comparison | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "data": str(data.path),
        "task": data.task.value,
        "items": len(data.examples),
        "results": [{"model": r.model, "metrics": r.metrics} for r in rows],
    }
    if cmp is not None:
        out["comparison"] = {
            "a": cmp.a.model, "b": cmp.b.model, "agreement": cmp.agreement,
            "differences": cmp.differences, "worst_disagreements": cmp.worst,
        }  # fmt: skip
    return out


__all__ = ["DataError", "EvalError", "compare", "evaluate", "in_process", "table"]
