"""`nlp-serve pull`: fetch a catalog's weights (and exports) ahead of serving.

Weights go where serving looks for them: hub ids into the huggingface_hub cache
(NLP_SERVE_HUB_CACHE_DIR); ONNX exports into NLP_SERVE_ONNX_CACHE_DIR and OpenVINO IR into
NLP_SERVE_OPENVINO_CACHE_DIR, under the same names the backends compute. Afterwards the same
catalog serves with NLP_SERVE_HUB_OFFLINE=true and never exports (nor imports torch) at
start-up, e.g. in an image built with the models baked in. `auto` entries make every
candidate's export and the decision (NLP_SERVE_AUTO_CACHE_DIR); a pod on another CPU kind
decides again at start-up, from the exports already there (int8 ONNX Runtime exports are made
per instruction set).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.errors import ModelLoadError
from app.registry.auto import prepare_auto
from app.registry.sources import resolve_source
from app.registry.trust import check_model_dir
from app.runtimes import backend_class
from app.settings import Settings
from app.spec import AUTO, Catalog
from app.tasks import task_class


@dataclass(frozen=True)
class Pulled:
    name: str
    weights: Path | None
    export: Path | None = None
    error: str | None = None


def pull_catalog(catalog: Catalog, settings: Settings, export: bool) -> list[Pulled]:
    """Fetch every model (and export it, if asked); one failure does not stop the others."""
    results = []
    for spec in catalog.models:
        try:
            weights = resolve_source(spec, settings)
            check_model_dir(spec, weights)  # exporting loads the model: data only
            head = task_class(spec).head
            exported = None
            if export and AUTO in (spec.backend, spec.precision):
                exported = prepare_auto(spec, weights, head, settings)  # every candidate's
            elif export:
                exported = backend_class(spec.backend).prepare(spec, weights, head, settings)
            results.append(Pulled(spec.name, weights, exported))
        except ModelLoadError as exc:
            results.append(Pulled(spec.name, None, error=str(exc)))
    return results
