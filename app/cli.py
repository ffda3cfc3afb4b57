"""`nlp-serve serve | export | pull | check-catalog | eval`: the command-line entry point."""

from __future__ import annotations

import argparse
import logging
import logging.config
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from app.errors import CatalogError
from app.spec import AUTO

if TYPE_CHECKING:
    from app.settings import Settings

# OpenMP workers spin a bounded while between operators, then sleep: a forward pass is
# hundreds of short parallel regions, and waking a sleeping worker for each one
# (OMP_WAIT_POLICY=PASSIVE) measured ~45% slower at concurrency 1 and ~20% fewer requests/s
# at 32 (bench/). Set before torch loads; values already in the environment win.
SERVING_ENVIRONMENT = {"GOMP_SPINCOUNT": "30000", "TOKENIZERS_PARALLELISM": "false"}


def _serve(args: argparse.Namespace) -> int:
    for name, value in SERVING_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    import uvicorn

    # Flags become settings through the environment so the factory sees one source of truth.
    for flag, env in (
        ("models", "MODELS"),
        ("host", "HOST"),
        ("port", "PORT"),
        ("workers", "WORKERS"),
    ):
        value = getattr(args, flag)
        if value is not None:
            os.environ[f"NLP_SERVE_{env}"] = str(value)
    from app.auth import AnonymousExposureError, check_exposure
    from app.logs import logging_config
    from app.server import uvicorn_options
    from app.settings import Settings

    settings = Settings()
    try:
        check_exposure(settings)
    except AnonymousExposureError as exc:
        print(f"nlp-serve: {exc}", file=sys.stderr)
        return 2
    if "USE_TORCH" not in os.environ and _torch_free(settings):
        # transformers imports torch whenever it is installed: ~0.5 GB of RSS and seconds of
        # start-up that an ONNX Runtime / OpenVINO catalog never uses. Every worker's
        # create_app reads this and keeps torch out (app.runtimes.keep_torch_out).
        os.environ["USE_TORCH"] = "0"
        # ...and would then advise installing PyTorch on every start: expected here.
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    if settings.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Every worker writes its metrics here; /metrics in any worker sums them all.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="nlp-serve-metrics-")
    logging.config.dictConfig(logging_config(settings.log_level, settings.log_format))
    uvicorn.run("app.main:create_app", **uvicorn_options(settings))
    return 0


def _torch_free(settings: Settings) -> bool:
    """Whether no model of the catalog loads torch (see app.runtimes.needs_torch)."""
    from app.errors import ModelLoadError
    from app.registry.catalog import load_catalog
    from app.registry.sources import resolve_source
    from app.runtimes import needs_torch
    from app.tasks import task_class

    try:
        catalog = load_catalog(settings.models)
        for spec in catalog.models:
            if spec.backend == "torch":
                return False
            model_dir = resolve_source(spec, settings)
            if needs_torch(spec, model_dir, task_class(spec).head, settings):
                return False
    except (CatalogError, ModelLoadError):
        return False  # start-up reports it; keep the default behaviour until then
    return True


def _check_catalog(args: argparse.Namespace) -> int:
    from app.registry.catalog import load_catalog

    try:
        catalog = load_catalog(Path(args.models))
    except CatalogError as exc:
        print(exc, file=sys.stderr)
        return 1
    for spec in catalog.models:
        engine = f"{spec.backend} {spec.precision}"
        if AUTO in (spec.backend, spec.precision):
            engine += " (measured on this CPU at first load)"
        print(f"{spec.name}: {spec.task.value} via {engine} on {spec.device} ({spec.source})")
    return 0


def _export(args: argparse.Namespace) -> int:
    from app.errors import ModelLoadError
    from app.registry.sources import resolve_source
    from app.registry.trust import check_model_dir
    from app.runtimes.onnx_export import export_model
    from app.settings import Settings
    from app.spec import ModelSpec, TaskName
    from app.tasks import task_class

    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    task = TaskName(args.task)
    spec = ModelSpec(name="export", task=task, source=args.source, languages=_any_pair(task))
    if args.backend == "openvino" and args.optimize:
        print("--optimize is an ONNX Runtime graph optimisation; drop it with --backend openvino",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.calibration and not (args.backend == "openvino" and args.quantize == "int8"):
        print("--calibration applies only to --backend openvino --quantize int8", file=sys.stderr)
        return 2
    try:
        model_dir = resolve_source(spec, Settings())
        check_model_dir(spec, model_dir)  # exporting loads the model: data only
        head = task_class(spec).head
        if args.backend == "openvino":
            from app.runtimes.openvino_export import export_openvino, load_calibration

            quantize = args.quantize == "int8"
            calibration = load_calibration(args.calibration) if quantize else None
            out = export_openvino(model_dir, head, Path(args.out), source=args.source,
                                  quantize=quantize, calibration=calibration)  # fmt: skip
        else:
            out = export_model(
                model_dir,
                head,
                Path(args.out),
                source=args.source,
                quantize=args.quantize == "int8",
                optimize=args.optimize,
            )
    except ModelLoadError as exc:
        print(exc, file=sys.stderr)
        return 1
    precision = "int8" if args.quantize else "fp32"
    print(f"exported to {out}; serve it with `backend: {args.backend}`, `precision: {precision}` "
          f"and `source: {out}`")  # fmt: skip
    return 0


def _pull(args: argparse.Namespace) -> int:
    from app.registry.catalog import load_catalog
    from app.registry.pull import pull_catalog
    from app.settings import Settings

    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    try:
        catalog = load_catalog(Path(args.models))
    except CatalogError as exc:
        print(exc, file=sys.stderr)
        return 1
    results = pull_catalog(catalog, Settings(), export=args.export)
    for result in results:
        if result.error:
            print(f"FAILED {result.name}: {result.error}", file=sys.stderr)
        else:
            exported = f"; export {result.export}" if result.export else ""
            print(f"ok {result.name}: {result.weights}{exported}")
    failed = sum(1 for r in results if r.error)
    print(f"{len(results) - failed} pulled, {failed} failed")
    return 1 if failed else 0


def _eval(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from app.eval.data import DataError, load
    from app.eval.runner import (
        EvalError,
        HttpClient,
        RunResult,
        as_json,
        compare,
        comparison_table,
        evaluate,
        in_process,
        table,
    )

    logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")
    if args.url and args.models:
        print("pass --url (a running server) or --models (in-process), not both", file=sys.stderr)
        return 2
    models: list[str | None] = list(args.compare) if args.compare else [args.model]

    async def run() -> list[RunResult]:
        data = load(Path(args.data))
        if args.url:
            client = HttpClient(args.url, args.tokenizer)
            return [await evaluate(client, data, m, args.concurrency) for m in models]
        for name, value in SERVING_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
        catalog = Path(args.models or os.environ.get("NLP_SERVE_MODELS", "models/offline.yaml"))
        async with in_process(catalog) as local:
            return [await evaluate(local, data, m, args.concurrency) for m in models]

    try:
        data = load(Path(args.data))
        results = asyncio.run(run())
    except (DataError, EvalError, CatalogError) as exc:
        print(f"eval: {exc}", file=sys.stderr)
        return 1
    comparison = compare(results[0], results[1], data, args.worst) if args.compare else None
    print(comparison_table(comparison) if comparison else table(results))
    if args.out:
        Path(args.out).write_text(json.dumps(as_json(results, data, comparison), indent=2) + "\n")
    return 0


def _any_pair(task: object) -> list[dict[str, str]]:
    """A translate spec needs a language pair to validate; export does not use it."""
    from app.spec import TaskName

    return [{"source": "xx", "target": "yy"}] if task is TaskName.TRANSLATE else []


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nlp-serve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the HTTP service")
    serve.add_argument("--models", help="catalog YAML (default: NLP_SERVE_MODELS)")
    serve.add_argument("--host", help="bind address (default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="bind port (default 8000)")
    serve.add_argument("--workers", type=int, help="server processes (default 1)")
    serve.set_defaults(func=_serve)
    export = sub.add_parser("export", help="export a model to ONNX or OpenVINO (optionally int8)")
    export.add_argument("source", help="model directory, hub id, or python:<module>")
    export.add_argument("--task", required=True, choices=_tasks())
    export.add_argument("--out", required=True, help="output directory (replaced)")
    export.add_argument("--backend", choices=["onnx", "openvino"], default="onnx",
                        help="onnx (default) or openvino IR (encoder tasks)")  # fmt: skip
    export.add_argument(
        "--quantize",
        choices=["int8"],
        help="int8: dynamic for onnx; NNCF static (calibrated) for openvino",
    )
    export.add_argument(
        "--calibration",
        type=Path,
        help="openvino int8: text file, one sentence per line (default: shipped English corpus)",
    )
    export.add_argument("--optimize", choices=["O1", "O2", "O3"], help="ORT graph optimisation")
    export.set_defaults(func=_export)
    pull = sub.add_parser("pull", help="download a catalog's models (and their exports)")
    pull.add_argument("--models", required=True, help="catalog YAML, e.g. models/hub.yaml")
    pull.add_argument(
        "--export",
        "--export-onnx",  # its name before OpenVINO entries were exported too
        dest="export",
        action="store_true",
        help="also export backend: onnx and backend: openvino entries now (as at first load)",
    )
    pull.set_defaults(func=_pull)
    ev = sub.add_parser("eval", help="score a model on a labelled JSONL set (docs/evaluation.md)")
    ev.add_argument("--data", required=True, help="labelled JSONL file, one task per file")
    ev.add_argument("--model", help="catalog model name (default: the task's default model)")
    where = ev.add_mutually_exclusive_group()
    where.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8000")
    where.add_argument("--models", help="catalog YAML to load in-process (default: "
                       "NLP_SERVE_MODELS, else models/offline.yaml)")  # fmt: skip
    ev.add_argument("--compare", nargs=2, metavar=("NAME_A", "NAME_B"),
                    help="run both models and report differences and agreement")  # fmt: skip
    ev.add_argument("--out", help="write the results as JSON here")
    ev.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    ev.add_argument("--worst", type=int, default=10, help="disagreements listed with --compare")
    ev.add_argument("--tokenizer", type=Path,
                    help="fill-mask with --url: the model's tokenizer directory")  # fmt: skip
    ev.set_defaults(func=_eval)
    check = sub.add_parser("check-catalog", help="validate a catalog and list its models")
    check.add_argument("models", help="catalog YAML")
    check.set_defaults(func=_check_catalog)
    return parser


def _tasks() -> list[str]:
    from app.spec import TaskName

    return [task.value for task in TaskName]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
