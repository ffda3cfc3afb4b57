"""embed-sparse against sentence-transformers' own SparseEncoder, on PyTorch, ONNX Runtime and
OpenVINO (the masked-LM head each exports), with prompts, padding and truncation.

The tiny SPLADE model is saved as sentence-transformers 6 saves one (tests/fixtures/
tiny_models.py build_splade), so SparseEncoder loads the very folder the server does. Each
comparison keeps the same top k on both sides (SparseEncoder's max_active_dims), with k chosen
where the reference's k-th and (k+1)-th weights differ by more than the tolerance, so the kept
indices are well defined and must be equal.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import serve_in_process, settings_for

pytestmark = pytest.mark.integration

TOLERANCE = 1e-4
TEXTS = [
    "The cat sat on the mat.",
    "A much longer sentence about retrieval, sparse vectors and inverted indices in search.",
    "x",
    " ".join(f"word{i}" for i in range(150)),  # past the model's 128 tokens: cut on the right
]
BACKENDS = ["torch", "onnx", "openvino"]


@pytest.fixture(scope="module")
def log1p_splade(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny SPLADE model with OpenSearch's activation, log(1 + log(1 + relu))."""
    out = Path(shutil.copytree(tiny_models["splade"], tmp_path_factory.mktemp("log1p") / "m"))
    config = out / "1_SpladePooling" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()),
                                  "activation_function": "log1p_relu"}))  # fmt: skip
    return out


@pytest.fixture(scope="module")
async def sparse_client(
    log1p_splade: Path,
    tiny_models: dict[str, Path],
    write_catalog: Callable[[list[dict[str, Any]]], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[httpx.AsyncClient]:
    source = str(tiny_models["splade"])
    models = [
        {"name": f"sparse-{backend}", "task": "embed-sparse", "source": source,
         "backend": backend, "device": "cpu", "export": backend != "torch"}
        for backend in BACKENDS
    ] + [{"name": "sparse-log1p", "task": "embed-sparse", "source": str(log1p_splade),
          "backend": "onnx", "device": "cpu", "export": True}]  # fmt: skip
    cache = tmp_path_factory.mktemp("sparse-exports")
    settings = settings_for(
        write_catalog(models),
        onnx_cache_dir=cache / "onnx",
        openvino_cache_dir=cache / "openvino",
        torch_threads=1,
    )
    async with serve_in_process(settings) as client:
        yield client


@pytest.fixture(scope="module")
def reference(tiny_models: dict[str, Path]) -> Any:
    from sentence_transformers import SparseEncoder

    return SparseEncoder(str(tiny_models["splade"]), device="cpu")


def dense(reference: Any, texts: list[str], prompt: str | None, k: int | None = None) -> Any:
    encoded = reference.encode(
        texts, prompt_name=prompt, max_active_dims=k, convert_to_tensor=True, batch_size=8
    )
    return encoded.to_dense().float().numpy()


def separable_k(weights: np.ndarray, start: int = 24) -> int:
    """The smallest k >= start at which every row's k-th and (k+1)-th largest weights differ
    by more than the tolerance."""
    ordered = -np.sort(-weights, axis=1)
    for k in range(start, weights.shape[1] - 1):
        gaps = ordered[:, k - 1] - ordered[:, k]
        if (gaps > TOLERANCE).all() and (ordered[:, k - 1] > 0).all():
            return k
    raise AssertionError("no k separates the reference's weights")


@pytest.mark.parametrize("prompt", [None, "query"])
@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_same_top_k_as_sentence_transformers(
    sparse_client: httpx.AsyncClient, reference: Any, backend: str, prompt: str | None
) -> None:
    k = separable_k(dense(reference, TEXTS, prompt))
    expected = dense(reference, TEXTS, prompt, k)
    body: dict[str, Any] = {"inputs": TEXTS, "model": f"sparse-{backend}", "top_k": k}
    if prompt is not None:
        body["prompt_name"] = prompt
    response = await sparse_client.post("/v1/embed-sparse", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["x-truncated-inputs"] == "3"
    for vector, want in zip(response.json()["results"], expected, strict=True):
        indices = [entry["index"] for entry in vector]
        assert indices == np.flatnonzero(want).tolist()  # by index, the same ids
        values = np.asarray([entry["value"] for entry in vector])
        np.testing.assert_allclose(values, want[indices], atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_alone_or_batched_and_every_weight_without_top_k(
    sparse_client: httpx.AsyncClient, reference: Any, backend: str
) -> None:
    """Without top_k every positive weight comes back; padding a short row beside a long one
    changes none of its weights."""
    model = f"sparse-{backend}"
    batched = await sparse_client.post("/v1/embed-sparse", json={"inputs": TEXTS, "model": model})
    expected = dense(reference, TEXTS, None)
    for text, vector, want in zip(TEXTS, batched.json()["results"], expected, strict=True):
        alone = await sparse_client.post("/v1/embed-sparse", json={"inputs": text, "model": model})
        for answer in (vector, alone.json()["results"][0]):
            got = np.zeros_like(want)
            for entry in answer:
                got[entry["index"]] = entry["value"]
            np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=0)


async def test_opensearch_activation_matches_sentence_transformers(
    sparse_client: httpx.AsyncClient, log1p_splade: Path
) -> None:
    from sentence_transformers import SparseEncoder

    reference = SparseEncoder(str(log1p_splade), device="cpu")
    body = {"inputs": TEXTS, "model": "sparse-log1p"}
    response = await sparse_client.post("/v1/embed-sparse", json=body)
    for vector, want in zip(response.json()["results"], dense(reference, TEXTS, None), strict=True):
        got = np.zeros_like(want)
        for entry in vector:
            got[entry["index"]] = entry["value"]
        np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=0)
    plain = await sparse_client.post("/v1/embed-sparse", json={**body, "model": "sparse-torch"})
    assert plain.json()["results"] != response.json()["results"]


async def test_models_report_their_engines(sparse_client: httpx.AsyncClient) -> None:
    models = {m["name"]: m for m in (await sparse_client.get("/v1/models")).json()["models"]}
    assert {models[f"sparse-{b}"]["backend"] for b in BACKENDS} == set(BACKENDS)
    facts = models["sparse-torch"]
    assert facts["dimensions"] == 30522
    assert facts["prompts"] == {"query": "query: ", "document": "passage: "}
    assert facts["method"] == "SPLADE: max over tokens of log(1 + relu(logits))"
