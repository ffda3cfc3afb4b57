"""Backends that run model heads: the registry picks one by the catalog's `backend` name."""

from __future__ import annotations

from app.runtimes.base import Backend
from app.runtimes.fake import FakeBackend
from app.runtimes.onnx import OnnxBackend
from app.runtimes.torch import TorchBackend

BACKENDS: dict[str, type[Backend]] = {
    TorchBackend.name: TorchBackend,
    OnnxBackend.name: OnnxBackend,
    FakeBackend.name: FakeBackend,
}
