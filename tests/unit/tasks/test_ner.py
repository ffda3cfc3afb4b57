from __future__ import annotations

from typing import Any

import numpy as np

from app.tasks.ner import TokenSpans, _split_tag
from tests.fixtures.tiny_models import NER_LABELS


def logits_for(tags: list[str]) -> np.ndarray:
    """[1, tokens, labels] logits that pick the given tag per token with high confidence."""
    out = np.zeros((1, len(tags), len(NER_LABELS)), dtype=np.float32)
    for t, tag in enumerate(tags):
        out[0, t, NER_LABELS.index(tag)] = 10.0
    return out


def run(make_task: Any, text: str, tags_per_word: dict[str, str]) -> list[Any]:
    task = make_task("ner", "ner")
    encoded = task.encode(text, None)
    spans = encoded.context_as(TokenSpans)
    offsets, special = spans.offsets, spans.special
    words = {}  # character position -> the lowercased whitespace word holding it
    position = 0
    for word in text.split():
        position = text.index(word, position)
        for i in range(position, position + len(word)):
            words[i] = word.strip(".,").lower()
        position += len(word)
    tags = []
    for (start, end), is_special in zip(offsets, special, strict=True):
        tagged = not is_special and text[start:end].isalnum()
        tags.append(tags_per_word.get(words.get(start, ""), "O") if tagged else "O")
    return list(task.decode(encoded, {"logits": logits_for(tags)}, None))


def test_b_and_i_merge_into_one_group_with_offsets(make_task: Any) -> None:
    text = "Yesterday Ada Lovelace visited London."
    entities = run(make_task, text, {"ada": "B-PER", "lovelace": "I-PER", "london": "B-LOC"})
    # the tokenizer lowercases, but offsets point into the original text
    entities = [(e.entity_group, e.word, e.start, e.end) for e in entities]
    assert entities == [("PER", "Ada Lovelace", 10, 22), ("LOC", "London", 31, 37)]


def test_a_new_b_tag_starts_a_new_entity(make_task: Any) -> None:
    text = "Ada Grace met."
    entities = run(make_task, text, {"ada": "B-PER", "grace": "B-PER"})
    assert [e.word for e in entities] == ["Ada", "Grace"]


def test_i_tag_of_another_type_starts_a_new_entity(make_task: Any) -> None:
    entities = run(make_task, "Ada Paris", {"ada": "B-PER", "paris": "I-LOC"})
    assert [(e.entity_group, e.word) for e in entities] == [("PER", "Ada"), ("LOC", "Paris")]


def test_scores_are_mean_token_probabilities(make_task: Any) -> None:
    entities = run(make_task, "Ada Lovelace", {"ada": "B-PER", "lovelace": "I-PER"})
    assert len(entities) == 1
    assert 0.99 < entities[0].score <= 1.0


def test_tag_parsing() -> None:
    assert _split_tag("B-PER") == ("B", "PER")
    assert _split_tag("I_LOC") == ("I", "LOC")
    assert _split_tag("O") == ("O", "")
    assert _split_tag("MISC") == ("I", "MISC")
