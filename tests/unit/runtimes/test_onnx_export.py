"""What an export carries besides its graph: the sentence-transformers module configs that
say how outputs become answers (pooling mode, SPLADE's activation), and nothing from outside
the model folder."""

from __future__ import annotations

import json
from pathlib import Path

from app.runtimes.onnx_export import copy_module_configs, module_folders


def test_module_configs_travel_with_an_export(tmp_path: Path) -> None:
    model, out = tmp_path / "model", tmp_path / "export"
    (model / "1_SpladePooling").mkdir(parents=True)
    (model / "1_SpladePooling" / "config.json").write_text('{"activation_function": "log1p_relu"}')
    (model / "1_SpladePooling" / "weights.bin").write_bytes(b"not copied")
    (tmp_path / "outside.json").write_text("{}")
    modules = [{"path": ""}, {"path": "1_SpladePooling"}, {"path": ".."}, {"path": "/etc"},
               {"path": "2_Missing"}]  # fmt: skip
    (model / "modules.json").write_text(json.dumps(modules))
    out.mkdir()
    assert module_folders(model) == ["1_SpladePooling", "2_Missing"]
    copy_module_configs(model, out)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [
        "1_SpladePooling",
        "1_SpladePooling/config.json",
    ]
    assert json.loads((out / "1_SpladePooling" / "config.json").read_text()) == {
        "activation_function": "log1p_relu"
    }


def test_no_modules_file_no_folders(tmp_path: Path) -> None:
    assert module_folders(tmp_path) == []
    (tmp_path / "modules.json").write_text("not json")
    assert module_folders(tmp_path) == []
