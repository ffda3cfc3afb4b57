"""`nlp-serve pull`: fetch a catalog's weights (and ONNX exports) ahead of serving.

Weights go where serving looks for them: hub ids into the huggingface_hub cache
(NLP_SERVE_HUB_CACHE_DIR), ONNX exports into NLP_SERVE_ONNX_CACHE_DIR under the same names the
registry computes. Afterwards the same catalog serves with NLP_SERVE_HUB_OFFLINE=true, e.g. in
an image built with the models baked in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.errors import ModelLoadError
from app.registry.sources import resolve_source
from app.runtimes.onnx import exported_dir
from app.settings import Settings
from app.spec import Catalog
from app.tasks import task_class


@dataclass(frozen=True)
class Pulled:
    name: str
    weights: Path | None
    onnx: Path | None = None
    error: str | None = None


def pull_catalog(catalog: Catalog, settings: Settings, export_onnx: bool) -> list[Pulled]:
    """Fetch every model; one failure does not stop the others."""
    results = []
    for spec in catalog.models:
        try:
            weights = resolve_source(spec, settings)
            onnx = None
            if export_onnx and spec.backend == "onnx":
                onnx = exported_dir(spec, weights, task_class(spec).head, settings)
            results.append(Pulled(spec.name, weights, onnx))
        except ModelLoadError as exc:
            results.append(Pulled(spec.name, None, error=str(exc)))
    return results
