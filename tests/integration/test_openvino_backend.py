"""The OpenVINO backend: same answers as PyTorch on every encoder task, its loading rules,
`nlp-serve export --backend openvino`, and a server that never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from app.cli import main as cli_main
from app.errors import ModelLoadError
from app.runtimes import needs_torch
from app.runtimes.base import Head
from app.runtimes.onnx_export import read_manifest
from app.runtimes.openvino import OpenVinoBackend, cache_name
from app.runtimes.openvino_export import BUILTIN_CALIBRATION, export_openvino, load_calibration
from app.settings import Settings
from app.spec import ModelSpec
from tests.conftest import cpu_has_bf16, serve_in_process, settings_for, tiny_catalog
from tests.integration.test_torch_tasks import BATCH_CASES, assert_close, assert_same_answers, post

pytestmark = pytest.mark.integration

CALIBRATION_LINES = [
    f"Calibration sentence number {i} talks about topic {i % 5}." for i in range(12)
]


@pytest.fixture(scope="session")
async def openvino_client(
    tiny_models: dict[str, Path],
    write_catalog: Callable[[list[dict[str, Any]]], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[httpx.AsyncClient]:
    models = [{**entry, "export": True} for entry in tiny_catalog(tiny_models, "openvino")]
    cache = tmp_path_factory.mktemp("openvino-cache")
    settings = settings_for(write_catalog(models), openvino_cache_dir=cache, torch_threads=1)
    async with serve_in_process(settings) as client:
        yield client


@pytest.mark.parametrize(("route", "extra", "inputs"), BATCH_CASES)
async def test_openvino_fp32_matches_torch(
    torch_client: httpx.AsyncClient,
    openvino_client: httpx.AsyncClient,
    route: str,
    extra: dict[str, Any],
    inputs: list[Any],
) -> None:
    await assert_same_answers(torch_client, openvino_client, route, {"inputs": inputs, **extra})


async def test_openvino_serves_the_masked_lm_head(
    torch_client: httpx.AsyncClient, openvino_client: httpx.AsyncClient
) -> None:
    """fill-mask (and embed-sparse: tests/integration/test_embed_sparse.py) on the IR."""
    body = {"inputs": ["Paris is the [MASK] of France.", "a [MASK] day"], "top_k": 3}
    await assert_same_answers(torch_client, openvino_client, "/v1/fill-mask", body)


async def test_dynamic_shapes_batch_and_single_agree(openvino_client: httpx.AsyncClient) -> None:
    texts = ["short", "a somewhat longer sentence with more tokens in it " * 4]
    batched = await post(openvino_client, "/v1/embed", {"inputs": texts})
    for text, row in zip(texts, batched["results"], strict=True):
        single = await post(openvino_client, "/v1/embed", {"inputs": text})
        assert_close(single["results"][0], row, tol=1e-4)


async def test_models_report_the_openvino_backend(openvino_client: httpx.AsyncClient) -> None:
    models = (await openvino_client.get("/v1/models")).json()["models"]
    assert {m["backend"] for m in models} == {"openvino"}
    assert {(m["device"], m["precision"]) for m in models} == {("cpu", "fp32")}


def spec(source: Path | str, **fields: Any) -> ModelSpec:
    return ModelSpec.model_validate(
        {"name": "m", "task": "sentiment", "source": str(source), "backend": "openvino", **fields}
    )


def settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, openvino_cache_dir=tmp_path)  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def calibration_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("calibration") / "sentences.txt"
    path.write_text("\n".join(CALIBRATION_LINES) + "\n\n")
    return path


@pytest.fixture(scope="module")
def int8_export(
    tiny_models: dict[str, Path], calibration_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Through the CLI, as a user would, on a 12-sentence calibration file."""
    out = tmp_path_factory.mktemp("ov-export") / "sentiment-int8"
    code = cli_main(["export", str(tiny_models["sentiment"]), "--task", "sentiment",
                     "--backend", "openvino", "--quantize", "int8",
                     "--calibration", str(calibration_file), "--out", str(out)])  # fmt: skip
    assert code == 0
    return out


def test_cli_int8_export_records_its_calibration(int8_export: Path, calibration_file: Path) -> None:
    manifest = read_manifest(int8_export)
    assert manifest is not None
    assert manifest["format"] == "nlp-serve-openvino/1"
    assert (manifest["head"], manifest["precision"]) == ("sequence-classification", "int8")
    assert manifest["calibration"]["source"] == str(calibration_file.resolve())
    assert manifest["calibration"]["samples"] == len(CALIBRATION_LINES)  # blank lines skipped
    assert set(manifest["versions"]) == {"openvino", "nncf"}
    assert (int8_export / "openvino_model.xml").is_file()
    assert (int8_export / "tokenizer.json").is_file()
    assert not list(int8_export.glob("*.onnx"))


def test_int8_export_serves_and_stays_near_fp32(
    int8_export: Path, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    import numpy as np

    head, source = Head.SEQUENCE_CLASSIFICATION, tiny_models["sentiment"]
    int8 = OpenVinoBackend(int8_export, head, spec(int8_export, precision="int8"),
                           settings(tmp_path))  # fmt: skip
    fp32 = OpenVinoBackend(source, head, spec(source, export=True), settings(tmp_path))
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 1000, size=(3, 9)).astype(np.int64)
    inputs = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    a, b = int8.forward(inputs)["logits"], fp32.forward(inputs)["logits"]
    assert a.shape == b.shape == (3, 2)
    assert a.dtype == np.float32
    assert not np.array_equal(a, b)  # really quantised
    assert float(np.abs(a - b).max()) < 0.1
    assert int8.precision == "int8"


def test_wrong_head_or_precision_is_refused(int8_export: Path, tmp_path: Path) -> None:
    qa = spec(int8_export, task="qa", precision="int8")
    with pytest.raises(ModelLoadError, match="exported for 'sequence-classification'"):
        OpenVinoBackend(int8_export, Head.QUESTION_ANSWERING, qa, settings(tmp_path))
    with pytest.raises(
        ModelLoadError, match="int8 OpenVINO export but the catalog asks for precision fp32"
    ):
        OpenVinoBackend(int8_export, Head.SEQUENCE_CLASSIFICATION, spec(int8_export),
                        settings(tmp_path))  # fmt: skip


def test_pytorch_dir_without_export_flag_says_how(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(ModelLoadError, match=r"--backend openvino --task sentiment.*export: true"):
        OpenVinoBackend(tiny_models["sentiment"], Head.SEQUENCE_CLASSIFICATION,
                        spec(tiny_models["sentiment"]), settings(tmp_path))  # fmt: skip


def test_generation_cuda_and_fp16_are_refused_by_name(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    seq2seq = spec(tiny_models["seq2seq"], task="summarize", name="gen", export=True,
                   precision="int8")  # fmt: skip
    with pytest.raises(ModelLoadError, match=r"'gen'.*generation on OpenVINO runs in fp32 or bf16"):
        OpenVinoBackend(tiny_models["seq2seq"], Head.SEQ2SEQ_LM, seq2seq, settings(tmp_path))
    source = tiny_models["sentiment"]
    with pytest.raises(ModelLoadError, match="device cuda:0; use device: cpu"):
        OpenVinoBackend(source, Head.SEQUENCE_CLASSIFICATION,
                        spec(source, device="cuda:0"), settings(tmp_path))  # fmt: skip
    with pytest.raises(ModelLoadError, match="fp32, bf16 or int8, not fp16"):
        OpenVinoBackend(source, Head.SEQUENCE_CLASSIFICATION,
                        spec(source, precision="fp16"), settings(tmp_path))  # fmt: skip


def test_missing_openvino_fails_start_up_naming_the_model(
    tiny_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # what an absent package looks like
    source = tiny_models["sentiment"]
    with pytest.raises(ModelLoadError, match=r"model 'm': backend openvino needs the openvino"):
        OpenVinoBackend(source, Head.SEQUENCE_CLASSIFICATION, spec(source, export=True),
                        settings(tmp_path))  # fmt: skip


def test_cpu_without_the_precision_fails_start_up(
    tiny_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import openvino

    real = openvino.Core.get_property

    def no_int8(core: Any, device: str, name: str) -> Any:
        value = real(core, device, name)
        return [c for c in value if c != "INT8"] if name == "OPTIMIZATION_CAPABILITIES" else value

    monkeypatch.setattr(openvino.Core, "get_property", no_int8)
    with pytest.raises(ModelLoadError, match="'m': this CPU has no OpenVINO INT8 support"):
        OpenVinoBackend(tiny_models["sentiment"], Head.SEQUENCE_CLASSIFICATION,
                        spec(tiny_models["sentiment"], export=True, precision="int8"),
                        settings(tmp_path))  # fmt: skip


def test_prefer_bf16_falls_back_to_fp32_without_bf16_kernels(
    tiny_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    import openvino

    real = openvino.Core.get_property

    def no_bf16(core: Any, device: str, name: str) -> Any:
        value = real(core, device, name)
        return [c for c in value if c != "BF16"] if name == "OPTIMIZATION_CAPABILITIES" else value

    monkeypatch.setattr(openvino.Core, "get_property", no_bf16)
    source = tiny_models["sentiment"]
    entry = spec(source, export=True, backend_options={"prefer_bf16": True})
    with caplog.at_level("INFO", logger="app.runtimes.openvino"):
        backend = OpenVinoBackend(source, Head.SEQUENCE_CLASSIFICATION, entry, settings(tmp_path))
    assert backend.precision == "fp32"
    assert "no bf16 kernels; running fp32" in caplog.text
    assert backend.compiled.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.f32


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no bf16 kernels for OpenVINO")
def test_prefer_bf16_runs_bf16_where_the_cpu_has_it(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    import openvino

    source = tiny_models["sentiment"]
    entry = spec(source, export=True, backend_options={"prefer_bf16": True})
    backend = OpenVinoBackend(source, Head.SEQUENCE_CLASSIFICATION, entry, settings(tmp_path))
    assert backend.precision == "bf16"  # what /v1/models reports
    assert backend.compiled.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.bf16
    assert backend.ir_dir.name.split("-")[-2] == "fp32"  # the same fp32 IR: no second export


def test_calibration_rules(tmp_path: Path) -> None:
    builtin = load_calibration()
    assert builtin.source == BUILTIN_CALIBRATION
    assert len(builtin.sentences) >= 200
    assert len(set(builtin.sentences)) == len(builtin.sentences)
    short = tmp_path / "short.txt"
    short.write_text("one\ntwo\n")
    with pytest.raises(ModelLoadError, match="has 2 non-blank lines"):
        load_calibration(short)
    with pytest.raises(ModelLoadError, match="cannot be read"):
        load_calibration(tmp_path / "absent.txt")
    with pytest.raises(ValueError, match="calibration applies only to precision: int8"):
        spec(
            "x", backend_options={"calibration": "f.txt"}, export=True
        )  # fp32: nothing to calibrate
    with pytest.raises(ValueError, match="`optimize` applies only to backend: onnx"):
        spec("x", export=True, optimize="O1")
    with pytest.raises(ValueError, match="prefer_bf16 applies only to precision: fp32"):
        spec("x", export=True, precision="int8", backend_options={"prefer_bf16": True})


def test_calibration_file_is_part_of_the_cache_key(
    tiny_models: dict[str, Path], calibration_file: Path
) -> None:
    source = tiny_models["sentiment"]
    head = Head.SEQUENCE_CLASSIFICATION
    default = cache_name(spec(source, export=True, precision="int8"), source, head)
    own = spec(
        source,
        export=True,
        precision="int8",
        backend_options={"calibration": str(calibration_file)},
    )
    assert cache_name(own, source, head) != default
    assert cache_name(spec(source, export=True), source, head) != default


def test_export_refuses_int8_generation(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="NNCF int8 is for encoder heads"):
        export_openvino(tiny_models["seq2seq"], Head.SEQ2SEQ_LM, tmp_path / "x", source="s",
                        quantize=True)  # fmt: skip
    assert not (tmp_path / "x").exists()


def test_which_models_need_torch(
    tiny_models: dict[str, Path], int8_export: Path, tmp_path: Path
) -> None:
    source, head = tiny_models["sentiment"], Head.SEQUENCE_CLASSIFICATION
    config = settings(tmp_path)
    assert needs_torch(spec(source, backend="torch"), source, head, config)
    assert needs_torch(spec(source, export=True), source, head, config)  # not exported yet
    assert not needs_torch(spec(int8_export, precision="int8"), int8_export, head, config)
    summarize = spec(source, backend="onnx", task="summarize")
    assert needs_torch(summarize, source, Head.SEQ2SEQ_LM, config)
    on_openvino = spec(source, task="summarize")  # generation: transformers drives the graphs
    assert needs_torch(on_openvino, source, Head.SEQ2SEQ_LM, config)


def test_an_openvino_server_never_imports_torch(int8_export: Path, tmp_path: Path) -> None:
    """`nlp-serve serve`'s own decision, then start-up, warm-up and a request, in a fresh
    process: torch must not be in sys.modules at the end."""
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump({"models": [
        {"name": "ov", "task": "sentiment", "source": str(int8_export), "backend": "openvino",
         "precision": "int8"}]}))  # fmt: skip
    script = textwrap.dedent(
        f"""
        import asyncio, json, os, sys
        from app.cli import _torch_free
        from app.settings import Settings
        settings = Settings(_env_file=None, models={str(catalog)!r})
        free = _torch_free(settings)
        if free:
            os.environ["USE_TORCH"] = "0"
        import httpx
        from asgi_lifespan import LifespanManager
        from app.main import create_app

        async def run():
            app = create_app(settings)
            async with LifespanManager(app) as manager:
                transport = httpx.ASGITransport(app=manager.app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                    r = await c.post("/v1/sentiment", json={{"inputs": "fine"}})
                    m = await c.get("/metrics")
            return r.status_code, m.status_code

        codes = asyncio.run(run())
        torch = sys.modules.get("torch") is not None  # a None entry: kept out
        print(json.dumps({{"free": free, "codes": codes, "torch": torch}}))
        """
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "USE_TORCH"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=180, env=env, check=True)  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"free": True, "codes": [200, 200], "torch": False}, out.stderr[-2000:]


@pytest.mark.parametrize("through_nlp_serve", [True, False])
def test_nncf_telemetry_is_off_when_nlp_serve_imports_it(
    through_nlp_serve: bool, tmp_path: Path
) -> None:
    """In a fresh process (pytest alone already silences NNCF), NNCF imported the way the
    export does has a stub for a reporter, so quantizing sends nothing; imported bare it has
    the real one (the control case). HOME is scratch: the reporter writes a client id there."""
    load = (
        "from app.runtimes.openvino_export import import_nncf; import_nncf()"
        if through_nlp_serve
        else "import nncf"
    )
    script = f"{load}\nimport nncf.telemetry.wrapper as w\nprint(type(w.telemetry).__name__)"
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("NNCF_CI", "NNCF_DEV")}
    env["HOME"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, env=env, check=True)  # fmt: skip
    reporter = out.stdout.strip().splitlines()[-1]
    assert (reporter == "MagicMock") is through_nlp_serve, reporter
