"""Export a PyTorch model directory to ONNX, optionally optimised and int8-quantised.

Encoder heads are traced by torch.onnx (onnx_trace.py); seq2seq heads are exported as three
graphs that generation drives (onnx_seq2seq.py), causal LMs as one graph with a key/value
cache that the continuous batcher steps (onnx_causal.py). Optimisation is onnxruntime's
transformer optimiser, quantisation its dynamic quantiser (onnx_graph.py). Every export is
checked against the PyTorch model it came from before it is kept.

The output directory holds the graph(s), the tokenizer and config, and `manifest.json`, which
records what was exported so the ONNX backend loads the right files:

    {"format": "nlp-serve-onnx/2", "head": ..., "source": ..., "precision": "fp32" | "int8",
     "optimize": "O2" | null, "files": {"model": ...} or {"encoder": ..., "decoder_init": ...,
     "decoder_step": ...}, "opset": 17, "quantization_isa": "avx2" | null,
     "exporter": ..., "versions": {...}}

A causal LM whose weights pass 1 GiB keeps them in `model.onnx.data` beside its graph.

Format 1 was optimum-onnx's export (a merged decoder for seq2seq, other graph names); such a
directory is never loaded: a cached one is exported again, a pointed-at one is refused.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from app.errors import ModelLoadError
from app.runtimes.base import Head
from app.runtimes.cpu import cpu_fingerprint

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "nlp-serve-onnx/2"
OptimizeLevel = Literal["O1", "O2", "O3"]

ENCODER_FILE = "model.onnx"
SEQ2SEQ_FILES = {
    "encoder": "encoder_model.onnx",
    "decoder_init": "decoder_init_model.onnx",
    "decoder_step": "decoder_step_model.onnx",
}
# What the export is made and checked with; recorded in the manifest.
EXPORT_PACKAGES = ("torch", "transformers", "onnx", "onnxscript", "onnxruntime")


def cpu_isa() -> str:
    """The widest int8 instruction set this CPU has.

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


def require_dynamo_exporter(what: str) -> None:
    """torch.onnx's dynamo exporter (seq2seq graphs) needs onnxscript; without it (an
    offline bundle that left it out) say so, naming what needed it."""
    if importlib.util.find_spec("onnxscript") is None:
        raise ModelLoadError(
            f"{what} needs onnxscript (torch.onnx's exporter), which is not installed: "
            "`pip install onnxscript==0.7.2`, or export on a machine that has it "
            "(`nlp-serve export`) and point `source` at the export"
        )


def read_manifest(directory: Path) -> dict[str, Any] | None:
    path = directory / MANIFEST
    if not path.is_file():
        return None
    manifest: dict[str, Any] = json.loads(path.read_text())
    return manifest


def is_current(manifest: dict[str, Any]) -> bool:
    """Whether this release can load the export the manifest describes."""
    return manifest.get("format") == FORMAT


def graph_files(head: Head) -> dict[str, str]:
    """Role -> file; a causal LM's one graph is "model", as an encoder's is."""
    return dict(SEQ2SEQ_FILES) if head is Head.SEQ2SEQ_LM else {"model": ENCODER_FILE}


def _opset(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _versions() -> dict[str, str]:
    versions = {}
    for package in EXPORT_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _save_companions(model_dir: Path, out: Path) -> None:
    """Config, generation config and tokenizer beside the graphs: an export is self-contained."""
    for path in model_dir.iterdir():
        if path.is_file() and (
            path.suffix in (".json", ".txt", ".model", ".spm") and path.name != MANIFEST
        ):
            shutil.copy2(path, out / path.name)
    copy_module_configs(model_dir, out)


def module_folders(model_dir: Path) -> list[str]:
    """The sentence-transformers module folders modules.json names (1_Pooling,
    1_SpladePooling, ...): relative paths inside the model folder only."""
    modules_file = model_dir / "modules.json"
    if not modules_file.is_file():
        return []
    try:
        modules = json.loads(modules_file.read_text())
    except ValueError:
        return []
    folders = []
    for module in modules if isinstance(modules, list) else []:
        folder = str(module.get("path", "")) if isinstance(module, dict) else ""
        parts = Path(folder).parts
        if parts and not Path(folder).is_absolute() and ".." not in parts:
            folders.append(folder)
    return folders


def copy_module_configs(model_dir: Path, out: Path) -> None:
    """The JSON configs of the model's sentence-transformers modules (how pooling turns the
    graph's outputs into answers: CLS or mean, SPLADE's activation), into the export."""
    for folder in module_folders(model_dir):
        for path in sorted((model_dir / folder).glob("*.json")):
            (out / folder).mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, out / folder / path.name)


def _first_line(exc: BaseException) -> str:
    """An exporter's error in one line: torch.export's run to pages of advice."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


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
    from app.runtimes import onnx_graph

    if quantize and optimize in ("O2", "O3"):
        raise ModelLoadError(
            f"--optimize {optimize} fuses attention into operators the int8 quantiser cannot "
            "read; use --optimize O1 (or none) with --quantize int8. ONNX Runtime still applies "
            "its own graph optimisations when it loads the model."
        )
    if quantize and head is Head.CAUSAL_LM:
        raise ModelLoadError(
            "int8 is not offered for text-generation yet: dynamic int8 moved a test GPT-2's "
            "logits by up to 4% and nothing checks it on real weights; export fp32"
        )
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files = graph_files(head)
    try:
        if head is Head.SEQ2SEQ_LM:
            require_dynamo_exporter(f"exporting {model_dir} to ONNX")
            from app.runtimes.onnx_seq2seq import export_seq2seq

            exporter = export_seq2seq(model_dir, tmp, files)
        elif head is Head.CAUSAL_LM:
            require_dynamo_exporter(f"exporting {model_dir} to ONNX")
            from app.runtimes.onnx_causal import export_causal_lm

            exporter = export_causal_lm(model_dir, tmp / files["model"])
        else:
            from app.runtimes.onnx_trace import export_encoder

            exporter = export_encoder(model_dir, head, tmp / files["model"])
    except ModelLoadError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelLoadError(
            f"could not export {model_dir} to ONNX as {head.value}: {_first_line(exc)}"
        ) from exc
    isa = cpu_isa() if quantize else None
    step = ""
    # the dynamo exporter's graphs, whose patterns the transformer fusions do not match
    generation = head in (Head.SEQ2SEQ_LM, Head.CAUSAL_LM)
    try:
        for name in files.values():
            if optimize is not None:
                step = f"graph optimisation {optimize}"
                onnx_graph.optimize(tmp / name, optimize, model_dir, seq2seq=generation)
            if isa is not None:
                step = f"int8 quantisation ({isa})"
                onnx_graph.quantize(tmp / name, isa)
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelLoadError(
            f"ONNX export of {model_dir} succeeded but {step} failed "
            f"({_first_line(exc)}); export without it"
        ) from exc
    _save_companions(model_dir, tmp)
    manifest = {
        "format": FORMAT,
        "head": head.value,
        "source": source,
        "precision": "int8" if quantize else "fp32",
        "optimize": optimize,
        "files": files,
        "opset": _opset(tmp / next(iter(files.values()))),
        "quantization_isa": isa,
        "exporter": exporter,
        "versions": _versions(),
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # a crash mid-export never leaves a half-written directory behind
    logger.info("exported %s (%s) to %s with %s: %s", model_dir, head.value, out, exporter, files)
    return out
