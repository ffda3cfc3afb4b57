"""Whether serving a model needs torch: an ONNX export in the cache counts only when this
release can load it (an older format is exported again, with torch)."""

from __future__ import annotations

import json
from pathlib import Path

from app.runtimes import needs_torch, onnx
from app.runtimes.base import Head
from app.runtimes.onnx_export import FORMAT, MANIFEST
from app.settings import Settings
from app.spec import ModelSpec


def test_a_cached_export_of_an_older_format_needs_torch(tmp_path: Path) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "config.json").write_text("{}")
    settings = Settings(_env_file=None, onnx_cache_dir=tmp_path / "cache")  # type: ignore[call-arg]
    spec = ModelSpec.model_validate(
        {
            "name": "m",
            "task": "sentiment",
            "source": str(weights),
            "backend": "onnx",
            "export": True,
        }
    )
    head = Head.SEQUENCE_CLASSIFICATION
    assert needs_torch(spec, weights, head, settings)  # nothing exported yet
    cached = settings.onnx_cache_dir / onnx.cache_name(spec, weights, head)
    cached.mkdir(parents=True)
    (cached / MANIFEST).write_text(json.dumps({"head": head.value}))  # optimum's, format 1
    assert needs_torch(spec, weights, head, settings)
    (cached / MANIFEST).write_text(json.dumps({"format": FORMAT, "head": head.value}))
    assert not needs_torch(spec, weights, head, settings)
