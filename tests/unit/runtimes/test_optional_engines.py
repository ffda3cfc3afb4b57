"""An engine's optional package missing (an offline bundle leaves optimum-onnx out) fails
loading with a ModelLoadError that names the package, never an ImportError: `backend: auto`
then leaves that candidate out instead of stopping start-up."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from app.errors import ModelLoadError
from app.runtimes.base import Head
from app.runtimes.onnx_export import export_model, require_optimum

FIND_SPEC = importlib.util.find_spec


def no_optimum(name: str, *args: Any) -> Any:
    if name.startswith("optimum"):
        raise ModuleNotFoundError(f"No module named {name.split('.')[0]!r}")
    return FIND_SPEC(name, *args)


def test_export_without_optimum_names_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("app.runtimes.onnx_export.importlib.util.find_spec", no_optimum)
    with pytest.raises(ModelLoadError, match="needs optimum-onnx, which is not installed"):
        export_model(tmp_path, Head.SEQUENCE_CLASSIFICATION, tmp_path / "out", source="x")


def test_with_optimum_nothing_is_raised() -> None:
    if importlib.util.find_spec("optimum") is None:
        pytest.skip("optimum is not installed here")
    require_optimum("exporting")
