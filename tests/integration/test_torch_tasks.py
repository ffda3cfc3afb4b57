"""Every route on real tiny PyTorch models: result shapes, labels, offsets, batch == single."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

from tests.fixtures.tiny_models import MAX_POSITIONS, NER_LABELS, SENTIMENT_LABELS, TOPIC_LABELS

pytestmark = pytest.mark.integration

TEXTS = [
    "The match ended in a draw after extra time.",
    "Shares fell sharply",
    "Scientists in Geneva announced a new particle, and the news travelled around the world "
    "within hours of the press conference.",
]
QA_ITEMS = [
    {
        "question": "Who wrote the first program?",
        "context": "Ada Lovelace wrote the first program.",
    },
    {"question": "Where is CERN?", "context": "CERN is near Geneva, on the border of France."},
]


async def post(client: httpx.AsyncClient, route: str, body: dict[str, Any]) -> Any:
    response = await client.post(route, json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def assert_same_answers(
    reference: httpx.AsyncClient, other: httpx.AsyncClient, route: str, body: dict[str, Any]
) -> None:
    """Another backend's answers match PyTorch's for the same request, to 1e-4."""
    expected = await post(reference, route, body)
    actual = await post(other, route, body)
    assert actual["model"] == expected["model"]
    assert_close(actual["results"], expected["results"], tol=1e-4)


def assert_close(a: Any, b: Any, tol: float = 1e-5) -> None:
    """Deep equality with a float tolerance."""
    if isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, abs_tol=tol), (a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_close(a[key], b[key], tol)
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_close(x, y, tol)
    else:
        assert a == b


BATCH_CASES = [
    ("/v1/sentiment", {}, TEXTS),
    ("/v1/classify", {}, TEXTS),
    ("/v1/classify", {"candidate_labels": ["sport", "finance", "science"]}, TEXTS),
    ("/v1/qa", {"top_k": 2}, QA_ITEMS),
    ("/v1/ner", {}, TEXTS),
    ("/v1/embed", {}, TEXTS),
    ("/v1/translate", {"target_lang": "de", "max_new_tokens": 6}, TEXTS),
    ("/v1/summarize", {"min_length": 2, "max_length": 6}, TEXTS),
]


@pytest.mark.parametrize(("route", "extra", "inputs"), BATCH_CASES)
async def test_list_inputs_align_and_match_single_calls(
    torch_client: httpx.AsyncClient, route: str, extra: dict[str, Any], inputs: list[Any]
) -> None:
    batched = await post(torch_client, route, {"inputs": inputs, **extra})
    assert len(batched["results"]) == len(inputs)
    for item, result in zip(inputs, batched["results"], strict=True):
        single = await post(torch_client, route, {"inputs": item, **extra})
        assert single["model"] == batched["model"]
        assert len(single["results"]) == 1
        assert_close(single["results"][0], result)


async def test_sentiment_uses_the_models_labels(torch_client: httpx.AsyncClient) -> None:
    body = await post(torch_client, "/v1/sentiment", {"inputs": TEXTS})
    assert body["model"] == "tiny-sentiment"
    for result in body["results"]:
        assert result["label"] in SENTIMENT_LABELS
        assert 0.5 <= result["score"] <= 1.0  # the winning class of two


async def test_classify_returns_all_labels_sorted_and_top_k(
    torch_client: httpx.AsyncClient,
) -> None:
    body = await post(torch_client, "/v1/classify", {"inputs": TEXTS[0]})
    assert body["model"] == "tiny-topics"
    result = body["results"][0]
    assert sorted(r["label"] for r in result) == sorted(TOPIC_LABELS)
    scores = [r["score"] for r in result]
    assert scores == sorted(scores, reverse=True)
    assert math.isclose(sum(scores), 1.0, abs_tol=1e-6)
    top = await post(torch_client, "/v1/classify", {"inputs": TEXTS[0], "top_k": 2})
    assert top["results"][0] == result[:2]


async def test_classify_multi_label_scores_are_independent(torch_client: httpx.AsyncClient) -> None:
    body = await post(torch_client, "/v1/classify", {"inputs": TEXTS[0], "multi_label": True})
    scores = [r["score"] for r in body["results"][0]]
    assert all(0.0 < s < 1.0 for s in scores)
    assert not math.isclose(sum(scores), 1.0, abs_tol=1e-3)


async def test_zero_shot_goes_to_the_nli_model(torch_client: httpx.AsyncClient) -> None:
    labels = ["sport", "finance", "science"]
    body = await post(
        torch_client, "/v1/classify", {"inputs": TEXTS[0], "candidate_labels": labels}
    )
    assert body["model"] == "tiny-nli"  # the default classifier has fixed labels
    result = body["results"][0]
    assert sorted(r["label"] for r in result) == sorted(labels)
    assert math.isclose(sum(r["score"] for r in result), 1.0, abs_tol=1e-6)
    multi = await post(
        torch_client,
        "/v1/classify",
        {"inputs": TEXTS[0], "candidate_labels": labels, "multi_label": True},
    )
    assert all(0.0 < r["score"] < 1.0 for r in multi["results"][0])


async def test_qa_offsets_index_the_context(torch_client: httpx.AsyncClient) -> None:
    body = await post(torch_client, "/v1/qa", {"inputs": QA_ITEMS, "max_answer_len": 4})
    for item, answer in zip(QA_ITEMS, body["results"], strict=True):
        assert set(answer) == {"answer", "score", "start", "end"}
        assert item["context"][answer["start"] : answer["end"]] == answer["answer"]
        assert answer["answer"]  # the model without null answers always picks a span
        assert 0.0 < answer["score"] <= 1.0


async def test_qa_top_k_gives_ranked_distinct_spans(torch_client: httpx.AsyncClient) -> None:
    body = await post(torch_client, "/v1/qa", {"inputs": QA_ITEMS[0], "top_k": 3})
    answers = body["results"][0]
    assert len(answers) == 3
    assert [a["score"] for a in answers] == sorted((a["score"] for a in answers), reverse=True)
    assert len({(a["start"], a["end"]) for a in answers}) == 3


async def test_qa_windows_long_contexts(torch_client: httpx.AsyncClient) -> None:
    filler = " ".join(f"Sentence number {i} says nothing at all." for i in range(60))
    context = filler + " The treasure is buried under the old oak tree."
    assert len(context.split()) > 2 * MAX_POSITIONS  # far longer than one window
    body = await post(
        torch_client,
        "/v1/qa",
        {"inputs": {"question": "Where is the treasure?", "context": context}, "top_k": 5},
    )
    for answer in body["results"][0]:
        assert context[answer["start"] : answer["end"]] == answer["answer"]
    # spans come from more than the first window
    assert max(a["end"] for a in body["results"][0]) > len(context) // 4


async def test_qa_null_answer_where_the_model_allows_it(torch_client: httpx.AsyncClient) -> None:
    body = await post(
        torch_client, "/v1/qa", {"inputs": QA_ITEMS[0], "model": "tiny-qa-null", "top_k": 20}
    )
    answers = body["results"][0]
    nulls = [a for a in answers if a["answer"] == ""]
    assert len(nulls) == 1
    assert (nulls[0]["start"], nulls[0]["end"]) == (0, 0)


async def test_ner_entities_have_offsets_into_the_text(torch_client: httpx.AsyncClient) -> None:
    groups = {label.split("-", 1)[-1] for label in NER_LABELS if label != "O"}
    body = await post(torch_client, "/v1/ner", {"inputs": TEXTS})
    assert sum(len(r) for r in body["results"]) > 0  # random weights still tag something
    for text, entities in zip(TEXTS, body["results"], strict=True):
        for entity in entities:
            assert entity["entity_group"] in groups
            assert text[entity["start"] : entity["end"]] == entity["word"]
            assert 0.0 < entity["score"] <= 1.0


async def test_embed_normalises_by_default_and_on_request(torch_client: httpx.AsyncClient) -> None:
    def norm(vector: list[float]) -> float:
        return math.sqrt(sum(v * v for v in vector))

    body = await post(torch_client, "/v1/embed", {"inputs": TEXTS[:2]})
    for vector in body["results"]:
        assert len(vector) == 32
        assert math.isclose(norm(vector), 1.0, abs_tol=1e-6)
    raw = await post(torch_client, "/v1/embed", {"inputs": TEXTS[0], "normalize": False})
    assert not math.isclose(norm(raw["results"][0]), 1.0, abs_tol=1e-3)
    scale = norm(raw["results"][0])
    assert_close([v / scale for v in raw["results"][0]], body["results"][0])


async def test_long_inputs_are_truncated_not_rejected(torch_client: httpx.AsyncClient) -> None:
    long_text = "word " * (4 * MAX_POSITIONS)
    for route in ("/v1/sentiment", "/v1/classify", "/v1/ner", "/v1/embed"):
        await post(torch_client, route, {"inputs": long_text})


async def test_translate_picks_the_pair_and_honours_length(torch_client: httpx.AsyncClient) -> None:
    for target in ("de", "fr"):
        body = await post(
            torch_client,
            "/v1/translate",
            {"inputs": TEXTS, "source_lang": "en", "target_lang": target, "max_new_tokens": 5},
        )
        assert body["model"] == "tiny-translate"
        for result in body["results"]:
            assert set(result) == {"translation_text"}
            assert isinstance(result["translation_text"], str)


async def test_summarize_respects_max_length(torch_client: httpx.AsyncClient) -> None:
    from tests.fixtures.tiny_models import real_tokenizer

    tokenizer = real_tokenizer()
    for max_length in (3, 8):
        body = await post(
            torch_client, "/v1/summarize", {"inputs": TEXTS, "max_length": max_length}
        )
        for result in body["results"]:
            # decoded wordpieces re-tokenise to themselves; special tokens are stripped
            tokens = tokenizer(result["summary_text"], add_special_tokens=False)["input_ids"]
            assert len(tokens) <= max_length
