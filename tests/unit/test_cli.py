from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main


def test_check_catalog_lists_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-catalog", "models/offline.yaml"]) == 0
    out = capsys.readouterr().out
    assert "minilm-embed: embed via auto auto (measured on this CPU at first load)" in out
    assert "minilm-sentiment: sentiment via auto auto" in out


def test_check_catalog_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - {name: a, task: nope, source: x}\n")
    assert main(["check-catalog", str(bad)]) == 1
    assert "models[0] (name 'a') field 'task'" in capsys.readouterr().err


def test_hub_catalog_is_valid_and_serves_every_task(capsys: pytest.CaptureFixture[str]) -> None:
    from app.registry.catalog import load_catalog
    from app.spec import TaskName

    assert main(["check-catalog", "models/hub.yaml"]) == 0
    catalog = load_catalog(Path("models/hub.yaml"))
    assert {spec.task for spec in catalog.models} == set(TaskName)
    assert all(spec.method == "head" for spec in catalog.models)


def test_pull_prepares_exports_and_reports_failures(
    tiny_models: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import yaml

    catalog = tmp_path / "c.yaml"
    catalog.write_text(yaml.safe_dump({"models": [
        {"name": "local", "task": "sentiment", "source": str(tiny_models["sentiment"]),
         "backend": "onnx", "export": True},
        {"name": "local-ov", "task": "sentiment", "source": str(tiny_models["sentiment"]),
         "backend": "openvino", "export": True},
        {"name": "from-hub", "task": "sentiment", "source": "some-org/not-cached"},
    ]}))  # fmt: skip
    monkeypatch.setenv("NLP_SERVE_ONNX_CACHE_DIR", str(tmp_path / "onnx"))
    monkeypatch.setenv("NLP_SERVE_OPENVINO_CACHE_DIR", str(tmp_path / "openvino"))
    monkeypatch.setenv("NLP_SERVE_HUB_OFFLINE", "true")
    monkeypatch.setenv("NLP_SERVE_HUB_CACHE_DIR", str(tmp_path / "hub"))
    assert main(["pull", "--models", str(catalog), "--export"]) == 1
    captured = capsys.readouterr()
    assert "ok local:" in captured.out
    assert "ok local-ov:" in captured.out
    assert "2 pulled, 1 failed" in captured.out
    assert "FAILED from-hub" in captured.err
    # the backends find them there: same names, no second export
    assert len(list((tmp_path / "onnx").glob("*/manifest.json"))) == 1
    assert len(list((tmp_path / "openvino").glob("*/manifest.json"))) == 1
    assert main(["pull", "--models", str(catalog), "--export-onnx"]) == 1  # the older name
    assert "2 pulled, 1 failed" in capsys.readouterr().out
