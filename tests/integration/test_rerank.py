"""rerank on a real server on 127.0.0.1 with a tiny real cross-encoder (random weights, the real
WordPiece tokenizer): the cohere SDK (ClientV2 and the v1 Client) with its typed errors, a
Jina-style request, TEI's route, docs/clients.md's snippets, scores equal to the model run by
transformers itself, and PyTorch, ONNX Runtime and OpenVINO answering alike on (query,
document) pairs with segment ids. One server for the module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cohere
import httpx
import numpy as np
import pytest
from cohere.core.api_error import ApiError

from bench.common import serve
from tests.fixtures.doc_snippets import SNIPPET_KEY, python_blocks, run_snippets

pytestmark = pytest.mark.integration

KEY = "rerank-test-key"
SNIPPET_MODEL = "minilm-rerank"  # the offline catalog's name, served by the tiny cross-encoder
ENGINES = ("torch", "onnx", "openvino")
QUERY = "How do I reset the router?"
DOCUMENTS = [
    "Our office moved to the third floor last spring.",
    "To reset the router, hold the button on its back for ten seconds.",
    "A router forwards packets between networks.",
    " ".join(f"part{i}" for i in range(120)),  # ~360 tokens: windows of the 128-token model
]


@pytest.fixture(scope="module")
def server(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    source = str(tiny_models["cross-encoder"])
    models: list[dict[str, Any]] = [
        {"name": f"rerank-{engine}", "task": "rerank", "source": source, "device": "cpu",
         "backend": engine, **({"export": True} if engine != "torch" else {})}
        for engine in ENGINES
    ]  # fmt: skip
    models[0]["default"] = True
    models.append({**models[0], "name": SNIPPET_MODEL, "default": False})
    cache = tmp_path_factory.mktemp("rerank-exports")
    env = {
        "NLP_SERVE_API_KEYS": f'["{KEY}", "{SNIPPET_KEY}"]',
        "NLP_SERVE_MAX_DOCUMENTS_PER_RERANK": "8",
        "NLP_SERVE_ONNX_CACHE_DIR": str(cache / "onnx"),
        "NLP_SERVE_OPENVINO_CACHE_DIR": str(cache / "openvino"),
    }
    with serve(models, env) as running:
        yield running.base


def client(server: str, key: str = KEY) -> cohere.ClientV2:
    return cohere.ClientV2(api_key=key, base_url=server, max_retries=0, timeout=60)


def tei(server: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = httpx.post(f"{server}/rerank", json=body, timeout=60,
                          headers={"Authorization": f"Bearer {KEY}"})  # fmt: skip
    assert response.status_code == 200, response.text
    ranks: list[dict[str, Any]] = response.json()
    return ranks


def reference_logits(model_dir: str, query: str, documents: list[str]) -> list[float]:
    """Each document's best window's logit, from transformers itself: the tokenizer's own pair
    windows (the document's side cut; doc_stride 64 tokens of overlap, at most half the room
    the query leaves in the 128-token window) through the model."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    room = 128 - 3 - len(tokenizer(query, add_special_tokens=False)["input_ids"])
    best = []
    for document in documents:
        windows = tokenizer(query, document, truncation="only_second", max_length=128,
                            stride=min(64, room // 2), return_overflowing_tokens=True,
                            padding=True, return_tensors="pt")  # fmt: skip
        windows.pop("overflow_to_sample_mapping")
        with torch.inference_mode():
            best.append(float(model(**windows).logits[:, 0].max()))
    return best


def test_cohere_client_v2_ranks_like_the_model_itself(
    server: str, tiny_models: dict[str, Path]
) -> None:
    response = client(server).rerank(model="rerank-torch", query=QUERY, documents=DOCUMENTS)
    logits = reference_logits(str(tiny_models["cross-encoder"]), QUERY, DOCUMENTS)
    expected = sorted(range(len(DOCUMENTS)), key=lambda i: -logits[i])
    assert [r.index for r in response.results] == expected
    for result in response.results:
        assert result.relevance_score == pytest.approx(1 / (1 + np.exp(-logits[result.index])),
                                                       abs=1e-6)  # fmt: skip
    windows = {r.index: r.windows for r in response.results}  # type: ignore[attr-defined]
    assert windows[3] > 1  # the long one in windows, the best counting: never silently cut
    assert {windows[i] for i in range(3)} == {1}
    assert response.id
    top = client(server).rerank(model="rerank-torch", query=QUERY, documents=DOCUMENTS, top_n=2,
                                max_tokens_per_doc=8)  # fmt: skip
    assert len(top.results) == 2
    assert all(r.windows == 1 for r in top.results)  # type: ignore[attr-defined]


def test_the_three_engines_score_pairs_alike(server: str) -> None:
    """Segment ids reach the exported graphs: a pair's logits match PyTorch's."""
    raw = {
        engine: {r["index"]: r["score"] for r in tei(server, {"query": QUERY, "texts": DOCUMENTS,
                                                             "raw_scores": True,
                                                             "model": f"rerank-{engine}"})}
        for engine in ENGINES
    }  # fmt: skip
    for engine in ("onnx", "openvino"):
        for index, logit in raw["torch"].items():
            assert raw[engine][index] == pytest.approx(logit, abs=2e-4), (engine, index)


def test_cohere_v1_client_returns_documents_and_their_fields(server: str) -> None:
    v1 = cohere.Client(api_key=KEY, base_url=server, max_retries=0, timeout=60)
    documents: list[Any] = [DOCUMENTS[0], {"text": DOCUMENTS[1], "title": "manual"}]
    response = v1.rerank(query=QUERY, documents=documents, return_documents=True,
                         max_chunks_per_doc=1, model="rerank-torch")  # fmt: skip
    by_index = {r.index: r for r in response.results}
    assert by_index[0].document is not None
    assert by_index[0].document.text == DOCUMENTS[0]
    assert by_index[1].document is not None
    assert by_index[1].document.text == DOCUMENTS[1]
    assert by_index[1].document.title == "manual"  # type: ignore[attr-defined]


def test_a_jina_style_request_and_answer(server: str) -> None:
    body = {"model": "rerank-torch", "query": QUERY, "top_n": 3, "return_documents": True,
            "documents": [DOCUMENTS[0], {"text": DOCUMENTS[1]}, DOCUMENTS[2]]}  # fmt: skip
    response = httpx.post(f"{server}/v1/rerank", json=body, timeout=60,
                          headers={"Authorization": f"Bearer {KEY}"})  # fmt: skip
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"] == "rerank-torch"
    assert answer["usage"]["total_tokens"] > 0
    cohere_order = client(server).rerank(model="rerank-torch", query=QUERY,
                                         documents=DOCUMENTS[:3])  # fmt: skip
    assert [r["index"] for r in answer["results"]] == [r.index for r in cohere_order.results]
    assert [r["document"]["text"] for r in answer["results"]] == [
        DOCUMENTS[r["index"]] for r in answer["results"]
    ]
    bad = httpx.post(f"{server}/v1/rerank", json={**body, "documents": []}, timeout=60,
                     headers={"Authorization": f"Bearer {KEY}"})  # fmt: skip
    assert bad.status_code == 422
    assert "documents" in bad.json()["detail"]  # where Jina's clients read an error


def api_error(call: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value


def test_cohere_sdk_raises_its_typed_errors(server: str) -> None:
    co = client(server)
    missing = api_error(lambda: co.rerank(model="nope", query=QUERY, documents=DOCUMENTS))
    assert isinstance(missing, cohere.NotFoundError)
    assert "'nope'" in missing.body["message"]
    refused = api_error(lambda: co.rerank(model="rerank-torch", query=QUERY, documents=DOCUMENTS,
                                          priority=3))  # fmt: skip
    assert isinstance(refused, cohere.UnprocessableEntityError)
    assert "priority" in refused.body["message"]
    invalid = api_error(lambda: co.rerank(model="rerank-torch", query=QUERY, documents=DOCUMENTS,
                                          top_n=0))  # fmt: skip
    assert isinstance(invalid, cohere.UnprocessableEntityError)
    assert "top_n" in invalid.body["message"]
    denied = api_error(lambda: client(server, key="wrong").rerank(
        model="rerank-torch", query=QUERY, documents=DOCUMENTS))  # fmt: skip
    assert isinstance(denied, cohere.UnauthorizedError)
    too_many = api_error(lambda: co.rerank(model="rerank-torch", query=QUERY,
                                           documents=DOCUMENTS * 3))  # fmt: skip
    assert too_many.status_code == 413  # no typed class for 413 in the SDK: its ApiError
    assert "NLP_SERVE_MAX_DOCUMENTS_PER_RERANK" in too_many.body["message"]


def test_tei_rerank_cuts_only_when_asked(server: str) -> None:
    whole = {r["index"]: r for r in tei(server, {"query": QUERY, "texts": DOCUMENTS})}
    cut = {r["index"]: r for r in tei(server, {"query": QUERY, "texts": DOCUMENTS,
                                               "truncate": True})}  # fmt: skip
    assert whole[3]["windows"] > 1
    assert whole[3]["truncated"] is False
    assert (cut[3]["windows"], cut[3]["truncated"]) == (1, True)
    for index in range(3):  # short texts: nothing to cut, the same score
        assert cut[index]["score"] == pytest.approx(whole[index]["score"], abs=1e-6)


# --- docs/clients.md ------------------------------------------------------------------------


def test_the_docs_rerank_snippets_run(server: str) -> None:
    """As written, but for the address: their key is one of the server's, their model is
    served under the offline catalog's name."""
    snippets = python_blocks("Rerank")
    assert len(snippets) >= 3
    outputs = run_snippets(snippets, server, SNIPPET_MODEL)
    assert all(output.strip() for output in outputs), outputs
    assert any("NotFoundError 404" in output for output in outputs), outputs
