"""Shared fixtures: tiny models built once per session, catalogs, and in-process app clients."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from asgi_lifespan import LifespanManager

from app.main import create_app
from app.settings import Settings
from tests.fixtures.tiny_models import build_all

# Prompts as a catalog gives them (the tiny SPLADE model has its own, from its
# sentence-transformers config): a retrieval model's query and passage prompts.
EMBED_PROMPTS = {
    "prompts": {"query": "query: ", "passage": "passage: "},
    "input_types": {"document": "passage"},
}
TRANSLATION_PAIRS = [
    {"source": "en", "target": "de"},
    {"source": "en", "target": "fr", "prefix": "translate English to French: "},
]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_all(tmp_path_factory.mktemp("tiny-models"))


def tiny_catalog(models: dict[str, Path], backend: str) -> list[dict[str, Any]]:
    """One model per task (two classifiers: fixed labels and zero-shot NLI) on one backend."""

    def entry(name: str, task: str, source: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "task": task, "source": str(models[source]), "backend": backend,
                "device": "cpu", **extra}  # fmt: skip

    return [
        entry("tiny-sentiment", "sentiment", "sentiment"),
        entry("tiny-topics", "classify", "topics", default=True),
        entry("tiny-nli", "classify", "nli"),
        entry("tiny-qa", "qa", "qa"),
        entry("tiny-qa-null", "qa", "qa", options={"null_answer": True}),
        entry("tiny-ner", "ner", "ner"),
        entry("tiny-embed", "embed", "encoder", options=EMBED_PROMPTS),
        entry("tiny-translate", "translate", "seq2seq", languages=TRANSLATION_PAIRS),
        entry("tiny-summarize", "summarize", "seq2seq"),
        entry("tiny-fill-mask", "fill-mask", "masked-lm"),
        entry("tiny-embed-sparse", "embed-sparse", "splade"),
        entry("tiny-rerank", "rerank", "cross-encoder"),
        entry("tiny-generate", "generate", "causal-lm", default=True),
        entry("tiny-chat", "generate", "chat-lm"),
    ]


def cpu_has_bf16() -> bool:
    """Whether OpenVINO has bf16 kernels on this CPU (AMX or avx512_bf16)."""
    import openvino

    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def export_cache(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A session's export cache for the real MiniLM (exports take ~20 s). With
    NLP_SERVE_TEST_EXPORT_CACHE set, a folder there that outlives the run: scripts/isa-check.sh
    makes the exports every CPU shares (fp32) natively, then runs the tests on an emulated
    CPU that is ~100x slower."""
    shared = os.environ.get("NLP_SERVE_TEST_EXPORT_CACHE")
    if not shared:
        return tmp_path_factory.mktemp(name)
    path = Path(shared) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def offline_onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ONNX export cache for every test that serves the real MiniLM."""
    return export_cache(tmp_path_factory, "offline-onnx")


@pytest.fixture(scope="session")
def write_catalog(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[list[dict[str, Any]]], Path]:
    counter = iter(range(10_000))

    def write(models: list[dict[str, Any]]) -> Path:
        path = tmp_path_factory.mktemp("catalogs") / f"catalog-{next(counter)}.yaml"
        path.write_text(yaml.safe_dump({"models": models}))
        return path

    return write


def settings_for(catalog: Path, **overrides: Any) -> Settings:
    return Settings(models=catalog, _env_file=None, **overrides)  # type: ignore[call-arg]


@asynccontextmanager
async def serve_in_process(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The real app factory and lifespan, driven in-process through httpx."""
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=300, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://nlp-serve") as client:
            yield client


@pytest.fixture(scope="session")
async def fake_client(
    tiny_models: dict[str, Path], write_catalog: Callable[[list[dict[str, Any]]], Path]
) -> AsyncIterator[httpx.AsyncClient]:
    """Every task on the deterministic fake backend: fast API and error-path tests."""
    models = tiny_catalog(tiny_models, "fake")
    models.append(
        {
            "name": "fake-poison",
            "task": "sentiment",
            "source": str(tiny_models["sentiment"]),
            "backend": "fake",
            "backend_options": {"fail_token": "poison"},
        }
    )
    settings = settings_for(write_catalog(models), max_items_per_request=8, max_input_chars=2000,
                             max_body_bytes=64 * 1024)  # fmt: skip
    async with serve_in_process(settings) as client:
        yield client


@pytest.fixture(scope="session")
async def torch_client(
    tiny_models: dict[str, Path], write_catalog: Callable[[list[dict[str, Any]]], Path]
) -> AsyncIterator[httpx.AsyncClient]:
    """Every task on real (tiny, random-weight) PyTorch models."""
    settings = settings_for(write_catalog(tiny_catalog(tiny_models, "torch")))
    async with serve_in_process(settings) as client:
        yield client
