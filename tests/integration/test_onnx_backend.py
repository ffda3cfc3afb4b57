"""The ONNX backend's loading rules: manifests, mismatches, exports and CUDA fallback."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

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
    assert set(manifest["versions"]) == {"optimum", "onnxruntime"}
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


def test_a_manifest_without_precision_reads_as_fp32(exported: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    (copy / "manifest.json").write_text(json.dumps({"head": "sequence-classification"}))
    backend = OnnxBackend(copy, Head.SEQUENCE_CLASSIFICATION, spec(copy), settings(tmp_path))
    assert backend.precision == "fp32"  # old manifests without precision read as fp32


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
