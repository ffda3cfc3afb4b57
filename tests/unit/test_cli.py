from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main


def test_check_catalog_lists_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-catalog", "models/offline.yaml"]) == 0
    assert "minilm-embed: embed via torch" in capsys.readouterr().out


def test_check_catalog_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - {name: a, task: nope, source: x}\n")
    assert main(["check-catalog", str(bad)]) == 1
    assert "models[0] (name 'a') field 'task'" in capsys.readouterr().err
