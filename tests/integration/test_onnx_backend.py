"""The ONNX backend's loading rules: manifests, mismatches, exports and CUDA fallback."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from app.errors import ModelLoadError
from app.runtimes.base import Head
from app.runtimes.device import cuda_device_count
from app.runtimes.onnx import OnnxBackend
from app.runtimes.onnx_export import cpu_isa, export_model, read_manifest
from app.settings import Settings
from app.spec import ModelSpec

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def exported(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "sentiment"
    return export_model(
        tiny_models["sentiment"], Head.SEQUENCE_CLASSIFICATION, out, source="tiny-sentiment"
    )


def spec(source: Path | str, **fields: object) -> ModelSpec:
    return ModelSpec.model_validate(
        {"name": "m", "task": "sentiment", "source": str(source), "backend": "onnx", **fields}
    )


def settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, onnx_cache_dir=tmp_path)  # type: ignore[call-arg]


def test_manifest_records_the_export(exported: Path) -> None:
    manifest = read_manifest(exported)
    assert manifest is not None
    assert manifest["head"] == "sequence-classification"
    assert manifest["precision"] == "fp32"
    assert manifest["files"] == {"model": "model.onnx"}
    assert isinstance(manifest["opset"], int)
    assert manifest["format"] == "nlp-serve-onnx/2"
    assert manifest["exporter"] in ("torchscript", "dynamo")
    assert {"torch", "transformers", "onnxruntime"} <= set(manifest["versions"])
    assert sorted(p.name for p in exported.glob("*.onnx")) == ["model.onnx"]
    assert (exported / "tokenizer.json").is_file()


def test_wrong_head_or_precision_is_refused(exported: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="exported for 'sequence-classification'"):
        OnnxBackend(
            exported, Head.QUESTION_ANSWERING, spec(exported, task="qa"), settings(tmp_path)
        )
    with pytest.raises(ModelLoadError, match="fp32 export but the catalog asks for precision int8"):
        OnnxBackend(exported, Head.SEQUENCE_CLASSIFICATION, spec(exported, precision="int8"),
                    settings(tmp_path))  # fmt: skip


def test_pytorch_dir_without_export_flag_says_how(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(ModelLoadError, match=r"nlp-serve export .* --task sentiment.*export: true"):
        OnnxBackend(tiny_models["sentiment"], Head.SEQUENCE_CLASSIFICATION,
                    spec(tiny_models["sentiment"]), settings(tmp_path))  # fmt: skip


def test_int8_with_fused_optimisation_is_refused(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(ModelLoadError, match="--optimize O1"):
        export_model(tiny_models["qa"], Head.QUESTION_ANSWERING, tmp_path / "x", source="qa",
                     quantize=True, optimize="O2")  # fmt: skip
    assert not (tmp_path / "x").exists()


def test_an_export_by_the_old_exporter_is_refused_with_the_command_to_redo_it(
    exported: Path, tmp_path: Path
) -> None:
    """optimum-onnx's exports (format 1, or no format at all) are never loaded."""
    for old in ({"head": "sequence-classification"},
                {"format": "nlp-serve-onnx/1", "head": "sequence-classification",
                 "source": "tiny-sentiment", "files": {"model": "model.onnx"}}):  # fmt: skip
        copy = tmp_path / "copy"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(exported, copy)
        (copy / "manifest.json").write_text(json.dumps(old))
        with pytest.raises(ModelLoadError, match=r"older nlp-serve.*`nlp-serve export"):
            OnnxBackend(copy, Head.SEQUENCE_CLASSIFICATION, spec(copy), settings(tmp_path))


def test_an_old_export_in_the_cache_is_made_again(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    from app.runtimes.onnx import cache_name, exported_dir

    source = tiny_models["sentiment"]
    entry = spec(source, export=True)
    cached = tmp_path / cache_name(entry, source, Head.SEQUENCE_CLASSIFICATION)
    cached.mkdir()
    (cached / "manifest.json").write_text(json.dumps(
        {"format": "nlp-serve-onnx/1", "head": "sequence-classification", "precision": "fp32",
         "files": {"model": "decoder_model_merged.onnx"}}))  # fmt: skip
    out = exported_dir(entry, source, Head.SEQUENCE_CLASSIFICATION, settings(tmp_path))
    assert out == cached
    manifest = read_manifest(out)
    assert manifest is not None
    assert manifest["format"] == "nlp-serve-onnx/2"
    backend = OnnxBackend(source, Head.SEQUENCE_CLASSIFICATION, entry, settings(tmp_path))
    assert backend.forward(
        {"input_ids": np.array([[101, 2023, 102]]), "attention_mask": np.ones((1, 3), np.int64)}
    )["logits"].shape == (1, 2)


@pytest.mark.skipif(cuda_device_count() > 0, reason="checks the fallback on CPU-only machines")
def test_cuda_request_falls_back_to_cpu(
    exported: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        backend = OnnxBackend(exported, Head.SEQUENCE_CLASSIFICATION,
                              spec(exported, device="cuda"), settings(tmp_path))  # fmt: skip
    assert backend.device == "cpu"
    assert "using CPU" in caplog.text or "running on CPU" in caplog.text


def test_isa_is_one_quantisation_knows() -> None:
    assert cpu_isa() in {"avx512_vnni", "avx512", "avx2", "arm64"}


def test_a_seq2seq_family_the_export_does_not_know_is_refused_by_name(tmp_path: Path) -> None:
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16, vocab_size=100)
    T5ForConditionalGeneration(config).save_pretrained(tmp_path / "t5")
    with pytest.raises(ModelLoadError, match=r"'t5' model.*serve it with backend torch"):
        export_model(tmp_path / "t5", Head.SEQ2SEQ_LM, tmp_path / "out", source="t5")
    assert not (tmp_path / "out").exists()


def test_the_dynamo_exporter_takes_over_when_tracing_fails(
    tiny_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.runtimes.onnx_trace as trace

    real = trace._export

    def tracing_fails(*args: object) -> None:
        if not args[-1]:  # dynamo=False: the TorchScript attempt
            raise RuntimeError("tracing failed")
        real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(trace, "_export", tracing_fails)
    out = export_model(tiny_models["sentiment"], Head.SEQUENCE_CLASSIFICATION,
                       tmp_path / "x", source="s")  # fmt: skip
    manifest = read_manifest(out)
    assert manifest is not None
    assert manifest["exporter"] == "dynamo"  # and it passed the parity check to be kept
    assert manifest["opset"] == 18
