"""Causal LMs on exported graphs (app/runtimes/onnx_causal.py): the export, and decode steps on
ONNX Runtime and OpenVINO that match PyTorch's (TorchBackend.decode_step) on GPT-2 and on a
Llama-family model (rotary positions, grouped-query attention)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from app.errors import ModelLoadError
from app.runtimes import backend_class, onnx_causal
from app.runtimes.base import Backend, Head, StepInputs
from app.runtimes.kv import KVCache
from app.runtimes.onnx_export import export_model, read_manifest
from app.runtimes.openvino_export import export_openvino
from app.settings import Settings
from app.spec import ModelSpec

pytestmark = pytest.mark.integration

MODELS = ("causal-lm", "chat-lm")
ENGINES = ("onnx", "openvino")
# Engines sum in other orders than PyTorch: close, never bitwise equal (nor across CPUs).
ATOL = 1e-4
Load = Callable[[str, str], Backend]


@pytest.fixture(scope="module")
def exports(
    tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Both models exported; the Llama one with its weights in `model.onnx.data`, as a model
    past EXTERNAL_DATA_BYTES (Qwen2.5-0.5B and up) is, so every test also runs that layout."""
    root = tmp_path_factory.mktemp("causal-onnx")
    out = {"causal-lm": export_model(tiny_models["causal-lm"], Head.CAUSAL_LM,
                                     root / "causal-lm", source="causal-lm")}  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(onnx_causal, "EXTERNAL_DATA_BYTES", 0)
        out["chat-lm"] = export_model(tiny_models["chat-lm"], Head.CAUSAL_LM, root / "chat-lm",
                                      source="chat-lm")  # fmt: skip
    return out


@pytest.fixture(scope="module")
def load(
    tiny_models: dict[str, Path],
    exports: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Load]:
    """(engine, model) -> its backend, loaded once: torch from the weights, onnx from the
    export, openvino from that export converted to IR."""
    loaded: dict[tuple[str, str], Backend] = {}
    root = tmp_path_factory.mktemp("causal-ov")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    def get(engine: str, name: str) -> Backend:
        if (engine, name) not in loaded:
            source = {"torch": tiny_models[name], "onnx": exports[name]}.get(engine)
            if source is None:
                source = export_openvino(exports[name], Head.CAUSAL_LM, root / name, source=name)
            loaded[engine, name] = backend_class(engine)(
                source, Head.CAUSAL_LM, spec(source, engine), settings
            )
        return loaded[engine, name]

    yield get
    for backend in loaded.values():
        backend.close()


def spec(source: Path, backend: str) -> ModelSpec:
    fields = {"task": "generate", "source": str(source), "backend": backend, "device": "cpu"}
    return ModelSpec.model_validate({"name": "lm", **fields})


def prompt(length: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(5, 1900, size=length, dtype=np.int64)


def prefill(
    backend: Backend, ids: np.ndarray, chunks: tuple[int, ...] = ()
) -> tuple[np.ndarray, KVCache]:
    """One sequence's prompt, cut at `chunks` (token offsets) into prefill chunks."""
    cache: KVCache | None = None
    bounds = [0, *chunks, len(ids)]
    for start, stop in itertools.pairwise(bounds):
        step = StepInputs.prefill(ids, start, stop)
        logits, cache = backend.decode_step(step, cache)
    assert cache is not None
    return logits, cache


def greedy(backend: Backend, steps: int) -> tuple[list[np.ndarray], list[np.ndarray], KVCache]:
    """Two prompts prefilled apart, joined into one left-padded batch, then greedy steps:
    each step's logits and tokens, and the final cache."""
    prompts = [prompt(9, seed=1), prompt(4, seed=2)]
    first = [prefill(backend, ids) for ids in prompts]
    cache = first[0][1].extend(first[1][1])
    logits = np.concatenate([row for row, _ in first])
    lengths = np.array([len(ids) for ids in prompts], dtype=np.int64)
    all_logits, tokens = [logits], [logits.argmax(axis=1)]
    for _ in range(steps):
        width = cache.width
        mask = (np.arange(width + 1)[None] >= width - lengths[:, None]).astype(np.int64)
        step = StepInputs(tokens[-1][:, None].astype(np.int64), mask, lengths[:, None].copy())
        logits, cache = backend.decode_step(step, cache)
        all_logits.append(logits)
        tokens.append(logits.argmax(axis=1))
        lengths += 1
    return all_logits, tokens, cache


def as_numpy(array: object) -> np.ndarray:
    numpy = getattr(array, "numpy", None)  # a torch tensor
    return np.asarray(numpy() if callable(numpy) else array)


def test_export_is_one_graph_with_a_cache(exports: dict[str, Path]) -> None:
    import onnxruntime as ort

    manifest = read_manifest(exports["chat-lm"])
    assert manifest is not None
    assert manifest["head"] == "text-generation"
    assert manifest["files"] == {"model": "model.onnx"}
    assert manifest["exporter"] == "dynamo"
    assert (exports["chat-lm"] / "model.onnx.data").is_file()
    assert not (exports["causal-lm"] / "model.onnx.data").exists()
    session = ort.InferenceSession(str(exports["chat-lm"] / "model.onnx"))
    cache = ["past.0.key", "past.0.value", "past.1.key", "past.1.value"]
    assert [i.name for i in session.get_inputs()] == [
        "input_ids", "attention_mask", "position_ids", *cache,
    ]  # fmt: skip
    outputs = {o.name: o.shape for o in session.get_outputs()}
    assert list(outputs) == ["logits", *(n.replace("past", "present") for n in cache)]
    assert len(outputs["logits"]) == 2  # [rows, vocab]: the last token's, sliced in the graph
    assert outputs["present.0.key"][1] == 2  # grouped-query attention: 2 key/value heads


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("engine", ENGINES)
def test_batched_greedy_steps_match_torch(load: Load, engine: str, name: str) -> None:
    want_logits, want_tokens, want_cache = greedy(load("torch", name), steps=3)
    got_logits, got_tokens, got_cache = greedy(load(engine, name), steps=3)
    # Exact token equality holds only without near-ties: engines' rounding is ~1e-6 here.
    margins = [np.diff(np.sort(step, axis=1)[:, -2:], axis=1).min() for step in want_logits]
    assert min(margins) > 1e-4, f"a near-tie in the reference's logits: {min(margins)}"
    for want, got in zip(want_logits, got_logits, strict=True):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
    assert [t.tolist() for t in got_tokens] == [t.tolist() for t in want_tokens]
    assert (got_cache.rows, got_cache.width) == (2, 9 + 3)
    for want, got in zip(want_cache.flat(), got_cache.flat(), strict=True):
        np.testing.assert_allclose(as_numpy(got), as_numpy(want), rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("engine", ENGINES)
def test_chunked_prefill_matches_one_shot(load: Load, engine: str, name: str) -> None:
    backend = load(engine, name)
    ids = prompt(11, seed=3)
    whole_logits, whole = prefill(backend, ids)
    chunked_logits, chunked = prefill(backend, ids, chunks=(6,))
    np.testing.assert_allclose(chunked_logits, whole_logits, rtol=0, atol=ATOL)
    assert chunked.width == whole.width == 11
    for a, b in zip(chunked.flat(), whole.flat(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=ATOL)


def test_a_model_without_a_key_value_cache_is_refused(tmp_path: Path) -> None:
    from transformers import MambaConfig, MambaForCausalLM

    config = MambaConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, state_size=4)
    MambaForCausalLM(config).save_pretrained(tmp_path / "mamba")
    with pytest.raises(ModelLoadError, match=r"'mamba' causal LM.*serve it with backend torch"):
        export_model(tmp_path / "mamba", Head.CAUSAL_LM, tmp_path / "out", source="mamba")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "out.partial").exists()


def test_an_export_serves_without_torch(load: Load, exports: dict[str, Path]) -> None:
    """In a fresh process where `import torch` fails (USE_TORCH=0), both engines load the
    export and step it."""
    ir = load("openvino", "chat-lm").model_dir  # converted by the fixture
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["torch"] = None
        from pathlib import Path
        import numpy as np
        from app.runtimes import backend_class, onnx_causal
        from app.runtimes.base import Head, StepInputs
        from app.settings import Settings
        from app.spec import ModelSpec

        shapes = []
        for engine, source in (("onnx", {str(exports["chat-lm"])!r}), ("openvino", {str(ir)!r})):
            spec = ModelSpec.model_validate(
                {{"name": "lm", "task": "generate", "source": source, "backend": engine}}
            )
            backend = backend_class(engine)(Path(source), Head.CAUSAL_LM, spec,
                                            Settings(_env_file=None))
            ids = np.array([[5, 6, 7]], dtype=np.int64)
            logits, cache = backend.decode_step(
                StepInputs(ids, np.ones((1, 3), np.int64), np.arange(3)[None]), None
            )
            logits, cache = backend.decode_step(
                StepInputs(ids[:, :1], np.ones((1, 4), np.int64), np.array([[3]])), cache
            )
            shapes.append([list(logits.shape), cache.width])
        print(json.dumps({{"shapes": shapes, "torch": sys.modules.get("torch") is not None}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    vocab = int(load("torch", "chat-lm").config.vocab_size)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"shapes": [[[1, vocab], 4], [[1, vocab], 4]], "torch": False}
