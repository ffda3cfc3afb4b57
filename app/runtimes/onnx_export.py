"""Export a PyTorch model directory to ONNX with optimum, optionally optimised and int8-quantised.

The output directory holds the graph(s), the tokenizer and config, and `manifest.json`, which
records what was exported so the ONNX backend loads the right files:

    {"format": "nlp-serve-onnx/1", "head": ..., "source": ..., "precision": "fp32" | "int8",
     "optimize": "O2" | null, "files": {"model": ...} or {"encoder": ..., "decoder": ...},
     "opset": 17, "quantization_isa": "avx2" | null, "versions": {...}}
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Literal

from app.errors import ModelLoadError
from app.runtimes.base import Head
from app.runtimes.cpu import cpu_fingerprint

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "nlp-serve-onnx/1"
OptimizeLevel = Literal["O1", "O2", "O3"]

# optimum's task name for each head we serve.
OPTIMUM_TASKS: dict[Head, str] = {
    Head.SEQUENCE_CLASSIFICATION: "text-classification",
    Head.QUESTION_ANSWERING: "question-answering",
    Head.TOKEN_CLASSIFICATION: "token-classification",
    Head.FEATURE_EXTRACTION: "feature-extraction",
    Head.SEQ2SEQ_LM: "text2text-generation-with-past",
    Head.MASKED_LM: "fill-mask",
}
ORT_MODEL_CLASSES: dict[Head, str] = {
    Head.SEQUENCE_CLASSIFICATION: "ORTModelForSequenceClassification",
    Head.QUESTION_ANSWERING: "ORTModelForQuestionAnswering",
    Head.TOKEN_CLASSIFICATION: "ORTModelForTokenClassification",
    Head.FEATURE_EXTRACTION: "ORTModelForFeatureExtraction",
    Head.SEQ2SEQ_LM: "ORTModelForSeq2SeqLM",
    Head.MASKED_LM: "ORTModelForMaskedLM",
}
ENCODER_FILE = "model.onnx"
SEQ2SEQ_FILES = {"encoder": "encoder_model.onnx", "decoder": "decoder_model_merged.onnx"}


def cpu_isa() -> str:
    """The widest int8 instruction set this CPU has, as AutoQuantizationConfig names it.

    The int8 export depends on it (u8 weights for avx2, s8 for avx512_vnni): measured, the
    avx2 export answers 1 in 12 QA probes differently. So it is part of the export's cache
    name, and a CPU of another kind makes its own export."""
    import platform

    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    isa = set(cpu_fingerprint()["isa"])
    if "avx512_vnni" in isa:
        return "avx512_vnni"
    if "avx512f" in isa:
        return "avx512"
    return "avx2"


def require_optimum(what: str) -> None:
    """optimum-onnx exports to ONNX and runs ONNX generation; without it (an offline bundle
    beside transformers 5 leaves it out) say so, naming what needed it."""
    try:
        found = importlib.util.find_spec("optimum.onnxruntime") is not None
    except ImportError:  # no optimum at all
        found = False
    if not found:
        raise ModelLoadError(
            f"{what} needs optimum-onnx, which is not installed: `pip install "
            "optimum-onnx==0.1.0` (it needs transformers<4.58), or export on a machine that "
            "has it (`nlp-serve export`) and point `source` at the export"
        )


def read_manifest(directory: Path) -> dict[str, Any] | None:
    path = directory / MANIFEST
    if not path.is_file():
        return None
    manifest: dict[str, Any] = json.loads(path.read_text())
    return manifest


def _graph_files(head: Head) -> dict[str, str]:
    return dict(SEQ2SEQ_FILES) if head is Head.SEQ2SEQ_LM else {"model": ENCODER_FILE}


def _opset(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _optimize(out: Path, head: Head, level: OptimizeLevel, files: dict[str, str]) -> dict[str, str]:
    import optimum.onnxruntime as ort_models
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig

    model = getattr(ort_models, ORT_MODEL_CLASSES[head]).from_pretrained(str(out))
    optimizer = ORTOptimizer.from_pretrained(model)
    config = AutoOptimizationConfig.with_optimization_level(level)
    optimizer.optimize(save_dir=str(out), optimization_config=config)
    return {role: name.replace(".onnx", "_optimized.onnx") for role, name in files.items()}


def _quantize(out: Path, files: dict[str, str], isa: str) -> dict[str, str]:
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    # Dynamic (weights int8, activations quantised at run time): no calibration data needed.
    # Per-channel weights keep accuracy on small encoders; avx2/arm64 kernels ignore it.
    config = getattr(AutoQuantizationConfig, isa)(is_static=False, per_channel=True)
    quantized = {}
    for role, name in files.items():
        quantizer = ORTQuantizer.from_pretrained(str(out), file_name=name)
        quantizer.quantize(save_dir=str(out), quantization_config=config)
        quantized[role] = name.replace(".onnx", "_quantized.onnx")
    return quantized


def _keep_only(out: Path, chosen: dict[str, str], standard: dict[str, str]) -> dict[str, str]:
    """Keep just the graphs served, under optimum's standard names, so loading is unambiguous."""
    for role, name in chosen.items():
        if name != standard[role]:
            (out / name).replace(out / standard[role])
    for path in out.glob("*.onnx"):
        if path.name not in standard.values():
            path.unlink()
    return dict(standard)


def export_model(
    model_dir: Path,
    head: Head,
    out: Path,
    *,
    source: str,
    quantize: bool = False,
    optimize: OptimizeLevel | None = None,
) -> Path:
    """Export model_dir's `head` to ONNX in `out` (replaced if present) and write the manifest."""
    require_optimum(f"exporting {model_dir} to ONNX")
    import onnxruntime
    import optimum.version
    from optimum.exporters.onnx import main_export

    if quantize and optimize in ("O2", "O3"):
        raise ModelLoadError(
            f"--optimize {optimize} fuses attention into operators the int8 quantiser cannot "
            "read; use --optimize O1 (or none) with --quantize int8. ONNX Runtime still applies "
            "its own graph optimisations when it loads the model."
        )

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        # library_name: a sentence-transformers directory would otherwise export its pooling
        # pipeline; our tasks pool themselves and need the encoder's last_hidden_state.
        main_export(
            str(model_dir),
            output=str(tmp),
            task=OPTIMUM_TASKS[head],
            device="cpu",
            library_name="transformers",
        )
    except Exception as exc:
        raise ModelLoadError(
            f"could not export {model_dir} to ONNX as {OPTIMUM_TASKS[head]}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if head is Head.SEQ2SEQ_LM:  # the merged decoder serves both steps; drop the other two
        for name in ("decoder_model.onnx", "decoder_with_past_model.onnx"):
            (tmp / name).unlink(missing_ok=True)
    files = _graph_files(head)
    isa = cpu_isa() if quantize else None
    step = ""
    try:
        if optimize is not None:
            step = f"graph optimisation {optimize}"
            files = _optimize(tmp, head, optimize, files)
        if isa is not None:
            step = f"int8 quantisation ({isa})"
            files = _quantize(tmp, files, isa)
    except Exception as exc:
        raise ModelLoadError(
            f"ONNX export of {model_dir} succeeded but {step} failed "
            f"({type(exc).__name__}: {exc}); export without it"
        ) from exc
    files = _keep_only(tmp, files, _graph_files(head))
    first = next(iter(files.values()))
    manifest = {
        "format": FORMAT,
        "head": head.value,
        "source": source,
        "precision": "int8" if quantize else "fp32",
        "optimize": optimize,
        "files": files,
        "opset": _opset(tmp / first),
        "quantization_isa": isa,
        "versions": {
            "optimum": optimum.version.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # a crash mid-export never leaves a half-written directory behind
    logger.info("exported %s (%s) to %s: %s", model_dir, head.value, out, files)
    return out
