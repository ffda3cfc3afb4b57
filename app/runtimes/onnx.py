"""ONNX Runtime backend: exported graphs (see onnx_export.py) on CPU or CUDA.

Encoder heads run one InferenceSession directly (numpy in, numpy out; IOBinding on CUDA so
outputs are written where ORT wants them). Seq2seq heads run three sessions (encoder, first
decoder step, later steps with the key/value cache) under transformers' own generate()
(onnx_seq2seq.py). Causal LMs run one session per decode step of the continuous batcher,
the key/value cache in numpy between steps (onnx_causal.py). A catalog entry may point at an
exported directory, or at a PyTorch model with `export: true`, which exports on first load
into NLP_SERVE_ONNX_CACHE_DIR.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from app.errors import ModelLoadError
from app.runtimes.base import (
    HEAD_OUTPUTS,
    Backend,
    GenerationRequest,
    Head,
    ModelInputs,
    ModelOutputs,
    StepInputs,
)
from app.runtimes.device import resolve_device
from app.runtimes.kv import KVCache
from app.runtimes.onnx_causal import CausalGraph, output_names, past_shapes
from app.runtimes.onnx_export import FORMAT, cpu_isa, export_model, is_current, read_manifest
from app.settings import Settings
from app.spec import ModelSpec

logger = logging.getLogger(__name__)


def cache_name(spec: ModelSpec, model_dir: Path, head: Head) -> str:
    """One export per (weights, head, precision, optimisation, and for int8 the CPU's int8
    instruction set, which the quantisation follows): models sharing them share it."""
    weights = sorted(p.name + str(p.stat().st_size) for p in model_dir.glob("*") if p.is_file())
    recipe = [str(model_dir), head.value, spec.precision, spec.optimize, weights]
    precision: str = spec.precision
    if spec.precision == "int8":
        precision = f"int8-{cpu_isa()}"
        recipe.append(precision)
    digest = hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:16]
    return f"{model_dir.name}-{head.value}-{precision}-{digest}"


def exported_dir(spec: ModelSpec, model_dir: Path, head: Head, settings: Settings) -> Path:
    """The ONNX directory to load: model_dir itself, or its export in the cache."""
    manifest = read_manifest(model_dir)
    if manifest is not None:
        if not is_current(manifest):
            raise ModelLoadError(
                f"model {spec.name!r}: {model_dir} holds an ONNX export in format "
                f"{manifest.get('format', 'nlp-serve-onnx/1')!r} (made by an older nlp-serve "
                f"with optimum-onnx); this release reads {FORMAT!r}. Export it again with "
                f"`nlp-serve export {manifest.get('source', 'SOURCE')} --task "
                f"{spec.task.value} --out DIR`"
            )
        if manifest.get("head") != head.value:
            raise ModelLoadError(
                f"model {spec.name!r}: {model_dir} was exported for {manifest.get('head')!r}, "
                f"but task {spec.task.value!r} needs {head.value!r}; export it again with "
                f"`nlp-serve export {manifest.get('source')} --task {spec.task.value}`"
            )
        exported_precision = manifest.get("precision", "fp32")
        if spec.precision != "fp16" and exported_precision != spec.precision:
            raise ModelLoadError(
                f"model {spec.name!r}: {model_dir} holds a {exported_precision} export "
                f"but the catalog asks for precision {spec.precision}; make them agree"
            )
        return model_dir
    if not spec.export:
        raise ModelLoadError(
            f"model {spec.name!r}: {model_dir} has no ONNX export (manifest.json); run "
            f"`nlp-serve export {spec.source} --task {spec.task.value} --out DIR` and point "
            "`source` at DIR, or set `export: true` to export on first load"
        )
    out = settings.onnx_cache_dir / cache_name(spec, model_dir, head)
    cached = read_manifest(out)
    if cached is None or not is_current(cached):
        reason = "first load" if cached is None else "the cached export is an older format"
        logger.info("model %s: exporting %s to ONNX in %s (%s)", spec.name, model_dir, out, reason)
        export_model(
            model_dir,
            head,
            out,
            source=spec.source,
            quantize=spec.precision == "int8",
            optimize=spec.optimize,
        )
    return out


class OnnxBackend(Backend):
    name = "onnx"
    session: Any = None  # encoder heads: the one InferenceSession
    generator: Any = None  # seq2seq heads: ExportedSeq2Seq, which imports torch
    causal: CausalGraph | None = None  # causal LMs: decode steps over the one session

    @classmethod
    def precisions(cls, head: Head, device: str) -> tuple[str, ...]:
        # Dynamic int8 is an encoder export on the CPU; generation and CUDA stay fp32.
        if device.startswith("cuda") or head in (Head.SEQ2SEQ_LM, Head.CAUSAL_LM):
            return ("fp32",)
        return ("fp32", "int8")

    @classmethod
    def prepare(cls, spec: ModelSpec, model_dir: Path, head: Head, settings: Settings) -> Path:
        return exported_dir(spec, model_dir, head, settings)

    def __init__(self, model_dir: Path, head: Head, spec: ModelSpec, settings: Settings) -> None:
        super().__init__(model_dir, head, spec, settings)
        import onnxruntime as ort
        from transformers import AutoConfig

        self.onnx_dir = self.prepare(spec, model_dir, head, settings)
        manifest = read_manifest(self.onnx_dir) or {}
        self.config = AutoConfig.from_pretrained(str(self.onnx_dir))
        providers = ort.get_available_providers()
        # Without a CUDA provider "auto" is the CPU: no need to ask torch (and import it).
        no_cuda = "CUDAExecutionProvider" not in providers and spec.device == "auto"
        device = "cpu" if no_cuda else resolve_device(spec.device, spec.name)
        if device.startswith("cuda") and "CUDAExecutionProvider" not in providers:
            logger.warning(
                "model %s: CUDA requested but onnxruntime has no CUDAExecutionProvider "
                "(install onnxruntime-gpu); running on CPU",
                spec.name,
            )
            device = "cpu"
        self._device = device
        self._precision = str(manifest.get("precision", "fp32"))
        self._provider = (
            "CUDAExecutionProvider" if device.startswith("cuda") else "CPUExecutionProvider"
        )
        self._provider_options = (
            [{"device_id": int(device.partition(":")[2] or 0)}, {}]
            if device.startswith("cuda")
            else None
        )
        options = ort.SessionOptions()
        options.intra_op_num_threads = settings.torch_threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        spin = "1" if settings.ort_allow_spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        # ONNX Runtime's CPU arena keeps its peak for the life of the session: one large
        # request would hold its memory forever. Off, freed tensors go back to the allocator.
        # A causal LM keeps it: every decode step writes a whole new key/value cache, and
        # without the arena each one is fresh memory the kernel must fault in and zero
        # (measured: 32 rows x 200 cached tokens of a 6-layer 384-wide GPT-2, 16-18 ms a step
        # with it, 54-107 ms without, 2 cores); its peak is bounded by the batcher's cache budget.
        options.enable_cpu_mem_arena = settings.ort_cpu_mem_arena or head is Head.CAUSAL_LM
        self._session_options = options
        files: dict[str, str] = manifest["files"]
        if head is Head.SEQ2SEQ_LM:
            self._load_seq2seq(ort, files)
        elif head is Head.CAUSAL_LM:
            self._load_causal(ort, files["model"])
        else:
            self.session = self._session(ort, files["model"])
            self._input_names = [i.name for i in self.session.get_inputs()]
            self._output_names = [o.name for o in self.session.get_outputs()]
            self._run = self._runner(self.session)

    def _providers(self) -> list[Any]:
        if self._provider_options is None:
            return [self._provider]
        return [(self._provider, self._provider_options[0]), "CPUExecutionProvider"]

    def _session(self, ort: Any, file_name: str) -> Any:
        path = self.onnx_dir / file_name
        try:
            return ort.InferenceSession(
                str(path), sess_options=self._session_options, providers=self._providers()
            )
        except Exception as exc:
            raise ModelLoadError(
                f"model {self.spec.name!r}: onnxruntime could not load {path} "
                f"({type(exc).__name__}); export it again"
            ) from None

    def _load_seq2seq(self, ort: Any, files: dict[str, str]) -> None:
        from app.runtimes.onnx_seq2seq import ExportedSeq2Seq, decoder_layers

        runs = {}
        for role, file_name in files.items():
            session = self._session(ort, file_name)
            runs[role] = self._runner(session)
        self.generator = ExportedSeq2Seq(self.onnx_dir, runs, decoder_layers(self.onnx_dir))

    def _load_causal(self, ort: Any, file_name: str) -> None:
        session = self._session(ort, file_name)
        path = self.onnx_dir / file_name
        past = past_shapes([(i.name, i.shape) for i in session.get_inputs()], path)
        outputs = [o.name for o in session.get_outputs()]
        if outputs != output_names(len(past) // 2):
            raise ModelLoadError(
                f"model {self.spec.name!r}: {path} is not a causal-LM export (outputs "
                f"{outputs}); export it again"
            )
        self.session = session
        self.causal = CausalGraph(self._runner(session), past)

    def _runner(self, session: Any) -> Any:
        on_gpu = self._device.startswith("cuda")

        def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            if not on_gpu:
                return list(session.run(None, feeds))
            binding = session.io_binding()
            for name, array in feeds.items():
                binding.bind_cpu_input(name, array)
            for output in session.get_outputs():
                binding.bind_output(output.name, "cuda")
            session.run_with_iobinding(binding)
            return list(binding.copy_outputs_to_cpu())

        return run

    @property
    def device(self) -> str:
        return self._device

    @property
    def precision(self) -> str:
        return self._precision

    def _feeds(self, inputs: ModelInputs) -> dict[str, np.ndarray]:
        shape = inputs["input_ids"].shape
        return {
            name: inputs[name] if name in inputs else np.zeros(shape, dtype=np.int64)
            for name in self._input_names
        }

    def forward(self, inputs: ModelInputs) -> ModelOutputs:
        if self.causal is not None:
            raise NotImplementedError("a causal LM's graph runs by decode_step()")
        values = dict(zip(self._output_names, self._run(self._feeds(inputs)), strict=True))
        wanted = HEAD_OUTPUTS[self.head]
        return {name: np.asarray(values[name], dtype=np.float32) for name in wanted}

    def generate(self, inputs: ModelInputs, request: GenerationRequest) -> ModelOutputs:
        from app.runtimes.onnx_seq2seq import generate_sequences

        return generate_sequences(self.generator, inputs, request, self.spec.generation)

    def decode_step(self, step: StepInputs, cache: KVCache | None) -> tuple[np.ndarray, KVCache]:
        if self.causal is None:
            return super().decode_step(step, cache)
        return self.causal.step(step, cache)

    def close(self) -> None:
        self.session = None
        self.generator = None
        self.causal = None
