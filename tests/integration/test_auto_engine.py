"""`backend: auto` + `precision: auto` on real engines (tiny models): every engine this CPU
offers is exported, compared with torch fp32 and timed; the one served answers like it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.runtimes.cpu import describe_cpu
from tests.conftest import serve_in_process, settings_for
from tests.integration.test_torch_tasks import post

pytestmark = pytest.mark.integration

TEXTS = ["The striker scored twice.", "Rain is expected tomorrow in the north."]


async def test_auto_serves_a_measured_engine_that_answers_like_torch(
    tiny_models: dict[str, Path],
    torch_client: httpx.AsyncClient,
    write_catalog: Callable[[list[dict[str, Any]]], Path],
    tmp_path: Path,
) -> None:
    def entry(name: str, task: str, source: str) -> dict[str, Any]:
        return {"name": name, "task": task, "source": str(tiny_models[source]), "device": "cpu",
                "backend": "auto", "precision": "auto", "export": True}  # fmt: skip

    catalog = write_catalog([entry("auto-embed", "embed", "encoder"),
                             entry("auto-sentiment", "sentiment", "sentiment")])  # fmt: skip
    settings = settings_for(catalog, onnx_cache_dir=tmp_path / "onnx",
                            openvino_cache_dir=tmp_path / "ov", auto_cache_dir=tmp_path / "auto",
                            auto_measure_seconds=0.05)  # fmt: skip
    async with serve_in_process(settings) as client:
        models = {m["name"]: m for m in (await client.get("/v1/models")).json()["models"]}
        vectors = await post(client, "/v1/embed", {"inputs": TEXTS, "model": "auto-embed"})
        labels = await post(client, "/v1/sentiment", {"inputs": TEXTS, "model": "auto-sentiment"})
    for name in ("auto-embed", "auto-sentiment"):
        shown = models[name]["auto"]
        tried = {f"{c['backend']} {c['precision']}": c for c in shown["candidates"]}
        assert {"torch fp32", "onnx fp32", "onnx int8", "openvino fp32", "openvino int8"} <= set(
            tried
        )
        assert shown["reference"] == "torch fp32"
        assert shown["chosen"] == f"{models[name]['backend']} {models[name]['precision']}"
        assert tried[shown["chosen"]]["kept"] is True
        assert all(set(c["rows_per_s"]) == {"1", "32"} for c in tried.values() if c["kept"])
        assert shown["measured_now"] is True
        assert shown["cpu"] in {describe_cpu(json.loads(p.read_text())["cpu"])
                                for p in (tmp_path / "auto").glob("*.json")}  # fmt: skip
    reference = await post(torch_client, "/v1/embed", {"inputs": TEXTS, "model": "tiny-embed"})
    for ours, theirs in zip(vectors["results"], reference["results"], strict=True):
        a, b = np.asarray(ours), np.asarray(theirs)
        assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) >= settings.auto_min_cosine
    assert len(labels["results"]) == len(TEXTS)
