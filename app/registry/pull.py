"""`nlp-serve pull`: fetch a catalog's weights (and exports) ahead of serving.

Weights go where serving looks for them: hub ids into the huggingface_hub cache
(NLP_SERVE_HUB_CACHE_DIR); ONNX exports into NLP_SERVE_ONNX_CACHE_DIR and OpenVINO IR into
NLP_SERVE_OPENVINO_CACHE_DIR, under the same names the backends compute. Afterwards the same
catalog serves with NLP_SERVE_HUB_OFFLINE=true and never exports (nor imports torch) at
start-up, e.g. in an image built with the models baked in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.errors import ModelLoadError
from app.registry.sources import resolve_source
from app.settings import Settings
from app.spec import Catalog, ModelSpec
from app.tasks import task_class


@dataclass(frozen=True)
class Pulled:
    name: str
    weights: Path | None
    export: Path | None = None
    error: str | None = None


def export_for(spec: ModelSpec, weights: Path, settings: Settings) -> Path | None:
    """The directory the entry's backend loads, exported now if it is not there yet."""
    head = task_class(spec).head
    if spec.backend == "onnx":
        from app.runtimes.onnx import exported_dir

        return exported_dir(spec, weights, head, settings)
    if spec.backend == "openvino":
        from app.runtimes.openvino import openvino_dir

        return openvino_dir(spec, weights, head, settings)
    return None  # torch and fake load the weights themselves


def pull_catalog(catalog: Catalog, settings: Settings, export: bool) -> list[Pulled]:
    """Fetch every model (and export it, if asked); one failure does not stop the others."""
    results = []
    for spec in catalog.models:
        try:
            weights = resolve_source(spec, settings)
            exported = export_for(spec, weights, settings) if export else None
            results.append(Pulled(spec.name, weights, exported))
        except ModelLoadError as exc:
            results.append(Pulled(spec.name, None, error=str(exc)))
    return results
