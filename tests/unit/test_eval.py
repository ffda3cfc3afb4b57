"""nlp-serve eval: metrics against reference values, the labelled files, scoring and reports."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from app.eval import metrics, scoring
from app.eval.data import DataError, Example, load
from app.eval.runner import RunResult, compare, comparison_table, table
from app.spec import TaskName
from tests.fixtures.eval_sets import EVAL_DIR, eval_sets, render


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The Denver Broncos!", "denver broncos"),
        ("  an  Apple, a pear ", "apple pear"),
        ("Théâtre (the) 1,000", "théâtre 1000"),
        ("theory anthem", "theory anthem"),  # articles only as whole words
    ],
)
def test_squad_normalisation_follows_the_official_script(text: str, normalized: str) -> None:
    assert metrics.squad_normalize(text) == normalized


def test_squad_scores_take_the_best_gold_answer() -> None:
    # Worked by hand from the v1.1 definitions: 2 shared tokens of 3 predicted, 2 gold.
    assert metrics.squad_f1("Denver Broncos won", "the Denver Broncos") == pytest.approx(0.8)
    assert metrics.squad_exact("the Denver Broncos", "Denver Broncos.") == 1.0
    exact, f1 = metrics.squad_item("in 1843", ["1843", "the year 1843"])
    assert exact == 0.0
    assert f1 == pytest.approx(2 / 3)
    assert metrics.squad(["Paris", "nothing"], [["paris"], ["London"]]) == {
        "exact_match": 50.0, "f1": 50.0}  # fmt: skip


def test_translation_metrics_are_sacrebleu_corpus_scores() -> None:
    # The library's fixed points: an exact match scores 100, no shared n-gram 0 BLEU.
    perfect = metrics.translation(["The dog bit the man."], ["The dog bit the man."])
    assert perfect == {"bleu": pytest.approx(100.0), "chrf": pytest.approx(100.0)}
    wrong = metrics.translation(["Il pleut."], ["The dog bit the man."])
    assert wrong["bleu"] == 0.0
    assert wrong["chrf"] < 10


def test_rouge_counts_stemmed_unigrams_bigrams_and_subsequences() -> None:
    scores = metrics.rouge(["the cats sat on the mat"], ["the cat sat on the mat"])
    assert scores["rouge1"] == pytest.approx(1.0)  # "cats" stems to "cat"
    half = metrics.rouge(["a b"], ["a b c d"])
    assert half["rouge1"] == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    assert half["rouge2"] == pytest.approx(2 * 1.0 * (1 / 3) / (1 + 1 / 3))


def test_classification_and_entity_metrics() -> None:
    scores = metrics.classification(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert scores["accuracy"] == 0.75
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    found = [{("PER", 0, 3), ("LOC", 10, 16)}, {("ORG", 0, 2)}]
    gold = [{("PER", 0, 3), ("LOC", 10, 15)}, set()]
    assert metrics.entities(found, gold) == {
        "precision": pytest.approx(1 / 3), "recall": 0.5, "f1": pytest.approx(0.4)}  # fmt: skip


def test_pseudo_perplexity_and_latency() -> None:
    logs = [[math.log(0.5), math.log(0.5)], [math.log(0.25)]]
    scores = metrics.pseudo_perplexity(logs)
    assert scores["pseudo_perplexity"] == pytest.approx(math.exp(-(2 * math.log(0.5) +
                                                                  math.log(0.25)) / 3))  # fmt: skip
    lat = metrics.latency([0.001 * i for i in range(1, 101)], wall_s=2.0, items=50)
    assert lat["latency_p50_ms"] == pytest.approx(50.5)
    assert lat["latency_p99_ms"] == pytest.approx(99.01)
    assert lat["items_per_s"] == 25.0


def test_the_eval_files_are_the_labelled_fixtures() -> None:
    for name, rows in eval_sets().items():
        assert (EVAL_DIR / name).read_text(encoding="utf-8") == render(rows), (
            f"app/calibration/labelled/{name} differs from tests/fixtures/labelled.py: run "
            "`python -m tests.fixtures.eval_sets`"
        )
        assert load(EVAL_DIR / name).examples


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"task": "sentiment", "text": "x"}'], "missing ['label']"),
        (['{"task": "nope", "text": "x"}'], '"task" must be one of'),
        (
            [
                '{"task": "qa", "question": "q", "context": "c", "answers": ["a"]}',
                '{"task": "sentiment", "text": "x", "label": "y"}',
            ],
            "own file",
        ),
        (["not json"], "not JSON"),
        ([], "no examples"),
    ],
)
def test_bad_files_name_the_line_and_the_fix(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(lines))
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load(path)


def test_predictions_score_each_task() -> None:
    ner = Example(
        1,
        {
            "text": "Ada in London",
            "entities": [
                {"entity_group": "PER", "start": 0, "end": 3},
                {"label": "LOC", "start": 7, "end": 13},
            ],
        },
    )
    answer = [[{"entity_group": "PER", "start": 0, "end": 3, "word": "Ada", "score": 0.9}]]
    p = scoring.predict(TaskName.NER, ner, answer)
    assert p.score == pytest.approx(2 / 3)
    assert p.shown == "Ada/PER"
    qa = Example(2, {"question": "q", "context": "c", "answers": ["the Mona Lisa"]})
    p = scoring.predict(TaskName.QA, qa, [{"answer": "Mona Lisa", "start": 3, "end": 12,
                                          "score": 0.5}])  # fmt: skip
    assert p.score == 1.0
    assert p.key == "3:12"
    with pytest.raises(DataError, match="tokenizer"):
        scoring.requests(TaskName.FILL_MASK, Example(3, {"text": "a b"}), None)


def _run(name: str, labels: list[str], golds: list[str]) -> RunResult:
    examples = [Example(i + 1, {"text": f"t{i}", "label": g}) for i, g in enumerate(golds)]
    preds = [scoring.predict(TaskName.SENTIMENT, e, [{"label": lab, "score": 0.9}])
             for e, lab in zip(examples, labels, strict=True)]  # fmt: skip
    scores = scoring.SET_METRICS[TaskName.SENTIMENT](examples, preds)
    return RunResult(name, TaskName.SENTIMENT, scores, preds, [0.01] * len(preds))


def test_compare_reports_differences_agreement_and_the_worst(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    golds = ["pos", "neg", "pos", "neg"]
    path.write_text("".join(json.dumps({"task": "sentiment", "text": f"t{i}", "label": g}) + "\n"
                            for i, g in enumerate(golds)))  # fmt: skip
    data = load(path)
    a = _run("fp32", ["pos", "neg", "pos", "pos"], golds)
    b = _run("int8", ["POS", "pos", "pos", "pos"], golds)
    result = compare(a, b, data)
    assert result.agreement == 0.75  # labels compare without case
    assert result.differences["accuracy"] == pytest.approx(-0.25)
    assert [row["line"] for row in result.worst] == [2]
    assert result.worst[0]["score_difference"] == -1.0
    text = comparison_table(result)
    assert "agreement: 75.0%" in text
    assert "worst disagreements" in text
    assert "accuracy" in table([a, b]).splitlines()[0]
