"""An engine's optional package missing (an offline bundle may leave onnxscript out) fails
loading with a ModelLoadError that names the package, never an ImportError: `backend: auto`
then leaves that candidate out instead of stopping start-up."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from app.errors import ModelLoadError
from app.runtimes.base import Head
from app.runtimes.onnx_export import export_model, require_dynamo_exporter

FIND_SPEC = importlib.util.find_spec


def no_onnxscript(name: str, *args: Any) -> Any:
    if name.startswith("onnxscript"):
        return None
    return FIND_SPEC(name, *args)


def test_seq2seq_export_without_onnxscript_names_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("app.runtimes.onnx_export.importlib.util.find_spec", no_onnxscript)
    with pytest.raises(ModelLoadError, match=r"needs onnxscript .* not installed"):
        export_model(tmp_path, Head.SEQ2SEQ_LM, tmp_path / "out", source="x")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "out.partial").exists()


def test_with_onnxscript_nothing_is_raised() -> None:
    if importlib.util.find_spec("onnxscript") is None:
        pytest.skip("onnxscript is not installed here")
    require_dynamo_exporter("exporting")
