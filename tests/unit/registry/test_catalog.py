from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.errors import CatalogError
from app.registry.catalog import load_catalog, parse_catalog
from app.registry.registry import Registry
from app.settings import Settings
from app.spec import (
    FakeBackendOptions,
    QAHeadOptions,
    SemanticClassifyOptions,
    TaskName,
)


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
        # generation reaches transformers' generate(): typed, bounded, no passthrough
        (
            [entry(task="summarize", generation={"custom_generate": "/tmp/evil"})],
            ["models[0]", "generation", "custom_generate", "num_beams", "no_repeat_ngram_size"],
        ),
        ([entry(generation={"trust_remote_code": True})], ["trust_remote_code"]),
        ([entry(generation={"num_beams": 64})], ["generation", "num_beams", "less than"]),
        ([entry(backend="onnx", optimize="O2")], ["optimize", "export: true"]),
        # options are typed per task and method: typos and bad values name entry and field
        (
            [entry(task="qa", options={"null_anwser": True})],
            ["models[0]", "null_anwser", "null_answer", "doc_stride"],
        ),
        ([entry(task="qa", options={"doc_stride": 0})], ["doc_stride", "greater than"]),
        (
            [entry(task="ner", options={"temperature": 1})],
            ["options", "temperature", "task ner with method head takes: none"],
        ),
        (
            [entry(task="classify", method="semantic", options={"temperature": 0})],
            ["temperature", "greater than 0"],
        ),
        (
            [entry(task="classify", method="semantic", options={"temperature": "warm"})],
            ["temperature"],
        ),
        (
            [entry(task="classify", method="semantic", options={"hypothesis_template": "no slot"})],
            ["hypothesis_template", "exactly one {}"],
        ),
        ([entry(method="semantic")], ["options", "labels", "Field required"]),
        (
            [entry(method="semantic", options={"labels": {"positive": []}})],
            ["labels", "no descriptions"],
        ),
        ([entry(backend="fake", backend_options={"delay": 5})], ["backend_options", "delay_ms"]),
        ([entry(backend_options={"delay_ms": 5})], ["backend_options", "backend torch takes"]),
    ],
)
def test_bad_catalog_names_entry_and_field(models: list[dict[str, Any]], words: list[str]) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog({"models": models})
    for word in words:
        assert word in str(caught.value)


def test_options_are_typed_for_their_task_and_method() -> None:
    catalog = parse_catalog(
        {
            "models": [
                entry(task="qa", options={"null_answer": True}),
                entry(name="z", task="classify", method="semantic",
                      options={"labels": ["a"], "temperature": 0.1}),
                entry(name="f", backend="fake", backend_options={"fail_token": "poison"}),
            ]
        }
    )  # fmt: skip
    qa, zero_shot, fake = catalog.models
    assert qa.options_as(QAHeadOptions).null_answer is True
    assert qa.options_as(QAHeadOptions).doc_stride == 128
    semantic = zero_shot.options_as(SemanticClassifyOptions)
    assert (semantic.labels, semantic.temperature, semantic.hypothesis_template) == (
        ("a",), 0.1, "{}",
    )  # fmt: skip
    assert fake.backend_options_as(FakeBackendOptions).fail_token == "poison"
    with pytest.raises(TypeError):
        qa.options_as(SemanticClassifyOptions)
    # a spec survives a round trip through its own dump (the admin API posts entries)
    assert parse_catalog({"models": [m.model_dump() for m in catalog.models]}) == catalog


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
