"""Encoder prompts: the model's sentence-transformers config, the catalog's options over it,
and which prompt a request's prompt_name / input_type picks (embed and embed-sparse)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.errors import InvalidInput, ModelLoadError, PayloadTooLarge
from app.spec import ModelSpec
from app.tasks.embed import EmbedParams, TokenIds
from app.tasks.prompts import EncoderParams, PromptTable


def table(tmp_path: Path, own: dict[str, Any] | None = None, **options: Any) -> PromptTable:
    if own is not None:
        (tmp_path / "config_sentence_transformers.json").write_text(json.dumps(own))
    spec = ModelSpec(name="m", task="embed", source=str(tmp_path), options=options)  # type: ignore[arg-type]
    return PromptTable.load(spec, tmp_path)


def test_catalog_prompts_add_to_and_override_the_models_own(tmp_path: Path) -> None:
    own = {"prompts": {"query": "q: ", "document": ""}, "default_prompt_name": "query"}
    prompts = table(tmp_path, own, prompts={"query": "query: ", "code": "code: "})
    assert prompts.prompts == {"query": "query: ", "document": "", "code": "code: "}
    assert prompts.apply("x", EncoderParams()) == "query: x"  # the model's default
    assert prompts.apply("x", EncoderParams(prompt_name="document")) == "x"
    chosen = table(tmp_path, own, default_prompt_name="document")
    assert chosen.apply("x", EncoderParams()) == "x"


def test_input_type_maps_to_a_prompt_or_names_one(tmp_path: Path) -> None:
    prompts = table(
        tmp_path,
        prompts={"query": "query: ", "passage": "passage: "},
        input_types={"document": "passage", "search_query": "query"},
    )
    assert prompts.apply("x", EncoderParams(input_type="document")) == "passage: x"
    assert prompts.apply("x", EncoderParams(input_type="search_query")) == "query: x"
    assert prompts.apply("x", EncoderParams(input_type="query")) == "query: x"  # same name
    assert prompts.apply("x", EncoderParams()) == "x"  # no default prompt
    with pytest.raises(InvalidInput, match=r"input_type: .* no prompt for 'clustering'"):
        prompts.apply("x", EncoderParams(input_type="clustering"))
    with pytest.raises(InvalidInput, match="not both"):
        prompts.apply("x", EncoderParams(prompt_name="query", input_type="document"))


def test_an_unknown_prompt_name_lists_the_models_prompts(tmp_path: Path) -> None:
    refusal = table(tmp_path, prompts={"query": "q: "}).refusal(EncoderParams(prompt_name="qry"))
    assert isinstance(refusal, InvalidInput)
    assert "prompt_name: model 'm' has no prompt 'qry'; its prompts: ['query']" in refusal.message
    none = table(tmp_path).refusal(EncoderParams(prompt_name="query"))
    assert none is not None
    assert "options.prompts" in none.message


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"default_prompt_name": "query"}, "default prompt 'query'"),
        ({"prompts": {"q": ""}, "input_types": {"query": "query"}}, "input_types"),
    ],
)
def test_catalog_mistakes_stop_the_model_at_load(
    tmp_path: Path, options: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ModelLoadError, match=fragment):
        table(tmp_path, **options)


def test_prompt_names_are_checked_in_the_catalog(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not prompt names"):
        table(tmp_path, prompts={"a b": "x"})


def test_embed_applies_the_prompt_and_the_requests_truncation(make_task: Any) -> None:
    task = make_task("embed", "encoder", options={"prompts": {"query": "query: "}})
    assert task.encode("cats", EmbedParams(prompt_name="query")).rows[0] == task.text_row(
        "query: cats"
    )
    assert task.describe()["prompts"] == {"query": "query: "}
    with pytest.raises(InvalidInput, match="token ids run as they are"):
        task.encode(TokenIds((5, 6)), EmbedParams(prompt_name="query"))
    ids = tuple(range(1000, 1000 + task.max_length + 5))
    left = task.encode(TokenIds(ids), EmbedParams(truncation_direction="left"))
    assert left.rows[0]["input_ids"] == list(ids[-task.max_length :])
    assert left.truncated
    assert not task.encode(TokenIds(ids[:3]), EmbedParams()).truncated
    with pytest.raises(PayloadTooLarge, match=f"{len(ids)} tokens"):
        task.encode(TokenIds(ids), EmbedParams(truncate=False))
    long = task.encode(" ".join(["word"] * 300), EmbedParams())
    assert long.truncated
    assert long.n_tokens == task.max_length
