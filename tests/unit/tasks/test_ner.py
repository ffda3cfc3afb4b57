from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app.tasks.ner import Aggregation, NERParams, TokenEntity, TokenSpans, _split_tag
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


# -- aggregation strategies (transformers' TokenClassificationPipeline semantics) -----------


def decode_with(
    task: Any, text: str, probs_by_token: dict[str, dict[str, float]], strategy: str
) -> list[Any]:
    """Decode `text` with chosen label probabilities for the tokens named (by their token
    string; "O" for the rest)."""
    params = NERParams(Aggregation(strategy))
    encoded = task.encode(text, params)
    tokens = task.tokenizer.convert_ids_to_tokens(encoded.rows[0]["input_ids"])
    logits = np.full((1, len(tokens), len(NER_LABELS)), -20.0, dtype=np.float32)
    for t, token in enumerate(tokens):
        chosen = probs_by_token.get(token, {"O": 1.0})
        for label, p in chosen.items():
            logits[0, t, NER_LABELS.index(label)] = np.log(p)
    return list(task.decode(encoded, {"logits": logits}, params))


# "Lovelace" is two tokens, love + ##lace, that disagree: first takes love's label, max the
# most confident token's (##lace), average the best mean (PER), simple splits the word.
SPLIT_WORD = {
    "love": {"B-ORG": 0.5, "B-PER": 0.45, "O": 0.05},
    "##lace": {"B-LOC": 0.55, "B-PER": 0.45},
}


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("first", [("ORG", "Lovelace", 4, 12, 0.5)]),
        ("max", [("LOC", "Lovelace", 4, 12, 0.55)]),
        ("average", [("PER", "Lovelace", 4, 12, 0.45)]),
        ("simple", [("ORG", "Love", 4, 8, 0.5), ("LOC", "lace", 8, 12, 0.55)]),
    ],
)
def test_word_strategies_give_a_word_one_label(
    make_task: Any, strategy: str, expected: list[tuple[Any, ...]]
) -> None:
    entities = decode_with(make_task("ner", "ner"), "Ada Lovelace wrote.", SPLIT_WORD, strategy)
    got = [(e.entity_group, e.word, e.start, e.end, e.score) for e in entities]
    assert [g[:4] for g in got] == [e[:4] for e in expected]
    assert [g[4] for g in got] == pytest.approx([e[4] for e in expected], abs=1e-5)


def test_none_answers_each_labelled_token(make_task: Any) -> None:
    probs = {"ada": {"B-PER": 0.9, "O": 0.1}, **SPLIT_WORD}
    entities = decode_with(make_task("ner", "ner"), "Ada Lovelace wrote.", probs, "none")
    assert all(isinstance(e, TokenEntity) for e in entities)
    got = [(e.entity, e.index, e.word, e.start, e.end) for e in entities]
    # index counts [CLS]; "wrote" and "." are "O", left out
    assert got == [("B-PER", 1, "Ada", 0, 3), ("B-ORG", 2, "Love", 4, 8),
                   ("B-LOC", 3, "lace", 8, 12)]  # fmt: skip
    assert [e.score for e in entities] == pytest.approx([0.9, 0.5, 0.55], abs=1e-5)


def test_words_follow_the_tokenizer_or_the_spaces(make_task: Any) -> None:
    """WordPiece marks continuations: "'" and "s" are words of their own. A tokenizer that
    does not is split at spaces, as transformers' fallback does: "Lovelace's" is one word."""
    task = make_task("ner", "ner")
    probs = {"love": {"B-PER": 0.9, "O": 0.1}, "'": {"B-LOC": 0.8, "O": 0.2}}
    text = "Lovelace's notes"
    by_tokens = decode_with(task, text, probs, "first")
    assert [(e.entity_group, e.word) for e in by_tokens] == [("PER", "Lovelace"), ("LOC", "'")]
    task._word_aware = False
    by_spaces = decode_with(task, text, probs, "first")
    assert [(e.entity_group, e.word) for e in by_spaces] == [("PER", "Lovelace's")]


def test_an_unknown_token_starts_a_word(make_task: Any) -> None:
    """[UNK] is longer than the character it stands for, which would make it a continuation;
    it starts a word of its own, as in transformers."""
    probs = {"x": {"B-PER": 0.9, "O": 0.1}, "[UNK]": {"I-PER": 0.9, "O": 0.1}}
    entities = decode_with(make_task("ner", "ner"), "x 😀 y", probs, "first")
    assert [(e.entity_group, e.word, e.start, e.end) for e in entities] == [("PER", "x 😀", 0, 3)]
    probs["[UNK]"] = {"B-LOC": 0.9, "O": 0.1}
    entities = decode_with(make_task("ner", "ner"), "x 😀 y", probs, "first")
    assert [(e.entity_group, e.word) for e in entities] == [("PER", "x"), ("LOC", "😀")]
