"""Loading a model is loading data: what in a model folder would run code, refused before any
library reads it, unless the catalog entry opts in on purpose.

transformers runs Python that ships with a model when its configuration names it: classes in
`auto_map` (config.json, tokenizer_config.json: remote models and tokenizers), pipelines in
`custom_pipelines`, a `custom_generate/` folder whose generate.py replaces generate(). And a
pickle checkpoint (pytorch_model.bin, *.pt, *.ckpt) is code too: unpickling can call anything.
Each is refused here with an error naming the file and the field, before transformers sees the
folder; `trust_remote_code: true` and `allow_pickle: true` in the entry lift the refusals.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.errors import ModelLoadError
from app.spec import ModelSpec

# file -> the fields in it that make transformers import code from the model folder or hub repo
CODE_FIELDS: dict[str, tuple[str, ...]] = {
    "config.json": ("auto_map", "custom_pipelines"),
    "tokenizer_config.json": ("auto_map",),
    "processor_config.json": ("auto_map",),
    "preprocessor_config.json": ("auto_map",),
    "generation_config.json": ("custom_generate",),
}
CODE_FOLDERS = ("custom_generate",)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
SAFE_WEIGHTS = "*.safetensors"
MANIFEST = "manifest.json"  # an nlp-serve export: ONNX / OpenVINO files, no checkpoint to unpickle


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}  # unreadable: the library that needs it reports that, naming the file
    return data if isinstance(data, dict) else {}


def code_it_names(model_dir: Path) -> list[str]:
    """'file: field' for every place in the folder that would make transformers run its code."""
    found = []
    for name, fields in CODE_FIELDS.items():
        data = _json(model_dir / name) if (model_dir / name).is_file() else {}
        found += [f"{name}: {field}" for field in fields if data.get(field)]
    found += [f"{folder}/" for folder in CODE_FOLDERS if (model_dir / folder).exists()]
    return found


def pickle_checkpoints(model_dir: Path) -> list[str]:
    """Pickle checkpoints of a PyTorch model folder that has no safetensors weights to use
    instead (none for an nlp-serve export, whose .bin is OpenVINO's raw weights)."""
    if (model_dir / MANIFEST).is_file() or any(model_dir.glob(SAFE_WEIGHTS)):
        return []
    return sorted(p.name for p in model_dir.iterdir() if p.suffix in PICKLE_SUFFIXES)


def check_model_dir(spec: ModelSpec, model_dir: Path) -> None:
    """Refuse a folder that would run code, unless the entry says it may."""
    if not spec.trust_remote_code:
        code = code_it_names(model_dir)
        if code:
            raise ModelLoadError(
                f"model {spec.name!r}: its folder names code to run ({', '.join(code)}), and "
                "nlp-serve loads models as data. If you have read that code and trust it, set "
                "`trust_remote_code: true` in the catalog entry; else use a model without it"
            )
    if not spec.allow_pickle:
        pickles = pickle_checkpoints(model_dir)
        if pickles:
            raise ModelLoadError(
                f"model {spec.name!r}: its weights are only in pickle checkpoints "
                f"({', '.join(pickles)}), and loading a pickle can run code. Convert them to "
                "safetensors, or set `allow_pickle: true` in the catalog entry if you trust "
                "where they came from"
            )
