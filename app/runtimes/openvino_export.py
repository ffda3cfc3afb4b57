"""Convert a model to OpenVINO IR: fp32 from the project's ONNX export, int8 by NNCF.

Generation heads convert the ONNX export's graphs as they are: seq2seq's three, a causal LM's
one (onnx_causal.py), fp32 only.

fp32 reads the ONNX graph that onnx_export.py writes (or one already exported) and saves it as
IR with fp32 weights. int8 is NNCF post-training quantization of that IR: activations and
weights int8, scales chosen on a calibration set of sentences (the generic English corpus
shipped in app/calibration/, or a user's file, one sentence per line). OpenVINO cannot run
ONNX Runtime's dynamic-int8 graph fast (measured 78-157 items/s against 318-694 for its own
int8, issue 16), so int8 always starts from the fp32 graph.

The output directory holds the IR, the tokenizer and config, and `manifest.json`:

    {"format": "nlp-serve-openvino/1", "head": ..., "source": ..., "precision": "fp32" | "int8",
     "files": {"model": "openvino_model.xml"}, "calibration": {...} | null, "versions": {...}}
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import numpy as np

from app.errors import ModelLoadError
from app.runtimes.base import Head
from app.runtimes.onnx_export import (
    copy_module_configs,
    export_model,
    is_current,
    read_manifest,
)

logger = logging.getLogger(__name__)

FORMAT = "nlp-serve-openvino/1"
MODEL_FILE = "openvino_model.xml"
# The seq2seq export's three graphs (app/runtimes/onnx_seq2seq.py), each as IR.
SEQ2SEQ_FILES = {
    "encoder": "openvino_encoder_model.xml",
    "decoder_init": "openvino_decoder_init_model.xml",
    "decoder_step": "openvino_decoder_step_model.xml",
}
BUILTIN_CALIBRATION = "builtin:en-generic"
# Tokens per calibration sample: the corpus's sentences are far shorter, so this only bounds a
# user's long lines. Longer inputs at serve time reuse the scales (dynamic shapes).
CALIBRATION_MAX_TOKENS = 128
ENCODER_HEADS = frozenset(
    {
        Head.SEQUENCE_CLASSIFICATION,
        Head.QUESTION_ANSWERING,
        Head.TOKEN_CLASSIFICATION,
        Head.FEATURE_EXTRACTION,
        Head.MASKED_LM,
    }
)
HEADS = ENCODER_HEADS | {Head.SEQ2SEQ_LM, Head.CAUSAL_LM}


def ir_files(head: Head) -> dict[str, str]:
    """Role -> file, the ONNX export's roles (graph_files): a causal LM's graph is "model"."""
    return dict(SEQ2SEQ_FILES) if head is Head.SEQ2SEQ_LM else {"model": MODEL_FILE}


def require_openvino(model: str) -> Any:
    """Import openvino or say, naming the model, how to get it."""
    try:
        import openvino
    except ImportError as exc:
        raise ModelLoadError(
            f"model {model!r}: backend openvino needs the openvino package, which is not "
            f"installed ({exc}); `pip install openvino==2026.4.1 nncf==3.4.0` (they are in "
            "nlp-serve's dependencies), or serve the model with backend: onnx"
        ) from None
    return openvino


@dataclass(frozen=True)
class Calibration:
    """Sentences NNCF calibrates int8 scales on, and where they came from."""

    source: str
    sentences: list[str]

    @property
    def digest(self) -> str:
        return hashlib.sha256("\n".join(self.sentences).encode()).hexdigest()[:16]


def load_calibration(path: Path | None = None) -> Calibration:
    """The user's file (one sentence per line; blank lines skipped) or the shipped corpus."""
    if path is None:
        text = resources.files("app.calibration").joinpath("en_generic.txt").read_text("utf-8")
        source = BUILTIN_CALIBRATION
    else:
        try:
            text = Path(path).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelLoadError(
                f"calibration file {path} cannot be read ({type(exc).__name__}: {exc}); give a "
                "UTF-8 text file with one sentence per line"
            ) from None
        source = str(Path(path).resolve())
    sentences = [line.strip() for line in text.splitlines() if line.strip()]
    if len(sentences) < 8:
        raise ModelLoadError(
            f"calibration file {source} has {len(sentences)} non-blank lines; int8 scales need "
            "at least 8 sentences (a few hundred like the served traffic is best)"
        )
    return Calibration(source, sentences)


def calibration_inputs(
    model_dir: Path, head: Head, calibration: Calibration, input_names: list[str], limit: int
) -> list[dict[str, np.ndarray]]:
    """Tokenised calibration samples, one sentence (QA: a sentence pair) per sample, batch 1."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    sentences = calibration.sentences[:limit]
    samples = []
    for index, sentence in enumerate(sentences):
        # QA sees (question, context) pairs, so calibrate on pairs: segment ids and longer rows.
        pair = sentences[(index + 1) % len(sentences)] if head is Head.QUESTION_ANSWERING else None
        encoded = tokenizer(
            sentence,
            pair,
            truncation=True,
            max_length=CALIBRATION_MAX_TOKENS,
            return_tensors="np",
        )
        shape = encoded["input_ids"].shape
        samples.append(
            {
                name: np.asarray(encoded[name], dtype=np.int64)
                if name in encoded
                else np.zeros(shape, dtype=np.int64)
                for name in input_names
            }
        )
    return samples


def _onnx_source(model_dir: Path, head: Head, work: Path, source: str) -> Path:
    """The fp32 ONNX graph to convert: model_dir's own export, or a fresh one in `work`."""
    manifest = read_manifest(model_dir)
    if manifest is not None:
        if manifest.get("format") == FORMAT:
            raise ModelLoadError(
                f"{model_dir} already holds an OpenVINO export; point `source` at it and serve "
                "it as it is, or export from the PyTorch model directory"
            )
        if not is_current(manifest):
            raise ModelLoadError(
                f"{model_dir} holds an ONNX export made by an older nlp-serve (optimum-onnx); "
                "export from the PyTorch model directory instead"
            )
        if manifest.get("head") != head.value or manifest.get("precision", "fp32") != "fp32":
            raise ModelLoadError(
                f"{model_dir} holds a {manifest.get('precision')} ONNX export for "
                f"{manifest.get('head')!r}; OpenVINO needs an fp32 export for {head.value!r} "
                "(it quantises with NNCF itself): export from the PyTorch model directory"
            )
        return model_dir
    return export_model(model_dir, head, work / "onnx", source=source)


def export_openvino(
    model_dir: Path,
    head: Head,
    out: Path,
    *,
    source: str,
    quantize: bool = False,
    calibration: Calibration | None = None,
    calibration_size: int = 300,
) -> Path:
    """Convert model_dir's `head` to OpenVINO IR in `out` (replaced if present), with manifest."""
    if head not in HEADS:
        raise ModelLoadError(
            f"backend openvino serves {', '.join(sorted(HEADS))}, not {head.value}; serve it "
            "with backend onnx or torch"
        )
    if quantize and head not in ENCODER_HEADS:
        raise ModelLoadError(
            "NNCF int8 is for encoder heads; generation runs in fp32 (or bf16 kernels)"
        )
    ov = require_openvino(source)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="nlp-serve-ov-") as work:
        onnx_dir = _onnx_source(model_dir, head, Path(work), source)
        onnx_files: dict[str, str] = (read_manifest(onnx_dir) or {})["files"]
        calibration_record = None
        for role, file_name in ir_files(head).items():
            onnx_file = onnx_dir / onnx_files[role]
            try:
                # read_model, not convert_model: the same ONNX frontend, without ovc's telemetry
                model = ov.Core().read_model(str(onnx_file))
            except Exception as exc:
                raise ModelLoadError(
                    f"openvino could not read the ONNX graph {onnx_file} of {model_dir}: "
                    f"{type(exc).__name__}"
                ) from None
            if quantize:
                calibration = calibration or load_calibration()
                model, calibration_record = _quantize(
                    model, onnx_dir, head, calibration, calibration_size
                )
            ov.save_model(model, str(tmp / file_name), compress_to_fp16=False)
        # tokenizer and config travel with the graph, as in the ONNX export
        for path in onnx_dir.iterdir():
            graph = path.suffix == ".onnx" or path.name.endswith(".onnx.data")  # weights: in IR
            if path.is_file() and not graph and path.name != "manifest.json":
                shutil.copy2(path, tmp / path.name)
        copy_module_configs(onnx_dir, tmp)  # pooling configs (sentence-transformers modules)
    manifest = {
        "format": FORMAT,
        "head": head.value,
        "source": source,
        "precision": "int8" if quantize else "fp32",
        "files": ir_files(head),
        "calibration": calibration_record,
        "versions": _versions(ov),
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # a crash mid-export never leaves a half-written directory behind
    logger.info("exported %s (%s, %s) to OpenVINO in %s", model_dir, head.value,
                manifest["precision"], out)  # fmt: skip
    return out


def import_nncf() -> Any:
    """NNCF, with its usage telemetry off.

    Unless told otherwise NNCF reports each quantize call to Intel's analytics (a pip
    dependency, openvino-telemetry, sends it when no consent file exists). A model server has
    no business phoning home, and the read-only image has no home to write the consent file
    to. NNCF_CI is NNCF's own switch: read once, at import, it swaps the reporter for a stub.
    """
    os.environ.setdefault("NNCF_CI", "1")
    try:
        import nncf
    except ImportError as exc:
        raise ModelLoadError(
            f"int8 for backend openvino needs nncf ({exc}); `pip install nncf==3.4.0`, or "
            "serve precision fp32"
        ) from None
    return nncf


def _quantize(
    model: Any, onnx_dir: Path, head: Head, calibration: Calibration, size: int
) -> tuple[Any, dict[str, Any]]:
    nncf = import_nncf()
    names = [port.get_any_name() for port in model.inputs]
    samples = calibration_inputs(onnx_dir, head, calibration, names, size)
    started = time.perf_counter()
    try:
        quantized = nncf.quantize(
            model,
            nncf.Dataset(samples),
            model_type=nncf.ModelType.TRANSFORMER,  # keeps softmax / layer norm in float
            subset_size=len(samples),
        )
    except Exception as exc:
        raise ModelLoadError(
            f"NNCF int8 quantisation of {onnx_dir} failed ({type(exc).__name__}: {exc}); serve "
            "precision fp32, or check the calibration file"
        ) from None
    seconds = time.perf_counter() - started
    logger.info("NNCF int8: %d calibration samples in %.1f s", len(samples), seconds)
    record = {
        "source": calibration.source,
        "sha256_16": calibration.digest,
        "samples": len(samples),
        "seconds": round(seconds, 1),
    }
    return quantized, record


def _versions(ov: Any) -> dict[str, str]:
    versions = {"openvino": str(ov.get_version())}
    # the installed version, without importing NNCF (and its telemetry) for an fp32 export
    with contextlib.suppress(metadata.PackageNotFoundError):
        versions["nncf"] = metadata.version("nncf")
    return versions
