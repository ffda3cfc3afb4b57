"""Loading a model never runs its code unless the entry opts in: crafted model folders whose
code would write a marker file are refused, and the marker never appears."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.errors import InvalidInput, ModelLoadError
from app.registry.model import load_model
from app.registry.trust import pickle_checkpoints
from app.settings import Settings
from app.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[3]
# Imported by transformers when a config's auto_map names it: proof that model code ran.
EVIL = """
from pathlib import Path
Path({marker!r}).write_text("model code ran")
from transformers import BertForSequenceClassification as EvilModel
from transformers import BertConfig as EvilConfig
"""


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(models=Path("unused.yaml"), _env_file=None, **overrides)  # type: ignore[call-arg]


def copy_model(tiny_models: dict[str, Path], tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(tiny_models["sentiment"], folder)
    return folder


def edit_json(path: Path, **fields: Any) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


def spec(folder: Path, **fields: Any) -> ModelSpec:
    return ModelSpec.model_validate({"name": "m", "task": "sentiment", "source": str(folder),
                                     "backend": "torch", "device": "cpu", **fields})  # fmt: skip


def with_auto_map(folder: Path, marker: Path) -> None:
    (folder / "modeling_evil.py").write_text(EVIL.format(marker=str(marker)))
    edit_json(folder / "config.json", auto_map={
        "AutoConfig": "modeling_evil.EvilConfig",
        "AutoModelForSequenceClassification": "modeling_evil.EvilModel",
    })  # fmt: skip


def test_auto_map_is_refused_and_its_code_never_runs(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    folder, marker = copy_model(tiny_models, tmp_path), tmp_path / "ran"
    with_auto_map(folder, marker)
    with pytest.raises(ModelLoadError) as refused:
        load_model(spec(folder), settings(tmp_path))
    assert "config.json: auto_map" in str(refused.value)
    assert "trust_remote_code: true" in str(refused.value)
    assert not marker.exists()


def test_the_crafted_folder_does_run_code_when_trusted(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """The control: with the entry's opt-in, transformers imports the folder's module. In a
    process of its own: the import registers classes in transformers for the whole process."""
    folder, marker = copy_model(tiny_models, tmp_path), tmp_path / "ran"
    with_auto_map(folder, marker)
    trusted = spec(folder, trust_remote_code=True).model_dump(mode="json")
    script = (
        "import sys; from app.registry.model import load_model; from app.settings import "
        "Settings; from app.spec import ModelSpec\n"
        f"spec = ModelSpec.model_validate({trusted!r})\n"
        "try: load_model(spec, Settings(_env_file=None))\n"
        "except Exception as exc: print(type(exc).__name__)\n"
    )  # the evil "model" need not load: its import already ran
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, timeout=120, check=True)
    assert marker.read_text() == "model code ran"


@pytest.mark.parametrize(
    ("plant", "named"),
    [
        (lambda f, m: (f / "custom_generate").mkdir() or (f / "custom_generate" / "generate.py")
         .write_text(f"open({str(m)!r}, 'w').write('ran')\n"), "custom_generate/"),
        (lambda f, m: edit_json(f / "tokenizer_config.json",
                                auto_map={"AutoTokenizer": ["tok_evil.EvilTokenizer", None]}),
         "tokenizer_config.json: auto_map"),
        (lambda f, m: edit_json(f / "config.json", custom_pipelines={"evil": {"impl": "p.E"}}),
         "config.json: custom_pipelines"),
    ],
)  # fmt: skip
def test_every_way_a_folder_names_code_is_refused(
    tiny_models: dict[str, Path], tmp_path: Path, plant: Any, named: str
) -> None:
    folder, marker = copy_model(tiny_models, tmp_path), tmp_path / "ran"
    plant(folder, marker)
    with pytest.raises(ModelLoadError, match=named.replace(".", r"\.")):
        load_model(spec(folder), settings(tmp_path))
    assert not marker.exists()


def test_pickle_only_weights_are_refused_unless_allowed(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    folder = copy_model(tiny_models, tmp_path)
    model = AutoModelForSequenceClassification.from_pretrained(str(folder))
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    # transformers 5 saves only safetensors: write the pickle checkpoint older releases wrote
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"pickle checkpoints \(pytorch_model\.bin\)"):
        load_model(spec(folder), settings(tmp_path))
    allowed = load_model(spec(folder, allow_pickle=True), settings(tmp_path))
    assert allowed.backend.name == "torch"
    allowed.close()


def test_an_export_is_data_not_a_pickle(tmp_path: Path) -> None:
    """OpenVINO IR keeps raw weights in openvino_model.bin: an nlp-serve export, not pickle."""
    (tmp_path / "openvino_model.bin").write_bytes(b"\0" * 8)
    assert pickle_checkpoints(tmp_path) == ["openvino_model.bin"]
    (tmp_path / "manifest.json").write_text("{}")
    assert pickle_checkpoints(tmp_path) == []


async def test_the_admin_api_refuses_model_code_unless_the_server_allows_it(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    from app.registry.registry import Registry
    from app.spec import Catalog

    folder = copy_model(tiny_models, tmp_path)
    catalog = Catalog(models=[spec(folder, name="base", backend="fake")])
    registry = Registry(catalog, settings(tmp_path), scheduler_factory=lambda m, t: None)  # type: ignore[arg-type,return-value]
    for opt_in in ({"trust_remote_code": True}, {"allow_pickle": True}):
        with pytest.raises(InvalidInput, match="NLP_SERVE_ADMIN_ALLOW_MODEL_CODE"):
            await registry.add(spec(folder, name="new", backend="fake", **opt_in))
