"""OpenVINO backend: encoder heads as OpenVINO IR on the CPU, fp32, bf16 or NNCF int8; seq2seq
generation (fp32 or bf16 kernels) over the three graphs of the ONNX export, which transformers'
generate() drives as for ONNX Runtime (onnx_seq2seq.py); causal LMs (fp32 or bf16 kernels)
over the ONNX export's one graph, stepped by the continuous batcher (onnx_causal.py).

The IR comes from openvino_export.py: a catalog entry points at an exported directory, or at a
PyTorch model (or an fp32 ONNX export) with `export: true`, which converts on first load into
NLP_SERVE_OPENVINO_CACHE_DIR. One compiled model and one infer request per served model:
the batcher runs one batch at a time on the model's own thread, so one stream with all the
intra-op threads (NLP_SERVE_TORCH_THREADS, as for PyTorch and ONNX Runtime) is what fits.
Shapes stay dynamic: any batch size and sequence length run without recompiling.

Encoder heads and causal LMs import no torch (seq2seq generation does: transformers' loop).
Hardware OpenVINO cannot run on (no CPU plugin, no int8 / bf16 support for the precision
asked) stops start-up with an error naming the model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
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
from app.runtimes.kv import KVCache
from app.runtimes.onnx_causal import CausalGraph, output_names, past_shapes
from app.runtimes.onnx_export import read_manifest
from app.runtimes.openvino_export import (
    ENCODER_HEADS,
    FORMAT,
    HEADS,
    MODEL_FILE,
    Calibration,
    export_openvino,
    load_calibration,
    require_openvino,
)
from app.settings import Settings
from app.spec import ModelSpec, OpenVinoBackendOptions

logger = logging.getLogger(__name__)

# Catalog precision -> (IR precision on disk, OpenVINO CPU inference precision hint,
# the CPU capability it needs). bf16 runs the fp32 IR with bf16 kernels (AMX / avx512_bf16).
PRECISIONS: dict[str, tuple[str, str, str]] = {
    "fp32": ("fp32", "f32", "FP32"),
    "bf16": ("fp32", "bf16", "BF16"),
    "int8": ("int8", "f32", "INT8"),
}
GENERATION_PRECISIONS = ("fp32", "bf16")


def _calibration(spec: ModelSpec) -> Calibration | None:
    if PRECISIONS[spec.precision][0] != "int8":
        return None
    calibration = spec.backend_options_as(OpenVinoBackendOptions).calibration
    return load_calibration(Path(calibration) if calibration else None)


def cache_name(spec: ModelSpec, model_dir: Path, head: Head) -> str:
    """One export per (weights, head, IR precision, calibration set): models sharing them share."""
    precision = PRECISIONS.get(spec.precision, ("fp32",))[0]
    calibration = _calibration(spec) if spec.precision in PRECISIONS else None
    weights = sorted(p.name + str(p.stat().st_size) for p in model_dir.glob("*") if p.is_file())
    digest_of = calibration.digest if calibration else None
    recipe = json.dumps([str(model_dir), head.value, precision, digest_of, weights])
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:16]
    return f"{model_dir.name}-{head.value}-{precision}-{digest}"


def openvino_dir(spec: ModelSpec, model_dir: Path, head: Head, settings: Settings) -> Path:
    """The IR directory to load: model_dir itself, or its export in the cache."""
    ir_precision = PRECISIONS[spec.precision][0]
    manifest = read_manifest(model_dir)
    if manifest is not None and manifest.get("format") == FORMAT:
        if manifest.get("head") != head.value:
            raise ModelLoadError(
                f"model {spec.name!r}: {model_dir} was exported for {manifest.get('head')!r}, "
                f"but task {spec.task.value!r} needs {head.value!r}; export it again with "
                f"`nlp-serve export {manifest.get('source')} --backend openvino "
                f"--task {spec.task.value}`"
            )
        if manifest.get("precision") != ir_precision:
            raise ModelLoadError(
                f"model {spec.name!r}: {model_dir} holds a {manifest.get('precision')} OpenVINO "
                f"export but the catalog asks for precision {spec.precision}; make them agree"
            )
        return model_dir
    if not spec.export:
        quantize = " --quantize int8" if ir_precision == "int8" else ""
        raise ModelLoadError(
            f"model {spec.name!r}: {model_dir} has no OpenVINO export (manifest.json); run "
            f"`nlp-serve export {spec.source} --backend openvino --task {spec.task.value}"
            f"{quantize} --out DIR` and point `source` at DIR, or set `export: true` to export "
            "on first load"
        )
    calibration = _calibration(spec)
    out = settings.openvino_cache_dir / cache_name(spec, model_dir, head)
    if read_manifest(out) is None:
        logger.info("model %s: exporting %s to OpenVINO %s in %s (first load)", spec.name,
                    model_dir, ir_precision, out)  # fmt: skip
        try:
            export_openvino(model_dir, head, out, source=spec.source,
                            quantize=calibration is not None, calibration=calibration)  # fmt: skip
        except ModelLoadError as exc:
            raise ModelLoadError(f"model {spec.name!r}: {exc}") from None
    return out


class OpenVinoBackend(Backend):
    name = "openvino"

    generator: Any = None  # seq2seq heads: ExportedSeq2Seq, which imports torch
    causal: CausalGraph | None = None  # causal LMs: decode steps over the one graph

    @classmethod
    def precisions(cls, head: Head, device: str) -> tuple[str, ...]:
        if device != "cpu" or head not in HEADS:
            return ()
        try:
            import openvino
        except ImportError:
            return ()
        capabilities = set(openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        offered = PRECISIONS if head in ENCODER_HEADS else GENERATION_PRECISIONS
        return tuple(p for p, (_, _, needs) in PRECISIONS.items()
                     if p in offered and needs in capabilities)  # fmt: skip

    @classmethod
    def prepare(cls, spec: ModelSpec, model_dir: Path, head: Head, settings: Settings) -> Path:
        return openvino_dir(spec, model_dir, head, settings)

    def __init__(self, model_dir: Path, head: Head, spec: ModelSpec, settings: Settings) -> None:
        super().__init__(model_dir, head, spec, settings)
        if head not in HEADS:
            raise ModelLoadError(
                f"model {spec.name!r}: backend openvino serves encoder tasks (classify, "
                f"sentiment, qa, ner, embed, and the semantic methods) and generation, not "
                f"{spec.task.value!r} with method {spec.method} (head {head.value}): use "
                "backend onnx or torch for it"
            )
        if head not in ENCODER_HEADS and spec.precision not in GENERATION_PRECISIONS:
            raise ModelLoadError(
                f"model {spec.name!r}: generation on OpenVINO runs in fp32 or bf16, not "
                f"{spec.precision} (NNCF int8 is for encoder tasks)"
            )
        if spec.precision not in PRECISIONS:
            raise ModelLoadError(
                f"model {spec.name!r}: backend openvino runs on the CPU in fp32, bf16 or int8, "
                f"not {spec.precision}; choose one of those"
            )
        if spec.device.startswith("cuda"):
            raise ModelLoadError(
                f"model {spec.name!r}: backend openvino runs on the CPU here, but the catalog "
                f"asks for device {spec.device}; use device: cpu (or auto), or backend onnx / "
                "torch for CUDA"
            )
        ov = require_openvino(spec.name)
        core = ov.Core()
        self._check_device(core)
        capabilities = set(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        self._precision = self._run_precision(capabilities, spec)
        _, hint, capability = PRECISIONS[self._precision]
        self._check_capability(capabilities, capability)
        from transformers import AutoConfig

        self.ir_dir = self.prepare(spec, model_dir, head, settings)
        manifest = read_manifest(self.ir_dir) or {}
        self.config = AutoConfig.from_pretrained(str(self.ir_dir))
        self.threads = settings.torch_threads or (os.cpu_count() or 1)
        # f32 must be explicit: on CPUs with bf16 (AMX, avx512_bf16) OpenVINO defaults to bf16,
        # which would silently cost fp32's accuracy (embeddings stop matching).
        properties = {
            "INFERENCE_NUM_THREADS": self.threads,
            "INFERENCE_PRECISION_HINT": hint,
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "CPU_RUNTIME_CACHE_CAPACITY": settings.openvino_runtime_cache_capacity,
        }
        files: dict[str, str] = manifest.get("files", {"model": MODEL_FILE})
        self._lock = threading.Lock()
        if head is Head.SEQ2SEQ_LM:
            self._load_seq2seq(core, files, properties)
            return
        if head is Head.CAUSAL_LM:
            self._load_causal(core, self.ir_dir / files["model"], properties)
            return
        path = self.ir_dir / files["model"]
        self.compiled = self._compile(core, path, properties)
        self._input_names = [port.get_any_name() for port in self.compiled.inputs]
        self._output_names = list(HEAD_OUTPUTS[head])
        available = {name for port in self.compiled.outputs for name in port.get_names()}
        missing = [name for name in self._output_names if name not in available]
        if missing:
            raise ModelLoadError(
                f"model {spec.name!r}: {path} has no output(s) {missing} (it has "
                f"{sorted(available)}); export it again for task {spec.task.value!r}"
            )
        self._outputs = [self.compiled.output(name) for name in self._output_names]
        self._request = self.compiled.create_infer_request()

    def _compile(self, core: Any, path: Path, properties: dict[str, Any]) -> Any:
        try:
            return core.compile_model(str(path), "CPU", properties)
        except Exception as exc:
            raise ModelLoadError(
                f"model {self.spec.name!r}: OpenVINO could not compile {path} for the CPU "
                f"({type(exc).__name__}); export it again"
            ) from None

    def _load_seq2seq(self, core: Any, files: dict[str, str], properties: dict[str, Any]) -> None:
        from app.runtimes.onnx_seq2seq import ExportedSeq2Seq, decoder_layers

        runs = {}
        for role, file_name in files.items():
            runs[role] = _runner(self._compile(core, self.ir_dir / file_name, properties))
        self.generator = ExportedSeq2Seq(self.ir_dir, runs, decoder_layers(self.ir_dir))

    def _load_causal(self, core: Any, path: Path, properties: dict[str, Any]) -> None:
        compiled = self._compile(core, path, properties)
        inputs = [(port.get_any_name(), _dims(port)) for port in compiled.inputs]
        past = past_shapes(inputs, path)
        outputs = [port.get_any_name() for port in compiled.outputs]
        if outputs != output_names(len(past) // 2):
            raise ModelLoadError(
                f"model {self.spec.name!r}: {path} is not a causal-LM export (outputs "
                f"{outputs}); export it again"
            )
        self.compiled = compiled
        self.causal = CausalGraph(_step_runner(compiled, self._lock), past)

    def _check_device(self, core: Any) -> None:
        if "CPU" not in core.available_devices:
            raise ModelLoadError(
                f"model {self.spec.name!r}: OpenVINO finds no usable CPU device on this machine "
                f"(devices: {core.available_devices}); serve it with backend onnx"
            )

    def _run_precision(self, capabilities: set[str], spec: ModelSpec) -> str:
        """The precision the kernels run in: the catalog's, or bf16 for an fp32 entry with
        prefer_bf16 on a CPU that has bf16 (said in the log and in /v1/models)."""
        if (
            spec.precision != "fp32"
            or not spec.backend_options_as(OpenVinoBackendOptions).prefer_bf16
        ):
            return spec.precision
        if "BF16" in capabilities:
            logger.info("model %s: fp32 weights run with bf16 kernels (prefer_bf16; this CPU "
                        "has bf16)", spec.name)  # fmt: skip
            return "bf16"
        logger.info("model %s: this CPU has no bf16 kernels; running fp32 (prefer_bf16)",
                    spec.name)  # fmt: skip
        return "fp32"

    def _check_capability(self, capabilities: set[str], capability: str) -> None:
        if capability not in capabilities:
            raise ModelLoadError(
                f"model {self.spec.name!r}: this CPU has no OpenVINO {capability} support "
                f"(it has {sorted(capabilities)}); choose another precision, or backend onnx"
            )

    @property
    def device(self) -> str:
        return "cpu"

    @property
    def precision(self) -> str:
        return self._precision

    def forward(self, inputs: ModelInputs) -> ModelOutputs:
        if self.causal is not None:
            raise NotImplementedError("a causal LM's graph runs by decode_step()")
        shape = inputs["input_ids"].shape
        feeds = {
            name: inputs[name] if name in inputs else np.zeros(shape, dtype=np.int64)
            for name in self._input_names
        }
        with self._lock:  # one infer request: its output tensors are reused by the next run
            results = self._request.infer(feeds, share_inputs=True, share_outputs=False)
            return {
                name: np.asarray(results[port], dtype=np.float32)
                for name, port in zip(self._output_names, self._outputs, strict=True)
            }

    def generate(self, inputs: ModelInputs, request: GenerationRequest) -> ModelOutputs:
        from app.runtimes.onnx_seq2seq import generate_sequences

        return generate_sequences(self.generator, inputs, request, self.spec.generation)

    def decode_step(self, step: StepInputs, cache: KVCache | None) -> tuple[np.ndarray, KVCache]:
        if self.causal is None:
            return super().decode_step(step, cache)
        return self.causal.step(step, cache)

    def close(self) -> None:
        self._request = None
        self.compiled = None
        self.generator = None
        self.causal = None


def _runner(compiled: Any) -> Any:
    """Feeds in, the graph's outputs in order out (copies: generation keeps them)."""
    request = compiled.create_infer_request()
    ports = list(compiled.outputs)

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = request.infer(feeds, share_inputs=False, share_outputs=False)
        return [np.asarray(result[port]) for port in ports]

    return run


def _dims(port: Any) -> list[int | None]:
    """A port's shape: ints where static, None where dynamic."""
    return [d.get_length() if d.is_static else None for d in port.get_partial_shape()]


def _step_runner(compiled: Any, lock: threading.Lock) -> Any:
    """A causal LM's runner: the feeds are read in place (the cache is large, and the call
    returns before anyone changes it), the outputs copied (they become the next cache)."""
    request = compiled.create_infer_request()
    ports = list(compiled.outputs)

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with lock:
            result = request.infer(feeds, share_inputs=True, share_outputs=False)
            return [np.asarray(result[port]) for port in ports]

    return run
