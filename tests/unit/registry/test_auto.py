"""`backend: auto` / `precision: auto`: the rules of the choice, and the decision file, on the
deterministic fake backend (real engines: tests/integration/test_auto_engine.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.errors import CatalogError
from app.registry import auto
from app.registry.auto import Candidate, Measured, candidates, choose, reference_of
from app.registry.catalog import parse_entry
from app.registry.model import load_model
from app.runtimes.base import Head
from app.runtimes.cpu import cpu_fingerprint
from app.settings import Settings
from app.spec import ModelSpec


def measured(backend: str, precision: str, speed: float, kept: bool = True) -> Measured:
    return Measured(backend, precision, {"1": speed, "32": speed}, kept=kept)


def test_fp32_wins_unless_a_lower_precision_is_faster_by_the_margin() -> None:
    fp32, int8 = measured("onnx", "fp32", 100), measured("onnx", "int8", 109)
    assert choose([fp32, int8], margin=0.10)[0] is fp32
    faster = measured("onnx", "int8", 111)
    chosen, reason = choose([fp32, faster], margin=0.10)
    assert chosen is faster
    assert "1.11x" in reason
    slow_fp32 = measured("openvino", "fp32", 80)
    assert choose([slow_fp32, fp32, int8], margin=0.10)[0] is fp32  # the fastest fp32


def test_a_candidate_that_disagrees_is_never_chosen() -> None:
    fp32 = measured("torch", "fp32", 10)
    wrong = measured("onnx", "int8", 1000, kept=False)
    assert choose([fp32, wrong], margin=0.0)[0] is fp32
    with pytest.raises(ValueError, match="no candidate kept"):
        choose([wrong], margin=0.0)


def test_speed_is_the_geometric_mean_over_batch_sizes() -> None:
    figures = Measured("onnx", "fp32", {"1": 100.0, "32": 400.0})
    assert figures.speed == pytest.approx(200.0)
    assert Measured("onnx", "fp32").speed == 0.0


def spec(**fields: Any) -> ModelSpec:
    base = {"name": "m", "task": "sentiment", "source": "/m", "export": True}
    return ModelSpec.model_validate({**base, **fields})


def test_candidates_follow_what_the_entry_fixes() -> None:
    on_fake = candidates(
        spec(backend="fake", precision="auto", export=False), Head.MASKED_LM, "cpu"
    )
    assert on_fake == [Candidate("fake", "fp32"), Candidate("fake", "int8")]
    onnx_only = candidates(spec(backend="onnx", precision="auto"), Head.SEQ2SEQ_LM, "cpu")
    assert onnx_only == [Candidate("onnx", "fp32")]  # generation exports stay fp32
    any_int8 = candidates(
        spec(backend="auto", precision="int8"), Head.SEQUENCE_CLASSIFICATION, "cpu"
    )
    assert {c.precision for c in any_int8} == {"int8"}
    assert "torch" not in {c.backend for c in any_int8}  # torch has no int8
    assert reference_of(any_int8) is None  # nothing fp32 to compare with


def test_the_fake_backend_serves_only_an_entry_that_names_it() -> None:
    named = {"name": "m", "task": "sentiment", "source": "/m", "backend": "fake"}
    assert parse_entry(named).backend == "fake"
    every = candidates(spec(backend="auto", precision="auto"), Head.SEQUENCE_CLASSIFICATION, "cpu")
    assert every
    assert {c.backend for c in every} <= {"torch", "onnx", "openvino"}
    with pytest.raises(CatalogError) as caught:
        parse_entry({**named, "backend": "tpu-engine"})
    assert "choose one of ['auto', 'onnx', 'openvino', 'torch']" in str(caught.value)


def test_the_reference_is_torch_fp32_when_it_is_a_candidate() -> None:
    found = [Candidate("onnx", "int8"), Candidate("onnx", "fp32"), Candidate("torch", "fp32")]
    assert reference_of(found) == Candidate("torch", "fp32")
    assert reference_of(found[:2]) == Candidate("onnx", "fp32")


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"backend": "auto", "export": False}, ["backend auto", "export: true"]),
        ({"backend": "onnx", "precision": "auto", "export": False}, ["export: true"]),
        ({"backend": "tpu-engine"}, ["unknown backend", "auto"]),
    ],
)
def test_the_catalog_says_what_auto_needs(fields: dict[str, Any], words: list[str]) -> None:
    entry = {"name": "m", "task": "sentiment", "source": "/m", **fields}
    with pytest.raises(CatalogError) as caught:
        parse_entry(entry)
    for word in words:
        assert word in str(caught.value)


@pytest.fixture
def fake_auto(tiny_models: dict[str, Path], tmp_path: Path) -> tuple[ModelSpec, Settings]:
    entry = spec(name="fake-auto", source=str(tiny_models["sentiment"]), backend="fake",
                 precision="auto", export=False, device="cpu")  # fmt: skip
    settings = Settings(models=Path("unused.yaml"), _env_file=None,  # type: ignore[call-arg]
                        auto_cache_dir=tmp_path / "auto", auto_measure_seconds=0.05)  # fmt: skip
    return entry, settings


def test_the_decision_is_written_shown_and_read_back(
    fake_auto: tuple[ModelSpec, Settings], caplog: pytest.LogCaptureFixture
) -> None:
    entry, settings = fake_auto
    model = load_model(entry, settings)
    shown = model.describe()["auto"]
    # The fake's "int8" rounds its outputs: on the sentiment probes it flips labels.
    assert (model.backend.name, model.backend.precision) == ("fake", "fp32")
    assert shown["chosen"] == "fake fp32"
    assert shown["measured_now"] is True
    assert shown["probes"].startswith("labelled set app/calibration/labelled/sentiment.jsonl")
    by_name = {f"{c['backend']} {c['precision']}": c for c in shown["candidates"]}
    assert by_name["fake int8"]["kept"] is False
    assert by_name["fake int8"]["agreement"] < settings.auto_min_agreement
    assert set(by_name["fake fp32"]["rows_per_s"]) == {"1", str(entry.batching.max_batch_size)}
    files = list((settings.auto_cache_dir).glob("*.json"))
    assert len(files) == 1
    written = json.loads(files[0].read_text())
    assert written["cpu"] == cpu_fingerprint()
    assert written["versions"]["onnxruntime"] == auto.library_versions()["onnxruntime"]
    model.close()
    again = load_model(entry, settings)
    assert again.describe()["auto"]["measured_now"] is False
    assert again.describe()["auto"]["made_at"] == shown["made_at"]
    again.close()


def test_another_cpu_or_version_decides_again(
    fake_auto: tuple[ModelSpec, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    entry, settings = fake_auto
    load_model(entry, settings).close()
    other_cpu = {**cpu_fingerprint(), "isa": ["avx2", "fma"]}
    monkeypatch.setattr(auto, "cpu_fingerprint", lambda: other_cpu)
    moved = load_model(entry, settings)
    assert moved.describe()["auto"]["measured_now"] is True
    assert "avx2 fma)" in moved.describe()["auto"]["cpu"]
    moved.close()
    newer = {**auto.library_versions(), "onnxruntime": "99.0"}
    monkeypatch.setattr(auto, "library_versions", lambda: newer)
    assert load_model(entry, settings).describe()["auto"]["measured_now"] is True
    assert len(list(settings.auto_cache_dir.glob("*.json"))) == 3


def test_a_broken_decision_file_is_measured_again(fake_auto: tuple[ModelSpec, Settings]) -> None:
    entry, settings = fake_auto
    load_model(entry, settings).close()
    (path,) = settings.auto_cache_dir.glob("*.json")
    path.write_text("{not json")
    assert load_model(entry, settings).describe()["auto"]["measured_now"] is True
    assert json.loads(path.read_text())["backend"] == "fake"


def test_a_cache_that_cannot_be_written_costs_only_measuring_again(
    fake_auto: tuple[ModelSpec, Settings], tmp_path: Path
) -> None:
    entry, settings = fake_auto
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would be")
    read_only = settings.model_copy(update={"auto_cache_dir": blocked / "auto"})
    for _ in range(2):
        model = load_model(entry, read_only)
        assert model.describe()["auto"]["measured_now"] is True
        model.close()


def test_rerank_engines_are_compared_on_the_best_document_of_each_query(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """A rerank probe is one labelled query with its documents (one item each); two engines
    agree on it when the same document ranks first."""
    from app.tasks.rerank import RerankParams, rank

    settings = Settings(models=Path("unused.yaml"), _env_file=None,  # type: ignore[call-arg]
                        auto_cache_dir=tmp_path / "auto", auto_measure_seconds=0.05)  # fmt: skip
    entry = spec(name="fake-rerank", task="rerank", source=str(tiny_models["cross-encoder"]),
                 backend="fake", precision="auto", export=False, device="cpu")  # fmt: skip
    examples = auto.labelled_examples(entry.task)
    assert len(examples) == 40
    assert all(ex["documents"][ex["relevant"]] for ex in examples)

    def best(precision: str) -> list[int]:
        model = load_model(entry.model_copy(update={"precision": precision}), settings)
        picks = []
        for example in examples:
            answers = []
            for item, params in model.task.example_requests(example):
                encoded = model.encode(item, params)
                outputs = model.forward_rows(encoded.rows, params).value
                answers.append(model.decode(encoded, outputs, RerankParams()).value)
            picks.append(rank(answers, 1)[0].index)
        model.close()
        return picks

    fp32, int8 = best("fp32"), best("int8")
    shown = load_model(entry, settings).describe()["auto"]
    assert shown["probes"] == "labelled set app/calibration/labelled/rerank.jsonl (40 examples)"
    by_name = {f"{c['backend']} {c['precision']}": c for c in shown["candidates"]}
    same = sum(a == b for a, b in zip(fp32, int8, strict=True)) / len(examples)
    assert by_name["fake int8"]["agreement"] == pytest.approx(same)
    assert same < 1.0  # the fake's int8 rounding moves some best documents: the check can fail
