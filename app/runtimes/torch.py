"""PyTorch backend: transformers Auto* models in inference mode, on CPU or CUDA."""

from __future__ import annotations

import contextlib
import inspect
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from app.errors import ModelLoadError
from app.runtimes.base import (
    AUTO_CLASSES,
    HEAD_OUTPUTS,
    Backend,
    GenerationRequest,
    Head,
    ModelInputs,
    ModelOutputs,
    StepInputs,
)
from app.runtimes.cpu import cpu_has_bf16
from app.runtimes.device import resolve_device, resolve_precision
from app.runtimes.kv import KVCache
from app.settings import Settings
from app.spec import ModelSpec

logger = logging.getLogger(__name__)


def accepted_inputs(forward: Callable[..., Any]) -> set[str]:
    """The argument names a model's forward() takes. Its signature, not its __code__:
    transformers 5 wraps forward() in decorators whose code takes only *args, **kwargs."""
    return set(inspect.signature(forward).parameters)


def cache_argument(forward: Callable[..., Any]) -> str:
    """transformers renamed `past_key_values` to `cache` during 5.x."""
    return "cache" if "cache" in accepted_inputs(forward) else "past_key_values"


class TorchBackend(Backend):
    name = "torch"

    @classmethod
    def precisions(cls, head: Head, device: str) -> tuple[str, ...]:
        if device.startswith("cuda"):
            return ("fp32", "fp16", "bf16")
        return ("fp32", "bf16") if cpu_has_bf16() else ("fp32",)

    def __init__(self, model_dir: Path, head: Head, spec: ModelSpec, settings: Settings) -> None:
        super().__init__(model_dir, head, spec, settings)
        if "torch" in sys.modules and sys.modules["torch"] is None:
            raise ModelLoadError(
                f"model {spec.name!r}: this server started without PyTorch (USE_TORCH=0: its "
                "catalog needed none); restart it with USE_TORCH=1 to load PyTorch models"
            )
        import torch
        import transformers

        if spec.precision == "int8":
            raise ModelLoadError(
                f"model {spec.name!r}: precision int8 needs backend: onnx (dynamic quantization); "
                "use fp32, fp16 or bf16 with the torch backend"
            )
        self._torch = torch
        if settings.torch_threads:  # here, not at start-up: other catalogs never import torch
            torch.set_num_threads(settings.torch_threads)
        self._device = resolve_device(spec.device, spec.name)
        self._precision = resolve_precision(spec.precision, self._device, spec.name)
        on_gpu = self._device.startswith("cuda")
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self._precision)
        # On GPU the weights are cast; on CPU bf16 runs under autocast with fp32 weights.
        load_dtype = dtype if (on_gpu and dtype is not None) else torch.float32
        auto_class = getattr(transformers, AUTO_CLASSES[head])
        try:
            model = auto_class.from_pretrained(
                str(model_dir),
                dtype=load_dtype,
                trust_remote_code=spec.trust_remote_code,
                # never a pickle unless the entry allows one (app/registry/trust.py)
                use_safetensors=None if spec.allow_pickle else True,
            )
        except Exception as exc:
            raise ModelLoadError(
                f"model {spec.name!r}: could not load {model_dir} as {AUTO_CLASSES[head]} "
                f"for task {spec.task.value!r}: {type(exc).__name__}: {exc}"
            ) from None
        self.model = model.to(self._device).eval()
        self.config = self.model.config
        self._autocast_dtype = dtype if (not on_gpu and self._precision == "bf16") else None
        self._accepted = accepted_inputs(self.model.forward)
        self._cache_argument = cache_argument(self.model.forward)
        # Only the last position's logits: a prefill chunk's others would be [tokens, vocab].
        self._last_logits_only = {"logits_to_keep": 1} if "logits_to_keep" in self._accepted else {}

    @property
    def device(self) -> str:
        return self._device

    @property
    def precision(self) -> str:
        return self._precision

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        with self._torch.inference_mode():
            if self._autocast_dtype is not None:
                with self._torch.autocast("cpu", dtype=self._autocast_dtype):
                    yield
            else:
                yield

    def _tensors(self, inputs: ModelInputs) -> dict[str, Any]:
        return {
            key: self._torch.from_numpy(value).to(self._device)
            for key, value in inputs.items()
            if key in self._accepted
        }

    def forward(self, inputs: ModelInputs) -> ModelOutputs:
        with self._inference():
            output = self.model(**self._tensors(inputs))
        return {
            name: output[name].float().cpu().numpy().astype(np.float32, copy=False)
            for name in HEAD_OUTPUTS[self.head]
        }

    def forward_token_max(self, inputs: ModelInputs) -> ModelOutputs:
        """Pooled where the outputs are: only [rows, ...] leaves the device (a GPU would
        otherwise copy every token's logits out), and torch reduces on all its threads."""
        lengths = [max(int(n), 1) for n in inputs["attention_mask"].sum(axis=1)]
        with self._inference():
            output = self.model(**self._tensors(inputs))
            pooled = {
                name: self._torch.stack(
                    [output[name][row, :n].amax(dim=0) for row, n in enumerate(lengths)]
                )
                for name in HEAD_OUTPUTS[self.head]
            }
        return {
            name: value.float().cpu().numpy().astype(np.float32, copy=False)
            for name, value in pooled.items()
        }

    def generate(self, inputs: ModelInputs, request: GenerationRequest) -> ModelOutputs:
        kwargs = request.generate_kwargs(self.spec.generation)
        with self._inference():
            sequences = self.model.generate(**self._tensors(inputs), **kwargs)
        return {"sequences": sequences.cpu().numpy().astype(np.int64, copy=False)}

    def decode_step(self, step: StepInputs, cache: KVCache | None) -> tuple[np.ndarray, KVCache]:
        from transformers.cache_utils import DynamicCache

        from app.runtimes.torch_kv import TorchKV

        device = self._device
        torch = self._torch
        if cache is not None and not isinstance(cache, TorchKV):  # pragma: no cover
            raise TypeError(f"a torch model steps on torch tensors, not {type(cache).__name__}")
        past = cache.as_model_cache() if cache is not None else DynamicCache()
        with self._inference():
            output = self.model(
                input_ids=torch.from_numpy(step.input_ids).to(device),
                attention_mask=torch.from_numpy(step.attention_mask).to(device),
                position_ids=torch.from_numpy(step.position_ids).to(device),
                use_cache=True,
                **self._last_logits_only,
                **{self._cache_argument: past},
            )
            logits = output.logits[:, -1, :].float().cpu().numpy()
        present = output.get("cache") or output.get("past_key_values")
        return logits.astype(np.float32, copy=False), TorchKV.of(present)

    def close(self) -> None:
        del self.model
        if self._device.startswith("cuda"):
            self._torch.cuda.empty_cache()
