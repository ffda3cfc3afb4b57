"""ServedModel, the per-model pipeline: each stage checked and timed, on the fake backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.errors import InvalidInput
from app.pipeline import BatchSizeMismatch, NonFiniteResult, ServedModel
from app.registry.model import load_model
from app.runtimes.base import ModelInputs, ModelOutputs
from app.settings import Settings
from app.spec import ModelSpec
from app.tasks.base import Encoded
from app.tasks.classification import SentimentParams


@pytest.fixture
def sentiment(tiny_models: dict[str, Path]) -> ServedModel:
    spec = ModelSpec.model_validate(
        {"name": "pipeline-sentiment", "task": "sentiment", "device": "cpu", "backend": "fake",
         "source": str(tiny_models["sentiment"]), "backend_options": {"nan_token": "nan"}}
    )  # fmt: skip
    settings = Settings(models=Path("unused.yaml"), _env_file=None)  # type: ignore[call-arg]
    return load_model(spec, settings)


def test_each_stage_answers_and_says_how_long_it_took(sentiment: ServedModel) -> None:
    params = SentimentParams()
    encoded = [sentiment.encode(text, params) for text in ("good film", "a much longer bad one")]
    assert all(item.tokenize_s > 0 for item in encoded)
    rows = [row for item in encoded for row in item.rows]
    forward = sentiment.forward_rows(rows, params)
    assert forward.seconds > 0
    assert {len(value) for value in forward.value.values()} == {len(rows)}
    alone = sentiment.forward_rows(encoded[0].rows, params).value
    decoded = sentiment.decode(encoded[0], alone, params)
    assert decoded.seconds > 0
    assert decoded.value is not None


def test_a_backend_that_loses_a_row_fails_loudly(
    sentiment: ServedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = sentiment.backend.forward

    def one_row_short(inputs: ModelInputs) -> ModelOutputs:
        return {key: value[:-1] for key, value in real(inputs).items()}

    monkeypatch.setattr(sentiment.backend, "forward", one_row_short)
    params = SentimentParams()
    rows = [sentiment.encode(text, params).rows[0] for text in ("one", "two")]
    with pytest.raises(BatchSizeMismatch, match=r"returned \[1\] rows for a batch of 2"):
        sentiment.forward_rows(rows, params)


def test_a_nan_score_is_a_model_fault_never_sent_as_null(sentiment: ServedModel) -> None:
    params = SentimentParams()
    encoded = sentiment.encode("nan", params)
    outputs = sentiment.forward_rows(encoded.rows, params).value
    assert np.isnan(next(iter(outputs.values()))).any()
    with pytest.raises(NonFiniteResult, match="NaN or infinite"):
        sentiment.decode(encoded, outputs, params)


def test_an_input_without_tokens_is_refused(
    sentiment: ServedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    def nothing(item: Any, params: Any) -> Encoded:
        return Encoded(rows=[])

    monkeypatch.setattr(sentiment.task, "encode", nothing)
    with pytest.raises(InvalidInput, match="produced no tokens"):
        sentiment.encode("", SentimentParams())
