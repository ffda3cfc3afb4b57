"""Items from concurrent requests batch together and get the same answers as alone."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.integration.test_torch_tasks import BATCH_CASES, assert_close, post

pytestmark = pytest.mark.integration


def batches_and_items(metrics_text: str, model: str) -> tuple[float, float]:
    count = total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith(f'nlp_serve_batch_size_count{{model="{model}"}}'):
            count = float(line.rsplit(" ", 1)[1])
        if line.startswith(f'nlp_serve_batch_size_sum{{model="{model}"}}'):
            total = float(line.rsplit(" ", 1)[1])
    return count, total


@pytest.mark.parametrize(("route", "extra", "inputs"), BATCH_CASES)
async def test_concurrent_requests_match_single_requests(
    torch_client: httpx.AsyncClient, route: str, extra: dict[str, Any], inputs: list[Any]
) -> None:
    alone = [await post(torch_client, route, {"inputs": item, **extra}) for item in inputs]
    model = alone[0]["model"]
    before = batches_and_items((await torch_client.get("/metrics")).text, model)
    together = await asyncio.gather(
        *(post(torch_client, route, {"inputs": item, **extra}) for item in inputs * 4)
    )
    for index, body in enumerate(together):
        assert_close(body["results"], alone[index % len(inputs)]["results"])
    after = batches_and_items((await torch_client.get("/metrics")).text, model)
    batches, items = after[0] - before[0], after[1] - before[1]
    assert items == len(inputs) * 4
    assert batches < items  # at least one batch held items of several requests


async def test_zero_shot_requests_with_different_labels_share_batches(
    torch_client: httpx.AsyncClient,
) -> None:
    label_sets = [["sport", "money"], ["cats", "dogs", "birds"], ["red"], ["a", "b", "c", "d"]]
    text = "The match ended in a draw after extra time."

    async def ask(labels: list[str]) -> Any:
        body = {"inputs": text, "candidate_labels": labels}
        return await post(torch_client, "/v1/classify", body)

    alone = [await ask(labels) for labels in label_sets]
    together = await asyncio.gather(*(ask(labels) for labels in label_sets * 3))
    for index, body in enumerate(together):
        labels = label_sets[index % len(label_sets)]
        assert sorted(r["label"] for r in body["results"][0]) == sorted(labels)
        assert_close(body["results"], alone[index % len(label_sets)]["results"])
