"""/v1/ner's aggregation strategies against transformers' own TokenClassificationPipeline on
the same tiny (random-weight) PyTorch model: entity groups or token labels, start, end and
index exactly, scores to 1e-4; the HF and v2 surfaces give the same entities.

`word` is the text's own characters between start and end on every strategy (transformers
decodes the tokens again: lower-cased by this uncased tokenizer, "' s" for "'s"), so it is
compared with the pipeline's span of the text.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import serve_in_process, settings_for

pytestmark = pytest.mark.integration

STRATEGIES = ["none", "simple", "first", "average", "max"]
# Words of several tokens (Lovelace, Brzęczyszczykiewicz, antidisestablishmentarianism),
# punctuation inside and around words, accents, CJK, an emoji ([UNK]).
TEXTS = [
    "Ada Lovelace lived in London.",
    "Grzegorz Brzęczyszczykiewicz visited Zürich, Switzerland!",
    "Microsoft's headquarters: Redmond (WA); café naïve résumé.",
    "The quick brown fox jumps over the lazy dog near Kraków and São Paulo.",
    "unbelievably antidisestablishmentarianism 北京 東京 😀 emoji-laden text.",
]


@pytest.fixture(scope="module")
async def ner_client(
    tiny_models: dict[str, Path], write_catalog: Callable[[list[dict[str, Any]]], Path]
) -> AsyncIterator[httpx.AsyncClient]:
    entry = {"name": "tiny-ner", "task": "ner", "source": str(tiny_models["ner"]),
             "backend": "torch", "device": "cpu"}  # fmt: skip
    async with serve_in_process(settings_for(write_catalog([entry]))) as client:
        yield client


@pytest.fixture(scope="module")
def transformers_answers(tiny_models: dict[str, Path]) -> dict[str, list[list[dict[str, Any]]]]:
    from transformers import pipeline

    answers = {}
    for strategy in STRATEGIES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            classify = pipeline(
                "token-classification",
                model=str(tiny_models["ner"]),
                aggregation_strategy=strategy,
                device="cpu",
            )
            answers[strategy] = [classify(text) for text in TEXTS]
    return answers


def key_fields(strategy: str) -> tuple[str, ...]:
    return ("entity", "index") if strategy == "none" else ("entity_group",)


def test_the_texts_give_entities_of_several_kinds(
    transformers_answers: dict[str, list[list[dict[str, Any]]]],
) -> None:
    """Random weights: the comparison means something only if entities come out."""
    for strategy, answers in transformers_answers.items():
        kinds = {e.get("entity_group", e.get("entity", "")).split("-")[-1]
                 for entities in answers for e in entities}  # fmt: skip
        assert kinds >= {"PER", "LOC"}, (strategy, kinds)
        assert sum(map(len, answers)) >= 15, strategy
    # the word strategies do change something here: they give fewer groups than simple
    simple = sum(map(len, transformers_answers["simple"]))
    for strategy in ("first", "average", "max"):
        assert sum(map(len, transformers_answers[strategy])) < simple


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_entities_match_transformers_pipeline(
    ner_client: httpx.AsyncClient,
    transformers_answers: dict[str, list[list[dict[str, Any]]]],
    strategy: str,
) -> None:
    response = await ner_client.post(
        "/v1/ner", json={"inputs": TEXTS, "aggregation_strategy": strategy}
    )
    assert response.status_code == 200, response.text
    ours = response.json()["results"]
    fields = (*key_fields(strategy), "start", "end")
    for text, got, expected in zip(TEXTS, ours, transformers_answers[strategy], strict=True):
        assert [tuple(e[f] for f in fields) for e in got] == [
            tuple(e[f] for f in fields) for e in expected
        ], text
        assert [e["word"] for e in got] == [text[e["start"] : e["end"]] for e in expected]
        assert [e["score"] for e in got] == pytest.approx(
            [float(e["score"]) for e in expected], abs=1e-4
        )


@pytest.mark.parametrize("strategy", ["none", "average"])
async def test_the_hf_and_v2_surfaces_group_alike(
    ner_client: httpx.AsyncClient, strategy: str
) -> None:
    text = TEXTS[1]
    native = await ner_client.post(
        "/v1/ner", json={"inputs": text, "aggregation_strategy": strategy}
    )
    expected = native.json()["results"][0]
    hf = await ner_client.post(
        "/hf/models/tiny-ner",
        json={"inputs": text, "parameters": {"aggregation_strategy": strategy}},
    )
    assert hf.status_code == 200, hf.text
    assert hf.json() == expected
    v2 = await ner_client.post(
        "/v2/models/tiny-ner/infer",
        json={
            "inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": [text]}],
            "parameters": {"aggregation_strategy": strategy},
        },
    )
    assert v2.status_code == 200, v2.text
    tensors = {t["name"]: t["data"] for t in v2.json()["outputs"]}
    label = "entity" if strategy == "none" else "entity_group"
    assert tensors["ENTITY_GROUP"] == [e[label] for e in expected]
    assert tensors["START"] == [e["start"] for e in expected]
    assert tensors["WORD"] == [e["word"] for e in expected]
