"""/v1/fill-mask on a tiny BERT masked LM (torch and ONNX), and `nlp-serve eval` in-process."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.cli import main
from tests.conftest import serve_in_process, settings_for
from tests.fixtures.eval_sets import EVAL_DIR
from tests.integration.test_torch_tasks import assert_close

pytestmark = pytest.mark.integration

TEXTS = ["Paris is the [MASK] of France.", "I [MASK] this phone."]


def _reference(model_dir: Path, text: str, **kwargs: Any) -> list[dict[str, Any]]:
    from transformers import pipeline

    fill = pipeline("fill-mask", model=str(model_dir), device="cpu")
    out: list[dict[str, Any]] = fill(text, **kwargs)
    return out


async def test_torch_answers_like_the_transformers_pipeline(
    torch_client: httpx.AsyncClient, tiny_models: dict[str, Path]
) -> None:
    body = {"inputs": TEXTS, "top_k": 3}
    answer = (await torch_client.post("/v1/fill-mask", json=body)).json()
    for text, results in zip(TEXTS, answer["results"], strict=True):
        expected = _reference(tiny_models["masked-lm"], text, top_k=3)
        assert [r["token"] for r in results] == [e["token"] for e in expected]
        assert [r["token_str"] for r in results] == [e["token_str"] for e in expected]
        assert [r["sequence"] for r in results] == [e["sequence"] for e in expected]
        for r, e in zip(results, expected, strict=True):
            assert r["score"] == pytest.approx(e["score"], rel=1e-4)
    # Alone and in a batch of two: the same tokens, scores equal up to float rounding (a
    # different batch shape may take other kernels, moving the last digits on some CPUs).
    single = await torch_client.post("/v1/fill-mask", json={"inputs": TEXTS[1], "top_k": 3})
    assert_close(single.json()["results"][0], answer["results"][1], tol=1e-6)


async def test_targets_and_the_mask_rules(
    torch_client: httpx.AsyncClient, tiny_models: dict[str, Path]
) -> None:
    body = {"inputs": TEXTS[0], "targets": ["capital", "city", "##ing"], "top_k": 3}
    results = (await torch_client.post("/v1/fill-mask", json=body)).json()["results"][0]
    expected = _reference(tiny_models["masked-lm"], TEXTS[0], targets=["capital", "city"])
    by_token = {r["token_str"]: r["score"] for r in results}
    assert set(by_token) == {"capital", "city", "##ing"}
    for e in expected:
        assert by_token[e["token_str"]] == pytest.approx(e["score"], rel=1e-4)
    for bad, fragment in [
        ({"inputs": "no mask here"}, "exactly one mask token '[MASK]'"),
        ({"inputs": "[MASK] and [MASK]"}, "found 2"),
        ({"inputs": TEXTS[0], "targets": ["unbelievably"]}, "not one token"),
        ({"inputs": TEXTS[0], "targets": ["a", "a"]}, "more than once"),
    ]:
        response = await torch_client.post("/v1/fill-mask", json=bad)
        assert response.status_code == 422, response.text
        assert fragment in response.json()["error"]["message"]


async def test_onnx_export_matches_torch(
    torch_client: httpx.AsyncClient,
    tiny_models: dict[str, Path],
    write_catalog: Callable[[list[dict[str, Any]]], Path],
    tmp_path: Path,
) -> None:
    entry = {"name": "mlm-onnx", "task": "fill-mask", "source": str(tiny_models["masked-lm"]),
             "backend": "onnx", "export": True, "device": "cpu"}  # fmt: skip
    settings = settings_for(write_catalog([entry]), onnx_cache_dir=tmp_path)
    body = {"inputs": TEXTS, "top_k": 5}
    expected = await torch_client.post("/v1/fill-mask", json={**body, "model": "tiny-fill-mask"})
    async with serve_in_process(settings) as client:
        answer = (await client.post("/v1/fill-mask", json=body)).json()
    for got, want in zip(answer["results"], expected.json()["results"], strict=True):
        assert [r["token"] for r in got] == [r["token"] for r in want]
        for g, w in zip(got, want, strict=True):
            assert g["score"] == pytest.approx(w["score"], rel=1e-3, abs=1e-6)


def test_eval_cli_in_process_scores_and_compares(
    tiny_models: dict[str, Path],
    write_catalog: Callable[[list[dict[str, Any]]], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def entry(name: str, task: str, source: str) -> dict[str, Any]:
        return {"name": name, "task": task, "source": str(tiny_models[source]),
                "backend": "torch", "device": "cpu"}  # fmt: skip

    catalog = write_catalog([entry("mlm", "fill-mask", "masked-lm"),
                             entry("s1", "sentiment", "sentiment"),
                             entry("s2", "sentiment", "sentiment")])  # fmt: skip
    mlm_set = tmp_path / "mlm.jsonl"
    mlm_set.write_text('{"task": "fill-mask", "text": "Paris is lovely."}\n')
    out = tmp_path / "out.json"
    assert main(["eval", "--data", str(mlm_set), "--models", str(catalog), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    scores = report["results"][0]["metrics"]
    # A random-weight model over a 30522-token vocabulary is close to uniform.
    assert 1_000 < scores["pseudo_perplexity"] < 1_000_000
    assert "pseudo_perplexity" in capsys.readouterr().out
    sentiment = EVAL_DIR / "sentiment.jsonl"
    assert main(["eval", "--data", str(sentiment), "--models", str(catalog),
                 "--compare", "s1", "s2", "--out", str(out)]) == 0  # fmt: skip
    comparison = json.loads(out.read_text())["comparison"]
    assert comparison["agreement"] == 1.0
    assert comparison["worst_disagreements"] == []
    assert "agreement: 100.0%" in capsys.readouterr().out
