"""Backends that run model heads: the registry picks one by the catalog's `backend` name.

Importing this package imports no engine: each backend imports its own (torch, onnxruntime,
openvino) when a model is loaded, so a catalog without PyTorch models never loads torch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from app.runtimes.base import Backend, Head
from app.runtimes.fake import FakeBackend
from app.runtimes.onnx import OnnxBackend
from app.runtimes.openvino import OpenVinoBackend
from app.runtimes.torch import TorchBackend
from app.settings import Settings
from app.spec import AUTO, ModelSpec

# The engines a catalog entry may name (and the ones `backend: auto` measures).
BACKENDS: dict[str, type[Backend]] = {
    TorchBackend.name: TorchBackend,
    OnnxBackend.name: OnnxBackend,
    OpenVinoBackend.name: OpenVinoBackend,
}
# Stand-ins for tests, loaded only for an entry that names one (`backend: fake`): never
# chosen by `auto`, never offered in an error's list of backends.
TEST_BACKENDS: dict[str, type[Backend]] = {FakeBackend.name: FakeBackend}


def backend_class(name: str) -> type[Backend]:
    """The backend a catalog entry names (check_backend has refused unknown names)."""
    return BACKENDS.get(name) or TEST_BACKENDS[name]


def needs_torch(spec: ModelSpec, model_dir: Path, head: Head, settings: Settings) -> bool:
    """Whether loading or serving this model imports torch: PyTorch models, seq2seq generation
    on exported graphs (transformers' generate() drives them), and exports not yet in the cache
    or made by an older release (torch traces the model). A causal LM's export needs none: the
    continuous batcher steps its graph with numpy."""
    from app.runtimes import onnx, openvino
    from app.runtimes.onnx_export import is_current, read_manifest

    if spec.backend in ("torch", AUTO) or spec.precision == AUTO:
        return True  # auto measures torch fp32 as its reference, or exports with it
    if spec.backend in ("onnx", "openvino") and head is Head.SEQ2SEQ_LM:
        return True  # transformers' generate() drives the exported graphs
    if spec.backend not in ("onnx", "openvino") or read_manifest(model_dir) is not None:
        return False
    if not spec.export:
        return False  # loading fails with a clear error anyway
    if spec.backend == "onnx":
        made = read_manifest(settings.onnx_cache_dir / onnx.cache_name(spec, model_dir, head))
        return made is None or not is_current(made)  # an older release's export is made again
    cached = settings.openvino_cache_dir / openvino.cache_name(spec, model_dir, head)
    return read_manifest(cached) is None


def keep_torch_out() -> None:
    """When USE_TORCH=0 (set by `nlp-serve serve` for a catalog that needs no torch), make sure
    nothing imports it. transformers 5 no longer reads USE_TORCH and imports torch whenever it is
    installed (~0.5 GB of RSS and seconds of start-up); a None in sys.modules is Python's own
    way to block an import: `import torch` raises ImportError and find_spec answers None, so
    transformers runs tokenizers and configs without it."""
    if os.environ.get("USE_TORCH", "").upper() in ("0", "FALSE", "NO", "OFF"):
        sys.modules.setdefault("torch", None)  # type: ignore[arg-type]
