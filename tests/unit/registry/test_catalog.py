from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.errors import CatalogError
from app.registry.catalog import load_catalog, parse_catalog
from app.registry.registry import Registry
from app.settings import Settings
from app.spec import TaskName


def entry(**fields: Any) -> dict[str, Any]:
    return {"name": "m", "task": "sentiment", "source": "/models/m", **fields}


def test_valid_catalog_and_defaults() -> None:
    catalog = parse_catalog(
        {"models": [entry(name="a"), entry(name="b", default=True), entry(name="c", task="ner")]}
    )
    assert catalog.default_for(TaskName.SENTIMENT).name == "b"  # type: ignore[union-attr]
    assert catalog.default_for(TaskName.NER).name == "c"  # type: ignore[union-attr]
    assert catalog.default_for(TaskName.QA) is None
    spec = catalog.models[0]
    assert (spec.backend, spec.device, spec.precision) == ("torch", "auto", "fp32")
    assert spec.batching.max_batch_size == 32


@pytest.mark.parametrize(
    ("models", "words"),
    [
        ([entry(name="good"), entry(name="bad", device="tpu")], ["models[1]", "'bad'", "device"]),
        ([entry(batching={"max_wait_ms": -1})], ["models[0]", "batching.max_wait_ms"]),
        ([entry(batching={"max_batch": 4})], ["batching.max_batch", "not permitted"]),
        ([entry(task="summarise")], ["models[0]", "task", "summarize"]),
        ([entry(precision="fp8")], ["precision"]),
        ([entry(name="has space")], ["name"]),
        ([entry(colour="red")], ["colour"]),
        ([entry(task="translate")], ["languages"]),
        ([entry(languages=[{"source": "en", "target": "de"}])], ["languages", "translate"]),
        ([entry(name="x"), entry(name="x")], ["'x'", "twice"]),
        ([entry(name="x", default=True), entry(name="y", default=True)], ["several defaults"]),
        ([], ["models"]),
        ([entry(export=True)], ["export", "backend: onnx"]),
        ([entry(backend="onnx", optimize="O2")], ["optimize", "export: true"]),
    ],
)
def test_bad_catalog_names_entry_and_field(models: list[dict[str, Any]], words: list[str]) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog({"models": models})
    for word in words:
        assert word in str(caught.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"does not exist.*NLP_SERVE_MODELS"):
        load_catalog(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [unclosed\n")
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog(broken)


def test_unknown_backend_fails_before_loading() -> None:
    catalog = parse_catalog({"models": [entry(), entry(name="n", backend="tensorrt")]})
    with pytest.raises(CatalogError, match=r"models\[1\] \(name 'n'\) field 'backend'.*torch"):
        Registry(catalog, Settings(_env_file=None), scheduler_factory=lambda m, t: None)  # type: ignore[call-arg, arg-type, return-value]
